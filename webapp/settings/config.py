"""Settings from the environment: one table, parsed once when a process starts.

Every knob of the service is read here and nowhere else. Names carry their
unit (`..._SECONDS`, `..._CHARS`). Defaults are safe for development: SQLite
in a file under `var/`, Redis on localhost (or the one `scripts/run` embeds),
the demo model when no API key is set. Tests pass a mapping to
`create_app(config)` that overrides any of them with final values.

Deliberate choices:
- Each entry point (gunicorn's arbiter in gunicorn.conf.py, wsgi.py for its
  workers and the flask CLI, worker.py) parses the whole table before doing
  anything else, and a malformed value stops the process with one line that
  names the variable, the value and what is expected (`check_or_exit`). A
  setting is never first parsed while a request is served.
- A blank value means "unset" (the default), except where blank means
  something (SYSTEM_PROMPT="" sends no system prompt).
- Secrets are never echoed: the line shows their length; URLs show their
  password as `****`.
- This module imports only the standard library: gunicorn's arbiter loads it
  before forking, and anything heavier imported there (redis, ssl, psycopg)
  would be imported before the gevent workers monkey-patch.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from webapp.settings.parsers import (  # noqa: F401  (re-exported: config.X is how callers name them)
    PROJECT_ROOT,
    Boolean,
    ByteSize,
    Choice,
    DatabaseUrl,
    Folder,
    Host,
    HttpUrl,
    Integer,
    Invalid,
    Number,
    Origins,
    Parser,
    PublicKeyPem,
    Rate,
    RateSpec,
    RedisUrl,
    SettingError,
    Text,
    database_url,
)
from webapp.settings.tool_parsers import (  # noqa: F401  (re-exported, as above)
    ClientToolConfig,
    ClientTools,
    ImportPath,
    McpServerConfig,
    McpServers,
)

# Written by scripts/run while its embedded Redis is up, so that the flask CLI
# (and anything else started with no REDIS_URL) talks to that Redis.
EMBEDDED_REDIS_URL_FILE = Path("var") / "embedded-redis.url"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

# API.md: a message's ?wait= and a long-poll's timeout are at most this:
# long enough for most answers, short enough for Heroku's 30 s router window.
WAIT_MAX_SECONDS = 25.0

# A tool's output (a server tool's, or a client's posted one) is at most this
# much JSON: it travels in a stream event, is stored with the answer and is
# read by the model at its next step. A larger one is an `error` result.
TOOL_OUTPUT_MAX_BYTES = 64 * 1024


# -- the table -----------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One environment variable: how to parse it, its default, where it goes."""

    name: str
    parse: Parser
    default: Any
    key: str = ""  # the app.config key, when it is not `name`
    secret: bool = False  # never shown in an error line
    exact: bool = False  # taken as it is: not stripped, and blank is a value

    def value(self, env: Mapping[str, str]) -> Any:
        raw = env.get(self.name)
        if raw is None or (not raw.strip() and not self.exact):
            return self.default
        if not raw.strip():
            return raw
        try:
            return self.parse(raw if self.exact else raw.strip())
        except Invalid as exc:
            raise SettingError(self.error_line(raw, str(exc))) from None
        except ValueError:  # int(), float(), urlsplit() or a parser: no detail to add
            raise SettingError(self.error_line(raw)) from None

    def error_line(self, raw: str, detail: str = "") -> str:
        shown = f"<{len(raw)} characters, hidden>" if self.secret else repr(mask_url(raw))
        line = f"{self.name}={shown} is invalid: expected {self.parse.expected}"
        return f"{line} ({detail})" if detail else line


POSITIVE_SECONDS = Number(0, above=True)

