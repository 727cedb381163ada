"""SIGTERM to the web server: open streams end cleanly at once, so clients resume elsewhere."""

from __future__ import annotations

import signal
import threading

import httpx
import pytest

from tests.support.client import create_session, iter_sse_lines
from tests.support.processes import wait_for

pytestmark = pytest.mark.slow


def test_sigterm_ends_open_streams_cleanly(private_stack) -> None:
    stack = private_stack()
    web = stack.web()
    web_proc = stack.processes[0]
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
    outcome: dict[str, object] = {}
    opened = threading.Event()

    def follow() -> None:
        try:
            with httpx.stream("GET", f"{web}/api/sessions/{session_id}/events", timeout=60) as r:
                opened.set()
                outcome["lines"] = [line for line in iter_sse_lines(r)]
            outcome["clean"] = True  # the body ended with its terminating chunk
        except httpx.HTTPError as exc:
            outcome["error"] = repr(exc)

    reader = threading.Thread(target=follow)
    reader.start()
    assert opened.wait(10)
    wait_for(lambda: "sse open" in web_proc.log_text(), timeout=10, what="the stream to open")
    web_proc.signal(signal.SIGTERM)
    reader.join(60)
    assert outcome.get("clean"), outcome.get("error")
    assert "sse closed for shutdown" in web_proc.log_text()
    web_proc.proc.wait(30)
