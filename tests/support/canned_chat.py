"""A small HTTP server that answers the AI SDK with canned bytes: the mapping's, before any route.

Tests of ui_stream.py build a UI message stream from canned relay events
(`wire`) and serve it here, so the real `ai` package (tests/js) reads the
mapper's bytes as `useChat` would, and every request it makes is recorded
(`Routes.requests`): what the SDK posts is parsed as relay reads it.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from webapp.http.ui_stream import DONE, HEADERS, UIMessageStream, encode
from webapp.read.entries import Entry
from webapp.storage import events

Piece = bytes | threading.Event
Answer = tuple[int, dict[str, str], list[Piece]]


class Routes:
    """What the test server answers: path -> (status, headers, body pieces), in turn.

    A piece is bytes, written and flushed on its own, or a threading.Event
    the server waits on (at most 30 s) before it goes on. A path given
    several answers gives them one per request, the last one again after.
    """

    def __init__(self) -> None:
        self.table: dict[str, list[Answer]] = {}
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []  # method, path, ...

    def stream(self, path: str, *answers: list[Piece]) -> None:
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **HEADERS}
        self.table[path] = [(200, headers, pieces) for pieces in answers]

    def json_error(self, path: str, status: int, code: str) -> str:
        text = json.dumps({"error": {"code": code, "message": "Nope."}})
        self.table[path] = [(status, {"Content-Type": "application/json"}, [text.encode()])]
        return text

    def answer_for(self, path: str) -> Answer:
        answers = self.table.get(path)
        if not answers:
            return 204, {}, []
        return answers.pop(0) if len(answers) > 1 else answers[0]

    def bodies(self, path: str) -> list[Any]:
        """The JSON bodies posted to `path`, in order."""
        return [json.loads(body) for method, p, _, body in self.requests if p == path and body]


@contextmanager
def serve() -> Iterator[tuple[str, Routes]]:
    """A server on 127.0.0.1 (a free port), and its routes; stopped on exit."""
    routes = Routes()

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            sent = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            routes.requests.append((self.command, self.path, headers, sent))
            status, headers, pieces = routes.answer_for(self.path)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()  # HTTP/1.0: the body runs until the connection closes
            for piece in pieces:
                if isinstance(piece, threading.Event):
                    piece.wait(30)
                    continue
                self.wfile.write(piece)
                self.wfile.flush()

        do_GET = do_POST = answer

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            # A client that aborts mid-body (a test's cut connection) is expected.
            if not isinstance(sys.exc_info()[1], ConnectionError):
                super().handle_error(request, client_address)

    httpd = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", routes
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def wire(
    *evs: tuple[str, dict], ui: UIMessageStream, opening: list[dict] | None = None
) -> list[bytes]:
    """A route's bytes for these events through `ui`: one piece per entry, then [DONE] once finished."""
    pieces = [encode(opening)] if opening else []
    pieces += [
        ui.frames(Entry(f"{i + 1}-0", event, events.dumps(data)))
        for i, (event, data) in enumerate(evs)
    ]
    return [p for p in pieces if p] + ([DONE] if ui.finished else [])
