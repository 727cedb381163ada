"""The model fails in every way it can; each answer still ends as API.md says, and SQL says why."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.client import answer_text, count, create_session, post_prompt, read_sse
from tests.support.model_server import ModelServer
from tests.support.sql import answer_rows


def run_prompt(web: str, http: httpx.Client, prompt: str):
    session_id = create_session(http)
    message_id = post_prompt(http, session_id, prompt)["message_id"]
    return message_id, read_sse(web, session_id, until_message=message_id).events


class Shared:
    def __init__(self, app, web):
        self.app, self.web = app, web


@pytest.fixture()
def shared(app, web, worker) -> Shared:
    return Shared(app, web)


def test_rate_limited_once_then_answers(
    shared, client: httpx.Client, model_server: ModelServer, unique: str
) -> None:
    prompt = f"429 then fine {unique}"
    model_server.behave(prompt, chunks=["fine ", "now"], fail_status=429, fail_times=1)
    message_id, events = run_prompt(shared.web, client, prompt)
    assert len(model_server.calls_for(prompt)) == 2
    assert count(events, "start") == 1 and events[-1].event == "end"
    assert answer_text(events, message_id) == "fine now"


def test_server_error_every_time_ends_in_error(
    shared, client: httpx.Client, model_server: ModelServer, unique: str
) -> None:
    prompt = f"500 always {unique}"
    model_server.behave(prompt, fail_status=500)
    message_id, events = run_prompt(shared.web, client, prompt)
    assert len(model_server.calls_for(prompt)) == 4  # the first try and three retries
    assert events[-1].event == "error"
    assert events[-1].data["error"]["code"] == "upstream_error"
    (row,) = answer_rows(shared.app, message_id)
    assert (row.status, row.error_code) == ("error", "upstream_error")


def test_quota_exhausted_fails_at_once(
    shared, client: httpx.Client, model_server: ModelServer, unique: str
) -> None:
    prompt = f"no credit {unique}"
    model_server.behave(prompt, fail_status=429, fail_code="insufficient_quota")
    message_id, events = run_prompt(shared.web, client, prompt)
    assert len(model_server.calls_for(prompt)) == 1
    assert events[-1].event == "error" and "quota" in events[-1].data["error"]["message"]
    (row,) = answer_rows(shared.app, message_id)
    assert row.status == "error" and "quota" in row.error_message


def test_connection_dropped_after_chunks_is_not_replayed(
    shared, client: httpx.Client, model_server: ModelServer, unique: str
) -> None:
    prompt = f"drop mid answer {unique}"
    model_server.behave(prompt, chunks=["one ", "two ", "three ", "four "], drop_after=2)
    message_id, events = run_prompt(shared.web, client, prompt)
    assert len(model_server.calls_for(prompt)) == 1  # text was sent: never silently replayed
    assert answer_text(events, message_id) == "one two "
    assert events[-1].event == "error" and events[-1].data["error"]["code"] == "upstream_error"
    (row,) = answer_rows(shared.app, message_id)
    assert (row.status, row.content, row.error_code) == ("error", "one two ", "upstream_error")


def test_stalled_model_ends_with_a_timeout(
    private_stack, model_server: ModelServer, unique: str
) -> None:
    stack = private_stack(LLM_READ_TIMEOUT_SECONDS="1")
    web = stack.web()
    stack.worker()
    prompt = f"stall {unique}"
    model_server.behave(prompt, chunks=["hello ", "and then nothing"], stall_after=1)
    with httpx.Client(base_url=web, timeout=30) as http:
        message_id, events = run_prompt(web, http, prompt)
    assert answer_text(events, message_id) == "hello "
    assert events[-1].event == "error" and events[-1].data["error"]["code"] == "upstream_timeout"
    (row,) = answer_rows(stack.app, message_id)
    assert (row.status, row.error_code) == ("error", "upstream_timeout")


def test_content_filter_ends_the_answer_as_it_says(
    shared, client: httpx.Client, model_server: ModelServer, unique: str
) -> None:
    prompt = f"filtered {unique}"
    model_server.behave(prompt, chunks=["Up to ", "here"], finish_reason="content_filter")
    message_id, events = run_prompt(shared.web, client, prompt)
    assert events[-1].event == "end" and events[-1].data["finish_reason"] == "content_filter"
    assert answer_text(events, message_id) == "Up to here"
    (row,) = answer_rows(shared.app, message_id)
    assert (row.status, row.finish_reason, row.content) == ("done", "content_filter", "Up to here")


@pytest.mark.parametrize("reason", ["tool_calls", "eos"])
def test_a_finish_reason_api_md_does_not_name_ends_in_error(
    shared, client: httpx.Client, model_server: ModelServer, unique: str, reason: str
) -> None:
    prompt = f"finish {reason} {unique}"
    model_server.behave(prompt, chunks=["Let me ", "call a tool"], finish_reason=reason)
    message_id, events = run_prompt(shared.web, client, prompt)
    assert len(model_server.calls_for(prompt)) == 1  # retrying would stop the same way
    assert count(events, "end") == 0
    error = events[-1].data["error"]
    assert events[-1].event == "error" and error["code"] == "upstream_error"
    assert reason in error["message"]
    (row,) = answer_rows(shared.app, message_id)
    assert (row.status, row.error_code) == ("error", "upstream_error")
    assert reason in row.error_message and row.content == "Let me call a tool"


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_never_leaks_into_the_answer_or_the_history(
    shared, client: httpx.Client, model_server: ModelServer, unique: str, field: str
) -> None:
    """A reasoning model's thinking is not answer text, nor sent back with the next prompt."""
    first, second = f"think first {field} {unique}", f"then ask {field} {unique}"
    thought = f"SECRET-THOUGHT-{unique}"
    model_server.behave(
        first,
        script=[(field, thought), ("content", "Answer "), (field, " more"), ("content", "one.")],
    )
    session_id = create_session(client)
    first_id = post_prompt(client, session_id, first)["message_id"]
    events = read_sse(shared.web, session_id, until_message=first_id).events
    assert events[-1].event == "end" and answer_text(events, first_id) == "Answer one."
    (row,) = answer_rows(shared.app, first_id)
    assert row.content == "Answer one."
    second_id = post_prompt(client, session_id, second)["message_id"]
    read_sse(shared.web, session_id, until_message=second_id)
    (call,) = model_server.calls_for(second)
    history = call.body["messages"]
    assert {"role": "assistant", "content": "Answer one."} in history
    assert all(set(m) == {"role", "content"} for m in history)
    assert thought not in json.dumps(history)
