"""Settings from the environment, in one class.

Every knob of the service is read here and nowhere else. Names carry their
unit (`..._SECONDS`, `..._CHARS`). Defaults are safe for development: SQLite
in a file under `var/`, Redis on localhost, the demo model when no API key
is set. Tests pass a mapping to `create_app(config)` that overrides any of
them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    return int(raw) if raw else default


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    return float(raw) if raw else default


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    return raw not in ("0", "false", "no", "off")


def database_url(raw: str | None) -> str:
    """Normalise a DATABASE_URL: Heroku's `postgres://` -> SQLAlchemy + psycopg 3.

    SQLAlchemy dropped the `postgres://` alias, and a bare `postgresql://` means
    psycopg2, which we do not ship; psycopg 3 is what requirements.txt installs.
    """
    if not raw:
        return f"sqlite:///{PROJECT_ROOT / 'var' / 'relay.sqlite3'}"
    return re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", raw)


def from_env(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read every setting from `env` (default: `os.environ`)."""
    env = os.environ if env is None else env
    return {**_services(env), **_model(env), **_worker(env), **_web(env), **_logging(env)}


def _services(env: Mapping[str, str]) -> dict[str, Any]:
    """Redis and the SQL database."""
    return {
        "REDIS_URL": env.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        # Check a `rediss://` server's certificate. Heroku's Redis add-on
        # presents a self-signed one: set 0 there (README, Deploy).
        "REDIS_SSL_VERIFY": _bool(env, "REDIS_SSL_VERIFY", True),
        # REDIS_URL names one node of a Redis Cluster (README, Operations).
        "REDIS_CLUSTER": _bool(env, "REDIS_CLUSTER", False),
        # The shared pool's connections per process (per node on a cluster);
        # a command waits this long for a free one before failing. Every
        # command on it is short (no blocking reads), and hosted Redis plans
        # allow only a few dozen connections for all dynos together: with the
        # one blocking connection of each process (the hub's pub/sub, the
        # worker's pop) that is 4 per process.
        "REDIS_MAX_CONNECTIONS": _int(env, "REDIS_MAX_CONNECTIONS", 3),
        "REDIS_POOL_TIMEOUT_SECONDS": _float(env, "REDIS_POOL_TIMEOUT_SECONDS", 20.0),
        "SQLALCHEMY_DATABASE_URI": database_url(env.get("DATABASE_URL")),
        # PostgreSQL connections kept open per process, and how many more it
        # may open under load; unset, the ceiling is WORKER_CONCURRENCY, so
        # no generation of a full worker waits for a connection.
        "DATABASE_POOL_SIZE": _int(env, "DATABASE_POOL_SIZE", 5),
        "DATABASE_MAX_OVERFLOW": _int(env, "DATABASE_MAX_OVERFLOW", -1),
        # A request that cannot get a connection for this long fails rather
        # than outlive the router's 30 s.
        "DATABASE_POOL_TIMEOUT_SECONDS": _float(env, "DATABASE_POOL_TIMEOUT_SECONDS", 10.0),
    }


def _model(env: Mapping[str, str]) -> dict[str, Any]:
    """The model, its prompt and the answer cache."""
    return {
        "OPENAI_API_KEY": env.get("OPENAI_API_KEY", ""),
        "OPENAI_BASE_URL": env.get("OPENAI_BASE_URL", "") or None,
        "LLM_MODEL": env.get("LLM_MODEL", "gpt-4o-mini"),
        "LLM_MAX_TOKENS": _int(env, "LLM_MAX_TOKENS", 1024),
        "LLM_CONNECT_TIMEOUT_SECONDS": _float(env, "LLM_CONNECT_TIMEOUT_SECONDS", 10.0),
        # Longest silence allowed between two streamed deltas of the model.
        "LLM_READ_TIMEOUT_SECONDS": _float(env, "LLM_READ_TIMEOUT_SECONDS", 60.0),
        "SYSTEM_PROMPT": env.get("SYSTEM_PROMPT", "You are a helpful assistant."),
        # The conversation sent to the model is trimmed oldest-first to this.
        "CONTEXT_BUDGET_CHARS": _int(env, "CONTEXT_BUDGET_CHARS", 48_000),
        # Pause between the demo model's words: a realistic reading pace.
        "DEMO_DELAY_SECONDS": _float(env, "DEMO_DELAY_SECONDS", 0.04),
        "ANSWER_CACHE_TTL_SECONDS": _int(env, "ANSWER_CACHE_TTL_SECONDS", 0),
    }


