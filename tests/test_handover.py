"""What held streams rely on from gunicorn (webapp/handover.py), pinned.

If an upgrade of gunicorn changes any of it, these fail before a client
sees a broken stream: the version range the hand-over was checked against,
the chunk framing, and, served by gunicorn's gevent worker, the socket in
the environ, the headers written with the first item, and the quiet close
on EPIPE that lets the hub keep the connection.
"""

from __future__ import annotations

import importlib.metadata
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from gunicorn import util

from tests.support.processes import Process, free_port, python, wait_until_answers
from webapp import handover


def test_gunicorn_is_a_release_the_hand_over_was_checked_against() -> None:
    major, minor = (int(part) for part in importlib.metadata.version("gunicorn").split(".")[:2])
    low, high = handover.GUNICORN_CHECKED
    assert low <= (major, minor) < high, "check handover.py against this gunicorn, then the range"


def test_chunks_are_framed_as_gunicorn_frames_them() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        util.write_chunk(ours, b"data: x\n\n")
        util.write_chunk(ours, b"")  # how gunicorn ends a chunked body
        expected = handover.chunked(b"data: x\n\n") + handover.LAST_CHUNK
        assert theirs.recv(1024) == expected


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Process]]:
    """gunicorn's gevent worker serving tests/support/handover_app.py, logging at debug."""
    folder = Path(tmp_path_factory.mktemp("handover"))
    config = folder / "gunicorn.conf.py"
    config.write_text('worker_class = "gevent"\nloglevel = "debug"\nerrorlog = "-"\n')
    port = free_port()
    argv = [python(), "-m", "gunicorn", "--config", str(config)]
    argv += ["--bind", f"127.0.0.1:{port}", "tests.support.handover_app:app"]
    server = Process("gunicorn-handover", argv, {"PATH": "/usr/bin:/bin"}, folder).start()
    wait_until_answers(server, f"http://127.0.0.1:{port}/")
    yield port, server
    server.stop()


def get(port: int, version: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET / {version}\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        received = b""
        while data := sock.recv(65536):
            received += data
        return received


def test_a_response_handed_over_mid_body_reaches_the_client_whole(
    served: tuple[int, Process],
) -> None:
    port, server = served
    quiet_before = server.log_text().count("Ignoring EPIPE")
    head, _, body = get(port, "HTTP/1.1").partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Transfer-Encoding: chunked" in head
    first = handover.chunked(b"through gunicorn, ")
    assert body == first + handover.chunked(b"then from the hub") + handover.LAST_CHUNK

    head, _, body = get(port, "HTTP/1.0").partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") and b"Transfer-Encoding" not in head
    assert body == b"through gunicorn, then from the hub"

    log = server.log_text()
    quiet = log.count("Ignoring EPIPE") - quiet_before
    assert quiet == 2, "gunicorn let go of both connections on the EPIPE, quietly"
    assert "Traceback" not in log and "Error handling request" not in log
