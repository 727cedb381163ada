"""The Python client (clients/python) never loses or repeats a word: through a proxy that
cuts every connection, across a worker killed mid-answer, and across a reset.

Each test counts what the client yielded, not only what it ended with: every
event id once, every chunk of the final attempt in order, and the answer
equal to the row relay stored.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
from relay_client import AsyncClient, Client, Event, Policy

from tests.support.broken_wire import ByteCuttingProxy
from tests.support.model_server import ModelServer
from tests.support.processes import Process, wait_for
from tests.support.proxies import FreezingProxy
from tests.support.sql import answer_rows

pytestmark = pytest.mark.slow

# A short reconnect wait (the server's `retry:`), so that dozens of cuts cost little.
QUICK_RETRY = {"SSE_RETRY_MS": "20"}
LEASE = {"JOB_LEASE_SECONDS": "1.5"}
POLICY = Policy(seed=24, backoff_seconds=0.05, reconnect_seconds=0.05)


def chunks(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i:03d} " for i in range(count)]


def assert_once_and_whole(events: list[Event], texts: list[str]) -> None:
    """Each id yielded once; the final attempt's chunks are exactly `texts`, in order."""
    ids = [e.id for e in events if e.id is not None]
    assert len(ids) == len(set(ids)), "an event was yielded twice"
    starts = [i for i, e in enumerate(events) if e.event == "start"]
    shown = [e.data["text"] for e in events[max(starts, default=0) :] if e.event == "chunk"]
    assert shown == texts, f"{len(shown)} chunks shown, {len(texts)} sent"
    assert events[-1].event == "end"


def release_once_loaded(answer: Any, behavior: Any) -> threading.Thread:
    """Let the model stream once the answer has read its snapshot, so that every chunk
    reaches the client as an event (the test counts them)."""

    def release() -> None:
        wait_for(lambda: answer.loaded, timeout=30, what="the answer's snapshot")
        behavior.gate.set()

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    return thread


@pytest.fixture()
def cut_stack(private_stack, model_server: ModelServer, request) -> Iterator[Any]:
    """relay behind a proxy that cuts every response at a seeded random byte offset
    (up to 6000, unless the test is parametrized with other ByteCuttingProxy options)."""
    stack = private_stack(**QUICK_RETRY)
    web = stack.web()
    stack.worker()
    options = getattr(request, "param", {"max_bytes": 6000})
    proxy = ByteCuttingProxy(web, seed=24, **options).start()
    stack.proxy, stack.web_url = proxy, web
    yield stack
    proxy.stop()


# Long-polls meet half their answers cut (broken_wire.py says why not all of them).
@pytest.mark.parametrize(
    ("transport", "cut_stack", "min_cuts"),
    [("sse", {"max_bytes": 6000}, 3), ("poll", {"max_bytes": 3000, "share": 0.5}, 3)],
    indirect=["cut_stack"],
    ids=["sse", "poll"],
)
def test_a_200_chunk_answer_through_cuts_is_whole_and_once_sync(
    cut_stack, model_server: ModelServer, unique: str, transport: str, min_cuts: int
) -> None:
    prompt, texts = f"cut sync {transport} {unique}", chunks("w", 200)
    behavior = model_server.behave(prompt, chunks=texts, delay_seconds=0.005, gate_after=0)
    with Client(cut_stack.proxy.base_url, transport=transport, policy=POLICY) as relay:
        session_id = relay.create_session()
        answer = relay.send(session_id, prompt)
        release_once_loaded(answer, behavior)
        events = list(answer)
    assert_once_and_whole(events, texts)
    assert (answer.status, answer.content, answer.incomplete) == ("done", "".join(texts), False)
    (row,) = answer_rows(cut_stack.app, answer.message_id)
    assert (row.status, row.content) == ("done", answer.content)
    assert len(model_server.calls_for(prompt)) == 1  # a cut post was sent again, queued once
    assert cut_stack.proxy.cuts >= min_cuts, cut_stack.proxy.cuts


def test_a_200_chunk_answer_through_cuts_is_whole_and_once_async(
    cut_stack, model_server: ModelServer, unique: str
) -> None:
    prompt, texts = f"cut async {unique}", chunks("a", 200)
    behavior = model_server.behave(prompt, chunks=texts, delay_seconds=0.005, gate_after=0)

    async def follow() -> tuple[Any, list[Event]]:
        async with AsyncClient(cut_stack.proxy.base_url, policy=POLICY) as relay:
            session_id = await relay.create_session()
            answer = await relay.send(session_id, prompt)
            release_once_loaded(answer, behavior)
            return answer, [event async for event in answer]

    answer, events = asyncio.run(follow())
    assert_once_and_whole(events, texts)
    assert (answer.status, answer.content, answer.incomplete) == ("done", "".join(texts), False)
    (row,) = answer_rows(cut_stack.app, answer.message_id)
    assert (row.status, row.content) == ("done", answer.content)
    assert cut_stack.proxy.cuts >= 3, cut_stack.proxy.cuts


def test_a_session_stream_through_cuts_matches_a_straight_read(
    cut_stack, model_server: ModelServer, unique: str
) -> None:
    prompt, texts = f"cut stream {unique}", chunks("s", 60)
    model_server.behave(prompt, chunks=texts, delay_seconds=0.002)
    with Client(cut_stack.proxy.base_url, policy=POLICY) as relay:
        session_id = relay.create_session()
        message_id = relay.send(session_id, prompt).message_id
        cut: list[Event] = []
        for event in relay.stream(session_id, after="0-0"):
            cut.append(event)
            if event.event == "end" and event.message_id == message_id:
                break
    assert cut == events_of(cut_stack.web_url, session_id)


