"""Hardware and software inventory of this machine."""
