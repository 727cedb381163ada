"""The bench's model server: OpenAI-compatible streaming, every delta stamped with its send time.

`POST /v1/chat/completions` with `stream: true` answers in the SSE wire
format of the real API (the same frames as tests/support/model_server.py:
a role frame, one frame per delta, a finish frame, a usage frame, then
`data: [DONE]`), over HTTP/1.1 chunked encoding on a keep-alive connection,
as api.openai.com does, so the worker's `openai` client reuses connections.

What to send is read from the last message, the prompt:

    bench n=<deltas> rate=<deltas per second, 0: as fast as possible> [first_ms=<delay>]
          [think=<how many of the n deltas are reasoning>]

Delta i's text is `⟨i=<i> t=<ns>⟩` where `ns` is `time.monotonic_ns()` just
before the frame is written; delta 0 also carries `r=<ns>`, when the request
was read, so `t - r` is the model's own time to first token. CLOCK_MONOTONIC
is one clock for the whole machine on Linux, so a client in another process
subtracts it from its own receive time to get the delivery latency.

With `think=k`, deltas 0 to k-1 are the model's reasoning
(`delta.reasoning_content`, as DeepSeek and SGLang send it) and the rest the
answer, numbered on: the first reasoning delta carries `r=`, and the answer's
first is delta k.

With `tools=s tool_ms=<ms>` and a request that offers tools, the first `s`
steps of the answer (a step: the assistant messages after the prompt, as an
answer in steps sends them back) call the bench's tool instead
(bench/tools.py, `bench_wait`) with `{"ms", "requested_ns", "sent_ns"}`:
when this step's request was read, and when its call was written. The step
after them streams the deltas as above. The prompt is the last user message,
so every step of an answer reads the same directives.

Deliberate choices:
- asyncio and hand-written HTTP, no framework: 100 paced streams at 20
  deltas/s must cost the model server little of the two cores the bench
  shares with the system under test.
- Paced deltas are scheduled on absolute times (start + i / rate), so a late
  wake-up does not shift every later delta.
- `rate=0` writes the whole answer at once: an "instant" model, for
  measuring the worker's cost per delta alone.

Run as `python -m bench.model_server`; it prints `port <n>` when listening.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys
import time

DIRECTIVE = re.compile(r"(\w+)=([0-9.]+)")
MAX_DELTAS = 100_000
MAX_HEADER_BYTES = 65536
MAX_BODY_BYTES = 4 * 1024 * 1024


def parse_prompt(prompt: str) -> tuple[int, float, float]:
    """(deltas, deltas per second, first token delay in seconds) from a bench prompt."""
    found = dict(DIRECTIVE.findall(prompt))
    deltas = min(int(float(found.get("n", "10"))), MAX_DELTAS)
    return deltas, float(found.get("rate", "0")), float(found.get("first_ms", "0")) / 1000


def parse_tools(prompt: str) -> tuple[int, float]:
    """(tool steps before the text, each tool's wait in ms) from `tools=` and `tool_ms=`."""
    found = dict(DIRECTIVE.findall(prompt))
    return int(float(found.get("tools", "0"))), float(found.get("tool_ms", "0"))


def parse_think(prompt: str) -> int:
    """How many of the first deltas are reasoning (`think=`), 0 by default."""
    return int(float(dict(DIRECTIVE.findall(prompt)).get("think", "0")))


def _chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk holding one SSE frame."""
    frame = b"data: " + payload + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(frame), frame)


class Frames:
    """The JSON frames of one streamed completion."""

    def __init__(self, model: str) -> None:
        self._head = json.dumps(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
            }
        )[:-1]

    def frame(self, delta: dict, finish: str | None = None) -> bytes:
        choices = json.dumps(
            [{"index": 0, "delta": delta, "finish_reason": finish}], ensure_ascii=False
        )
        return _chunk(f'{self._head}, "choices": {choices}}}'.encode())

    def delta(self, text: str, field: str = "content") -> bytes:
        return self.frame({field: text})

    def tail(self, prompt_tokens: int, deltas: int, finish: str = "stop") -> bytes:
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": deltas,
            "total_tokens": prompt_tokens + deltas,
        }
        return (
            self.frame({}, finish)
            + _chunk(f'{self._head}, "choices": [], "usage": {json.dumps(usage)}}}'.encode())
            + _chunk(b"[DONE]")
            + b"0\r\n\r\n"
        )


class Stats:
    requests = 0
    deltas = 0


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Serve requests on one keep-alive connection until the client closes it."""
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            received = time.monotonic_ns()
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = (lines[0].split(" ") + ["", ""])[:3]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = min(int(headers.get("content-length", "0") or 0), MAX_BODY_BYTES)
            body = await reader.readexactly(length) if length else b""
            if method == "GET" and path == "/stats":
                stats = {"requests": Stats.requests, "deltas": Stats.deltas}
                await respond_json(writer, 200, stats)
            elif method == "POST" and path.endswith("/chat/completions"):
                await complete(writer, json.loads(body or b"{}"), received)
            else:
                await respond_json(writer, 404, {"error": {"message": "not found"}})
            if headers.get("connection", "").lower() == "close":
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


async def respond_json(writer: asyncio.StreamWriter, status: int, payload: dict) -> None:
    raw = json.dumps(payload).encode()
    writer.write(
        b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (status, len(raw), raw)
    )
    await writer.drain()


def _prompt_and_step(messages: list[dict]) -> tuple[str, int]:
    """The last user message, and how many assistant messages (steps) came after it."""
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    last = users[-1] if users else len(messages) - 1
    after = messages[last + 1 :]
    return str(messages[last].get("content", "")), sum(m.get("role") == "assistant" for m in after)


def tool_step(frames: Frames, step: int, ms: float, received: int) -> bytes:
    """A step that calls the bench's tool, stamped (module docstring), and its end."""
    arguments = {"ms": ms, "requested_ns": received, "sent_ns": time.monotonic_ns()}
    call = {
        "index": 0,
        "id": f"call_bench_{step}",
        "type": "function",
        "function": {"name": "bench_wait", "arguments": json.dumps(arguments)},
    }
    return frames.frame({"tool_calls": [call]}) + frames.tail(0, 1, "tool_calls")


async def complete(writer: asyncio.StreamWriter, body: dict, received: int) -> None:
    messages = body.get("messages") or [{"content": ""}]
    prompt, step = _prompt_and_step(messages)
    deltas, rate, first_delay = parse_prompt(prompt)
    think = parse_think(prompt)
    tool_steps, tool_ms = parse_tools(prompt)

    def field(i: int) -> str:
        return "reasoning_content" if i < think else "content"

    frames = Frames(str(body.get("model", "bench-model")))
    Stats.requests += 1
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
        + frames.frame({"role": "assistant", "content": ""})
    )
    if body.get("tools") and body.get("tool_choice") != "none" and step < tool_steps:
        writer.write(tool_step(frames, step, tool_ms, received))
        await writer.drain()
        return
    if rate <= 0:
        if first_delay:
            await asyncio.sleep(first_delay)
        parts = [frames.delta(f"⟨i=0 t={time.monotonic_ns()} r={received}⟩", field(0))]
        parts.extend(
            frames.delta(f"⟨i={i} t={time.monotonic_ns()}⟩", field(i)) for i in range(1, deltas)
        )
        writer.write(b"".join(parts))
        Stats.deltas += deltas
    else:
        loop = asyncio.get_running_loop()
        start = loop.time() + first_delay
        for i in range(deltas):
            wait = start + i / rate - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            stamp = time.monotonic_ns()
            text = f"⟨i=0 t={stamp} r={received}⟩" if i == 0 else f"⟨i={i} t={stamp}⟩"
            writer.write(frames.delta(text, field(i)))
            Stats.deltas += 1
            if writer.transport.get_write_buffer_size() > 1 << 20:
                await writer.drain()  # a stuck reader: stop buffering without bound
    prompt_tokens = sum(len(str(m.get("content", ""))) for m in messages) // 4
    writer.write(frames.tail(prompt_tokens, deltas))
    await writer.drain()


async def serve(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    from bench.client import run

    run(serve(args.port))
    sys.exit(0)


if __name__ == "__main__":
    main()
