"""tool_calls.py through the model adapter: each server's shape of streamed tool calls, read right.

Every case runs the real `openai` client code (llm.OpenAIModel) against the
test model server (tests/support/model_server.py), which sends the
`tool_calls` fragments a test scripts, exactly as given: OpenAI's fragments
per `index`, vLLM's without `id`, Ollama's whole calls without `index` or
all at index 0, `finish_reason` `stop` with calls (gpt-4o), arguments cut by
`length`, and arguments that are not JSON.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.model_server import CONTENT, TOOL_CALLS, ModelServer
from webapp.write import tool_calls
from webapp.write.llm import Delta, Finish, OpenAIModel
from webapp.write.tool_calls import (
    CUT_OFF,
    NO_NAME,
    NOT_JSON,
    NOT_OBJECT,
    ToolCall,
    ToolResult,
    assistant_message,
    step_key,
    tool_call_id,
    tool_message,
)

WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TOOLS = [WEATHER]
KEY = step_key("m-1", 0)


@pytest.fixture()
def model(model_server: ModelServer) -> OpenAIModel:
    settings = {
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": model_server.base_url,
        "LLM_MODEL": "asked-model",
        "LLM_MAX_TOKENS": 16,
        "LLM_READ_TIMEOUT_SECONDS": 10,
        "LLM_CONNECT_TIMEOUT_SECONDS": 10,
    }
    return OpenAIModel.from_settings(settings)


def fragment(index: int | None = None, id: str | None = None, **function: Any) -> dict:
    """One entry of a delta's `tool_calls`; keys left None are left out, as servers do."""
    entry: dict[str, Any] = {"function": function}
    if index is not None:
        entry["index"] = index
    if id is not None:
        entry["id"] = id
        entry["type"] = "function"
    return entry


def ask(
    model_server: ModelServer,
    model: OpenAIModel,
    prompt: str,
    script: list[tuple[str, Any]],
    finish_reason: str = "tool_calls",
    **request: Any,
) -> tuple[list, list[ToolCall], Finish]:
    model_server.behave(prompt, script=script, finish_reason=finish_reason, delay_seconds=0)
    request.setdefault("tools", TOOLS)
    request.setdefault("step_key", KEY)
    pieces = list(model.stream([{"role": "user", "content": prompt}], **request))
    calls = [p for p in pieces if isinstance(p, ToolCall)]
    others = [p for p in pieces[:-1] if not isinstance(p, ToolCall)]
    assert pieces[-len(calls) - 1 : -1] == calls, "calls come after the text, before Finish"
    return others, calls, pieces[-1]


def ids(count: int) -> list[str]:
    return [tool_call_id(KEY, position) for position in range(count)]


def test_openai_fragments_are_joined_per_index(
    model_server: ModelServer, model: OpenAIModel, unique: str
) -> None:
    script = [
        (CONTENT, "Let me look."),
        (TOOL_CALLS, [fragment(0, "call_abc", name="weather", arguments="")]),
        (TOOL_CALLS, [fragment(0, arguments='{"ci')]),
        (TOOL_CALLS, [fragment(0, arguments='ty": "Par')]),
        (TOOL_CALLS, [fragment(1, "call_def", name="weather", arguments='{"city"')]),
        (TOOL_CALLS, [fragment(0, arguments='is"}')]),
        (TOOL_CALLS, [fragment(1, arguments=': "Oslo"}')]),
    ]
    text, calls, finish = ask(model_server, model, f"openai {unique}", script)
    assert text == [Delta("Let me look.")]
    assert calls == [
        ToolCall(ids(2)[0], "weather", {"city": "Paris"}, None, "call_abc"),
        ToolCall(ids(2)[1], "weather", {"city": "Oslo"}, None, "call_def"),
    ]
    assert finish.finish_reason == "tool_calls" and finish.usage


