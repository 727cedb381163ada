"""extensions.py: Redis clients (timeouts, health checks, TLS, a pool that waits) and the SQL pool."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.processes import ROOT, RedisServer
from tests.support.tls_proxy import TLSProxy, self_signed_certificate
from webapp import create_app
from webapp.settings.config import database_url
from webapp.storage.extensions import COMMAND_TIMEOUT_SECONDS, HEALTH_CHECK_SECONDS, db, redis_store


def kwargs_of(client: redis.Redis) -> dict:
    return client.connection_pool.connection_kwargs


def test_shared_pool_has_health_checks_and_a_command_timeout(redis_server: RedisServer) -> None:
    app = create_app({"REDIS_URL": redis_server.url, "REDIS_MAX_CONNECTIONS": 7})
    client = redis_store.client_for(app)
    assert isinstance(client.connection_pool, redis.BlockingConnectionPool)
    assert client.connection_pool.max_connections == 7
    options = kwargs_of(client)
    assert options["health_check_interval"] == HEALTH_CHECK_SECONDS
    assert options["socket_timeout"] == COMMAND_TIMEOUT_SECONDS
    assert options["socket_keepalive"] is True
    assert options["retry_on_timeout"] is False
    assert client.ping() is True


def test_blocking_reads_are_never_cut_short_by_the_socket_timeout(
    redis_server: RedisServer,
    unique: str,
) -> None:
    app = create_app({"REDIS_URL": redis_server.url})
    listener = redis_store.blocking_client(app, read_timeout_seconds=None)
    assert kwargs_of(listener)["socket_timeout"] is None
    popper = redis_store.blocking_client(app, read_timeout_seconds=1 + 1)
    # A block of 1 s on a socket allowed 2 s: the block ends, not the socket.
    assert popper.blmove(f"test:{unique}:a", f"test:{unique}:b", 1, "RIGHT", "LEFT") is None
    assert popper.ping() is True
    listener.close()
    popper.close()


@pytest.fixture()
def private_redis(log_dir: Path) -> Iterator[RedisServer]:
    server = RedisServer(log_dir).start()
    yield server
    server.stop()


def test_a_burst_waits_for_a_pooled_connection_instead_of_failing(
    private_redis: RedisServer,
) -> None:
    """More callers than connections: they queue for one (redis-py's plain pool raises)."""
    app = create_app({"REDIS_URL": private_redis.url, "REDIS_MAX_CONNECTIONS": 2})
    client = redis_store.client_for(app)
    errors: list[Exception] = []

    def slow_command() -> None:
        try:
            client.execute_command("DEBUG", "SLEEP", "0.05")
        except redis.RedisError as exc:
            errors.append(exc)

    callers = [threading.Thread(target=slow_command) for _ in range(10)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(30)
    assert errors == []
    assert len(client.connection_pool._connections) <= 2


@pytest.fixture()
def tls_redis(redis_server: RedisServer, tmp_path: Path) -> Iterator[str]:
    """A rediss:// URL: TLS with a self-signed certificate in front of the test Redis."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = self_signed_certificate(tmp_path)
    proxy = TLSProxy(redis_server.port, cert, key).start()
    yield f"rediss://127.0.0.1:{proxy.port}/0"
    proxy.stop()


def test_rediss_checks_the_certificate_by_default(tls_redis: str) -> None:
    client = redis_store.client_for(create_app({"REDIS_URL": tls_redis}))
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        client.ping()
    client.close()


def test_rediss_with_verification_off_talks_tls_to_a_self_signed_server(
    tls_redis: str,
    unique: str,
) -> None:
    app = create_app({"REDIS_URL": tls_redis, "REDIS_SSL_VERIFY": False})
    client = redis_store.client_for(app)
    assert kwargs_of(client)["ssl_cert_reqs"] == "none"
    assert client.connection_pool.connection_class is redis.SSLConnection
    client.set(f"test:{unique}", "over tls", ex=60)
    assert client.get(f"test:{unique}") == "over tls"

    listener = redis_store.blocking_client(app, read_timeout_seconds=None)
    assert isinstance(listener.connection, redis.SSLConnection)
    pubsub = listener.pubsub()
    pubsub.subscribe(f"test:{unique}:channel")
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    client.publish(f"test:{unique}:channel", "hello")
    assert pubsub.get_message(timeout=5)["data"] == "hello"
    pubsub.close()
    listener.close()
    client.close()


def test_postgresql_pool_fits_worker_concurrency() -> None:
    url = "postgresql+psycopg://relay@127.0.0.1:1/relay"  # never connected to
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "WORKER_CONCURRENCY": 12})
    with app.app_context():
        pool = db.engine.pool
        assert pool.size() == 5
        assert pool.size() + pool._max_overflow == 12
        assert pool._timeout == app.config["DATABASE_POOL_TIMEOUT_SECONDS"]
        db.engine.dispose()

    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": url, "DATABASE_POOL_SIZE": 2, "DATABASE_MAX_OVERFLOW": 3}
    )
    with app.app_context():
        assert (db.engine.pool.size(), db.engine.pool._max_overflow) == (2, 3)
        db.engine.dispose()


GEVENT_PROCESS = """
import sys
if sys.argv[1] == "late":
    import psycopg  # noqa: F401  (before patching: the C wait function)
from gevent import monkey
monkey.patch_all()
from webapp import create_app
from webapp.settings.config import database_url
create_app({"SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://relay@127.0.0.1:1/relay"})
print("started")
"""


@pytest.mark.parametrize("order", ["patched-first", "late"])
def test_a_gevent_process_refuses_a_psycopg_that_would_block_the_hub(order: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", GEVENT_PROCESS, order],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if order == "late":
        assert done.returncode != 0
        assert "psycopg was imported before gevent patched" in done.stderr
    else:
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "started"


def test_heroku_postgres_url_uses_psycopg_3() -> None:
    """Heroku sets `postgres://`, which SQLAlchemy no longer knows; psycopg 3 is what we ship."""
    heroku = "postgres://user:secret@db.example:5432/d1"
    url = database_url(heroku)
    assert url == "postgresql+psycopg://user:secret@db.example:5432/d1"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        assert (db.engine.dialect.name, db.engine.dialect.driver) == ("postgresql", "psycopg")
        db.engine.dispose()
    assert database_url(None).startswith("sqlite:///")
