"""A test-only WSGI app: relay, plus one route that holds its request inside a slow SQL call.

tests/test_postgres_gevent.py serves it with the Procfile's gunicorn config
to show that a request waiting on PostgreSQL does not stop the process's
other greenlets (the SSE streams). The route exists only here, never in the
real app.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import text

from webapp import create_app
from webapp.ops.logs import configure
from webapp.storage.extensions import db

bp = Blueprint("slow_sql", __name__)


@bp.get("/test/pg-sleep")
def pg_sleep() -> Response:
    seconds = float(request.args.get("seconds", "5"))
    db.session.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": seconds})
    db.session.rollback()
    return jsonify({"slept_seconds": seconds})


app = create_app()
app.register_blueprint(bp)
configure(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])
