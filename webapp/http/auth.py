"""Access control: JWTs that a team's own backend signs (API.md, Access control).

Off by default. On when AUTH_JWT_SECRET (HS256) or AUTH_JWT_PUBLIC_KEY (a PEM
public key: RSA for RS256, P-256 for ES256) is set. Every `/api/` request
then carries a token, as `Authorization: Bearer <token>` or, for clients that
cannot set headers (a browser's EventSource), the `access_token` query
parameter. The header wins when both are sent.

Deliberate choices:
- PyJWT verifies signatures and claims; nothing here touches crypto.
- Each configured key accepts exactly one algorithm, and the token's header
  picks the key: `alg: none`, or a token signed HS256 with the public key as
  its secret (algorithm confusion), finds no key and gets 401.
- `sub` and `exp` are required, `aud` too when AUTH_JWT_AUDIENCE is set (and
  ignored when it is not); LEEWAY_SECONDS of clock skew, no more.
- A session belongs to the `sub` that created it. Anyone else gets 404
  `session_not_found`, exactly as for an unknown id, so ids cannot be probed.
  A session created while access control was off has no owner: nobody's.
- `sid` narrows a token to one session's endpoints: such a token may not
  create or list sessions (403 `forbidden`).
- /metrics needs `Authorization: Bearer $METRICS_TOKEN` when METRICS_TOKEN
  is set, whether or not access control is on.

Errors, answered by errors.register as API.md's JSON:

    errors.ApiError
     ├── Unauthorized   401 unauthorized, with WWW-Authenticate: Bearer
     └── Forbidden      403 forbidden

`init_app` checks the keys once, when the app is built, and installs one
before_request hook: every `/api/` request (CORS preflights excepted) is
authenticated before any view runs, and the caller is kept for the request.
With access control off the hook does nothing.

Where the views use it (`caller = current_caller()`):

- POST /api/sessions: `require_unscoped`; `caller.sub` becomes the owner;
  SESSION_RATE_LIMIT counts per `rate_limit_subject` (api.py).
- GET /api/sessions: 404 with access control off, `require_unscoped`, then
  session_list.py.
- Every `/api/sessions/{sid}/...` view: `check_session`, through
  sessions.find_for, or sessions.ensure, which skips SQL for a session the
  hub follows by keeping its owner on the channel.
- The long-poll is checked by its plan (poll_plan.py), with `caller_of`
  and `check_session`, whichever way it came in; the hook leaves it alone.
- SSE streams end `cap_seconds(caller, SSE_MAX_SECONDS)` from their start,
  held or not (stream.py, sse.py); long-poll `timeout` and `?wait=` go
  through `cap_seconds` too, so they answer 200 with what they have when
  the token runs out.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask import Flask, Request, current_app, g, request

from webapp.exceptions import ApiError, Forbidden, Unauthorized

_EXTENSION = "relay.auth"

log = logging.getLogger(__name__)

# Clock skew allowed on `exp` (and `nbf`, `iat`): API.md says a few seconds.
LEEWAY_SECONDS = 5
# RFC 7518 section 3.2: an HS256 key must be at least as long as its hash.
MIN_SECRET_BYTES = 32
# Far more than any real token; refuse bigger ones before parsing.
MAX_TOKEN_CHARS = 8192
QUERY_PARAMETER = "access_token"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a verified token speaks for."""

    sub: str
    sid: str | None  # the one session the token is good for, or None for all of sub's
    exp: float  # seconds since the epoch

    def seconds_left(self, now: float | None = None) -> float:
        """Seconds until the token expires (not below 0), leeway included."""
        now = time.time() if now is None else now
        return max(self.exp + LEEWAY_SECONDS - now, 0.0)


