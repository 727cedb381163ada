"""cors.py: the pages of CORS_ORIGINS may call the API; no other origin, and never `*`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from flask import Flask

from tests.support.processes import start_web
from webapp import create_app
from webapp.http import cors
from webapp.http.auth import mint

ALLOWED = "https://app.example.com"
ALSO_ALLOWED = "http://localhost:3000"
STRANGER = "https://evil.example.net"
SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in response.headers.items() if k.lower().startswith("access-")}


def preflight(http: httpx.Client, path: str, origin: str, method: str = "POST") -> httpx.Response:
    return http.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )


@pytest.fixture(scope="module")
def cors_web(base_env: dict[str, str], app: Flask, log_dir: Path) -> Iterator[str]:
    """gunicorn with two allowed origins and access control on."""
    env = dict(
        base_env,
        CORS_ORIGINS=f"{ALLOWED}, {ALSO_ALLOWED}/",
        AUTH_JWT_SECRET=SECRET,
    )
    proc, base_url = start_web(env, log_dir, name="web-cors")
    yield base_url
    proc.stop()


@pytest.fixture()
def http(cors_web: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cors_web, timeout=10) as client:
        yield client


def bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(SECRET, 'alice', 300)}"}


def test_an_allowed_origins_preflight_is_answered_without_a_token(http: httpx.Client) -> None:
    response = preflight(http, "/api/sessions", ALLOWED)
    assert response.status_code == 204
    assert cors_headers(response) == {
        "access-control-allow-origin": ALLOWED,
        "access-control-allow-methods": "GET, POST, DELETE",
        "access-control-allow-headers": (
            "Authorization, Content-Type, Idempotency-Key, Last-Event-ID"
        ),
        "access-control-max-age": str(cors.MAX_AGE_SECONDS),
        "access-control-expose-headers": "Retry-After, Idempotent-Replayed",
    }
    assert "Origin" in response.headers["Vary"]
    # The second origin of the list (written with a trailing slash) is allowed too.
    other = preflight(http, "/api/sessions/abcdefgh12345678/events", ALSO_ALLOWED, "GET")
    assert other.headers["Access-Control-Allow-Origin"] == ALSO_ALLOWED


def test_an_allowed_origins_requests_get_their_origin_back(http: httpx.Client) -> None:
    created = http.post("/api/sessions", headers={"Origin": ALLOWED, **bearer()})
    assert created.status_code == 201, created.text
    assert created.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert created.headers["Access-Control-Expose-Headers"] == "Retry-After, Idempotent-Replayed"
    assert "Origin" in created.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in created.headers

    # Errors too, so the page can read why (here: no token).
    refused = http.post("/api/sessions", headers={"Origin": ALLOWED})
    assert refused.status_code == 401
    assert refused.headers["Access-Control-Allow-Origin"] == ALLOWED

    # And an event stream, whose headers leave before its body.
    session_id = created.json()["session_id"]
    with http.stream(
        "GET",
        f"/api/sessions/{session_id}/events",
        headers={"Origin": ALLOWED, **bearer()},
    ) as stream:
        assert stream.status_code == 200
        assert stream.headers["Access-Control-Allow-Origin"] == ALLOWED


@pytest.mark.parametrize("origin", [STRANGER, "null", f"{ALLOWED}.evil.net", "*"])
def test_other_origins_get_no_cors_header(http: httpx.Client, origin: str) -> None:
    refused_preflight = preflight(http, "/api/sessions", origin)
    assert cors_headers(refused_preflight) == {}
    response = http.post("/api/sessions", headers={"Origin": origin, **bearer()})
    assert response.status_code == 201
    assert cors_headers(response) == {}
    # Caches must still keep the answers of different origins apart.
    assert "Origin" in response.headers["Vary"]


def test_pages_outside_the_api_get_no_cors_header(http: httpx.Client) -> None:
    for path in ("/", "/healthz"):
        response = http.get(path, headers={"Origin": ALLOWED})
        assert response.status_code == 200
        assert cors_headers(response) == {}


def test_no_header_is_sent_by_default() -> None:
    client = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "CORS_ORIGINS": ""}).test_client()
    response = client.options(
        "/api/sessions", headers={"Origin": ALLOWED, "Access-Control-Request-Method": "POST"}
    )
    assert not [k for k in response.headers.keys() if k.lower().startswith("access-control")]
    assert "Origin" not in response.headers.get("Vary", "")


def test_origins_are_listed_never_a_wildcard() -> None:
    assert cors.parse_origins(f" {ALLOWED} ,{ALSO_ALLOWED}/ ,") == {ALLOWED, ALSO_ALLOWED}
    assert cors.parse_origins([ALLOWED]) == {ALLOWED}
    assert cors.parse_origins("") == frozenset()
    with pytest.raises(ValueError, match="CORS_ORIGINS"):
        cors.parse_origins(f"{ALLOWED},*")
