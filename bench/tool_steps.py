"""Scenario 8, answers in steps (issue 23): what relay adds to each tool call over the tool's own time.

Each answer calls the bench's tool (bench/tools.py, a Python tool that
waits `tool_ms`) in `tool_steps` steps, one call each, then streams its
text. One answer at a time, on a fresh web and worker with
TOOLS_MODULE=bench.tools. Every time is CLOCK_MONOTONIC, one clock for the
machine: the model server stamps each step's request and the call it
writes (in the call's arguments, so they travel in the `tool_call` event),
the tool stamps its start and end (its output, in `tool_result`), the last
step's first delta carries the model's stamps (`r=`, `t=`), and this
process stamps each event as it reads it off the SSE stream.

Per tool call, relay's time is

    (tool started - model wrote the call)      the rest of the model's stream, the
                                               step recorded, `tool_call` written,
                                               the call started in the journal, its
                                               arguments checked
  + (next step requested - tool ended)         the result recorded, `tool_result`
                                               written, the history built, the
                                               request sent

which leaves out the tool's own time and the model's. Issue 23's target: at
most 5 ms at p50. Two figures a client sees are printed beside it: from its
`tool_call` event to the tool starting (negative: the tool started first),
and from the tool's end to the next step's first piece reaching it.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

import httpx

from bench.client import percentiles
from bench.report import Row, at_most, say
from bench.stack import Stack

MAX_RELAY_P50_MS = 5
STAMP = re.compile(r"⟨i=(\d+) t=(\d+)(?: r=(\d+))?⟩")


def tools(stack: Stack, plan: Any, floor: dict[str, Any]) -> tuple[list[Row], dict[str, Any]]:
    name = "8 tool steps"
    rounds, steps, tool_ms = plan.tool_rounds, plan.tool_steps, plan.tool_ms
    stack.start_app(TOOLS_MODULE="bench.tools")
    prompt = f"bench n=5 rate=0 tools={steps} tool_ms={tool_ms}"
    warmup = 3
    sessions = stack.seed_sessions(rounds + warmup)
    samples: list[dict[str, int]] = []
    errors: list[str] = []
    say(f"tools: {rounds} answers of {steps} tool steps ({tool_ms} ms each), one at a time")
    try:
        with httpx.Client(base_url=stack.web_url, timeout=30) as http:
            for index, session_id in enumerate(sessions):
                try:
                    found = answer(stack, http, session_id, prompt, steps)
                except Exception as exc:  # a round that fails is counted, the rest go on
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                if index >= warmup:
                    samples += found
    finally:
        stack.stop_app()
    return rows(name, samples, errors, tool_ms), details(samples, errors)


def answer(
    stack: Stack, http: httpx.Client, session_id: str, prompt: str, steps: int
) -> list[dict[str, int]]:
    """Post one answer and read its stream; each tool call's stamps."""
    seen: list[tuple[int, str, dict[str, Any]]] = []
    opened, ended = threading.Event(), threading.Event()
    reader = threading.Thread(
        target=_read, args=(stack.web_url, session_id, seen, opened, ended), daemon=True
    )
    reader.start()
    if not opened.wait(10):
        raise RuntimeError("the event stream did not open")
    stack.post_prompt(http, session_id, prompt)
    if not ended.wait(30):
        raise RuntimeError("the answer did not end within 30 s")
    reader.join(5)
    return stamps(seen, steps)


def _read(
    base: str,
    session_id: str,
    seen: list[tuple[int, str, dict[str, Any]]],
    opened: threading.Event,
    ended: threading.Event,
) -> None:
    """Follow the session's SSE, stamping each event as it is read, until `end` or `error`."""
    url = f"{base}/api/sessions/{session_id}/events"
    with httpx.stream("GET", url, timeout=httpx.Timeout(40, connect=5)) as response:
        event, data = "", ""
        for line in response.iter_lines():
            now = time.monotonic_ns()
            if line.startswith("retry:"):
                opened.set()
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
            elif not line and event:
                seen.append((now, event, json.loads(data)))
                if event in ("end", "error"):
                    ended.set()
                    return
                event, data = "", ""