SETTINGS: tuple[Setting, ...] = (
    # -- the web process (gunicorn.conf.py) --
    # Every interface, as Heroku's router needs to reach a dyno; scripts/run
    # sets 127.0.0.1 unless HOST is given, so a development server (access
    # control off) is not open to the network.
    Setting("HOST", Host(), "0.0.0.0"),
    Setting("PORT", Integer(1, 65535), 5000),
    # Heroku's Python buildpack sets it from the dyno's size.
    Setting("WEB_CONCURRENCY", Integer(1, 256), 1),
    # Open connections per gunicorn process. A dyno allows 10000 open files
    # per process; leave room for the Redis and SQL pools and the logs.
    Setting("WORKER_CONNECTIONS", Integer(1, 100_000), 5000),
    # A request's headers must all arrive this long after the read that brought
    # their first byte (gunicorn_worker.py); an idle keep-alive connection
    # still waits up to gunicorn's keepalive (95 s) for that first byte.
    Setting("HEADER_TIMEOUT_SECONDS", POSITIVE_SECONDS, 10.0),
    # -- Redis --
    # Unset: scripts/run's embedded Redis while it is up, else localhost (default_redis_url).
    Setting("REDIS_URL", RedisUrl(), None),
    # Check a `rediss://` server's certificate. Heroku's Redis add-on
    # presents a self-signed one: set 0 there (docs/deploy.md).
    Setting("REDIS_SSL_VERIFY", Boolean(), True),
    # REDIS_URL names one node of a Redis Cluster (docs/deploy.md, Scaling).
    Setting("REDIS_CLUSTER", Boolean(), False),
    # The shared pool's connections per process (per node on a cluster); a
    # command waits this long for a free one before failing. Every command on
    # it is short (no blocking reads), and hosted Redis plans allow only a few
    # dozen connections for all dynos together: with the one blocking
    # connection of each process (the hub's pub/sub, the worker's pop) that is
    # 4 per process.
    Setting("REDIS_MAX_CONNECTIONS", Integer(1, 10_000), 3),
    Setting("REDIS_POOL_TIMEOUT_SECONDS", POSITIVE_SECONDS, 20.0),
    # -- SQL --
    Setting("DATABASE_URL", DatabaseUrl(), database_url(None), key="SQLALCHEMY_DATABASE_URI"),
    # PostgreSQL connections kept open per process, and how many more it may
    # open under load; -1, the default, makes the ceiling WORKER_CONCURRENCY,
    # so no generation of a full worker waits for a connection.
    Setting("DATABASE_POOL_SIZE", Integer(1, 1000), 5),
    Setting("DATABASE_MAX_OVERFLOW", Integer(-1, 10_000), -1),
    # A request that cannot get a connection for this long fails rather than
    # outlive the router's 30 s.
    Setting("DATABASE_POOL_TIMEOUT_SECONDS", POSITIVE_SECONDS, 10.0),
    # -- the model --
    Setting("OPENAI_API_KEY", Text(), "", secret=True),
    # Any OpenAI-compatible server; unset: OpenAI's.
    Setting("OPENAI_BASE_URL", HttpUrl(), None),
    Setting("LLM_MODEL", Text(), "gpt-4o-mini"),
    Setting("LLM_MAX_TOKENS", Integer(1), 1024),
    Setting("LLM_CONNECT_TIMEOUT_SECONDS", POSITIVE_SECONDS, 10.0),
    # Longest silence allowed between two streamed deltas of the model.
    Setting("LLM_READ_TIMEOUT_SECONDS", POSITIVE_SECONDS, 60.0),
    # As it is: "" sends no system prompt.
    Setting("SYSTEM_PROMPT", Text(), "You are a helpful assistant.", exact=True),
    # The conversation sent to the model is trimmed oldest-first to this.
    Setting("CONTEXT_BUDGET_CHARS", Integer(1), 48_000),
    # Pause between the demo model's words: a realistic reading pace.
    Setting("DEMO_DELAY_SECONDS", Number(0, 10), 0.04),
    Setting("ANSWER_CACHE_TTL_SECONDS", Integer(0), 0),
    # -- tools (API.md, "Tools"); what needs importing is checked by the worker --
    Setting("TOOLS_MODULE", ImportPath(), None),
    # Header values may be tokens: a malformed value is not shown.
    Setting("MCP_SERVERS", McpServers(), (), secret=True),
    Setting("CLIENT_TOOLS", ClientTools(), ()),
    # Steps that called tools before one last model call that offers none.
    Setting("MAX_TOOL_STEPS", Integer(0, 100), 8),
    # A server tool that runs longer gives an `error` result.
    Setting("TOOL_TIMEOUT_SECONDS", POSITIVE_SECONDS, 30.0),
    # -- the worker --
    Setting("WORKER_CONCURRENCY", Integer(1, 10_000), 32),
    # How long a worker waits on the job list before looking around again.
    Setting("WORKER_POP_TIMEOUT_SECONDS", Number(0, 300, above=True), 5.0),
    Setting("WORKER_SHUTDOWN_GRACE_SECONDS", Number(0), 20.0),
    # Pieces the model sends while the previous write is on its way go out as
    # one chunk (write/piece_writes.py); off, one chunk a piece.
    Setting("WORKER_JOIN_PIECES", Boolean(), True),
    # A job whose worker has not renewed its lease for this long is run again.
    Setting("JOB_LEASE_SECONDS", Number(1), 15.0),
    # Attempts per answer before it ends with `error` worker_lost.
    Setting("JOB_MAX_ATTEMPTS", Integer(1, 100), 3),
    # -- streams --
    Setting("HEARTBEAT_SECONDS", POSITIVE_SECONDS, 15.0),
    Setting("SSE_MAX_SECONDS", POSITIVE_SECONDS, 300.0),
    Setting("SSE_RETRY_MS", Integer(0), 2000),
    Setting("POLL_TIMEOUT_SECONDS", Number(0, WAIT_MAX_SECONDS), 20.0),
    # Long-polls answered without Flask's dispatch when their plan allows
    # (serving/fast_poll.py); off, every poll goes through Flask's view.
    Setting("FAST_POLL", Boolean(), True),
    Setting("STREAM_TTL_SECONDS", Integer(1), 3600),
    Setting("STREAM_MAXLEN", Integer(1), 10_000),
    # A client that has not taken an SSE write for this long is dropped.
    Setting("SSE_SEND_TIMEOUT_SECONDS", POSITIVE_SECONDS, 30.0),
    # What the hub's buffers of one web process may hold: the newest entries
    # of the sessions its clients follow, with their encodings (buffers.py).
    # Past it, history is trimmed and read from Redis again when asked for.
    Setting("HUB_BUFFER_BYTES", ByteSize(2**20), 32 * 2**20),
    # -- limits --
    Setting("MAX_PROMPT_CHARS", Integer(1, 10_000_000), 16_000),
    # Prompts per client.
    Setting("RATE_LIMIT", RateSpec(), Rate(20, 60)),
    # New sessions per client (per token subject with access control on).
    Setting("SESSION_RATE_LIMIT", RateSpec(), Rate(60, 60)),
    # Proxies in front of the web process whose X-Forwarded-For we trust
    # (Heroku's router is one).
    Setting("PROXY_HOPS", Integer(0, 10), 1),
    # Open SSE streams and waiting long-polls per client, per web process.
    Setting("MAX_STREAMS_PER_CLIENT", Integer(1), 32),
    # ... and from all clients together; 0: the process's open-file limit less
    # what requests, Redis and SQL need (limits.py).
    Setting("MAX_STREAMS_PER_PROCESS", Integer(0), 0),
    # -- access control and cross-origin use (API.md), used by access control (coming) --
    # HS256: RFC 7518 section 3.2 wants a key of at least the hash's 256 bits.
    Setting("AUTH_JWT_SECRET", Text(min_chars=32), None, secret=True),
    # RS256 or ES256: the public half of the key the team's backend signs with.
    Setting("AUTH_JWT_PUBLIC_KEY", PublicKeyPem(), None),
    Setting("AUTH_JWT_AUDIENCE", Text(), None),
    # `Authorization: Bearer <token>` for /metrics when set.
    Setting("METRICS_TOKEN", Text(min_chars=16, visible_ascii=True), None, secret=True),
    Setting("CORS_ORIGINS", Origins(), ()),
    # -- logs and metrics --
    Setting("LOG_LEVEL", Choice(("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), True), "INFO"),
    # `text` for people, `json` (one object per line) for log drains (logs.py).
    Setting("LOG_FORMAT", Choice(("text", "json")), "text"),
    # prometheus_client's multiprocess folder (metrics.py); gunicorn.conf.py
    # makes a fresh one when it is unset.
    Setting("PROMETHEUS_MULTIPROC_DIR", Folder(), None),
)
SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}


def from_env(
    env: Mapping[str, str] | None = None, *, project_root: Path = PROJECT_ROOT
) -> dict[str, Any]:
    """Parse every setting from `env` (default: `os.environ`); SettingError on the first bad one."""
    env = os.environ if env is None else env
    settings = {(s.key or s.name): s.value(env) for s in SETTINGS}
    settings["REDIS_URL_SOURCE"] = "REDIS_URL"
    if settings["REDIS_URL"] is None:
        settings["REDIS_URL"], settings["REDIS_URL_SOURCE"] = default_redis_url(project_root)
    _check_together(settings)
    return settings


def default_redis_url(project_root: Path = PROJECT_ROOT) -> tuple[str, str]:
    """(URL, where it came from): scripts/run's embedded Redis while it is up, else localhost."""
    path = project_root / EMBEDDED_REDIS_URL_FILE
    try:
        raw = path.read_text().strip()
    except OSError:
        return DEFAULT_REDIS_URL, "the default"
    source = str(EMBEDDED_REDIS_URL_FILE)
    try:
        return SETTINGS_BY_NAME["REDIS_URL"].parse(raw), source
    except ValueError:
        raise SettingError(
            f"REDIS_URL={mask_url(raw)!r} (read from {source}) is invalid: "
            f"expected {SETTINGS_BY_NAME['REDIS_URL'].parse.expected}"
        ) from None


def _check_together(settings: Mapping[str, Any]) -> None:
    """Settings that are fine alone and wrong together."""
    if settings["AUTH_JWT_SECRET"] and settings["AUTH_JWT_PUBLIC_KEY"]:
        raise SettingError(
            "AUTH_JWT_SECRET and AUTH_JWT_PUBLIC_KEY are both set: "
            "expected one of them (HS256 with a secret, or RS256/ES256 with a public key)"
        )
    if settings["AUTH_JWT_AUDIENCE"] and not (
        settings["AUTH_JWT_SECRET"] or settings["AUTH_JWT_PUBLIC_KEY"]
    ):
        raise SettingError(
            f"AUTH_JWT_AUDIENCE={settings['AUTH_JWT_AUDIENCE']!r} is set without "
            "AUTH_JWT_SECRET or AUTH_JWT_PUBLIC_KEY: expected one of them too "
            "(access control is off without a key)"
        )


def check_or_exit(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Parse every setting, or stop the process with one line naming the bad one.

    For entry points only: the line goes to stderr, with no traceback, and
    the exit status is 2 (a usage error, as click's).
    """
    try:
        return from_env(env)
    except SettingError as exc:
        exit_on(exc)


def exit_on(error: SettingError) -> NoReturn:
    """Stop the process with the setting's one line on stderr, no traceback, exit status 2.

    Also for settings only the worker can check (its tool registry).
    """
    print(f"relay: {error}", file=sys.stderr, flush=True)
    raise SystemExit(2) from None


def host_port(host: str, port: int) -> str:
    """`host:port` as gunicorn's bind and URLs write it: an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def multiproc_dir(env: Mapping[str, str] | None = None) -> str | None:
    """PROMETHEUS_MULTIPROC_DIR as it is now (gunicorn.conf.py sets it before forking)."""
    env = os.environ if env is None else env
    return env.get("PROMETHEUS_MULTIPROC_DIR") or None


def mask_url(url: str) -> str:
    """The URL with its password, if any, as `****`: fit for a log line."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:****@{host}").geturl()


def engine_options(settings: Mapping[str, Any]) -> dict[str, Any]:
    """SQLAlchemy engine options: a PostgreSQL pool sized for WORKER_CONCURRENCY.

    Under gevent a greenlet that finds the pool empty waits for a connection
    without blocking the others, so the ceiling only has to cover what one
    process does at once: at most WORKER_CONCURRENCY generations in a worker.
    Every process opens up to pool size + overflow connections, which must fit
    the database plan's limit (docs/deploy.md, Scaling).
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