def events_of(base_url: str, session_id: str) -> list[Event]:
    """Everything the session's stream holds now, read without cuts."""
    with Client(base_url) as relay:
        found, after = [], "0-0"
        while (poll := relay.poll(session_id, after, timeout=0)).events:
            found += poll.events
            after = poll.cursor
        return found


def test_a_stream_that_goes_silent_is_left_for_a_new_one(
    web: str, worker: Process, model_server: ModelServer, unique: str
) -> None:
    """No byte for `stall_seconds` (relay sends a keep-alive every second here): reconnect."""
    prompt, texts = f"stalled {unique}", chunks("q", 30)
    behavior = model_server.behave(prompt, chunks=texts, gate_after=0, delay_seconds=0.01)
    proxy = FreezingProxy(web, after_bytes=400, freeze=1).start()
    try:
        policy = Policy(seed=5, reconnect_seconds=0.05, stall_seconds=2.0)
        with Client(proxy.base_url, policy=policy) as relay:
            answer = relay.send(relay.create_session(), prompt)
            release_once_loaded(answer, behavior)
            events = list(answer)
    finally:
        proxy.stop()
    assert proxy.frozen == 1
    assert_once_and_whole(events, texts)


# -- a worker killed mid-answer -----------------------------------------------------


class HeldAnswer:
    """A private stack's answer that the model holds after 5 of its 20 chunks."""

    def __init__(self, private_stack, model_server: ModelServer, prompt: str) -> None:
        self.stack = private_stack(**LEASE, **QUICK_RETRY)
        self.web = self.stack.web()
        self.worker = self.stack.worker()
        self.texts = chunks("k", 20)
        self.behavior = model_server.behave(
            prompt, chunks=self.texts, gate_after=5, delay_seconds=0.002
        )

    def kill_and_replace(self) -> None:
        """SIGKILL the worker mid-answer; a new worker takes the job over as attempt 2."""
        self.worker.kill()
        self.behavior.gate.set()
        self.stack.worker()


def kill_once_shown(answer: Any, held: HeldAnswer) -> threading.Thread:
    """Kill and replace the worker once the answer shows the 5 chunks the model stops
    after. Watched, not counted from events: the worker may write `start` and chunks
    before the answer reads its snapshot (nothing holds the model before its 5th)."""

    def kill() -> None:
        five = "".join(held.texts[:5])
        wait_for(lambda: answer.content == five, timeout=30, what="5 chunks shown")
        held.kill_and_replace()

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


# Checked as `end` is yielded: the client would then reload the stored answer, which
# would hide what its events made of it.
REPAIRED = "`end` disagreed with what the events made"


def attempts_seen(seen: list[Event]) -> list[int]:
    """The attempts of the `start` events yielded: 1 and 2, or 2 when 1 was in the snapshot."""
    attempts = [e.data["attempt"] for e in seen if e.event == "start"]
    assert attempts in ([1, 2], [2]), attempts
    return attempts


def test_a_killed_worker_gives_exactly_the_final_attempts_text_sync(
    private_stack, model_server: ModelServer, unique: str
) -> None:
    held = HeldAnswer(private_stack, model_server, f"kill sync {unique}")
    with Client(held.web, policy=POLICY) as relay:
        answer = relay.send(relay.create_session(), f"kill sync {unique}")
        killer = kill_once_shown(answer, held)
        seen = []
        for event in answer:
            seen.append(event)
            assert not answer.incomplete, REPAIRED
    killer.join(30)
    attempts_seen(seen)
    assert_once_and_whole(seen, held.texts)
    assert (answer.attempt, answer.content) == (2, "".join(held.texts))
    (row,) = answer_rows(held.stack.app, answer.message_id)
    assert (row.status, row.content, row.attempt) == ("done", answer.content, 2)


def test_a_killed_worker_gives_exactly_the_final_attempts_text_async(
    private_stack, model_server: ModelServer, unique: str
) -> None:
    prompt = f"kill async {unique}"
    held = HeldAnswer(private_stack, model_server, prompt)

    async def follow() -> tuple[Any, list[Event]]:
        async with AsyncClient(held.web, policy=POLICY) as relay:
            answer = await relay.send(await relay.create_session(), prompt)
            kill_once_shown(answer, held)
            seen = []
            async for event in answer:
                seen.append(event)
                assert not answer.incomplete, REPAIRED
            return answer, seen

    answer, seen = asyncio.run(follow())
    attempts_seen(seen)
    assert_once_and_whole(seen, held.texts)
    assert (answer.attempt, answer.content) == (2, "".join(held.texts))


# -- reset: a cursor older than the stream keeps ------------------------------------


def done(relay: Client, session_id: str, message_id: str) -> dict[str, Any] | None:
    message = relay.message(session_id, message_id)
    return message if message["status"] == "done" else None


def test_a_reset_reloads_the_snapshot_and_goes_on_from_its_cursor(
    private_stack, unique: str
) -> None:
    stack = private_stack(STREAM_MAXLEN="10")
    web = stack.web()
    stack.worker()
    with Client(web, policy=POLICY) as relay:
        session_id = relay.create_session()
        # Waited for by reading the message, never by following the stream: a web
        # process that follows a session keeps its entries after Redis trims them.
        for n in ("one", "two"):
            mid = relay.send(session_id, f"reset {n} {unique}").message_id
            stored = wait_for(partial(done, relay, session_id, mid), 20, 0.1, "the end")
        old = relay.answer(session_id, mid)
        old.loaded, old.cursor.value = True, "1-0"  # an answer followed long ago
        for event in old:
            assert event.event == "reset" and event.snapshot is not None
            break
        assert (old.status, old.content) == ("done", stored["content"])
        assert old.cursor.value == relay.snapshot(session_id)["cursor"]
