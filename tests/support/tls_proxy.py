"""A TLS front for a plain redis-server, with a self-signed certificate, as Heroku's Redis has.

The certificate is made by the `openssl` command line for 127.0.0.1; each
accepted TLS connection is relayed to the upstream port by two threads.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) files for CN=127.0.0.1, valid for a day."""
    cert, key = folder / "redis-tls.crt", folder / "redis-tls.key"
    subprocess.run(
        [
            shutil.which("openssl") or "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


class TLSProxy:
    """Each connection is served by its own thread, which alone closes its sockets.

    Closing a socket while another thread still reads or writes it would free
    its file descriptor for reuse, and a late write would land on whatever
    connection got that number next; so `stop()` only shuts sockets down
    (which wakes the readers) and waits for their threads.
    """

    def __init__(self, upstream_port: int, cert: Path, key: Path) -> None:
        self.upstream_port = upstream_port
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.handshake_failures = 0
        self._open: set[socket.socket] = set()
        self._servers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    def start(self) -> TLSProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        _shutdown(self.listener)  # wakes the blocked accept()
        self._thread.join(5)
        self.listener.close()
        with self._lock:
            for sock in self._open:
                _shutdown(sock)
            servers = list(self._servers)
        for server in servers:
            server.join(5)

    def _accept_loop(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return  # stopped
            server = threading.Thread(target=self._serve, args=(raw,), daemon=True)
            with self._lock:
                self._servers.append(server)
            server.start()

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        try:
            client = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            with self._lock:
                self.handshake_failures += 1
            raw.close()
            return
        client.settimeout(None)
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            self._open.update((client, upstream))
        back = threading.Thread(target=self._pipe, args=(upstream, client), daemon=True)
        back.start()
        self._pipe(client, upstream)
        back.join()
        with self._lock:
            self._open.difference_update((client, upstream))
        client.close()
        upstream.close()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            _shutdown(source)
            _shutdown(target)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
