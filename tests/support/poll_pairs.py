"""Two web processes over one stack, the same but for FAST_POLL, and raw HTTP to both.

On the `flask` process every poll goes through gunicorn and Flask's view:
what a poll's answer must be. On the `fast` process the fast path
(serving/fast_poll.py) answers what its plan allows, and a connection whose
parked poll was answered is read by the hub (serving/poll_connections.py):
`kept_connection` makes one. tests/test_poll_parity.py and
tests/test_poll_wire.py compare the bytes of both, Date aside.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from flask import Flask

from tests.support.processes import start_web
from tests.support.raw_http import read_framed
from webapp.http import auth
from webapp.storage import events, jobs
from webapp.storage.extensions import redis_store
from webapp.write.writer import StreamWriter

SECRET = "a-test-secret-for-both-ways-in-to-a-poll"
ORIGIN = "https://chat.example"
FALLBACKS = ("body", "upgrade", "lookup", "refused", "failed")
HANDBACKS = ("other", "malformed", "limits", "plan", "failed")


@dataclass
class Pair:
    """A web process without the fast path and one with it, on the same stack."""

    flask: str
    fast: str
    guarded: bool
    fast_pid: int = 0  # the fast process's gunicorn arbiter

    def fast_worker_pid(self) -> int:
        """The fast process's one gunicorn worker, which serves its connections."""
        children = Path(f"/proc/{self.fast_pid}/task/{self.fast_pid}/children").read_text()
        (worker,) = children.split()
        return int(worker)


def start_pair(env: dict[str, str], log_dir: Path, name: str) -> Iterator[Pair]:
    env = dict(env, CORS_ORIGINS=ORIGIN, LOG_LEVEL="WARNING")
    flask_proc, flask_url = start_web(dict(env, FAST_POLL="false"), log_dir, name=f"{name}-flask")
    fast_proc, fast_url = start_web(dict(env, FAST_POLL="true"), log_dir, name=f"{name}-fast")
    yield Pair(flask_url, fast_url, guarded="AUTH_JWT_SECRET" in env, fast_pid=fast_proc.pid)
    fast_proc.stop()
    flask_proc.stop()


def token(sub: str = "alice", *, ttl: float = 300, sid: str | None = None) -> str:
    return auth.mint(SECRET, sub, ttl, session_id=sid)


class Stream:
    """A session made through the Flask process, written to as a worker would."""

    def __init__(self, app: Flask, pair: Pair) -> None:
        self.owner = {"Authorization": f"Bearer {token()}"} if pair.guarded else {}
        made = httpx.post(f"{pair.flask}/api/sessions", headers=self.owner, timeout=10)
        self.session_id: str = made.json()["session_id"]
        client = redis_store.client_for(app)
        jobs.claim(client, self.session_id, "the-answer")
        self._writer = StreamWriter(
            client, self.session_id, "the-answer", 1, stream_ttl_seconds=600, maxlen=1000
        )
        self.first = self.newest = self.write("before")
        # The fast process follows the session from here, its owner known: it
        # needs SQL no more (this poll falls back, `lookup`).
        path = self.path(timeout="0")
        assert httpx.get(pair.fast + path, headers=self.owner, timeout=10).status_code == 200

    def write(self, text: str) -> str:
        data = events.chunk_data("the-answer", text)
        self.newest = self._writer.append(events.CHUNK, data).entry_id
        return self.newest

    def path(self, **query: str) -> str:
        return f"/api/sessions/{self.session_id}/poll?{httpx.QueryParams(query)}"


# -- raw HTTP ------------------------------------------------------------------------


def request_bytes(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: relay.test"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def connect(base_url: str) -> socket.socket:
    address = urlsplit(base_url)
    sock = socket.create_connection((address.hostname, address.port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def send(base_url: str, data: bytes) -> socket.socket:
    sock = connect(base_url)
    sock.sendall(data)
    return sock


def blank_date(raw: bytes) -> bytes:
    return re.sub(rb"\r\nDate: [^\r]*", b"\r\nDate: -", raw)


def response_bytes(sock: socket.socket) -> bytes:
    """One whole response framed by Content-Length, its Date blanked."""
    head, body = read_framed(sock)
    return blank_date(head) + b"\r\n\r\n" + body


def kept_connection(pair: Pair, stream: Stream) -> socket.socket:
    """A connection to the fast process whose next request the hub reads.

    A poll at the session's newest entry parks, and is answered at its
    timeout: from then on the hub reads the connection
    (serving/poll_connections.py), until it hands it back to gunicorn.
    """
    path = stream.path(after=stream.newest, timeout="0.01")
    sock = send(pair.fast, request_bytes(path, stream.owner))
    answer = response_bytes(sock)
    assert answer.startswith(b"HTTP/1.1 200 OK") and b'"events":[]' in answer, answer
    return sock


# -- the processes' counts -------------------------------------------------------------


def samples(base_url: str, name: str) -> dict[str, float]:
    """A metric's samples from the process's /metrics, by their labels."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    found = re.findall(rf"^{name}(\{{[^}}]*\}})? (\S+)$", text, flags=re.MULTILINE)
    return {labels: float(value) for labels, value in found}


def by_reason(base_url: str, name: str, reasons: tuple[str, ...]) -> dict[str, float]:
    counted = samples(base_url, name)
    return {reason: counted.get(f'{{reason="{reason}"}}', 0.0) for reason in reasons}


def fallbacks(base_url: str) -> dict[str, float]:
    """The fast path's polls handed to Flask (serving/fast_poll.py), by reason."""
    return by_reason(base_url, "relay_fast_poll_fallbacks_total", FALLBACKS)


def handbacks(base_url: str) -> dict[str, float]:
    """Kept connections' requests handed to gunicorn (serving/poll_connections.py), by reason."""
    return by_reason(base_url, "relay_kept_poll_handbacks_total", HANDBACKS)


def kept_polls(base_url: str) -> float:
    """Polls the hub read and answered or parked on a kept connection."""
    return samples(base_url, "relay_kept_polls_total").get("", 0.0)


def waiting(base_url: str) -> float:
    return sum(samples(base_url, "relay_long_polls_waiting").values())
