"""`/healthz` and `/readyz`: is the process up, and can it serve.

The checks themselves, and the sentences that say what is wrong, are
ops/readiness.py's, shared with the worker, the CLI and the web's log line
at start.

Deliberate choice: `/healthz` only says the process is up: it stays 200
while Redis is down, so a platform never restarts a web process for a
backing service's outage.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from webapp.http.errors import error_response
from webapp.ops.readiness import problems

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    found = problems(current_app._get_current_object())
    checks = {"redis": "ok", "database": "ok"}
    for problem in found:
        checks[problem.check] = problem.message
    if found:
        retry_after = max(p.retry_after_seconds for p in found)
        message = " ".join(p.message for p in found)
        return error_response(
            503, "unavailable", message, {"Retry-After": str(retry_after)}, checks=checks
        ), 503
    return jsonify({"status": "ok", "checks": checks}), 200
