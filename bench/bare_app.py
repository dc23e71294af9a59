"""The reference for bench/ingest.py: the least a FastAPI endpoint can do with a report.

It reads the whole POST body and answers 200 with a small JSON document, served by
``uvicorn.run`` with the same settings as ``schoolmon-server serve`` (no access log;
httptools and uvloop, which the server extra installs and uvicorn picks by itself),
so the gap to the collector is the collector's own work.

    python bench/bare_app.py --port 8500
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

app = FastAPI(docs_url=None, redoc_url=None)
ANSWER = {"accepted": {"probes": 0, "speedtests": 0, "inventory": 0}}


@app.post("/api/v1/reports")
async def reports(request: Request) -> JSONResponse:
    """Read the body and answer 200."""
    await request.body()
    return JSONResponse(ANSWER)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    """Alive."""
    return {"status": "ok"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, access_log=False)


if __name__ == "__main__":
    main()
