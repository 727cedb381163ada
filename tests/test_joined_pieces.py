"""With pieces joined, the first of a burst is never held and what is joined stays whole.

How many pieces get joined depends on when each write's reply comes back,
so these tests assert only what holds either way; the worker bench
(`--scenario worker`) counts the chunks.

WORKER_JOIN_PIECES (on by default, off in the other tests, which count one
chunk a delta): write/piece_writes.py. The model server sends the rest of
the answer in one write (`burst`), so it reaches the worker in one read.
"""

from __future__ import annotations

import httpx
import pytest

from tests.support.client import answer_text, create_session, post_prompt, read_sse, reasoning_text
from tests.support.model_server import Behavior, ModelServer
from tests.support.sql import stored_message


@pytest.fixture()
def joined(private_stack) -> tuple[object, str]:
    stack = private_stack(WORKER_JOIN_PIECES="true")
    web = stack.web()
    stack.worker()
    return stack, web


def held_after_one(
    web: str, model_server: ModelServer, prompt: str, pieces: list[str]
) -> tuple[Behavior, str, str]:
    """Ask for `pieces`, sent after the first in one burst once the gate opens; the first read.

    The model holds the rest until the first chunk is read here: a first
    piece held back for company would time this read out.
    """
    behavior = model_server.behave(prompt, chunks=pieces, gate_after=1, burst=True)
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
        message_id = post_prompt(http, session_id, prompt)["message_id"]
    first = read_sse(web, session_id, max_events=2).events
    assert [(e.event, e.data.get("text")) for e in first] == [("start", None), ("chunk", pieces[0])]
    return behavior, session_id, message_id


def test_the_first_piece_of_each_burst_goes_out_alone_and_the_rest_whole(
    joined, model_server: ModelServer, unique: str
) -> None:
    stack, web = joined
    pieces = [f"p{i:02d} " for i in range(20)]
    behavior, session_id, message_id = held_after_one(web, model_server, f"joined {unique}", pieces)
    behavior.gate.set()
    events = read_sse(web, session_id, until_message=message_id).events

    chunks = [e.data["text"] for e in events if e.event == "chunk"]
    assert answer_text(events, message_id) == "".join(pieces)
    assert chunks[:2] == ["p00 ", "p01 "]  # each the first of its burst
    # How many of the rest are joined depends on when each write's reply comes
    # (the worker bench counts them); the text and the counts are whole either way.
    end = events[-1].data
    assert (end["chunks"], end["text_length"]) == (len(chunks), len("".join(pieces)))
    stored = stored_message(stack.app, message_id)
    assert (stored.content, stored.chunk_count) == ("".join(pieces), len(chunks))


def test_reasoning_and_answer_in_one_burst_keep_their_order_and_texts(
    joined, model_server: ModelServer, unique: str
) -> None:
    stack, web = joined
    prompt = f"joined thinking {unique}"
    thoughts = [f"t{i} " for i in range(6)]
    answer = [f"a{i} " for i in range(6)]
    model_server.behave(prompt, reasoning=thoughts, chunks=answer, burst=True)
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
        message_id = post_prompt(http, session_id, prompt)["message_id"]
        events = read_sse(web, session_id, until_message=message_id).events

    kinds = [e.event for e in events]
    reasoning = kinds.count("reasoning")
    chunks = kinds.count("chunk")
    assert kinds == ["start"] + ["reasoning"] * reasoning + ["chunk"] * chunks + ["end"]
    assert events[1].data["text"] == "t0 "  # the first piece of the burst, alone
    assert reasoning_text(events, message_id) == "".join(thoughts)
    assert answer_text(events, message_id) == "".join(answer)
    end = events[-1].data
    assert (end["chunks"], end["reasoning_chunks"]) == (chunks, reasoning)
    stored = stored_message(stack.app, message_id)
    assert (stored.content, stored.reasoning) == ("".join(answer), "".join(thoughts))


def test_a_cancel_mid_burst_ends_with_the_chunks_written_and_their_counts(
    joined, model_server: ModelServer, unique: str
) -> None:
    stack, web = joined
    pieces = [f"c{i:03d} " for i in range(400)]
    prompt = f"joined cancel {unique}"
    behavior, session_id, message_id = held_after_one(web, model_server, prompt, pieces)
    with httpx.Client(base_url=web, timeout=30) as http:
        cancel = http.post(f"/api/sessions/{session_id}/messages/{message_id}/cancel")
    assert cancel.status_code == 202
    behavior.gate.set()  # the cancel is in `active` before the burst's first write
    events = read_sse(web, session_id, until_message=message_id).events

    end = events[-1]
    chunks = [e.data["text"] for e in events if e.event == "chunk"]
    assert (end.event, end.data["finish_reason"]) == ("end", "cancelled")
    assert "".join(chunks) == "".join(pieces[: len("".join(chunks)) // len(pieces[0])])
    assert (end.data["chunks"], end.data["text_length"]) == (len(chunks), len("".join(chunks)))
    stored = stored_message(stack.app, message_id)
    assert (stored.content, stored.chunk_count) == ("".join(chunks), len(chunks))
