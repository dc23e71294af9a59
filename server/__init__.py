"""schoolmon collector: stores reports and serves the headline figures."""
