"""The model adapter: pooled connections, the stream read, reasoning, finish reasons, the demo.

(Tool calls in a model's stream: test_tool_calls.py. The demo model's tool
calls, with the demo tools, are at the end here.)

Reasoning and finish reasons run the real `openai` client code against the
test model server (tests/support/model_server.py); the raw-stream cases use
a keep-alive server that sends exactly the events a test gives it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.support.model_server import ModelServer
from webapp.exceptions import ModelError
from webapp.write.demo_model import DemoModel
from webapp.write.llm import Delta, Finish, OpenAIModel, Reasoning
from webapp.write.model_wire import sse_data
from webapp.write.tool_calls import ToolCall, assistant_message, tool_call_id, tool_message


class KeepAliveModel:
    """Answers every completion with the SSE `events` given, on keep-alive connections.

    It counts the TCP connections it accepted: one per answer means the
    client did not pool its connection.
    """

    def __init__(self) -> None:
        self.events: list[str] = []
        self.connections = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        # A client that stops reading early (an error event) is not a server failure.
        self._httpd.handle_error = lambda *args: None
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                server.connections += 1
                super().setup()

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                body = "".join(f"data: {event}\n\n" for event in server.events).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                # The end of the body comes in a write of its own, after [DONE],
                # as it may from a real server.
                self.wfile.write(b"%x\r\n%s\r\n" % (len(body), body))
                self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

        return Handler


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
    choices = [{"index": 0, "delta": delta, "finish_reason": finish}]
    return json.dumps({"model": "served-model", "choices": choices, **extra})


@pytest.fixture()
def server() -> Iterator[KeepAliveModel]:
    served = KeepAliveModel()
    yield served
    served.close()


def settings(base_url: str) -> dict[str, Any]:
    return {
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": base_url,
        "LLM_MODEL": "asked-model",
        "LLM_MAX_TOKENS": 16,
        "LLM_READ_TIMEOUT_SECONDS": 10,
        "LLM_CONNECT_TIMEOUT_SECONDS": 10,
    }


@pytest.fixture()
def model(server: KeepAliveModel) -> OpenAIModel:
    return OpenAIModel.from_settings(settings(server.base_url))


@pytest.fixture()
def thinking_model(server: KeepAliveModel) -> OpenAIModel:
    return OpenAIModel.from_settings(settings(server.base_url), reasoning=True)


@pytest.fixture()
def served(model_server: ModelServer) -> OpenAIModel:
    """A model that reads reasoning, asking the test model server."""
    return OpenAIModel.from_settings(settings(model_server.base_url), reasoning=True)


def ask(model: OpenAIModel, prompt: str) -> list:
    return list(model.stream([{"role": "user", "content": prompt}]))


def test_answers_share_one_pooled_connection(server: KeepAliveModel, model: OpenAIModel) -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    server.events = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hello"}),
        chunk({"content": " there"}),
        chunk({}, "stop"),
        json.dumps({"model": "served-model", "choices": [], "usage": usage}),
        "[DONE]",
    ]
    prompt = [{"role": "user", "content": "hi"}]
    for _ in range(3):
        assert list(model.stream(prompt)) == [
            Delta("Hello"),
            Delta(" there"),
            Finish("served-model", "stop", usage),
        ]
    assert server.connections == 1


def test_an_error_event_mid_stream_is_a_retryable_model_error(
    server: KeepAliveModel, model: OpenAIModel
) -> None:
    server.events = [chunk({"content": "Hel"}), json.dumps({"error": {"message": "overloaded"}})]
    pieces = model.stream([{"role": "user", "content": "hi"}])
    assert next(pieces) == Delta("Hel")
    with pytest.raises(ModelError) as failed:
        next(pieces)
    assert failed.value.code == "upstream_error" and failed.value.retryable
    assert "overloaded" in failed.value.message


def test_malformed_json_is_an_upstream_error(server: KeepAliveModel, model: OpenAIModel) -> None:
    server.events = ["{not json"]
    with pytest.raises(ModelError) as failed:
        list(model.stream([{"role": "user", "content": "hi"}]))
    assert failed.value.code == "upstream_error"


def test_a_stream_without_finish_reason_is_not_an_answer(
    server: KeepAliveModel, model: OpenAIModel
) -> None:
    server.events = [chunk({"content": "cut"}), "[DONE]"]
    with pytest.raises(ModelError, match="before the answer finished"):
        list(model.stream([{"role": "user", "content": "hi"}]))


# -- reasoning -------------------------------------------------------------


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_under_either_field_name_comes_before_the_answer(
    model_server: ModelServer, served: OpenAIModel, unique: str, field: str
) -> None:
    prompt = f"think with {field} {unique}"
    model_server.behave(
        prompt, reasoning=["Weigh", " it", " up."], reasoning_field=field, chunks=["Hi", " there"]
    )
    *pieces, finish = ask(served, prompt)
    assert pieces == [
        Reasoning("Weigh"),
        Reasoning(" it"),
        Reasoning(" up."),
        Delta("Hi"),
        Delta(" there"),
    ]
    assert isinstance(finish, Finish) and finish.finish_reason == "stop"
    (call,) = model_server.calls_for(prompt)
    assert call.reasoning_sent == ["Weigh", " it", " up."] and call.sent == ["Hi", " there"]


def test_reasoning_between_answer_pieces_keeps_its_place(
    model_server: ModelServer, served: OpenAIModel, unique: str
) -> None:
    prompt = f"think twice {unique}"
    model_server.behave(
        prompt,
        script=[
            ("reasoning_content", "First, "),
            ("content", "Part one."),
            ("reasoning", "Then, "),
            ("reasoning_content", "more."),
            ("content", " Part two."),
        ],
    )
    assert ask(served, prompt)[:-1] == [
        Reasoning("First, "),
        Delta("Part one."),
        Reasoning("Then, "),
        Reasoning("more."),
        Delta(" Part two."),
    ]


def test_without_the_switch_reasoning_is_left_out(model_server: ModelServer, unique: str) -> None:
    """A model built without the switch (the worker turns it on) yields answer text only."""
    prompt = f"think unseen {unique}"
    model_server.behave(prompt, reasoning=["Hidden."], chunks=["Shown"])
    model = OpenAIModel.from_settings(settings(model_server.base_url))
    *pieces, finish = ask(model, prompt)
    assert pieces == [Delta("Shown")] and finish.finish_reason == "stop"


def test_a_delta_with_both_names_is_read_once_and_before_its_text(
    server: KeepAliveModel, thinking_model: OpenAIModel
) -> None:
    """Servers that send both names carry one text twice: reasoning_content is taken alone."""
    server.events = [
        chunk({"role": "assistant", "content": "", "reasoning_content": None}),
        chunk({"reasoning_content": "Hmm.", "reasoning": "Hmm.", "content": None}),
        chunk({"reasoning_content": " Done.", "content": "Yes"}),
        chunk({"reasoning_content": None, "reasoning": None, "content": "!"}),
        chunk({}, "stop"),
        "[DONE]",
    ]
    assert ask(thinking_model, "hi")[:-1] == [
        Reasoning("Hmm."),
        Reasoning(" Done."),
        Delta("Yes"),
        Delta("!"),
    ]


# -- finish reasons --------------------------------------------------------


@pytest.mark.parametrize("reason", ["stop", "length", "content_filter"])
def test_the_finish_reasons_api_md_names_pass_through(
    model_server: ModelServer, served: OpenAIModel, unique: str, reason: str
) -> None:
    prompt = f"finish {reason} {unique}"
    model_server.behave(prompt, chunks=["Some", " text"], finish_reason=reason)
    *pieces, finish = ask(served, prompt)
    assert pieces == [Delta("Some"), Delta(" text")]
    assert finish == Finish("asked-model", reason, finish.usage) and finish.usage


@pytest.mark.parametrize("reason", ["tool_calls", "function_call", "eos", "brand_new_reason"])
def test_any_other_finish_reason_is_an_upstream_error_naming_it(
    model_server: ModelServer, served: OpenAIModel, unique: str, reason: str
) -> None:
    prompt = f"finish {reason} {unique}"
    model_server.behave(prompt, chunks=["Half"], finish_reason=reason)
    pieces = served.stream([{"role": "user", "content": prompt}])
    assert next(pieces) == Delta("Half")
    with pytest.raises(ModelError) as failed:
        next(pieces)
    assert failed.value.code == "upstream_error" and not failed.value.retryable
    assert reason in failed.value.message


# -- the demo model --------------------------------------------------------


def test_the_demo_model_thinks_then_answers() -> None:
    prompt = "hello there"
    *pieces, finish = list(
        DemoModel(0, reasoning=True).stream([{"role": "user", "content": prompt}])
    )
    thoughts = [p for p in pieces if isinstance(p, Reasoning)]
    assert pieces[: len(thoughts)] == thoughts, "all reasoning comes before the answer"
    assert len(thoughts) > 1
    assert "".join(p.text for p in thoughts) == DemoModel.reasoning(prompt)
    assert "".join(p.text for p in pieces[len(thoughts) :]) == DemoModel.answer(prompt)
    assert finish.model == "demo" and finish.finish_reason == "stop"
    assert finish.usage["completion_tokens"] == len(pieces)


def test_the_demo_model_is_deterministic_and_thinks_only_when_asked() -> None:
    prompt = [{"role": "user", "content": "same prompt"}]
    assert list(DemoModel(0, reasoning=True).stream(prompt)) == list(
        DemoModel(0, reasoning=True).stream(prompt)
    )
    plain = list(DemoModel(0).stream(prompt))
    assert not any(isinstance(p, Reasoning) for p in plain)
    assert "".join(p.text for p in plain[:-1]) == DemoModel.answer("same prompt")


# -- the demo model's tool calls ---------------------------------------------------


@pytest.fixture()
def demo_registry():
    from webapp.settings.config import from_env
    from webapp.write.tools.registry import ToolRegistry

    registry = ToolRegistry.from_settings(from_env({}), demo_model=True)
    yield registry
    registry.close()


def test_the_demo_model_calls_a_demo_tool_then_answers_with_its_result(demo_registry) -> None:
    model = DemoModel(0, reasoning=True)
    tools = demo_registry.offered()
    messages = [{"role": "user", "content": "What is 2 + 3 + 4.5?"}]
    *thinking, call, finish = list(model.stream(messages, tools=tools, step_key="m-1/0"))
    assert all(isinstance(p, Reasoning) for p in thinking) and thinking
    assert call == ToolCall(tool_call_id("m-1/0", 0), "add", {"numbers": [2, 3, 4.5]})
    assert finish.finish_reason == "tool_calls"

    result = demo_registry.run(call)
    assert result.output == {"sum": 9.5}
    messages += [assistant_message("", [call]), tool_message(call, result)]
    pieces = list(model.stream(messages, tools=tools, step_key="m-1/1"))
    text = "".join(p.text for p in pieces if isinstance(p, Delta))
    assert 'I asked the `add` tool, and it answered: `{"sum": 9.5}`' in text
    assert pieces[-1].finish_reason == "stop" and not any(isinstance(p, ToolCall) for p in pieces)


@pytest.mark.parametrize("prompt", ["what time is it?", "What's the time in Lima?"])
def test_the_demo_model_asks_the_clock_for_the_time(demo_registry, prompt: str) -> None:
    messages = [{"role": "user", "content": prompt}]
    pieces = list(DemoModel(0).stream(messages, tools=demo_registry.offered()))
    assert [(p.name, p.arguments) for p in pieces if isinstance(p, ToolCall)] == [
        ("current_time", {})
    ]


@pytest.mark.parametrize(
    ("prompt", "offered", "tool_choice"),
    [
        ("what is 2 + 3?", False, None),  # no tools offered: today's answer
        ("what is 2 + 3?", True, "none"),  # the last step after MAX_TOOL_STEPS
        ("tell me about 2 plus 3", True, None),  # nothing a demo tool does
    ],
)
def test_the_demo_model_answers_as_before_when_no_tool_fits(
    demo_registry, prompt: str, offered: bool, tool_choice: str | None
) -> None:
    tools = demo_registry.offered() if offered else ()
    messages = [{"role": "user", "content": prompt}]
    pieces = list(DemoModel(0).stream(messages, tools=tools, tool_choice=tool_choice))
    assert "".join(p.text for p in pieces[:-1]) == DemoModel.answer(prompt)
    assert pieces[-1].finish_reason == "stop"


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_sse_lines_end_with_lf_crlf_or_cr_and_may_be_split_at_any_byte(newline: bytes) -> None:
    lines = [
        b'data: {"a": "\xc3\xa9"}',  # é: a character of two bytes, split between reads too
        b"",
        b": a comment, then an event of two data lines",
        b'data:{"b":',
        b"data: 2}",
        b"",
        b"data: [DONE]",
        b"",
        b"data: after the end: not read",
        b"",
    ]
    body = newline.join(lines)
    for cut in range(len(body) + 1):
        for cut2 in (cut, min(cut + 1, len(body))):
            reads = [body[:cut], body[cut:cut2], body[cut2:]]
            assert list(sse_data(iter(reads))) == [{"a": "é"}, {"b": 2}], (cut, cut2)
