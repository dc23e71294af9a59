"""The collector's side of speed tests: test endpoints and plausibility checks.

``build_router`` serves the endpoints the agent's ``collector`` backend measures
against; ``plausibility_flags`` marks results that cannot be true of a school link,
so they are kept for inspection and left out of medians and classes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

logger = logging.getLogger(__name__)

PREFIX = "/api/v1/speedtest"
MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024
MAX_UPLOAD_BYTES = 1024 * 1024 * 1024
BLOCK_BYTES = 1024 * 1024

# speedtest-cli's "no answer" latency (1,800,000 ms) and anything beyond a minute
# is not a round trip a school link can have.
MAX_LATENCY_SECONDS = 60.0
# 10 Gbit/s: no school PC or school link reaches it; above it a figure is a bug.
ABSURD_BYTES_PER_SECOND = 10e9 / 8
# Upload above twice the contracted download, or above five times the download of
# the same test, is not a property of the link. Vietnamese school links (ADSL,
# VDSL, FTTH, 4G) are asymmetric or at best symmetric, and an upload figure above
# the download is the known artefact of counting bytes handed to the socket rather
# than bytes delivered. The factors leave room for symmetric fibre plans, burst
# allowances and a download measured during congestion.
UPLOAD_OVER_CONTRACT = 2.0
UPLOAD_OVER_DOWNLOAD = 5.0


def build_router(
    verify_credential: Callable[[str], object | None],
    *,
    max_download_bytes: int = MAX_DOWNLOAD_BYTES,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
) -> APIRouter:
    """Speed-test endpoints; ``verify_credential`` returns None for a bad credential."""
    block = memoryview(os.urandom(BLOCK_BYTES))
    router = APIRouter(prefix=PREFIX)

    async def authorized(request: Request) -> bool:
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            return False
        owner = await run_in_threadpool(verify_credential, credential.strip())
        return owner is not None

    @router.get("/latency")
    async def latency(request: Request) -> Response:
        if not await authorized(request):
            return _unauthorized()
        return Response(status_code=204)

    @router.get("/download")
    async def download(request: Request) -> Response:
        if not await authorized(request):
            return _unauthorized()
        size = _requested_bytes(request.query_params.get("bytes"), max_download_bytes)
        if isinstance(size, Response):
            return size
        logger.debug("speed-test download of %d bytes", size)
        return StreamingResponse(
            _stream(block, size),
            media_type="application/octet-stream",
            headers={"Content-Length": str(size), "Cache-Control": "no-store"},
        )

    @router.post("/upload")
    async def upload(request: Request) -> Response:
        if not await authorized(request):
            return _unauthorized()
        return await _swallow(request, max_upload_bytes)

    return router


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def _unauthorized() -> JSONResponse:
    return _error(
        401,
        "unauthorized",
        "speed-test endpoints need a device credential as 'Authorization: Bearer ...'",
    )


def _requested_bytes(raw: str | None, limit: int) -> int | JSONResponse:
    """The ``bytes`` query parameter as an int in 1..limit, or a 422 answer."""
    try:
        size = int(raw) if raw is not None else None
    except ValueError:
        size = None
    if size is None or not 1 <= size <= limit:
        return _error(
            422,
            "invalid_bytes",
            f"bytes must be an integer from 1 to {limit}, got {raw!r}",
        )
    return size


async def _stream(block: memoryview, size: int) -> AsyncIterator[memoryview]:
    """``size`` bytes of the pre-generated random block, without copying it."""
    remaining = size
    while remaining > 0:
        piece = block[: min(remaining, len(block))]
        remaining -= len(piece)
        yield piece
        # Let the event loop notice a client that went away before the next block.
        await asyncio.sleep(0)


async def _swallow(request: Request, limit: int) -> Response:
    began = time.perf_counter()
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                message = f"upload body over {limit} bytes; send at most that"
                return _error(413, "too_large", message)
    except ClientDisconnect:
        # The agent stops sending when its measuring window closes; nobody waits
        # for this answer any more.
        logger.debug("speed-test upload ended by the client after %d bytes", received)
        return _error(400, "client_disconnected", "the upload ended early")
    seconds = round(time.perf_counter() - began, 6)
    return JSONResponse({"bytes_received": received, "seconds": seconds})


def plausibility_flags(
    result: dict, contracted_download_mbps: float | None
) -> list[str]:
    """Flags for figures a school link cannot produce; [] for a failed test.

    ``contracted_download_mbps`` is the school registry's contracted download in
    Mbit/s, or None when unknown.
    """
    if not result.get("ok"):
        return []
    download = result.get("download_bytes_per_second")
    upload = result.get("upload_bytes_per_second")
    flags = set()

    if not _rate_plausible(download):
        flags.add("implausible_download")
    if not _rate_plausible(upload) or _upload_above_link(
        upload, download, contracted_download_mbps
    ):
        flags.add("implausible_upload")
    if not _latency_plausible(result.get("latency_seconds")):
        flags.add("implausible_latency")
    if not _nonnegative(result.get("jitter_seconds"), allow_none=True):
        flags.add("implausible_jitter")
    if not _nonnegative(result.get("bytes_used"), allow_none=False):
        flags.add("implausible_bytes_used")
    return sorted(flags)


def median_eligible(result: dict, flags: list[str]) -> bool:
    """Whether a stored result counts in medians and classes."""
    return bool(result.get("ok")) and not flags


def _finite(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and (math.isfinite(value))
    )


def _rate_plausible(value: object) -> bool:
    return _finite(value) and 0 < value <= ABSURD_BYTES_PER_SECOND


def _latency_plausible(value: object) -> bool:
    return _finite(value) and 0 < value <= MAX_LATENCY_SECONDS


def _nonnegative(value: object, allow_none: bool) -> bool:
    if value is None:
        return allow_none
    return _finite(value) and value >= 0


def _upload_above_link(upload, download, contracted_download_mbps) -> bool:
    if not _finite(upload):
        return False
    if _finite(contracted_download_mbps) and contracted_download_mbps > 0:
        contracted = contracted_download_mbps * 1e6 / 8
        if upload > UPLOAD_OVER_CONTRACT * contracted:
            return True
    return _rate_plausible(download) and upload > UPLOAD_OVER_DOWNLOAD * download
