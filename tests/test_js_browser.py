"""relay-client (clients/js) in Chromium, on a page of another origin than relay's.

Two pages, served by a static server of the test's own on another port, so
every call to relay is cross-origin (CORS_ORIGINS):
- clients/js/test/page/plain.js imports the module's own files as they are,
  with no build step (as the chat page does), and follows an answer over
  EventSource;
- the client README's plain React example (clients/js/examples/react/chat.jsx),
  `useChat` on RelayChatTransport, bundled with esbuild at test time
  (clients/js/test/build-page.mjs).
What they show is compared with what relay stored in SQL.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests.support.ai_sdk import NodeMissing
from tests.support.browser import chromium
from tests.support.client import create_session, post_prompt
from tests.support.js_client import HARNESS, JS_CLIENT, install_harness
from tests.support.model_server import ModelServer
from tests.support.processes import start_web, wait_for
from tests.support.proxies import BufferingProxy
from tests.support.sql import answer_rows

pytestmark = [pytest.mark.slow, pytest.mark.browser]

WAIT_MS = 30_000


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def page_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The pages (and the module's files), served from an origin of their own."""
    try:
        install_harness()
    except NodeMissing as exc:
        pytest.skip(str(exc))
    out = tmp_path_factory.mktemp("pages")
    shutil.copytree(JS_CLIENT / "src", out / "src")
    shutil.copytree(HARNESS / "page", out / "page", ignore=shutil.ignore_patterns("*.jsx"))
    subprocess.run(
        ["node", str(HARNESS / "build-page.mjs"), str(out / "page")],
        cwd=JS_CLIENT,
        check=True,
        timeout=120,
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(out)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def relay(page_origin: str, base_env: dict[str, str], worker, log_dir: Path) -> Iterator[str]:
    """relay's web, letting the page's origin call it."""
    proc, base_url = start_web(dict(base_env, CORS_ORIGINS=page_origin), log_dir, name="web-react")
    yield base_url
    proc.stop()


@pytest.fixture()
def session_id(relay: str) -> str:
    with httpx.Client(base_url=relay, timeout=30) as http:
        return create_session(http)


def follow_on_plain_page(
    page_origin: str,
    relay: str,
    session_id: str,
    prompt: str,
    transport: str,
    while_streaming: Callable[[Any], None] | None = None,
):
    """Open plain.html: it sends `prompt` and follows its answer; what it saw.

    `while_streaming(page)` runs once the answer has shown some text."""
    with chromium() as browser:
        context = browser.new_context()
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        query = urlencode(
            {"relay": relay, "sid": session_id, "prompt": prompt, "transport": transport}
        )
        page.goto(f"{page_origin}/page/plain.html?{query}")
        if while_streaming:
            page.wait_for_function("window.relayTest?.texts.length > 0", timeout=WAIT_MS)
            while_streaming(page)
        seen = page.wait_for_function(
            "window.relayTest && (window.relayTest.done || window.relayTest.error) && window.relayTest",
            timeout=60_000,
        ).json_value()
        assert not errors, errors
        assert seen["error"] is None, seen["error"]
        return seen


def assert_shown_exactly(app, seen: dict[str, Any], chunks: list[str]) -> None:
    """The plain page ended with the stored answer, every text on the way a prefix of it."""
    stored = final_answer(app, seen["done"]["id"])
    assert seen["done"]["content"] == stored.content == "".join(chunks)
    assert all(stored.content.startswith(text) for text in seen["texts"])


def test_the_module_loads_as_it_is_and_follows_an_answer_over_eventsource(
    page_origin: str, relay: str, session_id: str, app, model_server: ModelServer, unique: str
) -> None:
    prompt = f"eventsource {unique}"
    model_server.behave(prompt, chunks=[f"e{i:03d} " for i in range(100)], delay_seconds=0.01)
    seen = follow_on_plain_page(page_origin, relay, session_id, prompt, "eventsource")
    assert_shown_exactly(app, seen, [f"e{i:03d} " for i in range(100)])
    assert len(seen["texts"]) > 1  # it streamed
    assert seen["done"]["stats"]["mode"] == "sse" and seen["done"]["stats"]["repairs"] == 0


def test_eventsource_behind_a_buffering_proxy_falls_back_to_long_poll(
    page_origin: str, relay: str, session_id: str, app, model_server: ModelServer, unique: str
) -> None:
    """EventSource cannot see bytes: a probe finds what it did not deliver (API.md's
    `: keep-alive` and `retry:` never reach it through such a proxy)."""
    prompt = f"eventsource buffered {unique}"
    chunks = [f"b{i:03d} " for i in range(200)]
    model_server.behave(prompt, chunks=chunks, delay_seconds=0.03)
    proxy = BufferingProxy(relay).start()
    try:
        seen = follow_on_plain_page(page_origin, proxy.base_url, session_id, prompt, "eventsource")
    finally:
        proxy.stop()
    assert_shown_exactly(app, seen, chunks)
    assert proxy.held_streams >= 1
    stats = seen["done"]["stats"]
    assert (stats["fallbacks"], stats["mode"], stats["repairs"]) == (1, "poll", 0)


def test_offline_then_online_resumes_the_answer_exactly(
    page_origin: str, relay: str, session_id: str, app, model_server: ModelServer, unique: str
) -> None:
    """The network goes away mid-answer and comes back: `online` resumes at once."""
    prompt = f"offline {unique}"
    chunks = [f"o{i:03d} " for i in range(200)]
    model_server.behave(prompt, chunks=chunks, delay_seconds=0.03)

    def drop_the_network(page: Any) -> None:
        page.context.set_offline(True)
        page.wait_for_function("window.relayTest.states.includes('offline')", timeout=WAIT_MS)
        page.context.set_offline(False)

    seen = follow_on_plain_page(
        page_origin, relay, session_id, prompt, "fetch", while_streaming=drop_the_network
    )
    assert_shown_exactly(app, seen, chunks)
    states = seen["states"]
    assert states[states.index("offline") + 1 :].count("live") >= 1, states


class Tab:
    """One tab on the React page."""

    def __init__(self, context: Any, page_origin: str, relay: str, sid: str, follow: bool = True):
        self.page = context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        query = f"relay={relay}&sid={sid}" + ("" if follow else "&follow=0")
        self.page.goto(f"{page_origin}/page/react.html?{query}")
        self.wait_for("document.querySelector('main')?.dataset.status === 'ready'")

    def wait_for(self, expression: str, arg: Any = None) -> Any:
        return self.page.wait_for_function(
            f"(arg) => {expression}", arg=arg, timeout=WAIT_MS
        ).json_value()

    def send(self, text: str) -> None:
        self.page.fill("input[name=prompt]", text)
        self.page.click("button[type=submit]")

    def texts(self, role: str) -> list[str]:
        return self.page.eval_on_selector_all(
            f"li[data-role={role}]", "(els) => els.map((el) => el.textContent)"
        )

    def wait_answer(self, text: str) -> None:
        """Wait until the last answer shows exactly `text` and the chat is idle."""
        self.wait_for(
            """(() => {
                 const answers = document.querySelectorAll("li[data-role=assistant]");
                 const status = document.querySelector("main").dataset.status;
                 return status === "ready" && answers.length && answers[answers.length - 1].textContent === arg;
               })()""",
            text,
        )


def final_answer(app, message_id: str):
    from webapp.storage.models import FINAL_STATUSES

    def stored():
        rows = answer_rows(app, message_id)
        return rows and rows[0].status in FINAL_STATUSES and rows[0]

    return wait_for(stored, timeout=30, what="the answer stored")


def last_answer_id(relay: str, sid: str) -> str:
    with httpx.Client(base_url=relay, timeout=30) as http:
        messages = http.get(f"/api/sessions/{sid}").json()["messages"]
    return [m for m in messages if m["role"] == "assistant"][-1]["id"]


def test_a_turn_sent_in_one_tab_appears_in_the_other(
    page_origin: str, relay: str, session_id: str, app, model_server: ModelServer, unique: str
) -> None:
    prompt = f"two tabs {unique}"
    model_server.behave(prompt, chunks=[f"t{i:02d} " for i in range(40)], delay_seconds=0.02)
    with chromium() as browser:
        context = browser.new_context()
        sender = Tab(context, page_origin, relay, session_id)
        watcher = Tab(context, page_origin, relay, session_id)
        sender.send(prompt)
        watcher.wait_for(
            "[...document.querySelectorAll('li[data-role=user]')].some((li) => li.textContent === arg)",
            prompt,
        )
        stored = final_answer(app, last_answer_id(relay, session_id))
        assert stored.status == "done"
        for tab in (sender, watcher):
            tab.wait_answer(stored.content)
            assert tab.texts("user") == [prompt]
            assert len(tab.texts("assistant")) == 1
            assert not tab.errors, tab.errors


def test_stop_leaves_exactly_the_stored_text(
    page_origin: str, relay: str, session_id: str, app, model_server: ModelServer, unique: str
) -> None:
    prompt = f"stop me {unique}"
    chunks = [f"s{i:03d} " for i in range(300)]
    model_server.behave(prompt, chunks=chunks, delay_seconds=0.02)
    with chromium() as browser:
        tab = Tab(browser.new_context(), page_origin, relay, session_id)
        tab.send(prompt)
        tab.wait_for(
            "(document.querySelector('li[data-role=assistant]')?.textContent.length || 0) > 40"
        )
        # Dispatched, not clicked at a point: the growing answer moves the button down.
        tab.page.get_by_role("button", name="Stop").dispatch_event("click")
        stored = final_answer(app, last_answer_id(relay, session_id))
        assert stored.status == "cancelled"
        assert 0 < len(stored.content) < len("".join(chunks))
        # The pieces written between the click and the cancel's end are shown too.
        tab.wait_answer(stored.content)
        assert not tab.errors, tab.errors


def test_a_409_shows_the_apis_message(
    page_origin: str, relay: str, session_id: str, model_server: ModelServer, unique: str
) -> None:
    prompt = f"held {unique}"
    behavior = model_server.behave(
        prompt, chunks=[f"h{i:02d} " for i in range(10)], gate_after=2, delay_seconds=0.002
    )
    try:
        with httpx.Client(base_url=relay, timeout=30) as http:
            post_prompt(http, session_id, prompt)  # another client's answer runs
        with chromium() as browser:
            # A tab that does not follow the session: it does not know of that answer.
            tab = Tab(browser.new_context(), page_origin, relay, session_id, follow=False)
            tab.send(f"second {unique}")
            alert = tab.wait_for("document.querySelector('[role=alert]')?.textContent")
            assert alert == "An answer is still being generated."
            assert not tab.errors, tab.errors
    finally:
        behavior.gate.set()
