"""auth.py: JWTs checked as API.md's Access control says; keys made in the test."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask import Flask

from tests.support.processes import start_web
from webapp import create_app
from webapp.exceptions import Forbidden, Unauthorized
from webapp.http import auth
from webapp.http.auth import Caller, Verifier

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    body: dict[str, Any] = {"sub": "alice", "iat": now, "exp": now + 300}
    body.update(extra)
    return {k: v for k, v in body.items() if v is not None}


def hs256(secret: str = SECRET, **extra: Any) -> str:
    return jwt.encode(claims(**extra), secret, algorithm="HS256")


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def handmade(header: dict[str, Any], body: dict[str, Any], sign_with: bytes | None) -> str:
    """A token built by hand, for what PyJWT refuses to make (alg none, HS256 over a PEM)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}"
    signature = b""
    if sign_with is not None:
        signature = hmac.new(sign_with, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def pem(private_key: Any) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def refused(verifier: Verifier, token: str) -> str:
    with pytest.raises(Unauthorized) as caught:
        verifier.decode(token)
    assert caught.value.status == 401 and caught.value.code == "unauthorized"
    assert caught.value.headers["WWW-Authenticate"].startswith("Bearer ")
    return caught.value.message


# -- tokens ----------------------------------------------------------------------


def test_a_valid_hs256_token_names_its_caller() -> None:
    token = hs256(sid="session-0001")
    caller = Verifier(secret=SECRET).decode(token)
    assert (caller.sub, caller.sid) == ("alice", "session-0001")
    assert 290 < caller.seconds_left() <= 300 + auth.LEEWAY_SECONDS


def test_expired_tokens_are_refused_beyond_a_few_seconds_of_skew() -> None:
    verifier = Verifier(secret=SECRET)
    now = int(time.time())
    assert "expired" in refused(verifier, hs256(exp=now - 60))
    # Within the leeway: a backend clock a moment ahead of ours is fine.
    assert verifier.decode(hs256(exp=now - 2)).sub == "alice"


def test_a_wrong_signature_is_refused() -> None:
    other = hs256(secret="another-secret-that-is-also-long-enough-x")
    assert "signature" in refused(Verifier(secret=SECRET), other)
    tampered = hs256()[:-3] + ("AAA" if not hs256().endswith("AAA") else "BBB")
    refused(Verifier(secret=SECRET), tampered)


def test_audience_is_required_and_checked_only_when_configured() -> None:
    strict = Verifier(secret=SECRET, audience="relay-prod")
    assert strict.decode(hs256(aud="relay-prod")).sub == "alice"
    assert "aud" in refused(strict, hs256(aud="relay-staging"))
    assert "'aud'" in refused(strict, hs256())
    # With no audience configured, a token's aud is not relay's business.
    assert Verifier(secret=SECRET).decode(hs256(aud="anything")).sub == "alice"


def test_alg_none_is_refused() -> None:
    token = handmade({"alg": "none", "typ": "JWT"}, claims(), sign_with=None)
    assert "algorithm" in refused(Verifier(secret=SECRET), token)


@pytest.mark.parametrize("missing", ["sub", "exp"])
def test_sub_and_exp_are_required(missing: str) -> None:
    assert f"'{missing}'" in refused(Verifier(secret=SECRET), hs256(**{missing: None}))


@pytest.mark.parametrize("sub", ["", 42])
def test_sub_must_be_a_non_empty_string(sub: Any) -> None:
    refused(Verifier(secret=SECRET), hs256(sub=sub))


def test_malformed_and_oversized_tokens_are_refused() -> None:
    verifier = Verifier(secret=SECRET)
    assert "malformed" in refused(verifier, "not-a-token")
    refused(verifier, "x" * (auth.MAX_TOKEN_CHARS + 1))
    refused(verifier, hs256(sid=["two", "sessions"]))


def test_rs256_with_a_public_key(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = Verifier(public_key=pem(rsa_key))
    assert verifier.decode(jwt.encode(claims(), rsa_key, algorithm="RS256")).sub == "alice"
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused(verifier, jwt.encode(claims(), stranger, algorithm="RS256"))
    # The key's one algorithm only: the same key's RS512 signature is refused too.
    assert "algorithm" in refused(verifier, jwt.encode(claims(), rsa_key, algorithm="RS512"))


def test_es256_with_a_public_key(ec_key: ec.EllipticCurvePrivateKey) -> None:
    verifier = Verifier(public_key=pem(ec_key))
    assert verifier.decode(jwt.encode(claims(), ec_key, algorithm="ES256")).sub == "alice"
    assert "algorithm" in refused(verifier, hs256())


def test_algorithm_confusion_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    """An HS256 token keyed with the public PEM (which anyone has) must not pass."""
    public = pem(rsa_key)
    token = handmade({"alg": "HS256", "typ": "JWT"}, claims(), sign_with=public.encode())
    assert "algorithm" in refused(Verifier(public_key=public), token)


def test_a_secret_and_a_public_key_each_verify_their_own(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = Verifier(secret=SECRET, public_key=pem(rsa_key))
    assert verifier.decode(hs256()).sub == "alice"
    assert verifier.decode(jwt.encode(claims(), rsa_key, algorithm="RS256")).sub == "alice"


def test_a_pem_with_escaped_newlines_is_read(ec_key: ec.EllipticCurvePrivateKey) -> None:
    one_line = pem(ec_key).strip().replace("\n", "\\n")
    verifier = Verifier(public_key=one_line)
    assert verifier.decode(jwt.encode(claims(), ec_key, algorithm="ES256")).sub == "alice"


@pytest.mark.parametrize(
    ("settings", "variable"),
    [
        ({"secret": "short"}, "AUTH_JWT_SECRET"),
        ({"public_key": "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"}, "PUBLIC"),
        (
            {"public_key": pem(rsa.generate_private_key(public_exponent=65537, key_size=1024))},
            "PUBLIC",
        ),
        ({"public_key": pem(ec.generate_private_key(ec.SECP384R1()))}, "PUBLIC"),
    ],
    ids=["short-secret", "not-pem", "rsa-1024", "p-384"],
)
def test_unusable_keys_stop_the_app_naming_the_variable(
    settings: dict[str, str], variable: str
) -> None:
    with pytest.raises(ValueError, match=variable):
        Verifier(**settings)


# -- access to sessions ------------------------------------------------------------


ALICE = Caller(sub="alice", sid=None, exp=time.time() + 300)
ALICE_ONE = Caller(sub="alice", sid="session-one", exp=time.time() + 300)


@pytest.mark.parametrize(
    ("caller", "owner", "session_id", "allowed"),
    [
        (None, None, "session-one", True),  # access control off
        (None, "bob", "session-one", True),
        (ALICE, "alice", "session-one", True),
        (ALICE, "bob", "session-one", False),
        (ALICE, None, "session-one", False),  # made while access control was off
        (ALICE_ONE, "alice", "session-one", True),
        (ALICE_ONE, "alice", "session-two", False),  # sid scoping
    ],
)
def test_only_the_owner_within_the_tokens_session_may_access(
    caller: Caller | None, owner: str | None, session_id: str, allowed: bool
) -> None:
    assert auth.can_access(caller, owner, session_id) is allowed
    if allowed:
        auth.check_session(caller, owner, session_id)
    else:
        with pytest.raises(auth.ApiError) as caught:
            auth.check_session(caller, owner, session_id)
        assert (caught.value.status, caught.value.code) == (404, "session_not_found")


def test_a_session_scoped_token_may_not_create_or_list() -> None:
    auth.require_unscoped(None)
    auth.require_unscoped(ALICE)
    with pytest.raises(Forbidden) as caught:
        auth.require_unscoped(ALICE_ONE)
    assert (caught.value.status, caught.value.code) == (403, "forbidden")


def test_no_wait_outlives_the_token() -> None:
    soon = Caller(sub="alice", sid=None, exp=time.time() + 3 - auth.LEEWAY_SECONDS)
    assert auth.cap_seconds(None, 25.0) == 25.0
    assert 2.0 < auth.cap_seconds(soon, 25.0) <= 3.0
    assert auth.cap_seconds(ALICE, 25.0) == 25.0
    gone = Caller(sub="alice", sid=None, exp=time.time() - 60)
    assert auth.cap_seconds(gone, 25.0) == 0.0
    assert auth.rate_limit_subject(ALICE, "10.0.0.1") == "sub:alice"
    assert auth.rate_limit_subject(None, "10.0.0.1") == "10.0.0.1"


def test_minted_tokens_verify(rsa_key: rsa.RSAPrivateKey) -> None:
    token = auth.mint(SECRET, "carol", 60, session_id="session-one", audience="relay")
    caller = Verifier(secret=SECRET, audience="relay").decode(token)
    assert (caller.sub, caller.sid) == ("carol", "session-one")


# -- the app's guard ---------------------------------------------------------------


def auth_app(**settings: Any) -> Flask:
    return create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", **settings})


def error_of(response: Any) -> str:
    return response.get_json()["error"]["code"]


def test_with_access_control_off_no_token_is_needed() -> None:
    app = auth_app(AUTH_JWT_SECRET="", AUTH_JWT_PUBLIC_KEY="")
    assert not auth.enabled(app)
    response = app.test_client().get("/api/no-such-route")
    assert (response.status_code, error_of(response)) == (404, "not_found")


def test_every_api_request_needs_a_token_when_on() -> None:
    client = auth_app(AUTH_JWT_SECRET=SECRET).test_client()

    missing = client.get("/api/no-such-route")
    assert (missing.status_code, error_of(missing)) == (401, "unauthorized")
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="relay"'

    bad = client.get("/api/no-such-route", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert bad.headers["WWW-Authenticate"] == 'Bearer realm="relay", error="invalid_token"'

    basic = client.get("/api/no-such-route", headers={"Authorization": "Basic YTpi"})
    assert basic.status_code == 401

    # Past the guard, by header or query parameter: the route's own answer.
    by_header = client.get("/api/no-such-route", headers={"Authorization": f"Bearer {hs256()}"})
    by_query = client.get("/api/no-such-route", query_string={"access_token": hs256()})
    assert [by_header.status_code, by_query.status_code] == [404, 404]

    # The header wins over the query parameter.
    both = client.get(
        "/api/no-such-route",
        headers={"Authorization": "Bearer nope"},
        query_string={"access_token": hs256()},
    )
    assert both.status_code == 401

    assert client.get("/healthz").status_code == 200
    assert client.get("/").status_code == 200
    # A CORS preflight carries no token and is never refused for it.
    assert client.options("/api/sessions").status_code == 200


def test_the_token_is_checked_once_per_request() -> None:
    app = auth_app(AUTH_JWT_SECRET=SECRET)
    with app.test_request_context("/api/x", headers={"Authorization": f"Bearer {hs256()}"}):
        first = auth.current_caller()
        assert first is not None and first.sub == "alice"
        assert auth.current_caller() is first


def test_metrics_needs_its_token_when_one_is_set() -> None:
    client = auth_app(METRICS_TOKEN="metrics-secret-1").test_client()
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer metrics-secret-2"})
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
    right = client.get("/metrics", headers={"Authorization": "Bearer metrics-secret-1"})
    assert right.status_code != 401


# -- over real HTTP ------------------------------------------------------------------


@pytest.fixture(scope="module")
def auth_web(base_env: dict[str, str], app: Flask, log_dir: Path) -> Iterator[str]:
    """gunicorn with access control on (HS256), over the shared Redis and database."""
    proc, base_url = start_web(dict(base_env, AUTH_JWT_SECRET=SECRET), log_dir, name="web-auth")
    yield base_url
    proc.stop()


def test_gunicorn_refuses_a_missing_or_bad_token_and_takes_a_good_one(auth_web: str) -> None:
    with httpx.Client(base_url=auth_web, timeout=10) as http:
        missing = http.post("/api/sessions")
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "unauthorized"
        assert missing.headers["WWW-Authenticate"].startswith("Bearer")
        expired = http.post(
            "/api/sessions", headers={"Authorization": f"Bearer {hs256(exp=int(time.time()) - 60)}"}
        )
        assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]
        good = http.post("/api/sessions", headers={"Authorization": f"Bearer {hs256()}"})
        assert good.status_code == 201, good.text
        assert http.get("/healthz").status_code == 200
