"""Run the agent's real speed-test code once and write the result as JSON.

``python -m tests.netlab.agent_run BACKEND CONFIG_JSON OUT_FILE`` (inside the
school's network namespace).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from schoolmon.agent.speedtest import run_speedtest


def main() -> None:
    backend, config, out = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3])
    result = run_speedtest(backend, config)
    out.write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
