"""The answer cache: one model call for the same conversation, and only for whole answers."""

from __future__ import annotations

import httpx
import pytest

from tests.support.client import create_session, post_prompt, read_sse
from tests.support.model_server import ModelServer
from tests.support.sql import answer_rows

pytestmark = pytest.mark.slow

CACHE_ON = {"ANSWER_CACHE_TTL_SECONDS": "60"}


def ask(web: str, http: httpx.Client, prompt: str):
    session_id = create_session(http)
    message_id = post_prompt(http, session_id, prompt)["message_id"]
    return message_id, read_sse(web, session_id, until_message=message_id).events


def shape(events) -> list[tuple[str, dict]]:
    """The events as a client sees them, without ids, timings and attempt bookkeeping."""
    drop = {"message_id", "duration_ms", "cached"}
    return [(e.event, {k: v for k, v in e.data.items() if k not in drop}) for e in events]


def test_same_conversation_twice_calls_the_model_once(
    private_stack, model_server: ModelServer, unique: str
) -> None:
    stack = private_stack(**CACHE_ON)
    web = stack.web()
    stack.worker()
    prompt = f"cache me {unique}"
    model_server.behave(
        prompt,
        chunks=["Cached ", "answers ", "stream ", "too."],
        usage={"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
    )
    with httpx.Client(base_url=web, timeout=30) as http:
        first_id, first = ask(web, http, prompt)
        second_id, second = ask(web, http, prompt)
    assert len(model_server.calls_for(prompt)) == 1
    assert first[0].data["cached"] is False and second[0].data["cached"] is True
    assert shape(first) == shape(second)
    scraped = httpx.get(f"{web}/metrics").text
    assert 'relay_answer_cache_lookups_total{result="hit"} 1.0' in scraped
    assert 'relay_answer_cache_lookups_total{result="miss"} 1.0' in scraped
    (one,), (two,) = answer_rows(stack.app, first_id), answer_rows(stack.app, second_id)
    for field in ("content", "status", "finish_reason", "usage", "model", "chunk_count"):
        assert getattr(one, field) == getattr(two, field), field


def test_reasoning_is_cached_and_replayed_in_its_place(
    private_stack, model_server: ModelServer, unique: str
) -> None:
    stack = private_stack(**CACHE_ON)
    web = stack.web()
    stack.worker()
    prompt = f"cache my thinking {unique}"
    script = [
        ("reasoning_content", "Hmm, "),
        ("reasoning", "let me see. "),
        ("content", "Cached "),
        ("reasoning_content", "And more."),
        ("content", "answer."),
    ]
    model_server.behave(prompt, script=script)
    with httpx.Client(base_url=web, timeout=30) as http:
        first_id, first = ask(web, http, prompt)
        second_id, second = ask(web, http, prompt)
    assert len(model_server.calls_for(prompt)) == 1
    assert second[0].data["cached"] is True
    assert shape(first) == shape(second)
    pieces = [(e.event, e.data["text"]) for e in second if e.event in ("chunk", "reasoning")]
    kinds = ["reasoning", "reasoning", "chunk", "reasoning", "chunk"]
    assert pieces == list(zip(kinds, [text for _, text in script], strict=True))
    assert second[-1].data["reasoning_chunks"] == 3
    (one,), (two,) = answer_rows(stack.app, first_id), answer_rows(stack.app, second_id)
    assert one.reasoning == two.reasoning == "Hmm, let me see. And more."
    assert one.content == two.content == "Cached answer."


def test_other_system_prompt_or_model_misses(
    private_stack, model_server: ModelServer, unique: str
) -> None:
    stack = private_stack(**CACHE_ON)
    web = stack.web()
    prompt = f"who asks {unique}"
    with httpx.Client(base_url=web, timeout=30) as http:
        for env in ({}, {"SYSTEM_PROMPT": "Be terse."}, {"LLM_MODEL": "another-model"}):
            worker = stack.worker(**env)
            ask(web, http, prompt)
            worker.stop()
    assert len(model_server.calls_for(prompt)) == 3
    assert [c.body["model"] for c in model_server.calls_for(prompt)] == [
        "test-model",
        "test-model",
        "another-model",
    ]


def test_failed_and_cancelled_answers_are_not_cached(
    private_stack, model_server: ModelServer, unique: str
) -> None:
    stack = private_stack(**CACHE_ON)
    web = stack.web()
    stack.worker()
    failing, stopped = f"fails {unique}", f"stopped {unique}"
    model_server.behave(failing, chunks=["a", "b"], fail_status=400)
    behavior = model_server.behave(stopped, chunks=["one ", "two ", "three"], gate_after=1)
    with httpx.Client(base_url=web, timeout=30) as http:
        _, events = ask(web, http, failing)
        assert events[-1].event == "error"
        _, events = ask(web, http, failing)
        assert events[-1].event == "error"

        session_id = create_session(http)
        message_id = post_prompt(http, session_id, stopped)["message_id"]
        read_sse(web, session_id, max_events=2)
        http.post(f"/api/sessions/{session_id}/messages/{message_id}/cancel")
        assert (
            read_sse(web, session_id, until_message=message_id).events[-1].data["finish_reason"]
            == "cancelled"
        )
        behavior.gate.set()
        _, events = ask(web, http, stopped)
    assert len(model_server.calls_for(failing)) == 2
    assert len(model_server.calls_for(stopped)) == 2
    assert events[0].data["cached"] is False and events[-1].data["finish_reason"] == "stop"


@pytest.mark.usefixtures("worker")
def test_cache_off_by_default_calls_the_model_every_time(
    web: str, client: httpx.Client, model_server: ModelServer, unique: str
) -> None:
    prompt = f"no cache {unique}"
    ask(web, client, prompt)
    ask(web, client, prompt)
    assert len(model_server.calls_for(prompt)) == 2
