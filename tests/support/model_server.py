"""A small OpenAI-compatible chat completions server for tests.

It speaks the streaming wire format of `POST /v1/chat/completions` (SSE
`data: {chunk}` lines, then `data: [DONE]`), so the worker's real `openai`
client code runs against it. It records every request and the text it sent.

Behaviour is chosen per prompt: a test registers a `Behavior` under a prompt
string unique to that test, so tests sharing the server never interfere.
Unregistered prompts get `default_chunks(prompt)`.

Reasoning, as reasoning models stream it (issue 16): `reasoning` pieces go
out before the answer's `chunks`, under `reasoning_field`
(`"reasoning_content"`, DeepSeek's and SGLang's name, or `"reasoning"`, vLLM's
and Ollama's). `script` orders the deltas freely instead, reasoning between
answer pieces too. Each `Call` records the answer text and the reasoning it
sent, and the request body, so a test can check the history a later prompt
sent to the model has no reasoning in it.

Tool calls (issue 23): a `script` entry `("tool_calls", [fragment, ...])`
sends that list as the delta's `tool_calls`, exactly as given, so a test
writes each server's shape (OpenAI's fragments per `index`, Ollama's whole
calls without one). `finish_reason` is sent as given (`tool_calls`, or
`stop` as gpt-4o has). An answer in steps asks the model once per step:
`steps` gives each step its own behaviour, chosen by the number of
assistant messages after the last user message (the last one repeats).
`Call.prompt` is the last user message, so one prompt names every step of
an answer.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CONTENT = "content"
TOOL_CALLS = "tool_calls"
REASONING_FIELDS = ("reasoning_content", "reasoning")


def default_chunks(prompt: str) -> list[str]:
    """The deterministic answer to an unregistered prompt, as the chunks sent."""
    words = f"You said: {prompt}. Here is a short answer in several pieces.".split(" ")
    return [w + " " for w in words[:-1]] + [words[-1]]


@dataclass
class Behavior:
    chunks: list[str] | None = None
    reasoning: list[str] | None = None  # sent before `chunks` ...
    reasoning_field: str = "reasoning_content"  # ... under this name
    # The deltas in order, as (field, value): "content" or a REASONING_FIELDS
    # name with its text, or TOOL_CALLS with a list of fragments. Takes the
    # place of `chunks` and `reasoning`.
    script: list[tuple[str, Any]] | None = None
    # One behaviour per step of an answer in steps (module docstring).
    steps: list[Behavior] | None = None
    delay_seconds: float = 0.01  # between deltas
    usage: dict[str, int] | None = None
    finish_reason: str = "stop"
    fail_status: int | None = None  # answer this HTTP status ...
    fail_times: int = 0  # ... this many times (0 with fail_status: always)
    fail_code: str | None = None  # the error body's "code", e.g. insufficient_quota
    # The counts below are of deltas, reasoning included.
    drop_after: int | None = None  # close the connection after this many deltas
    stall_after: int | None = None  # go silent after this many deltas
    # Send `gate_after` deltas, then wait for `gate` before the rest.
    gate_after: int | None = None
    gate: threading.Event = field(default_factory=threading.Event)
    # Send the deltas from `gate_after` on (all with None) and the end in one
    # write, without delays: they reach the worker together.
    burst: bool = False
    calls: int = 0

    def for_step(self, messages: list[dict[str, Any]]) -> Behavior:
        """This behaviour, or the one of the step these messages ask for."""
        if not self.steps:
            return self
        users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
        after = messages[users[-1] + 1 :] if users else messages
        step = sum(1 for m in after if m.get("role") == "assistant")
        return self.steps[min(step, len(self.steps) - 1)]

    def deltas(self, prompt: str) -> list[tuple[str, Any]]:
        """What to stream for `prompt`, as (field, text) in order."""
        if self.script is not None:
            return list(self.script)
        chunks = self.chunks if self.chunks is not None else default_chunks(prompt)
        thoughts = [(self.reasoning_field, text) for text in self.reasoning or []]
        return thoughts + [(CONTENT, text) for text in chunks]


@dataclass
class Call:
    body: dict[str, Any]
    sent: list[str] = field(default_factory=list)  # answer text, as sent
    reasoning_sent: list[str] = field(default_factory=list)
    tool_calls_sent: list[Any] = field(default_factory=list)  # the fragments, as sent
    finished: bool = False

    @property
    def prompt(self) -> str:
        """The last user message: the same for every step of one answer."""
        users = [m for m in self.body["messages"] if m.get("role") == "user"]
        return (users or self.body["messages"])[-1].get("content") or ""


class ModelServer:
    def __init__(self) -> None:
        self.behaviors: dict[str, Behavior] = {}
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        self.stop_stalls = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> ModelServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.stop_stalls.set()
        for behavior in self.behaviors.values():
            behavior.gate.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def behave(self, prompt: str, **kwargs: Any) -> Behavior:
        behavior = Behavior(**kwargs)
        self.behaviors[prompt] = behavior
        return behavior

    def calls_for(self, prompt: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.prompt == prompt]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.endswith("/chat/completions"):
                    self._json(404, {"error": {"message": "not found"}})
                    return
                server._complete(self, body)

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        return Handler

    def _complete(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        call = Call(body)
        with self.lock:
            self.calls.append(call)
        behavior = self.behaviors.get(call.prompt, Behavior()).for_step(body["messages"])
        behavior.calls += 1
        if behavior.fail_status and (
            not behavior.fail_times or behavior.calls <= behavior.fail_times
        ):
            handler._json(
                behavior.fail_status,
                {
                    "error": {
                        "message": "scripted failure",
                        "type": "test",
                        "code": behavior.fail_code,
                    }
                },
            )
            return
        deltas = behavior.deltas(call.prompt)
        model = body.get("model", "test-model")
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Connection", "close")
        handler.end_headers()

        held: list[bytes] | None = None  # a burst, until it is sent

        def send(payload: dict[str, Any] | str) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            if held is not None:
                held.append(f"data: {data}\n\n".encode())
                return
            handler.wfile.write(f"data: {data}\n\n".encode())
            handler.wfile.flush()

        def frame(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                "id": "chatcmpl-test",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        try:
            send(frame({"role": "assistant", "content": ""}))
            for index, (name, text) in enumerate(deltas):
                if index == behavior.drop_after:
                    handler.close_connection = True
                    handler.connection.shutdown(2)
                    return
                if index == behavior.stall_after:
                    self.stop_stalls.wait(120)
                    return
                if index == behavior.gate_after:
                    behavior.gate.wait(60)
                if behavior.burst and index == (behavior.gate_after or 0):
                    held = []
                if held is None:
                    time.sleep(behavior.delay_seconds)
                send(frame({name: text}))
                sent = {CONTENT: call.sent, TOOL_CALLS: call.tool_calls_sent}
                sent.get(name, call.reasoning_sent).append(text)
            send(frame({}, behavior.finish_reason))
            prompt_tokens = sum(len(m.get("content") or "") for m in body["messages"]) // 4
            usage = behavior.usage or {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(deltas),
                "total_tokens": prompt_tokens + len(deltas),
            }
            send(
                {
                    "id": "chatcmpl-test",
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
            )
            send("[DONE]")
            if held is not None:
                handler.wfile.write(b"".join(held))
                handler.wfile.flush()
            call.finished = True
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
