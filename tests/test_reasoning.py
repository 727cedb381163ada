"""Reasoning models end to end (issue 16): `reasoning` events, then chunks, stored apart.

The test model server streams reasoning under either field name
(`reasoning_content`, `reasoning`); the worker writes it as `reasoning`
events, SQL stores it beside the answer, the snapshot shows it, and it is
never sent back to the model.
"""

from __future__ import annotations

import httpx
import pytest

from tests.support.client import (
    answer_text,
    assert_strictly_increasing,
    count,
    create_session,
    poll_until,
    post_prompt,
    read_sse,
    reasoning_text,
)
from tests.support.model_server import REASONING_FIELDS, ModelServer
from tests.support.processes import wait_for
from tests.support.sql import stored_message

pytestmark = pytest.mark.usefixtures("worker")

THOUGHTS = ["Let me ", "think ", "about ", "this ", "for a ", "while."]
ANSWER = ["The ", "answer ", "is ", "42."]


@pytest.mark.parametrize("field", REASONING_FIELDS)
def test_reasoning_streams_before_the_answer_and_is_stored_apart(
    app, web: str, client: httpx.Client, model_server: ModelServer, unique: str, field: str
) -> None:
    prompt = f"think {field} {unique}"
    model_server.behave(prompt, reasoning=THOUGHTS, reasoning_field=field, chunks=ANSWER)
    session_id = create_session(client)
    message_id = post_prompt(client, session_id, prompt)["message_id"]

    events = read_sse(web, session_id, until_message=message_id).events
    kinds = [e.event for e in events]
    assert kinds == ["start"] + ["reasoning"] * len(THOUGHTS) + ["chunk"] * len(ANSWER) + ["end"]
    assert all(e.data["message_id"] == message_id for e in events)
    assert reasoning_text(events, message_id) == "".join(THOUGHTS)
    assert answer_text(events, message_id) == "".join(ANSWER)
    end = events[-1].data
    assert (end["chunks"], end["text_length"]) == (len(ANSWER), len("".join(ANSWER)))
    assert end["reasoning_chunks"] == len(THOUGHTS)
    assert end["reasoning_length"] == len("".join(THOUGHTS))

    polled = poll_until(client, session_id, message_id, poll_timeout=2)
    assert [e.key for e in polled] == [e.key for e in events]

    row = stored_message(app, message_id)
    assert (row.content, row.reasoning) == ("".join(ANSWER), "".join(THOUGHTS))
    assert (row.chunk_count, row.reasoning_chunk_count) == (len(ANSWER), len(THOUGHTS))
    answer = client.get(f"/api/sessions/{session_id}").json()["messages"][-1]
    assert (answer["content"], answer["reasoning"]) == ("".join(ANSWER), "".join(THOUGHTS))
    waited = client.get(f"/api/sessions/{session_id}/messages/{message_id}", params={"wait": 1})
    assert waited.json()["reasoning"] == "".join(THOUGHTS)


@pytest.mark.parametrize("field", REASONING_FIELDS)
def test_resuming_mid_reasoning_yields_the_rest_exactly_once(
    web: str, client: httpx.Client, model_server: ModelServer, unique: str, field: str
) -> None:
    prompt = f"resume thinking {field} {unique}"
    behavior = model_server.behave(
        prompt, reasoning=THOUGHTS, reasoning_field=field, chunks=ANSWER, gate_after=4
    )
    session_id = create_session(client)
    message_id = post_prompt(client, session_id, prompt)["message_id"]

    first = read_sse(web, session_id, max_events=3)  # start and two reasoning pieces
    assert [e.event for e in first.events] == ["start", "reasoning", "reasoning"]
    # The snapshot taken mid-reasoning holds what streamed so far, up to its cursor.
    snapshot = wait_for(
        lambda: (
            (body := client.get(f"/api/sessions/{session_id}").json())["messages"][-1]["reasoning"]
            == "".join(THOUGHTS[:4])
            and body
        ),
        timeout=10,
        what="the snapshot's reasoning so far",
    )
    assert snapshot["messages"][-1]["content"] == ""
    assert snapshot["messages"][-1]["status"] == "streaming"
    behavior.gate.set()
    rest = read_sse(
        web, session_id, until_message=message_id, headers={"Last-Event-ID": first.events[-1].id}
    )
    after_snapshot = read_sse(
        web, session_id, until_message=message_id, headers={"Last-Event-ID": snapshot["cursor"]}
    )

    whole = read_sse(web, session_id, until_message=message_id).events
    resumed = first.events + rest.events
    assert [e.key for e in resumed] == [e.key for e in whole]
    assert_strictly_increasing(resumed)
    assert reasoning_text(resumed, message_id) == "".join(THOUGHTS)
    assert answer_text(resumed, message_id) == "".join(ANSWER)
    shown = snapshot["messages"][-1]["reasoning"] + reasoning_text(
        after_snapshot.events, message_id
    )
    assert shown == "".join(THOUGHTS)


def test_reasoning_between_answer_pieces_keeps_its_place(
    app, web: str, client: httpx.Client, model_server: ModelServer, unique: str
) -> None:
    prompt = f"interleaved {unique}"
    script = [
        ("reasoning_content", "First, "),
        ("content", "Part one. "),
        ("reasoning", "then "),
        ("content", "Part two."),
    ]
    model_server.behave(prompt, script=script)
    session_id = create_session(client)
    message_id = post_prompt(client, session_id, prompt)["message_id"]
    events = read_sse(web, session_id, until_message=message_id).events
    pieces = [(e.event, e.data["text"]) for e in events if e.event in ("chunk", "reasoning")]
    expected = ["reasoning", "chunk", "reasoning", "chunk"]
    assert pieces == list(zip(expected, [text for _, text in script], strict=True))
    row = stored_message(app, message_id)
    assert (row.reasoning, row.content) == ("First, then ", "Part one. Part two.")


def test_a_drop_after_reasoning_is_not_retried(
    app, web: str, client: httpx.Client, model_server: ModelServer, unique: str
) -> None:
    """Asking the model again would stream the reasoning a second time."""
    prompt = f"drop after thinking {unique}"
    model_server.behave(prompt, reasoning=THOUGHTS, chunks=ANSWER, drop_after=2)
    session_id = create_session(client)
    message_id = post_prompt(client, session_id, prompt)["message_id"]
    events = read_sse(web, session_id, until_message=message_id).events
    assert len(model_server.calls_for(prompt)) == 1
    assert count(events, "reasoning") == 2 and count(events, "chunk") == 0
    assert events[-1].event == "error" and events[-1].data["error"]["code"] == "upstream_error"
    row = stored_message(app, message_id)
    assert (row.status, row.reasoning) == ("error", "".join(THOUGHTS[:2]))


def test_time_to_the_first_reasoning_piece_is_its_own_figure(
    web: str, client: httpx.Client, model_server: ModelServer, unique: str
) -> None:
    def figures() -> tuple[float, float]:
        scraped = httpx.get(f"{web}/metrics").text
        return tuple(  # type: ignore[return-value]
            next(
                float(line.split()[-1])
                for line in scraped.splitlines()
                if line.startswith(f"relay_time_to_first_{name}_seconds_count")
            )
            for name in ("reasoning", "token")
        )

    before = figures()
    prompt = f"count my thinking {unique}"
    model_server.behave(prompt, reasoning=THOUGHTS, chunks=ANSWER)
    session_id = create_session(client)
    message_id = post_prompt(client, session_id, prompt)["message_id"]
    read_sse(web, session_id, until_message=message_id)
    reasoning, token = figures()
    assert reasoning == before[0] + 1 and token == before[1] + 1
