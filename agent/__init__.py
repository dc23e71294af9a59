"""schoolmon agent: inventory and connectivity of one PC, reported to the collector."""

__version__ = "0.1.0"
