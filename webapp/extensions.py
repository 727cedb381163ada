"""Process-wide extensions: the SQL database, its migrations, the Redis connection pool.

They are module globals bound to an app later by `init_app`, so the web app
and the worker share one definition (the Flask extension pattern).
"""

from __future__ import annotations

import redis
from flask import Flask, current_app
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)

# Alembic through Flask-Migrate: `flask --app wsgi db upgrade` is the Procfile's
# release line; the scripts live in migrations/ at the project root.
migrate = Migrate()

# Commands on the shared pool never block server-side, so a short socket
# timeout only ever fires on a dead connection. Blocking reads (the worker's
# BLMOVE, the hub's pub/sub) get a client of their own with a timeout longer
# than their block, so redis-py never cuts them short.
COMMAND_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 5.0
HEALTH_CHECK_SECONDS = 30


class RedisStore:
    """One Redis connection pool per process, shared by every request and job."""

    def init_app(self, app: Flask) -> None:
        url = app.config["REDIS_URL"]
        app.extensions["relay.redis"] = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=COMMAND_TIMEOUT_SECONDS,
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            socket_keepalive=True,
            health_check_interval=HEALTH_CHECK_SECONDS,
            retry_on_timeout=False,
        )
        app.extensions["relay.redis_url"] = url

    @property
    def client(self) -> redis.Redis:
        return current_app.extensions["relay.redis"]

    @staticmethod
    def client_for(app: Flask) -> redis.Redis:
        return app.extensions["relay.redis"]

    @staticmethod
    def blocking_client(app: Flask, read_timeout_seconds: float | None) -> redis.Redis:
        """A single-connection client for a long blocking read."""
        return redis.Redis.from_url(
            app.extensions["relay.redis_url"],
            decode_responses=True,
            socket_timeout=read_timeout_seconds,
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            socket_keepalive=True,
            single_connection_client=True,
        )


redis_store = RedisStore()