class Verifier:
    """The configured keys, each with its one algorithm; checks tokens."""

    def __init__(self, secret: str = "", public_key: str = "", audience: str = "") -> None:
        self.keys: dict[str, Any] = {}
        if secret:
            if len(secret.encode()) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"AUTH_JWT_SECRET: at least {MIN_SECRET_BYTES} bytes for HS256 (RFC 7518 3.2)"
                )
            self.keys["HS256"] = secret
        if public_key:
            algorithm, key = _load_public_key(public_key)
            self.keys[algorithm] = key
        self.audience = audience or None

    def decode(self, token: str) -> Caller:
        """The caller a token speaks for; Unauthorized if it does not verify."""
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthorized("The token is too long.")
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.InvalidTokenError:
            raise Unauthorized("The token is malformed.") from None
        key = self.keys.get(algorithm) if isinstance(algorithm, str) else None
        if key is None:
            accepted = ", ".join(sorted(self.keys))
            raise Unauthorized(f"The token's algorithm is not accepted here (only {accepted}).")
        required = ["sub", "exp"] + (["aud"] if self.audience else [])
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.audience,
                leeway=LEEWAY_SECONDS,
                options={"require": required, "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The token has expired.") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("The token's signature does not verify.") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"The token lacks the {exc.claim!r} claim.") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("The token is not meant for this service (aud).") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"The token is not valid: {exc}.") from None
        return _caller(claims)


def _caller(claims: Mapping[str, Any]) -> Caller:
    sub, sid = claims["sub"], claims.get("sid")
    if not isinstance(sub, str) or not sub:
        raise Unauthorized("The token's 'sub' must be a non-empty string.")
    if sid is not None and not isinstance(sid, str):
        raise Unauthorized("The token's 'sid' must be a session id.")
    return Caller(sub=sub, sid=sid, exp=float(claims["exp"]))


def _load_public_key(pem: str) -> tuple[str, Any]:
    """(algorithm, key) of a PEM public key: RSA -> RS256, P-256 -> ES256."""
    if "\\n" in pem and "\n" not in pem.strip():
        pem = pem.replace("\\n", "\n")  # one-line config values often carry escaped newlines
    try:
        key = serialization.load_pem_public_key(pem.strip().encode())
    except ValueError:
        raise ValueError("AUTH_JWT_PUBLIC_KEY: not a PEM public key") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise ValueError("AUTH_JWT_PUBLIC_KEY: an RSA key needs at least 2048 bits")
        return "RS256", key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256", key
    raise ValueError("AUTH_JWT_PUBLIC_KEY: use an RSA (RS256) or P-256 (ES256) public key")


def verifier_from_config(config: Mapping[str, Any]) -> Verifier | None:
    """The app's verifier, or None when access control is off. Raises ValueError on a bad key."""
    secret = config.get("AUTH_JWT_SECRET") or ""
    public_key = config.get("AUTH_JWT_PUBLIC_KEY") or ""
    if not secret and not public_key:
        return None
    return Verifier(secret, public_key, config.get("AUTH_JWT_AUDIENCE") or "")


def token_from(req: Request) -> str | None:
    """The bearer token of a request: the Authorization header, else ?access_token=."""
    return token_of(req.headers.get("Authorization"), req.args.get(QUERY_PARAMETER))


def token_of(authorization: str | None, query_token: str | None) -> str | None:
    """The bearer token from an Authorization header's value, else from ?access_token=."""
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Send the token as 'Authorization: Bearer <token>'.")
        return token.strip()
    return query_token or None


def verifier_of(app: Flask) -> Verifier | None:
    """The app's token checker; None when access control is off."""
    return app.extensions.get(_EXTENSION)


def caller_of(
    verifier: Verifier | None, authorization: str | None, query_token: str | None
) -> Caller | None:
    """The caller that an Authorization header's value, else ?access_token=, speaks for.

    None when access control is off (no verifier); Unauthorized when the
    token is missing or does not verify. Plain values in, for every way in
    (`authenticate`, and the long-poll's plan: poll_plan.py).
    """
    if verifier is None:
        return None
    token = token_of(authorization, query_token)
    if token is None:
        raise Unauthorized(
            "This endpoint needs a token: 'Authorization: Bearer <token>' or ?access_token=.",
            token_sent=False,
        )
    return verifier.decode(token)


