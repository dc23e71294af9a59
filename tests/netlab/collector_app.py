"""A small collector app carrying only the speed-test router, for the link tests.

``make_app(credential)`` accepts exactly that Bearer credential.
``python -m tests.netlab.collector_app --host H --port P --credential C --ready FILE``
serves it with uvicorn (inside the collector's network namespace) and writes
``FILE`` once it listens.
"""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path

from fastapi import FastAPI
from schoolmon.server.speedtest import build_router


def make_app(credential: str) -> FastAPI:
    """An app whose speed-test endpoints accept ``credential`` (owner ``dev-1``)."""
    owners = {credential: "dev-1"}
    app = FastAPI()
    app.include_router(build_router(owners.get))
    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--credential", required=True)
    parser.add_argument("--ready", type=Path, required=True)
    args = parser.parse_args()

    config = uvicorn.Config(
        make_app(args.credential), host=args.host, port=args.port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while thread.is_alive() and not server.started:
        thread.join(0.05)
    if server.started:
        args.ready.write_text(json.dumps({"port": args.port}), encoding="utf-8")
    thread.join()


if __name__ == "__main__":
    main()
