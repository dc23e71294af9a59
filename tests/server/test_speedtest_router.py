"""The collector's speed-test endpoints, served by a real uvicorn on loopback."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from schoolmon.server.speedtest import MAX_DOWNLOAD_BYTES, build_router

from tests.netlab.matchers import Between
from tests.support.collector import collector_in_thread

CREDENTIAL = "device-credential"
AUTH = {"Authorization": f"Bearer {CREDENTIAL}"}
UNAUTHORIZED = {
    "error": "unauthorized",
    "message": (
        "speed-test endpoints need a device credential as 'Authorization: Bearer ...'"
    ),
}


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    """A client of an app carrying only the router, with a 1 MiB upload limit."""
    app = FastAPI()
    app.include_router(
        build_router({CREDENTIAL: "d_1"}.get, max_upload_bytes=1024 * 1024)
    )
    with (
        collector_in_thread(app) as url,
        httpx.Client(base_url=url, timeout=10) as http,
    ):
        yield http


def answer(response: httpx.Response) -> tuple[int, object]:
    return response.status_code, response.json()


def test_latency_answers_a_device_with_an_empty_204(client):
    """The latency endpoint's answer is as small as HTTP allows."""
    response = client.get("/api/v1/speedtest/latency", headers=AUTH)

    assert (response.status_code, response.content) == (204, b"")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/speedtest/latency"),
        ("GET", "/api/v1/speedtest/download?bytes=10"),
        ("POST", "/api/v1/speedtest/upload"),
    ],
)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": CREDENTIAL}],
    ids=["none", "unknown", "not-bearer"],
)
def test_every_endpoint_refuses_a_request_without_a_valid_credential(
    client, method, path, headers
):
    """No or an unknown Bearer credential gives a 401 JSON error, never data."""
    response = client.request(method, path, headers=headers, content=b"x")

    assert answer(response) == (401, UNAUTHORIZED)


def test_download_streams_exactly_the_bytes_asked_for_and_incompressible(client):
    """N bytes come back, random enough that compression cannot shrink them."""
    response = client.get(
        "/api/v1/speedtest/download", params={"bytes": 3_000_001}, headers=AUTH
    )

    body = response.content
    assert (response.status_code, len(body), response.headers["content-type"]) == (
        200,
        3_000_001,
        "application/octet-stream",
    )
    assert len(zlib.compress(body[:1_000_000])) > 999_000


@pytest.mark.parametrize(
    "raw", ["abc", "0", "-5", "1.5", str(MAX_DOWNLOAD_BYTES + 1), None]
)
def test_download_refuses_a_size_outside_the_bounds_with_a_422(client, raw):
    """A bad ``bytes`` value gives a 422 naming it and the accepted range."""
    params = {} if raw is None else {"bytes": raw}

    response = client.get("/api/v1/speedtest/download", params=params, headers=AUTH)

    assert answer(response) == (
        422,
        {
            "error": "invalid_bytes",
            "message": f"bytes must be an integer from 1 to {MAX_DOWNLOAD_BYTES}, "
            f"got {raw!r}",
        },
    )


def test_upload_reads_the_body_and_says_how_much_arrived(client):
    """The upload endpoint discards the body and answers its size and duration."""
    response = client.post(
        "/api/v1/speedtest/upload", content=b"\x00" * 700_000, headers=AUTH
    )

    assert answer(response) == (
        200,
        {"bytes_received": 700_000, "seconds": Between(0.0, 10.0)},
    )


def test_upload_over_the_limit_is_refused_with_a_413(client):
    """A body over the configured limit is refused instead of read forever."""
    response = client.post(
        "/api/v1/speedtest/upload", content=b"\x00" * (2 * 1024 * 1024), headers=AUTH
    )

    assert answer(response) == (
        413,
        {
            "error": "too_large",
            "message": "upload body over 1048576 bytes; send at most that",
        },
    )
