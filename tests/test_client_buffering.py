"""The Python client (clients/python) behind a proxy that holds every body until the
upstream closes (tests/support/proxies.py BufferingProxy), sync and asyncio.

SSE through it shows its headers and then nothing, ever: the client must see that
(no byte, not even relay's opening `retry:` line, within its stall time) and
long-poll from the same cursor (relay_client/follow.py), to exactly the stored
answer: every event once, every chunk in order. The model holds the answer until
a waiting long-poll has gone through the proxy, so every chunk comes by polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from relay_client import AsyncClient, Client, Event, Policy

from tests.support.model_server import ModelServer
from tests.support.processes import wait_for
from tests.support.proxies import BufferingProxy
from tests.support.sql import answer_rows
from tests.test_client_resume import QUICK_RETRY, assert_once_and_whole, chunks

pytestmark = pytest.mark.slow

# A held stream is found out after `stall_seconds` without a byte: 2 s, not 45. A client
# that took it for a stall would reconnect to it: ConnectionLost after 5, not a hung test.
POLICY = Policy(
    seed=24, backoff_seconds=0.05, reconnect_seconds=0.05, stall_seconds=2.0, reconnects=5
)
# Long-polls that wait (the follower's loop), as the page proxy tests count them.
WAITING_POLLS = re.compile(r"^GET /api/sessions/[\w-]+/poll\?\S*timeout=[1-9]")
CHUNKS = 200


@pytest.fixture()
def held_stack(private_stack) -> Iterator[Any]:
    """relay behind a BufferingProxy (`stack.proxy`); `stack.web_url` is relay itself."""
    stack = private_stack(**QUICK_RETRY)
    web = stack.web()
    stack.worker()
    proxy = BufferingProxy(web).start()
    stack.proxy, stack.web_url = proxy, web
    yield stack
    proxy.stop()


def waiting_polls(proxy: BufferingProxy) -> list[str]:
    return [line for line in list(proxy.requests) if WAITING_POLLS.search(line)]


def release_once_polling(proxy: BufferingProxy, behavior: Any) -> threading.Thread:
    """Let the model stream once a waiting long-poll went through the proxy (or after
    30 s, so that a client that never polls fails the test rather than hangs it)."""

    def release() -> None:
        with contextlib.suppress(AssertionError):  # the test says what went wrong
            wait_for(lambda: waiting_polls(proxy), timeout=30, what="a waiting long-poll")
        behavior.gate.set()

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    return thread


def check_exactly_stored(stack: Any, answer: Any, events: list[Event], texts: list[str]) -> None:
    """Each event once, the chunks in order, and the answer equal to the stored one (its SQL
    row and the snapshot), all of it come by long-poll: SSE was held every time."""
    assert_once_and_whole(events, texts)
    assert (answer.status, answer.content, answer.incomplete) == ("done", "".join(texts), False)
    (row,) = answer_rows(stack.app, answer.message_id)
    assert (row.status, row.content) == ("done", answer.content)
    with Client(stack.web_url) as relay:
        snapshot = relay.snapshot(answer.session_id)
    (stored,) = [m for m in snapshot["messages"] if m["id"] == answer.message_id]
    assert stored["content"] == answer.content
    proxy = stack.proxy
    assert proxy.held_streams >= 1
    assert waiting_polls(proxy), f"no waiting long-poll went through: {proxy.requests!r}"


def test_behind_a_buffering_proxy_the_sync_client_long_polls_to_the_stored_answer(
    held_stack, model_server: ModelServer, unique: str
) -> None:
    prompt, texts = f"held sync {unique}", chunks("h", CHUNKS)
    behavior = model_server.behave(prompt, chunks=texts, delay_seconds=0.005, gate_after=0)
    with Client(held_stack.proxy.base_url, policy=POLICY) as relay:
        answer = relay.send(relay.create_session(), prompt)
        release_once_polling(held_stack.proxy, behavior)
        events = list(answer)
    check_exactly_stored(held_stack, answer, events, texts)


def test_behind_a_buffering_proxy_the_async_client_long_polls_to_the_stored_answer(
    held_stack, model_server: ModelServer, unique: str
) -> None:
    prompt, texts = f"held async {unique}", chunks("g", CHUNKS)
    behavior = model_server.behave(prompt, chunks=texts, delay_seconds=0.005, gate_after=0)

    async def follow() -> tuple[Any, list[Event]]:
        async with AsyncClient(held_stack.proxy.base_url, policy=POLICY) as relay:
            answer = await relay.send(await relay.create_session(), prompt)
            release_once_polling(held_stack.proxy, behavior)
            return answer, [event async for event in answer]

    answer, events = asyncio.run(follow())
    check_exactly_stored(held_stack, answer, events, texts)