def test_vllm_calls_without_an_id_get_ours_and_the_same_again(
    model_server: ModelServer, model: OpenAIModel, unique: str
) -> None:
    script = [
        (TOOL_CALLS, [{"index": 0, "type": "function", "function": {"name": "weather"}}]),
        (TOOL_CALLS, [fragment(0, arguments='{"city": "Rome"}')]),
        (TOOL_CALLS, [fragment(1, name="weather", arguments='{"city": "Lima"}')]),
    ]
    _, calls, _ = ask(model_server, model, f"vllm {unique}", script)
    assert [(c.call_id, c.provider_id, c.arguments) for c in calls] == [
        (ids(2)[0], None, {"city": "Rome"}),
        (ids(2)[1], None, {"city": "Lima"}),
    ]
    # Asked again for the same step (a retry), the calls have the same ids.
    _, again, _ = ask(model_server, model, f"vllm again {unique}", script)
    assert [c.call_id for c in again] == ids(2)
    # Another step, other ids.
    _, other, _ = ask(
        model_server, model, f"vllm step {unique}", script, step_key=step_key("m-1", 1)
    )
    assert not {c.call_id for c in other} & set(ids(2))


@pytest.mark.parametrize("shape", ["no index", "index 0 again"])
def test_ollama_whole_calls_without_an_index_are_told_apart(
    model_server: ModelServer, model: OpenAIModel, unique: str, shape: str
) -> None:
    index = None if shape == "no index" else 0
    script = [
        (TOOL_CALLS, [fragment(index, "call_1", name="weather", arguments='{"city": "Bern"}')]),
        (TOOL_CALLS, [fragment(index, "call_2", name="weather", arguments='{"city": "Kyiv"}')]),
    ]
    _, calls, finish = ask(model_server, model, f"ollama {shape} {unique}", script)
    assert [(c.provider_id, c.arguments) for c in calls] == [
        ("call_1", {"city": "Bern"}),
        ("call_2", {"city": "Kyiv"}),
    ]
    assert finish.finish_reason == "tool_calls"


def test_ollama_whole_calls_without_ids_are_told_apart_by_their_names(
    model_server: ModelServer, model: OpenAIModel, unique: str
) -> None:
    script = [
        (TOOL_CALLS, [fragment(name="weather", arguments={"city": "Quito"})]),  # an object
        (TOOL_CALLS, [fragment(name="weather", arguments='{"city": "Baku"}')]),
    ]
    _, calls, _ = ask(model_server, model, f"ollama no ids {unique}", script, "stop")
    assert [(c.call_id, c.arguments) for c in calls] == [
        (ids(2)[0], {"city": "Quito"}),
        (ids(2)[1], {"city": "Baku"}),
    ]


def test_a_stream_with_calls_is_a_tool_step_whatever_its_finish_reason(
    model_server: ModelServer, model: OpenAIModel, unique: str
) -> None:
    """gpt-4o has ended a stream of tool calls with `stop`."""
    script = [(TOOL_CALLS, [fragment(0, "call_x", name="weather", arguments='{"city": "Nice"}')])]
    _, calls, finish = ask(model_server, model, f"gpt-4o stop {unique}", script, "stop")
    assert len(calls) == 1 and calls[0].error is None
    assert finish.finish_reason == "tool_calls"


def test_length_cuts_only_the_last_call_and_marks_it(
    model_server: ModelServer, model: OpenAIModel, unique: str
) -> None:
    script = [
        (TOOL_CALLS, [fragment(0, "call_a", name="weather", arguments='{"city": "Oran"}')]),
        (TOOL_CALLS, [fragment(1, "call_b", name="weather", arguments='{"city": "Ber')]),
    ]
    _, (whole, cut), finish = ask(model_server, model, f"length {unique}", script, "length")
    assert whole.error is None and whole.arguments == {"city": "Oran"}
    # Never a run with cut arguments: the call carries the text and why it cannot run.
    assert cut.error == CUT_OFF and cut.arguments == '{"city": "Ber'
    assert finish.finish_reason == "tool_calls"


def test_a_call_cut_before_any_argument_is_cut_off_too(
    model_server: ModelServer, model: OpenAIModel, unique: str
) -> None:
    script = [(TOOL_CALLS, [fragment(0, "call_a", name="weather")])]
    _, (call,), _ = ask(model_server, model, f"length bare {unique}", script, "length")
    assert call.error == CUT_OFF