def authenticate(req: Request) -> Caller | None:
    """The request's caller; None when access control is off. Raises Unauthorized."""
    verifier = verifier_of(current_app)
    if verifier is None:
        return None
    try:
        return caller_of(verifier, req.headers.get("Authorization"), req.args.get(QUERY_PARAMETER))
    except Unauthorized as exc:
        note_refused(req.path, exc.message)
        raise


def note_refused(path: str, reason: str) -> None:
    """The one log line of a refused token: the path only, as its query may hold the token."""
    log.info("token refused path=%s reason=%r", path, reason)


def current_caller() -> Caller | None:
    """The caller of the current request, authenticated once per request."""
    if "relay_caller" not in g:
        g.relay_caller = authenticate(request)
    return g.relay_caller


def enabled(app: Flask | None = None) -> bool:
    """Whether access control is on for `app` (default: the current app)."""
    app = app or current_app._get_current_object()
    return app.extensions.get(_EXTENSION) is not None


def can_access(caller: Caller | None, session_owner: str | None, session_id: str) -> bool:
    """Whether `caller` may use the session: its owner, and within the token's `sid`."""
    if caller is None:
        return True  # access control is off: holding the id is the credential
    if caller.sid is not None and caller.sid != session_id:
        return False
    return session_owner is not None and session_owner == caller.sub


def session_not_found() -> ApiError:
    """The answer for an unknown session id, and for one the caller may not use alike."""
    return ApiError(404, "session_not_found", "No session with that id.")


def check_session(caller: Caller | None, session_owner: str | None, session_id: str) -> None:
    """404 session_not_found, as for an unknown id, unless `caller` may use the session."""
    if not can_access(caller, session_owner, session_id):
        raise session_not_found()


def require_unscoped(caller: Caller | None) -> None:
    """403 for a token scoped to one session (`sid`): it may not create or list sessions."""
    if caller is not None and caller.sid is not None:
        raise Forbidden("This token is good for one session only.")


def cap_seconds(caller: Caller | None, seconds: float) -> float:
    """`seconds`, or less: no wait outlives the caller's token."""
    return seconds if caller is None else min(seconds, caller.seconds_left())


def rate_limit_subject(caller: Caller | None, address: str) -> str:
    """Whom SESSION_RATE_LIMIT counts: the token's `sub`, else the client's address."""
    return f"sub:{caller.sub}" if caller is not None else address


def check_metrics_token(req: Request, expected: str) -> None:
    """401 unless the request carries `Authorization: Bearer <expected>` (when set)."""
    if not expected:
        return
    header = req.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    sent = token.strip().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(sent, expected.encode()):
        raise Unauthorized("/metrics needs 'Authorization: Bearer <METRICS_TOKEN>'.")


def mint(
    secret: str,
    sub: str,
    ttl_seconds: float,
    *,
    session_id: str | None = None,
    audience: str | None = None,
) -> str:
    """An HS256 token, as a team's backend would sign one (the CLI's `relay token`)."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + int(ttl_seconds)}
    if session_id:
        claims["sid"] = session_id
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256")


# The long-poll's plan checks its token itself (poll_plan.py), on either way in.
PLANNED_ENDPOINTS = frozenset({"stream.poll"})


def _protects(req: Request) -> bool:
    """The API, less CORS preflights (browsers send those without credentials) and planned polls."""
    return (
        req.path.startswith("/api/")
        and req.method != "OPTIONS"
        and req.endpoint not in PLANNED_ENDPOINTS
    )


def init_app(app: Flask) -> None:
    """Check the configured keys now (a bad one stops the process) and guard the API."""
    app.extensions[_EXTENSION] = verifier_from_config(app.config)

    @app.before_request
    def guard() -> None:
        if request.path == "/metrics":
            check_metrics_token(request, app.config.get("METRICS_TOKEN") or "")
        elif _protects(request):
            current_caller()
