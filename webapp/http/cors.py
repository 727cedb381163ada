"""Cross-origin use of the API by the pages of CORS_ORIGINS (API.md, Cross-origin use).

By default no origin is allowed and no CORS header is sent. An allowed
origin (`Origin` matching an entry of CORS_ORIGINS exactly) gets, on every
`/api/` response, errors included:

    Access-Control-Allow-Origin: <that origin>      never `*`
    Access-Control-Expose-Headers: Retry-After, Idempotent-Replayed
    Vary: Origin

and its preflights (`OPTIONS` with `Access-Control-Request-Method`) are
answered here, before any view or token check runs, with `204`, the methods
and headers below and a Max-Age. A preflight from any other origin gets no
CORS header, so the browser refuses the real request.

Deliberate choices:
- A small module rather than flask-cors: the rules are fixed by API.md and
  few, and flask-cors's defaults (`*`, every method) would have to be
  overridden one by one to get them.
- No `Access-Control-Allow-Credentials`: relay uses no cookies; a page sends
  its token in the Authorization header or `access_token`, which CORS
  allows without credentials mode. So credentials never go with `*`, nor
  with anything else.
- `Vary: Origin` goes on every `/api/` response once CORS_ORIGINS is set,
  so a cache never hands one origin's answer (with or without the header)
  to another.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import Flask, Request, Response, request

ALLOW_METHODS = "GET, POST, DELETE"
ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key, Last-Event-ID"
EXPOSE_HEADERS = "Retry-After, Idempotent-Replayed"
# Browsers cap this themselves (Chromium at 2 hours); 10 minutes spares a
# preflight per request without pinning a policy for long.
MAX_AGE_SECONDS = 600
_EXTENSION = "relay.cors_origins"


def parse_origins(raw: str | Iterable[str] | None) -> frozenset[str]:
    """CORS_ORIGINS as a set: a comma-separated string or a list; '*' is refused."""
    if not raw:
        return frozenset()
    parts = raw.split(",") if isinstance(raw, str) else list(raw)
    origins = frozenset(part.strip().rstrip("/") for part in parts if part.strip())
    if "*" in origins:
        raise ValueError("CORS_ORIGINS: list the origins; '*' is not allowed")
    return origins


def _api(req: Request) -> bool:
    return req.path.startswith("/api/")


def origins_of(app: Flask) -> frozenset[str]:
    """The app's CORS_ORIGINS, parsed (empty: CORS is off)."""
    return app.extensions.get(_EXTENSION, frozenset())


def allowed(origins: frozenset[str], origin: str | None) -> dict[str, str]:
    """The headers an `/api/` response gets for a request from `origin`, besides `Vary: Origin`."""
    if origin not in origins:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": EXPOSE_HEADERS}


def headers_for(origins: frozenset[str], origin: str | None) -> dict[str, str]:
    """Every CORS header of an `/api/` response to a request from `origin`, `Vary` first.

    What the hook below adds to Flask's responses, as plain values for the
    long-poll's plan (poll_plan.py), which answers without Flask too.
    """
    if not origins:
        return {}
    return {"Vary": "Origin", **allowed(origins, origin)}


def init_app(app: Flask) -> None:
    """Answer allowed origins' preflights and mark their responses (no-op without origins)."""
    origins = parse_origins(app.config.get("CORS_ORIGINS"))
    app.extensions[_EXTENSION] = origins
    if not origins:
        return

    @app.before_request
    def preflight() -> Response | None:
        origin = request.headers.get("Origin")
        if (
            request.method != "OPTIONS"
            or not _api(request)
            or origin not in origins
            or "Access-Control-Request-Method" not in request.headers
        ):
            return None  # not ours: Flask answers OPTIONS itself, with no CORS header
        response = Response(status=204)
        response.headers.update(
            {
                "Access-Control-Allow-Methods": ALLOW_METHODS,
                "Access-Control-Allow-Headers": ALLOW_HEADERS,
                "Access-Control-Max-Age": str(MAX_AGE_SECONDS),
            }
        )
        return response  # after_request below adds the origin

    @app.after_request
    def allow_origin(response: Response) -> Response:
        if not _api(request):
            return response
        headers = headers_for(origins, request.headers.get("Origin"))
        # A HeaderSet: added once, whatever the case, to any Vary already there.
        # A poll's plan set them all already (poll_plan.py): this changes nothing then.
        response.vary.add(headers.pop("Vary"))
        response.headers.update(headers)
        return response
