"""Speed tests run across an emulated link, shared by the link tests and the bench.

The collector side runs the real speed-test router under uvicorn, or the
speedtest.net stand-in, in the collector namespace; the agent's real
``run_speedtest`` runs in the school namespace. Durations come from environment
variables so the same code is a quick test or a longer benchmark:

- ``SCHOOLMON_NETLAB_SECONDS``: collector backend window per direction (default 4)
- ``SCHOOLMON_NETLAB_WARMUP``: collector backend warm-up (default 1)
- ``SCHOOLMON_NETLAB_ST_LENGTH``: speedtest.net test length per direction (default 8)
"""

from __future__ import annotations

import json
import os

from tests.netlab.netns import EmulatedLink
from tests.netlab.testca import make_test_ca

CREDENTIAL = "netlab-device-credential"
COLLECTOR_PORT = 8080
SPEEDTEST_PORT = 8081


def durations() -> dict[str, float]:
    """The test durations in force (environment or defaults)."""
    return {
        "seconds": float(os.environ.get("SCHOOLMON_NETLAB_SECONDS", "4")),
        "warmup": float(os.environ.get("SCHOOLMON_NETLAB_WARMUP", "1")),
        "st_length": float(os.environ.get("SCHOOLMON_NETLAB_ST_LENGTH", "8")),
    }


def start_collector(link: EmulatedLink) -> str:
    """Serve the speed-test router in the collector namespace; return its URL."""
    ready = link.workdir / "collector.ready"
    link.spawn(
        link.collector_ns,
        "tests.netlab.collector_app",
        *("--host", link.collector_ip, "--port", str(COLLECTOR_PORT)),
        *("--credential", CREDENTIAL, "--ready", str(ready)),
    )
    link.wait_ready(ready, "collector")
    return f"http://{link.collector_ip}:{COLLECTOR_PORT}"


def start_speedtest_net(link: EmulatedLink, testlength: int) -> dict[str, str]:
    """Run the stand-in in the collector namespace; return the agent's environment."""
    ca = make_test_ca(link.workdir / "ca")
    ready = link.workdir / "speedtest.ready"
    link.spawn(
        link.collector_ns,
        "tests.netlab.fake_speedtest_net",
        *("--host", link.collector_ip, "--port", str(SPEEDTEST_PORT)),
        *("--testlength", str(testlength), "--ready", str(ready)),
        *("--cert", str(ca.cert), "--key", str(ca.key)),
    )
    link.wait_ready(ready, "speedtest.net stand-in")
    proxy = f"http://{link.collector_ip}:{SPEEDTEST_PORT}"
    return {"http_proxy": proxy, "https_proxy": proxy, "SSL_CERT_FILE": str(ca.ca)}


def run_agent(
    link: EmulatedLink, backend: str, config: dict, env: dict | None = None
) -> dict:
    """Run the agent's speed test in the school namespace; return its result."""
    out = link.workdir / f"result-{len(link.processes)}.json"
    process = link.spawn(
        link.school_ns,
        "tests.netlab.agent_run",
        *(backend, json.dumps(config), str(out)),
        env=env,
    )
    process.wait(timeout=config.get("deadline_seconds", 120) + 30)
    if not out.exists():
        raise RuntimeError(f"the agent wrote no result: {link.logs()}")
    return json.loads(out.read_text(encoding="utf-8"))


def collector_test(link: EmulatedLink) -> dict:
    """One collector-backend speed test across ``link``."""
    times = durations()
    config = {
        "server_url": start_collector(link),
        "credential": CREDENTIAL,
        "duration_seconds": times["seconds"],
        "warmup_seconds": times["warmup"],
    }
    return run_agent(link, "collector", config)


def speedtest_net_test(link: EmulatedLink) -> dict:
    """One speedtest-cli test (HTTPS to the stand-in) across ``link``."""
    env = start_speedtest_net(link, int(durations()["st_length"]))
    config = {"state_dir": str(link.workdir / "agent-state"), "secure": True}
    return run_agent(link, "speedtest-net", config, env=env)