def stamps(seen: list[tuple[int, str, dict[str, Any]]], steps: int) -> list[dict[str, int]]:
    """Per tool call: the model's stamps, the tool's, and when this client read each event."""
    calls = [(at, data) for at, event, data in seen if event == "tool_call"]
    results = [data for _, event, data in seen if event == "tool_result"]
    first = next((at, data) for at, event, data in seen if event == "chunk")
    if len(calls) != steps or len(results) != steps:
        raise RuntimeError(f"{len(calls)} calls and {len(results)} results, not {steps}")
    stamp = STAMP.search(first[1]["text"])
    if stamp is None or stamp[3] is None:
        raise RuntimeError("the last step's first piece carries no stamp")
    # What follows each call: the next step (its request, and its first piece read here).
    next_requested = [c[1]["arguments"]["requested_ns"] for c in calls[1:]] + [int(stamp[3])]
    next_read = [c[0] for c in calls[1:]] + [first[0]]
    found = []
    for (read_at, call), result, requested, piece_read in zip(
        calls, results, next_requested, next_read, strict=True
    ):
        output = result["output"]
        found.append(
            {
                "call_sent": call["arguments"]["sent_ns"],
                "call_read": read_at,
                "tool_started": output["started_ns"],
                "tool_ended": output["ended_ns"],
                "next_requested": requested,
                "next_piece_read": piece_read,
            }
        )
    return found


def _figures(samples: list[dict[str, int]]) -> dict[str, Any]:
    def each(first: str, then: str) -> list[int]:
        return [s[then] - s[first] for s in samples]

    to_start, after_end = each("call_sent", "tool_started"), each("tool_ended", "next_requested")
    return {
        "relay": percentiles([a + b for a, b in zip(to_start, after_end, strict=True)]),
        "call_to_tool_start": percentiles(to_start),
        "tool_end_to_next_request": percentiles(after_end),
        "tool": percentiles(each("tool_started", "tool_ended")),
        "event_to_tool_start": percentiles(each("call_read", "tool_started")),
        "result_to_next_piece": percentiles(each("tool_ended", "next_piece_read")),
    }


def rows(name: str, samples: list[dict[str, int]], errors: list[str], tool_ms: float) -> list[Row]:
    figures = _figures(samples) if samples else {}

    def p50(key: str) -> float | None:
        return figures.get(key, {}).get("p50_ms")

    relay = p50("relay")
    found = [
        Row(
            name,
            f"relay time per tool call p50 ({len(samples)} calls)",
            relay,
            "ms",
            f"<= {MAX_RELAY_P50_MS} ms",
            at_most(MAX_RELAY_P50_MS)(relay),
        ),
        Row(name, "relay time per tool call p99", figures.get("relay", {}).get("p99_ms"), "ms"),
        Row(name, "  of which model's call -> tool started p50", p50("call_to_tool_start"), "ms"),
        Row(
            name, "  of which tool ended -> next request p50", p50("tool_end_to_next_request"), "ms"
        ),
        Row(name, f"the tool's own time p50 (asked {tool_ms:g} ms)", p50("tool"), "ms"),
        Row(name, "client's `tool_call` -> tool started p50", p50("event_to_tool_start"), "ms"),
        Row(
            name,
            "tool ended -> next step's first piece at the client p50",
            p50("result_to_next_piece"),
            "ms",
        ),
    ]
    if errors:
        found.append(Row(name, "answers that failed", len(errors), "", "0", False))
    return found


def details(samples: list[dict[str, int]], errors: list[str]) -> dict[str, Any]:
    return {**(_figures(samples) if samples else {}), "calls": len(samples), "errors": errors[:10]}
