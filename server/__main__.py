"""``python -m schoolmon.server``: the same as ``schoolmon-server``."""

from schoolmon.server.cli import main

if __name__ == "__main__":
    main(prog_name="schoolmon-server")
