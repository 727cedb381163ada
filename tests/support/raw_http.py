"""One HTTP/1.1 response read off a raw socket, as the bytes on the wire."""

from __future__ import annotations

import re
import socket


def read_framed(sock: socket.socket) -> tuple[bytes, bytes]:
    """One response framed by Content-Length: its head (no blank line) and its body.

    Fails if the server closes first, or sends no Content-Length.
    """
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a whole head: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"\r\ncontent-length: *(\d+)", head, flags=re.IGNORECASE)
    assert length, f"no Content-Length: {head!r}"
    while len(body) < int(length[1]):
        chunk = sock.recv(65536)
        assert chunk, "closed before the whole body"
        body += chunk
    assert len(body) == int(length[1]), "more bytes than the Content-Length"
    return head, body
