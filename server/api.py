"""The collector's HTTP API (SPEC.md "HTTP API", design.md wire format).

``create_app(config, storage, clock)`` builds a fresh FastAPI app. Bad input always
gets a 4xx JSON ``{"error", "message"}`` naming the bad value, and nothing is stored
for a request that is refused.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import random
import threading
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ValidationError
from schoolmon.server.auth import bearer_secret, hash_secret, matches
from schoolmon.server.clock import Clock, to_wire, utcnow
from schoolmon.server.config import Config
from schoolmon.server.figures import (
    SchoolFigures,
    detail_json,
    device_figures,
    figures_for,
    outage_json,
    school_figures,
    summary_json,
    thresholds,
    window_json,
)
from schoolmon.server.ingest import (
    IngestResult,
    ReportWriter,
    enroll_device,
    mend_legacy_report,
)
from schoolmon.server.metrics import accepts_gzip, new_registry, render
from schoolmon.server.retention import RetentionThread
from schoolmon.server.schemas import (
    EnrollAnswer,
    EnrollRequest,
    Report,
    ReportAnswer,
    WireJsonError,
    json_kind,
    parse_wire_json,
    quoted,
)
from schoolmon.server.speedtest import build_router
from schoolmon.server.storage import Storage
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

DRAIN_FACTOR = 16
HEALTH = {"status": "ok", "service": "schoolmon"}


class ApiError(Exception):
    """A refused request: HTTP status, error code and a sentence for people."""

    def __init__(
        self, status: int, error: str, message: str, details: list[Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.details = (
            status,
            error,
            message,
            details,
        )

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"error": self.error, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return JSONResponse(body, status_code=self.status)


def create_app(
    config: Config,
    storage: Storage,
    clock: Clock = utcnow,
    rng: random.Random | None = None,
) -> FastAPI:
    """Build the collector app around one storage, configuration and clock."""
    requests = PendingRequests()

    writer = ReportWriter(storage, config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        retention = RetentionThread(storage, config, clock)
        if config.retention.enabled:
            retention.start()
        app.state.registry.start(
            functools.partial(requests.flush, storage), after_first=_freeze_heap
        )
        try:
            yield
        finally:
            await run_in_threadpool(app.state.registry.stop)
            retention.stop()
            writer.close()
        requests.flush(storage)

    app = FastAPI(
        title="schoolmon collector", docs_url=None, redoc_url=None, lifespan=lifespan
    )
    app.state.config, app.state.storage, app.state.clock = config, storage, clock
    app.state.rng = rng or random.Random()
    app.state.registry = new_registry(storage, config, clock)
    app.state.requests, app.state.writer = requests, writer
    _install_error_handlers(app)
    app.add_middleware(RequestCounter, pending=app.state.requests)
    _add_agent_routes(app)
    _add_read_routes(app)
    app.include_router(build_router(functools.partial(_device_for, storage)))
    return app


def _freeze_heap() -> None:
    """Leave what is alive now (the app, the figures kept for /metrics: about a
    million objects at 5,000 schools) out of every later garbage collection. A full
    collection walks them all, about 0.6 s holding the GIL at 5,000 schools, and
    one came every other refresh; they live as long as the process anyway."""
    gc.freeze()
    logger.debug("froze %d objects out of garbage collection", gc.get_freeze_count())


# Errors -------------------------------------------------------------------------------


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return error.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(
        request: Request, error: StarletteHTTPException
    ) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(
            error.status_code, "http"
        )
        path = request.url.path
        path = path if len(path) <= 80 else f"{path[:80]}…"
        message = f"{request.method} {path}: {error.detail}"
        return ApiError(error.status_code, code, message).response()

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        # A fault of the collector itself, not of the request: keep the traceback.
        logger.error("%s %s failed", request.method, request.url.path, exc_info=error)
        message = "the collector failed on this request; see its log"
        return ApiError(500, "internal_error", message).response()

    @app.exception_handler(RequestValidationError)
    async def request_invalid(
        request: Request, error: RequestValidationError
    ) -> JSONResponse:
        return _validation_error(list(error.errors())).response()


def _validation_error(errors: list[Any]) -> ApiError:
    details = [
        {
            "loc": ".".join(str(part) for part in item["loc"]),
            "message": item["msg"].removeprefix("Value error, "),
            "type": item["type"],
        }
        for item in errors[:50]
    ]
    first = errors[0]
    message = f"{details[0]['loc']}: {details[0]['message']}"
    value = first.get("input")
    whole_judged = first["type"] == "value_error" and isinstance(value, dict | list)
    if first["type"] != "missing" and not whole_judged:
        message += f" (got {quoted(value)})"
    if len(errors) > 1:
        message += f"; and {len(errors) - 1} more problem(s), see details"
    return ApiError(422, "validation_failed", message, details)


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The request body as a JSON object, decompressed if gzip, within ``limit``
    bytes (schemas.parse_wire_json says which JSON is refused)."""
    body = await _read_limited(request, limit)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "gzip":
        body = _gunzip(body, limit)
    elif encoding not in ("", "identity"):
        raise ApiError(
            415,
            "unsupported_encoding",
            f"Content-Encoding {quoted(encoding)} is not supported; "
            "accepted: gzip, identity",
        )
    try:
        data = parse_wire_json(body)
    except WireJsonError as error:
        raise ApiError(400, "malformed_json", str(error)) from None
    if not isinstance(data, dict):
        raise ApiError(
            422,
            "validation_failed",
            f"the body is {json_kind(data)}; expected a JSON object",
        )
    return data


