"""The chat page in headless Chromium behind hostile proxies, with a 200-chunk answer (issue 24).

- A proxy that cuts every response carrying the session's events (SSE
  streams, long-polls, snapshots) at a random byte offset, drawn from a
  seeded generator: the page resumes each time and ends with exactly the
  stored answer.
- A proxy that holds every streamed response until it ends, as some
  corporate proxies do: the page must notice and long-poll, and still end
  with exactly the stored answer.

What the page showed is compared with what relay stored in SQL and serves
in its snapshot. The answer is made of distinct numbered words, so a
repeated or missing piece changes the text, and every text the page showed
on the way must be a prefix of it. Everything waits on a condition with a
deadline. The seed is printed (shown when a test fails); set
PAGE_PROXY_SEED to replay one.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.browser import ChatPage, chromium
from tests.support.model_server import ModelServer
from tests.support.processes import start_web
from tests.support.proxies import BufferingProxy, ByteCuttingProxy
from tests.test_page import as_shown, final_message, streamed_text

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHUNKS = 200
WAIT_MS = 60_000  # for the whole answer through a proxy, on a loaded machine
# The requests that carry the session's events: its snapshot, SSE and long-polls.
EVENT_REQUESTS = re.compile(r"^GET /api/sessions/[\w-]+(/events|/poll)?[? ]")
# Long-polls that wait (the poll loop), not the page's timeout=0 probes.
WAITING_POLLS = re.compile(r"^GET /api/sessions/[\w-]+/poll\?\S*timeout=[1-9]")
# A word of the cut test's answer, as a chunk's JSON text has it (not inside an id).
ANSWER_WORD = re.compile(rb'"k\d{3}[ "]')
# Enough cuts never to run out during the answer (checked).
MAX_CUTS = 2000


def numbered(prefix: str, count: int) -> list[str]:
    """Chunks "p000 p001 ... pNNN": all distinct, no Markdown; no trailing space to drop."""
    return [f"{prefix}{i:03d} " for i in range(count - 1)] + [f"{prefix}{count - 1:03d}"]


@pytest.fixture()
def seed() -> int:
    value = int(os.environ.get("PAGE_PROXY_SEED") or random.SystemRandom().randrange(2**32))
    print(f"proxy seed: {value} (replay with PAGE_PROXY_SEED={value})")
    return value


@pytest.fixture(scope="module")
def relay(base_env: dict[str, str], worker, log_dir: Path) -> Iterator[str]:
    """relay's web with a short SSE `retry:`, so that EventSource reconnects soon after a
    cut (the default, 2 s, would make tens of cuts last minutes)."""
    proc, base_url = start_web(dict(base_env, SSE_RETRY_MS="100"), log_dir, name="web-proxies")
    yield base_url
    proc.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as browser:
        yield browser


@pytest.fixture()
def tab(browser) -> Iterator[ChatPage]:
    context = browser.new_context(viewport={"width": 960, "height": 720})
    chat = ChatPage(context)
    yield chat
    context.close()


def check_exactly_stored(app, relay: str, chat: ChatPage, answer_id: str, chunks: list[str]):
    """The page shows exactly the stored answer, and never showed a piece twice or out of order."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    stored = final_message(app, answer_id)
    with httpx.Client(base_url=relay, timeout=30) as http:
        snapshot = streamed_text(http, chat.session_id, answer_id)
    assert (stored.status, stored.content, snapshot) == ("done", "".join(chunks), stored.content)
    try:
        chat.wait_for(
            """(() => {
                 const li = document.querySelector(`li.message[data-message-id="${arg[0]}"]`);
                 return li?.dataset.status === "done" && li.querySelector(".body").textContent === arg[1];
               })()""",
            [answer_id, as_shown(stored.content)],
            timeout_ms=WAIT_MS,
        )
    except PlaywrightTimeout:
        status = chat.answer(answer_id).get_attribute("data-status")
        pytest.fail(f"the page shows {chat.answer_text(answer_id)!r} ({status}) after {WAIT_MS} ms")
    wrong = [text for text in chat.seen(answer_id) if not stored.content.startswith(text)]
    assert not wrong, f"the page showed texts that are not a prefix of the answer: {wrong!r}"
    assert chat.page.locator("li.message.assistant").count() == 1
    chat.check_no_errors()


def kind(request_line: str) -> str:
    """What a request that the cutting proxy cut asked for: events, poll or snapshot."""
    path = request_line.split(" ")[1].split("?")[0]
    return {"events": "events", "poll": "poll"}.get(path.rsplit("/", 1)[-1], "snapshot")


# Stream offsets at every scale (the page may see too many failed connections
# and long-poll, its polls cut too), or only past the response head and often
# (each connection delivers events, so SSE stays in use and resumes by
# Last-Event-ID, tens of times).
@pytest.mark.parametrize(
    "stream_bytes", [(16, 8192), (512, 2048)], ids=["at-any-offset", "past-the-head"]
)
def test_cut_at_random_byte_offsets_the_page_resumes_to_exactly_the_stored_answer(
    app,
    relay: str,
    tab: ChatPage,
    model_server: ModelServer,
    unique: str,
    seed: int,
    stream_bytes: tuple[int, int],
) -> None:
    prompt = f"through cuts {unique}"
    chunks = numbered("k", CHUNKS)
    model_server.behave(prompt, chunks=chunks, delay_seconds=0.03)
    low, high = stream_bytes
    proxy = ByteCuttingProxy(
        relay, seed=seed, cuts=0, min_bytes=low, max_bytes=high, only=EVENT_REQUESTS
    ).start()
    try:
        tab.open(proxy.base_url)
        proxy.cuts_left = MAX_CUTS  # from now on, each response carrying events may be cut
        answer_id = tab.send(prompt)
        check_exactly_stored(app, relay, tab, answer_id, chunks)
    finally:
        proxy.stop()
    # Cuts that left the page part of the way through the answer, which it had to resume.
    mid_answer = [
        kind(line)
        for line, relayed in zip(proxy.cuts, proxy.cut_bytes, strict=True)
        if ANSWER_WORD.search(relayed) and chunks[-1].encode() not in relayed
    ]
    counts = {name: mid_answer.count(name) for name in sorted(set(mid_answer))}
    print(f"{len(proxy.requests)} requests, {len(proxy.cuts)} cuts, mid-answer: {counts}")
    assert mid_answer, f"no cut fell in the answer (seed {seed}): {proxy.cuts!r}"
    assert proxy.cuts_left > 0, "the proxy ran out of cuts: some of the answer went uncut"


def test_behind_a_buffering_proxy_the_page_long_polls_to_exactly_the_stored_answer(
    app, relay: str, tab: ChatPage, model_server: ModelServer, unique: str
) -> None:
    prompt = f"through a buffering proxy {unique}"
    chunks = numbered("b", CHUNKS)
    # Held after 20 pieces until the page has found out: SSE shows it nothing.
    behavior = model_server.behave(prompt, chunks=chunks, delay_seconds=0.02, gate_after=20)
    proxy = BufferingProxy(relay).start()
    try:
        tab.open(proxy.base_url)  # the SSE headers pass, so it looks live
        answer_id = tab.send(prompt)
        tab.wait_connection("polling", timeout_ms=WAIT_MS)
        assert proxy.held_streams >= 1
        behavior.gate.set()
        check_exactly_stored(app, relay, tab, answer_id, chunks)
        polls = [line for line in proxy.requests if WAITING_POLLS.search(line)]
        assert polls, f"no waiting long-poll went through the proxy: {proxy.requests!r}"
        assert tab.connection() == "polling"
    finally:
        behavior.gate.set()
        proxy.stop()