def _worker(env: Mapping[str, str]) -> dict[str, Any]:
    """The worker: concurrency, the job list, leases."""
    return {
        "WORKER_CONCURRENCY": _int(env, "WORKER_CONCURRENCY", 32),
        # How long a worker waits on the job list before looking around again.
        "WORKER_POP_TIMEOUT_SECONDS": _float(env, "WORKER_POP_TIMEOUT_SECONDS", 5.0),
        "WORKER_SHUTDOWN_GRACE_SECONDS": _float(env, "WORKER_SHUTDOWN_GRACE_SECONDS", 20.0),
        # A job whose worker has not renewed its lease for this long is run again.
        "JOB_LEASE_SECONDS": _float(env, "JOB_LEASE_SECONDS", 15.0),
        # Attempts per answer before it ends with `error` worker_lost.
        "JOB_MAX_ATTEMPTS": _int(env, "JOB_MAX_ATTEMPTS", 3),
    }


def _web(env: Mapping[str, str]) -> dict[str, Any]:
    """The web process: streams, polls, prompts, limits."""
    return {
        "HEARTBEAT_SECONDS": _float(env, "HEARTBEAT_SECONDS", 15.0),
        "SSE_MAX_SECONDS": _float(env, "SSE_MAX_SECONDS", 300.0),
        "SSE_RETRY_MS": _int(env, "SSE_RETRY_MS", 2000),
        "POLL_TIMEOUT_SECONDS": _float(env, "POLL_TIMEOUT_SECONDS", 20.0),
        "STREAM_TTL_SECONDS": _int(env, "STREAM_TTL_SECONDS", 3600),
        "STREAM_MAXLEN": _int(env, "STREAM_MAXLEN", 10_000),
        "MAX_PROMPT_CHARS": _int(env, "MAX_PROMPT_CHARS", 16_000),
        "RATE_LIMIT": env.get("RATE_LIMIT", "20/minute"),
        # Proxies in front of the web process whose X-Forwarded-For we trust
        # (Heroku's router is one).
        "PROXY_HOPS": _int(env, "PROXY_HOPS", 1),
        # Open SSE streams and waiting long-polls per client, per web process.
        "MAX_STREAMS_PER_CLIENT": _int(env, "MAX_STREAMS_PER_CLIENT", 32),
        # ... and from all clients together; 0: the process's open-file limit
        # less what requests, Redis and SQL need (limits.py).
        "MAX_STREAMS_PER_PROCESS": _int(env, "MAX_STREAMS_PER_PROCESS", 0),
        # A client that has not taken an SSE write for this long is dropped.
        "SSE_SEND_TIMEOUT_SECONDS": _float(env, "SSE_SEND_TIMEOUT_SECONDS", 30.0),
    }


def _logging(env: Mapping[str, str]) -> dict[str, Any]:
    """Logs, in both processes."""
    return {
        "LOG_LEVEL": env.get("LOG_LEVEL", "INFO"),
        # `text` for people, `json` (one object per line) for log drains (logs.py).
        "LOG_FORMAT": env.get("LOG_FORMAT", "text"),
    }


def engine_options(settings: Mapping[str, Any]) -> dict[str, Any]:
    """SQLAlchemy engine options: a PostgreSQL pool sized for WORKER_CONCURRENCY.

    Under gevent a greenlet that finds the pool empty waits for a connection
    without blocking the others, so the ceiling only has to cover what one
    process does at once: at most WORKER_CONCURRENCY generations in a worker.
    Every process opens up to pool size + overflow connections, which must fit
    the database plan's limit (README, Deploy).
    """
    options: dict[str, Any] = {}
    if settings["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        # A server can drop pooled connections (restarts, idle timeouts);
        # a local SQLite file cannot, so it skips the SELECT 1 per checkout.
        options["pool_pre_ping"] = True
        size = max(settings["DATABASE_POOL_SIZE"], 1)
        overflow = settings["DATABASE_MAX_OVERFLOW"]
        if overflow < 0:
            overflow = max(settings["WORKER_CONCURRENCY"] - size, 0)
        options.update(
            pool_size=size,
            max_overflow=overflow,
            pool_timeout=settings["DATABASE_POOL_TIMEOUT_SECONDS"],
            connect_args={"connect_timeout": 10},
        )
    return options


def flask_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Flask and SQLAlchemy settings derived from ours."""
    return {
        # A prompt of MAX_PROMPT_CHARS characters, 4 bytes each in UTF-8 at
        # worst, escaped in JSON: anything larger is refused before parsing.
        "MAX_CONTENT_LENGTH": settings["MAX_PROMPT_CHARS"] * 8 + 4096,
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options(settings),
        "JSON_SORT_KEYS": False,
    }