async def _read_limited(request: Request, limit: int) -> bytes:
    body = bytearray()
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received <= limit:
            body += chunk
        elif received > limit * DRAIN_FACTOR:
            break
    if received > limit:
        raise ApiError(
            413,
            "body_too_large",
            f"the body has {received} bytes or more; max_body_bytes is {limit}",
        )
    return bytes(body)


def _gunzip(body: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise ApiError(
            400, "malformed_gzip", f"the gzip body is damaged: {error}"
        ) from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise ApiError(
            413,
            "body_too_large",
            f"the body decompresses to over {limit} bytes (max_body_bytes)",
        )
    if not inflater.eof:
        raise ApiError(400, "malformed_gzip", "the gzip body is cut short")
    return data


def _validate(model: type[BaseModel], data: Any) -> Any:
    if not isinstance(data, dict):
        raise ApiError(
            422,
            "validation_failed",
            f"the body is a JSON {type(data).__name__}; expected a JSON object",
        )
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise _validation_error(list(error.errors())) from None


# Agent routes -------------------------------------------------------------------------


def _add_agent_routes(app: FastAPI) -> None:
    state = app.state

    @app.post("/api/v1/enroll", status_code=201)
    async def enroll(request: Request) -> JSONResponse:
        data = await read_json(request, state.config.server.max_body_bytes)
        enroll_request = _validate(EnrollRequest, data)
        answer = await run_in_threadpool(_enroll, state, enroll_request)
        return JSONResponse(answer.model_dump(mode="json"), status_code=201)

    @app.post("/api/v1/reports")
    async def reports(request: Request) -> JSONResponse:
        try:
            # One indexed read, on the loop: WAL readers never wait for the writer,
            # and it costs less than a hop to a worker thread and back.
            device = _authenticate(state.storage, request.headers.get("authorization"))
            data = await read_json(request, state.config.server.max_body_bytes)
            report = _validate(Report, mend_legacy_report(data))
            _check_school(device, report)
        except ApiError:
            await run_in_threadpool(_count_rejected, state.storage)
            raise
        result = await state.writer.store(device, report, state.clock())
        answer = _report_answer(state, result)
        return JSONResponse(answer.model_dump(mode="json", exclude_none=True))

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return HEALTH

    @app.get("/metrics")
    def metrics(request: Request) -> Response:
        # Request counts reach the database before Prometheus sees them: here, or
        # (while the refresher runs) at each refresh, the scrape costing no write.
        if not state.registry.running:
            state.requests.flush(state.storage)
        gzipped = accepts_gzip(request.headers.get("accept-encoding"))
        headers = {"Vary": "Accept-Encoding"}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        body = render(state.registry, gzipped)
        return Response(body, media_type=CONTENT_TYPE_LATEST, headers=headers)


def _enroll(state: Any, request: EnrollRequest) -> EnrollAnswer:
    token_hash = hash_secret(request.token)
    token = state.storage.enrollment_token(token_hash)
    if token is None or not matches(request.token, token["hash"]):
        raise ApiError(
            401,
            "unknown_token",
            _secret_message("enrollment token", request.token, "is unknown"),
        )
    if token["revoked_at"] is not None:
        raise ApiError(
            401,
            "revoked_token",
            _secret_message("enrollment token", request.token, "was revoked"),
        )
    school = state.storage.school(token["school"])
    if school is None or not school["active"]:
        raise ApiError(
            403,
            "school_inactive",
            f"school {token['school']!r} is not active in the registry",
        )
    enrollment = enroll_device(state.storage, token, request, state.clock())
    return EnrollAnswer(
        device_id=enrollment.device["id"],
        credential=enrollment.credential,
        school=enrollment.device["school"],
        role=enrollment.device["role"],
        report_interval_seconds=state.config.server.report_interval_seconds,
    )


def _authenticate(storage: Storage, authorization: str | None) -> dict[str, Any]:
    """The device of a live credential: id, school (``Storage.credential_owner``)."""
    credential = bearer_secret(authorization)
    if credential is None:
        raise ApiError(
            401,
            "missing_credential",
            "no device credential; send 'Authorization: Bearer <credential>'",
        )
    device = storage.credential_owner(hash_secret(credential))
    if device is None or not matches(credential, device["credential_hash"]):
        raise ApiError(
            401,
            "unknown_credential",
            _secret_message("credential", credential, "is unknown"),
        )
    if device["credential_revoked_at"] is not None:
        raise ApiError(
            401,
            "revoked_credential",
            _secret_message("credential", credential, "was revoked"),
        )
    return device


def _secret_message(what: str, secret: str, verdict: str) -> str:
    start = quoted(secret[:4]) if secret[:4].isascii() else "(not ASCII)"
    if what == "enrollment token":
        advice = (
            "ask the district technician for a new token "
            "(schoolmon-server schools token CODE)"
        )
    else:
        advice = "enroll this PC again with a token from the district technician"
    return f"the {what} starting {start} {verdict}; {advice}"


def _check_school(device: dict[str, Any], report: Report) -> None:
    if report.school is not None and report.school != device["school"]:
        raise ApiError(
            403,
            "wrong_school",
            f"device {device['id']} belongs to school {device['school']!r}, "
            f"not {report.school!r}",
        )


def _report_answer(state: Any, result: IngestResult) -> ReportAnswer:
    return ReportAnswer(
        device_id=result.device_id,
        accepted=result.accepted,
        duplicates=result.duplicates,
        next_report_in_seconds=_next_report_in(state.config, state.rng),
        instructions=result.instructions,
        last_seq=result.last_seq,
    )


def _next_report_in(config: Config, rng: random.Random) -> int:
    interval = config.server.report_interval_seconds
    jitter = config.server.report_jitter_seconds
    return interval + rng.randint(-jitter, jitter)


def _count_rejected(storage: Storage) -> None:
    storage.bump_counters([("reports_received", {"result": "rejected"}, 1)])


# Read routes --------------------------------------------------------------------------


def _add_read_routes(app: FastAPI) -> None:
    state = app.state

    @app.get("/api/v1/schools")
    def schools() -> dict[str, Any]:
        figures = school_figures(state.storage, state.config, state.clock())
        rows = [_school_json(f.info, summary_json(f)) for f in figures.values()]
        return {"schools": rows}

    @app.get("/api/v1/schools/{code}")
    def school(code: str) -> dict[str, Any]:
        figures = _figures_of(state, code)
        body = _school_json(figures.info, detail_json(figures))
        return body | {"thresholds": thresholds(state.config)}

    @app.get("/api/v1/schools/{code}/devices")
    def school_devices(code: str) -> dict[str, Any]:
        _known_school(state.storage, code)
        devices = state.storage.devices(code)
        return {"school": code, "devices": [_device_json(d) for d in devices]}

    @app.get("/api/v1/schools/{code}/outages")
    def school_outages(code: str) -> dict[str, Any]:
        uptime = _figures_of(state, code).uptime
        return {
            "school": code,
            "window": window_json(uptime),
            "session_seconds": uptime.session_seconds,
            "down_seconds": uptime.down_seconds,
            "no_device_seconds": uptime.no_device_seconds,
            "outages": [outage_json(outage) for outage in uptime.outages],
        }

    @app.get("/api/v1/devices/{device_id}")
    def device(device_id: str) -> dict[str, Any]:
        row = _known_device(state.storage, device_id)
        inventory = state.storage.inventory(device_id)
        compliance = device_figures(state.storage, state.config, state.clock(), row)
        body = _device_json(row) | {"inventory": _jsonable(inventory)}
        return body | {"compliance": compliance}

    @app.get("/api/v1/devices/{device_id}/events")
    def device_events(device_id: str) -> dict[str, Any]:
        _known_device(state.storage, device_id)
        events = state.storage.asset_events(device_id)
        return {"device": device_id, "events": [_jsonable(e) for e in events]}


def _figures_of(state: Any, code: str) -> SchoolFigures:
    figures = figures_for(state.storage, state.config, state.clock(), code)
    if figures is None:
        raise ApiError(
            404, "unknown_school", f"school {quoted(code)} is not in the registry"
        )
    return figures


def _device_for(storage: Storage, credential: str) -> dict[str, Any] | None:
    """The device a speed-test credential belongs to, by the reports route's check."""
    try:
        return _authenticate(storage, f"Bearer {credential}")
    except ApiError:
        return None


def _known_school(storage: Storage, code: str) -> dict[str, Any]:
    row = storage.school(code)
    if row is None:
        raise ApiError(
            404, "unknown_school", f"school {quoted(code)} is not in the registry"
        )
    return row


def _known_device(storage: Storage, device_id: str) -> dict[str, Any]:
    row = storage.device(device_id)
    if row is None:
        raise ApiError(
            404, "unknown_device", f"device {quoted(device_id)} is not enrolled"
        )
    return row


def _school_json(row: dict[str, Any], figures: dict[str, Any]) -> dict[str, Any]:
    return _jsonable(row) | {"figures": figures}


def _device_json(row: dict[str, Any]) -> dict[str, Any]:
    hidden = {"credential_hash"}
    return _jsonable({k: v for k, v in row.items() if k not in hidden})


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return to_wire(value)
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value


# Request counter ---------------------------------------------------------------------

Send = Callable[[dict[str, Any]], Awaitable[None]]


class PendingRequests:
    """Request counts not yet written to the database.

    Agents probe /healthz every cycle; writing each request would cost a disk sync.
    Counts are written at each scrape, or at each refresh of the figures while the
    metrics refresher runs (``metrics.MetricsExporter``), and at shutdown, so what
    Prometheus has seen is always in the database and the counter never goes
    backwards.
    """

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, str], int] = {}
        self._lock = threading.Lock()

    def add(self, method: str, route: str, status: int) -> None:
        key = (method, route, str(status))
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def flush(self, storage: Storage) -> None:
        with self._lock:
            counts, self._counts = self._counts, {}
        increments = [
            ("http_requests", {"method": m, "route": r, "status": s}, n)
            for (m, r, s), n in counts.items()
        ]
        storage.bump_counters(increments)


class RequestCounter:
    """ASGI middleware counting answered requests by method, route and status."""

    def __init__(self, app: Any, pending: PendingRequests) -> None:
        self.app, self.pending = app, pending

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def remember_status(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, remember_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.pending.add(scope["method"], route, status["code"])
