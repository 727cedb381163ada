"""Fixtures that run the real thing: redis-server, SQL, the model server, gunicorn, the worker.

Session-scoped processes are shared by the tests; every test makes its own
chat session and its own unique prompts, so tests never see each other's
events. Tests that break processes on purpose start their own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import green
from tests.support.ai_sdk import AiSdk, NodeMissing, install
from tests.support.mcp_server import McpTestServer
from tests.support.model_server import ModelServer
from tests.support.processes import Process, RedisServer, start_web, start_worker

TEST_SYSTEM_PROMPT = "You are relay's test assistant."


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`gevent` tests run in a patched child process (tests/support/green.py)."""
    if not green.patched():
        green.swap_green_items(items)


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def redis_server(log_dir: Path) -> Iterator[RedisServer]:
    server = RedisServer(log_dir).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def model_server() -> Iterator[ModelServer]:
    server = ModelServer().start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def mcp_server(log_dir: Path) -> Iterator[McpTestServer]:
    """An MCP server built with the official SDK: a read-only, a plain and a destructive tool."""
    server = McpTestServer(log_dir).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The shared stack's database: always a fresh SQLite file."""
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'relay-test.sqlite3'}"


@pytest.fixture(scope="session")
def base_env(
    redis_server: RedisServer, model_server: ModelServer, database_url: str
) -> dict[str, str]:
    """The environment of every app process started by the tests."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "LLM_", "DATABASE_", "REDIS_"))
    }
    env.update(
        REDIS_URL=redis_server.url,
        DATABASE_URL=database_url,
        OPENAI_API_KEY="test-key",
        OPENAI_BASE_URL=model_server.base_url,
        LLM_MODEL="test-model",
        SYSTEM_PROMPT=TEST_SYSTEM_PROMPT,
        HEARTBEAT_SECONDS="1",
        # One chunk a delta, as the tests count them: whether deltas that come
        # together are joined depends on timing. test_joined_pieces.py turns it on.
        WORKER_JOIN_PIECES="false",
        WORKER_POP_TIMEOUT_SECONDS="1",
        RATE_LIMIT="100000/minute",  # tests that limit start their own web server
        SESSION_RATE_LIMIT="100000/minute",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="INFO",
    )
    return env


def make_app(env: dict[str, str], **overrides: Any):
    """An in-process app on the stack's Redis and a fresh schema in its database."""
    from webapp import create_app
    from webapp.settings.config import Rate
    from webapp.settings.config import database_url as normalise
    from webapp.storage.extensions import db

    app = create_app(
        {
            "REDIS_URL": env["REDIS_URL"],
            "SQLALCHEMY_DATABASE_URI": normalise(env["DATABASE_URL"]),
            "OPENAI_API_KEY": "test-key",
            "OPENAI_BASE_URL": env["OPENAI_BASE_URL"],
            # Every test's sessions come from 127.0.0.1, counted in one Redis.
            "SESSION_RATE_LIMIT": Rate(100000, 60),
            **overrides,
        }
    )
    with app.app_context():
        db.drop_all()
        db.create_all()
        db.session.remove()
    return app


def dispose(app) -> None:
    from webapp.storage.extensions import db

    with app.app_context():
        db.engine.dispose()


@pytest.fixture(scope="session")
def app(base_env: dict[str, str]):
    """The shared stack's app, in process, for checking stored state."""
    app = make_app(base_env)
    yield app
    dispose(app)


@pytest.fixture(scope="session")
def web(app, base_env: dict[str, str], log_dir: Path) -> Iterator[str]:
    """Base URL of a gunicorn+gevent server running wsgi:app."""
    proc, base_url = start_web(base_env, log_dir)
    yield base_url
    proc.stop()


@pytest.fixture(scope="session")
def worker(app, base_env: dict[str, str], log_dir: Path) -> Iterator[Process]:
    proc = start_worker(base_env, log_dir)
    yield proc
    proc.stop()


@pytest.fixture()
def client(web: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=web, timeout=30) as http:
        yield http


@pytest.fixture()
def unique() -> str:
    """A string no other test uses, for prompts and names."""
    return uuid.uuid4().hex[:12]


@dataclass
class Stack:
    """A web server and a worker over one database, and an app to read it."""

    app: Any
    web: str

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.web, timeout=30)


@pytest.fixture(scope="session")
def postgres_stack(base_env: dict[str, str], log_dir: Path) -> Iterator[Stack]:
    """Web + worker on PostgreSQL (TEST_DATABASE_URL), with a Redis of their own.

    Their own Redis, so the two stacks' workers never take each other's jobs.
    """
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("TEST_DATABASE_URL is not set")
    redis_server = RedisServer(log_dir).start()
    env = dict(base_env, DATABASE_URL=url, REDIS_URL=redis_server.url)
    app = make_app(env)
    web_proc, base_url = start_web(env, log_dir, name="web-postgres")
    worker_proc = start_worker(env, log_dir, name="worker-postgres")
    yield Stack(app, base_url)
    worker_proc.stop()
    web_proc.stop()
    redis_server.stop()
    dispose(app)


@pytest.fixture(params=["sqlite", "postgresql"])
def stack(request: pytest.FixtureRequest) -> Stack:
    """Each end-to-end test that takes this runs on SQLite, and on PostgreSQL when set."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_stack")
    request.getfixturevalue("worker")
    return Stack(request.getfixturevalue("app"), request.getfixturevalue("web"))


class PrivateStack:
    """A Redis, a database and app processes of one test's own, to break on purpose."""

    def __init__(
        self,
        base_env: dict[str, str],
        log_dir: Path,
        name: str,
        appendonly: bool = False,
        **env: str,
    ) -> None:
        self.log_dir = log_dir
        self.name = name
        self.redis = RedisServer(log_dir, appendonly=appendonly).start()
        self.env = dict(
            base_env,
            REDIS_URL=self.redis.url,
            DATABASE_URL=f"sqlite:///{log_dir / f'{name}.sqlite3'}",
            **env,
        )
        self.app = make_app(self.env)
        self.processes: list[Process] = []

    def web(self, **env: str) -> str:
        proc, base_url = start_web(
            dict(self.env, **env), self.log_dir, name=f"{self.name}-web{len(self.processes)}"
        )
        self.processes.append(proc)
        return base_url

    def worker(self, **env: str) -> Process:
        proc = start_worker(
            dict(self.env, **env), self.log_dir, name=f"{self.name}-worker{len(self.processes)}"
        )
        self.processes.append(proc)
        return proc

    def redis_client(self):
        from webapp.storage.extensions import redis_store

        return redis_store.client_for(self.app)

    def close(self) -> None:
        for proc in reversed(self.processes):
            proc.stop(timeout=30)
        self.redis.stop()
        dispose(self.app)


@pytest.fixture()
def private_stack(base_env: dict[str, str], log_dir: Path, request: pytest.FixtureRequest):
    """Make PrivateStacks; all are stopped when the test ends."""
    stacks: list[PrivateStack] = []

    def make(appendonly: bool = False, **env: str) -> PrivateStack:
        name = f"{request.node.name[:40]}-{len(stacks)}".replace("[", "-").replace("]", "")
        stacks.append(PrivateStack(base_env, log_dir, name, appendonly, **env))
        return stacks[-1]

    yield make
    for stack in stacks:
        stack.close()


@pytest.fixture(scope="session")
def ai_sdk() -> AiSdk:
    """The real AI SDK from npm (tests/js), installed once; skips without node."""
    try:
        install()
    except NodeMissing as exc:
        pytest.skip(str(exc))
    return AiSdk()
