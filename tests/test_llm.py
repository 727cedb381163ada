"""The model adapter against a keep-alive model server: pooled connections, the stream read."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from webapp.exceptions import ModelError
from webapp.llm import Delta, Finish, OpenAIModel


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


@pytest.fixture()
def model(server: KeepAliveModel) -> OpenAIModel:
    settings = {
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": server.base_url,
        "LLM_MODEL": "asked-model",
        "LLM_MAX_TOKENS": 16,
        "LLM_READ_TIMEOUT_SECONDS": 10,
        "LLM_CONNECT_TIMEOUT_SECONDS": 10,
    }
    return OpenAIModel.from_settings(settings)


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
