"""Is this process ready: Redis and the database answer, and the schema is in place.

One place for those checks and for the sentences that say what is wrong:
`/readyz` (http/health.py), the API's 503 when the schema is missing (http/errors.py), the line a
web process logs at start (gunicorn.conf.py), the worker's wait at start and
the CLI's one-line failures.

Deliberate choices:
- Lines for operators (logs, the CLI) name the variable and its URL, with the
  password masked; HTTP bodies, which anyone can read, name the variable and
  the fix but never a host.
- A database without our tables is a deployment step not taken (the release
  phase: `flask --app wsgi db upgrade`), not an outage, and every place that
  meets it says so and names that command.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import redis
from flask import Flask
from sqlalchemy import inspect
from sqlalchemy.exc import SQLAlchemyError

from webapp.settings.config import mask_url
from webapp.storage.extensions import db, redis_store

log = logging.getLogger(__name__)

UPGRADE_COMMAND = "flask --app wsgi db upgrade"
# The worker's wait at start: a Heroku add-on may come up after the dyno.
WAIT_START_SECONDS = 0.5
WAIT_MAX_SECONDS = 15.0
# SQLSTATEs of a schema that migrations have not reached (PostgreSQL's
# undefined_table and undefined_column), and SQLite's words for the same.
_PG_SCHEMA_STATES = frozenset({"42P01", "42703"})
_SQLITE_SCHEMA_WORDS = ("no such table", "no such column", "has no column named")


@dataclass(frozen=True)
class Problem:
    """What keeps the process from serving: for anyone (`message`) and for operators (`detail`)."""

    check: str  # "redis" or "database", the key in /readyz's checks
    message: str
    detail: str
    retry_after_seconds: int = 1


def one_line(exc: BaseException) -> str:
    """An exception as one short line: SQLAlchemy's own text spans several."""
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}".rstrip(": ")


def redis_unreachable(app: Flask, exc: BaseException) -> Problem:
    source = app.config.get("REDIS_URL_SOURCE", "REDIS_URL")
    origin = "" if source == "REDIS_URL" else f" (from {source})"
    return Problem(
        "redis",
        "Redis (REDIS_URL) does not answer.",
        f"REDIS_URL {mask_url(app.config['REDIS_URL'])}{origin} does not answer: {one_line(exc)}",
    )


def database_unreachable(app: Flask, exc: BaseException) -> Problem:
    url = mask_url(app.config["SQLALCHEMY_DATABASE_URI"])
    return Problem(
        "database",
        "The database (DATABASE_URL) does not answer.",
        f"DATABASE_URL {url} does not answer: {one_line(exc)}",
    )


def schema_missing(app: Flask, what: str) -> Problem:
    url = mask_url(app.config["SQLALCHEMY_DATABASE_URI"])
    fix = f"run `{UPGRADE_COMMAND}` (the release phase)"
    return Problem(
        "database",
        f"The database has no schema or an old one: {fix}.",
        f"DATABASE_URL {url} has no schema or an old one ({what}): {fix}",
        retry_after_seconds=5,
    )


def is_schema_error(exc: BaseException) -> bool:
    """A SQL error that says the schema lacks a table or column (migrations not run)."""
    cause = getattr(exc, "orig", None)
    if getattr(cause, "sqlstate", None) in _PG_SCHEMA_STATES:
        return True
    return cause is not None and str(cause).lower().startswith(_SQLITE_SCHEMA_WORDS)


def redis_problem(app: Flask) -> Problem | None:
    try:
        redis_store.client_for(app).ping()
    except redis.RedisError as exc:
        return redis_unreachable(app, exc)
    return None


def database_problem(app: Flask) -> Problem | None:
    """The database answers, and has every table of our models (one query)."""
    try:
        with app.app_context(), db.engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
    except SQLAlchemyError as exc:
        return database_unreachable(app, exc)
    missing = sorted(set(db.metadata.tables) - tables)
    if missing:
        return schema_missing(app, "missing tables: " + ", ".join(missing))
    return None


def problems(app: Flask) -> list[Problem]:
    return [p for p in (redis_problem(app), database_problem(app)) if p is not None]


def log_problems(app: Flask) -> None:
    """One warning line per backing service that is not ready (a web process at start)."""
    for problem in problems(app):
        log.warning("not ready: %s", problem.detail)


def wait_until_ready(app: Flask, stopped: Callable[[float], bool]) -> bool:
    """Check until Redis and the database are ready, backing off; False if stopped first.

    `stopped(seconds)` waits that long, or less and True when the process is told to stop.
    """
    delay = WAIT_START_SECONDS
    while found := problems(app):
        log.warning(
            "waiting for backing services, next check in %.1fs: %s",
            delay,
            "; ".join(p.detail for p in found),
        )
        if stopped(delay):
            return False
        delay = min(delay * 2, WAIT_MAX_SECONDS)
    return True