@pytest.mark.parametrize(
    ("arguments", "error", "kept"),
    [
        ('{"city": Paris}', NOT_JSON, '{"city": Paris}'),
        ('["Paris"]', NOT_OBJECT, '["Paris"]'),
        ("", None, {}),  # a tool without parameters: some servers send nothing
        ('{"city": "Ber', NOT_JSON, '{"city": "Ber'),  # not cut by `length`: just broken
    ],
)
def test_arguments_that_are_not_a_json_object_are_an_error_to_show(
    model_server: ModelServer,
    model: OpenAIModel,
    unique: str,
    arguments: str,
    error: str | None,
    kept: object,
) -> None:
    script = [(TOOL_CALLS, [fragment(0, "call_a", name="weather", arguments=arguments)])]
    _, (call,), _ = ask(model_server, model, f"bad args {arguments} {unique}", script)
    assert (call.error, call.arguments) == (error, kept)


def test_a_call_without_a_name_is_an_error(
    model_server: ModelServer, model: OpenAIModel, unique: str
) -> None:
    script = [(TOOL_CALLS, [fragment(0, "call_a", arguments="{}")])]
    _, (call,), _ = ask(model_server, model, f"no name {unique}", script)
    assert call.error == NO_NAME and call.name == ""


def test_offered_no_tools_the_stream_is_read_as_before(
    model_server: ModelServer, model: OpenAIModel, unique: str
) -> None:
    """An answer without tools looks exactly as today: stray call deltas are not read."""
    script = [
        (CONTENT, "Hi"),
        (TOOL_CALLS, [fragment(0, "call_a", name="weather", arguments="{}")]),
    ]
    pieces, calls, finish = ask(model_server, model, f"no tools {unique}", script, "stop", tools=())
    assert (pieces, calls, finish.finish_reason) == ([Delta("Hi")], [], "stop")
    (call,) = model_server.calls_for(f"no tools {unique}")
    assert "tools" not in call.body and "tool_choice" not in call.body


# -- the request ---------------------------------------------------------------------


def test_tools_tool_choice_and_tool_history_go_out_as_openai_format(
    model_server: ModelServer, model: OpenAIModel, unique: str
) -> None:
    prompt = f"history {unique}"
    model_server.behave(prompt, chunks=["Sunny."], delay_seconds=0)
    call = ToolCall("call_ours", "weather", {"city": "Paris"}, None, "call_theirs")
    messages = [
        {"role": "user", "content": prompt},
        assistant_message("", [call]),
        tool_message(call, ToolResult.ok({"sky": "clear"})),
    ]
    pieces = list(model.stream(messages, tools=TOOLS, tool_choice="none"))
    assert pieces[0] == Delta("Sunny.") and pieces[-1].finish_reason == "stop"
    (sent,) = model_server.calls_for(prompt)
    assert sent.body["tools"] == TOOLS and sent.body["tool_choice"] == "none"
    assert sent.body["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_theirs",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_theirs", "content": '{"sky": "clear"}'},
    ]


@pytest.mark.parametrize(
    ("result", "says"),
    [
        (ToolResult.ok("18 degrees"), "18 degrees"),
        (ToolResult.ok([1, 2]), "[1, 2]"),
        (ToolResult.failed("timed out"), "error: timed out"),
        (ToolResult("denied", error="not now"), "denied: the user did not allow"),
        (ToolResult("in_doubt"), "in_doubt: the run of this call was interrupted"),
    ],
)
def test_a_result_tells_the_model_what_happened(result: ToolResult, says: str) -> None:
    call = ToolCall("call_ours", "weather", '{"city"', tool_calls.NOT_JSON)
    message = tool_message(call, result)
    assert message["tool_call_id"] == "call_ours"  # no server id: ours
    assert message["content"].startswith(says)
    # Arguments that were not JSON go back as the text the model sent.
    assert assistant_message("x", [call])["tool_calls"][0]["function"]["arguments"] == '{"city"'


def test_call_ids_are_stable_unique_and_url_safe() -> None:
    first = tool_call_id(step_key("m-1", 0), 0)
    assert first == tool_call_id(step_key("m-1", 0), 0)
    others = {
        tool_call_id(step_key(m, s), p) for m in ("m-1", "m-2") for s in (0, 1) for p in (0, 1)
    }
    assert len(others) == 8 and first in others
    assert all(len(i) <= 40 and i.replace("_", "").isalnum() for i in others)
