"""Process-wide extensions: the SQL database, its migrations, the Redis connection pool.

They are module globals bound to an app later by `init_app`, so the web app
and the worker share one definition (the Flask extension pattern).
"""

from __future__ import annotations

import socket
import sqlite3
import sys
from collections.abc import Mapping
from typing import Any

import redis
from flask import Flask, current_app
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)

# Alembic through Flask-Migrate: `flask --app wsgi db upgrade` is the Procfile's
# release line; the scripts live in migrations/ at the project root.
migrate = Migrate()


def check_green_postgres(app: Flask) -> None:
    """Refuse to run a gevent process whose PostgreSQL driver would block the hub.

    psycopg 3 (3.1.14 and later) cooperates with gevent on its own: when
    `psycopg.waiting` is imported after gevent patched `select`, it waits on
    sockets with the patched `poll`, which yields to other greenlets, instead
    of its C wait function, which blocks the whole process. So the import
    order is what matters: monkey-patch first (worker.py's first lines;
    gunicorn's gevent worker patches before it loads the app), then import
    anything that imports psycopg. A process that got it wrong would stall
    every open stream during each SQL call; it stops here instead.
    """
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        return
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None or not monkey.is_module_patched("select"):
        return  # not a gevent process (the release phase, the CLI, tests)
    from psycopg import waiting

    if waiting.wait is getattr(waiting, "wait_c", None):
        raise RuntimeError(
            "psycopg was imported before gevent patched the standard library, so "
            "SQL calls would block every greenlet: call gevent.monkey.patch_all() first"
        )


# Commands on the shared pool never block server-side, so a short socket
# timeout only ever fires on a dead connection. Blocking reads (the worker's
# BLMOVE, the hub's pub/sub) get a client of their own with a timeout longer
# than their block, so redis-py never cuts them short.
COMMAND_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 5.0
# Before using a connection idle this long, PING it (redis-py's health check):
# a connection the server or a router dropped is replaced, not failed on.
HEALTH_CHECK_SECONDS = 30
# TCP keep-alive probes: a peer that vanished without a FIN (a failover, a
# dropped NAT entry) is noticed within about a minute, even on a connection
# that only waits, like the hub's pub/sub.
KEEPALIVE_OPTIONS = {
    getattr(socket, option): value
    for option, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3))
    if hasattr(socket, option)
}


def redis_options(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Connection options that every Redis client of the process shares.

    `rediss://` URLs connect with TLS and verify the server's certificate,
    unless REDIS_SSL_VERIFY is off: Heroku Data for Redis presents a
    self-signed certificate (https://devcenter.heroku.com/articles/connecting-heroku-redis),
    so there the connection is encrypted but the certificate is not checked.
    """
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "socket_keepalive": True,
        "socket_keepalive_options": KEEPALIVE_OPTIONS,
        "health_check_interval": HEALTH_CHECK_SECONDS,
        # A timed-out write may have run: retrying it could append an event twice.
        "retry_on_timeout": False,
    }
    if settings["REDIS_URL"].startswith("rediss://") and not settings["REDIS_SSL_VERIFY"]:
        options.update(ssl_cert_reqs="none", ssl_check_hostname=False)
    return options


def make_redis(
    settings: Mapping[str, Any],
    *,
    socket_timeout: float | None,
    max_connections: int | None,
) -> redis.Redis:
    """A client with its own pool: a single server, or a Redis Cluster (REDIS_CLUSTER).

    The pool blocks, under gevent cooperatively, for up to
    REDIS_POOL_TIMEOUT_SECONDS when all its connections are busy, instead of
    failing at once: a burst of reconnecting streams queues for a moment.
    """
    options = redis_options(settings)
    options["socket_timeout"] = socket_timeout
    if max_connections is not None:
        options.update(
            max_connections=max_connections, timeout=settings["REDIS_POOL_TIMEOUT_SECONDS"]
        )
    if settings["REDIS_CLUSTER"]:
        # One pool per node; MOVED and ASK redirections are followed. Like the
        # single-server client, a failed command is not sent again (redis-py's
        # cluster client would, up to 10 times): callers that can repeat a write
        # safely (the fenced stream writer, the worker loop) do so themselves.
        # redis-py's cluster client takes no health_check_interval; it refreshes
        # the cluster's layout when a node fails instead.
        return RedisCluster.from_url(
            settings["REDIS_URL"],
            connection_pool_class=redis.BlockingConnectionPool,
            retry=Retry(NoBackoff(), 0),
            **options,
        )
    pool = redis.BlockingConnectionPool.from_url(settings["REDIS_URL"], **options)
    return redis.Redis(connection_pool=pool)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """SQLite, the zero-set-up default: write-ahead log, fsync at checkpoints only.

    Web and worker are separate processes on one file: WAL lets readers go on
    while one writes, and synchronous=NORMAL makes a commit cost an append
    instead of an fsync (durable across a process crash, which is what
    matters here; PostgreSQL is the production database).
    """
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()


class RedisStore:
    """One Redis connection pool per process, shared by every request and job."""

    def init_app(self, app: Flask) -> None:
        app.extensions["relay.redis"] = make_redis(
            app.config,
            socket_timeout=COMMAND_TIMEOUT_SECONDS,
            max_connections=app.config["REDIS_MAX_CONNECTIONS"],
        )

    @property
    def client(self) -> redis.Redis:
        return current_app.extensions["relay.redis"]

    @staticmethod
    def client_for(app: Flask) -> redis.Redis:
        return app.extensions["relay.redis"]

    @staticmethod
    def pubsub_client(app: Flask) -> redis.Redis:
        """A client for one pub/sub connection that waits for ever.

        `pubsub()` takes its connection from the client's pool, so the pool
        opens nothing else (a single-connection client would open a second,
        idle one: issue 5's connection count).
        """
        return make_redis(app.config, socket_timeout=None, max_connections=1)

    @staticmethod
    def blocking_client(app: Flask, read_timeout_seconds: float | None) -> redis.Redis:
        """A client of its own for a long blocking read (BLMOVE, pub/sub).

        Its socket timeout (None: wait for ever) must be longer than the block.
        On a single server it holds one connection; a cluster client holds one
        per node it talks to.
        """
        if app.config["REDIS_CLUSTER"]:
            return make_redis(app.config, socket_timeout=read_timeout_seconds, max_connections=4)
        options = redis_options(app.config)
        return redis.Redis.from_url(
            app.config["REDIS_URL"],
            socket_timeout=read_timeout_seconds,
            single_connection_client=True,
            **options,
        )


redis_store = RedisStore()
