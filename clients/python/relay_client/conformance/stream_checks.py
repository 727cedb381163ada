"""Checks of the stream: one answer, read every way API.md offers, must read the same.

Each function is one row of the table; it returns a detail, or raises
Failed or Skipped (report.py).
"""

from __future__ import annotations

import json
import time

from ..events import CHUNK, END, ERROR, REASONING, START, id_after
from .report import Failed, Skipped, expect
from .state import State
from .wire import EventKey, valid_id

KNOWN_EVENTS = {START, CHUNK, REASONING, END, ERROR, "reset", "tool_call", "tool_result", "waiting"}


def health(state: State) -> str:
    for path in ("/healthz", "/readyz"):
        response = state.deployment.request("GET", path, auth=False)
        expect(response.status_code == 200, f"GET {path}: status {response.status_code}")
    return "/healthz and /readyz answer 200"


def create_session(state: State) -> str:
    state.session_id = state.new_session()
    return f"201, session {state.session_id}"


def send_prompt(state: State) -> str:
    deployment, path = state.deployment, f"/api/sessions/{state.sid}/messages"
    response = deployment.post_prompt(state.sid, state.prompt, state.key)
    expect(response.status_code == 202, f"POST {path}: status {response.status_code}")
    body = response.json()
    for name in ("session_id", "message_id", "status", "events_url", "poll_url"):
        expect(isinstance(body.get(name), str), f"202 body without {name!r}: {body}")
    expect(body["status"] == "queued", f"status {body['status']!r}, not 'queued'")
    state.message_id = body["message_id"]
    again = deployment.post_prompt(state.sid, state.prompt, state.key)
    expect(again.status_code == 202, f"the same Idempotency-Key again: status {again.status_code}")
    expect(again.json().get("message_id") == state.message_id, "a replay named another message")
    replayed = again.headers.get("Idempotent-Replayed", "")
    expect(replayed.lower() == "true", f"a replay without Idempotent-Replayed: true ({replayed!r})")
    return f"202, message {state.message_id}; the same key replays it"


def event_format(state: State) -> str:
    raw = state.uninterrupted()
    media = raw.headers.get("content-type", "")
    expect(media.startswith("text/event-stream"), f"Content-Type {media!r}")
    expect("no-cache" in raw.headers.get("cache-control", ""), "Cache-Control is not no-cache")
    expect(raw.headers.get("x-accel-buffering") == "no", "X-Accel-Buffering is not no")
    expect(raw.first_field == "retry", f"the stream starts with {raw.first_field!r}, not retry:")
    for frame in raw.frames:
        for name in ("id", "event", "data"):
            count = len(frame.values(name))
            expect(count == 1, f"event {frame.id}: {count} {name} lines, not one")
        expect(frame.event in KNOWN_EVENTS, f"event {frame.id}: unknown type {frame.event!r}")
        data = frame.data()
        expect(isinstance(data, dict), f"event {frame.id}: data is not a JSON object")
        expect(isinstance(data.get("message_id"), str), f"event {frame.id}: no message_id")
    mine = [f for f in raw.frames if f.data().get("message_id") == state.mid]
    expect(mine and mine[0].event == START, "the stream does not begin with the answer's start")
    expect(isinstance(mine[0].data().get("attempt"), int), "start has no attempt number")
    return f"{len(raw.frames)} events, each id/event/data once, after retry:"


def event_ids(state: State) -> str:
    ids = state.ids()
    for previous, current in zip([None, *ids], ids, strict=False):
        expect(valid_id(current), f"id {current!r} is not <ms>-<seq> within 64 bits")
        if previous is not None and not id_after(current, previous):
            word = "repeated" if current == previous else "out of order"
            raise Failed(f"id {current} {word} (after {previous})")
    return f"{len(ids)} ids, strictly increasing"


def end_counts(state: State) -> str:
    frames = [f for f in state.uninterrupted().frames if f.data().get("message_id") == state.mid]
    last = max(i for i, f in enumerate(frames) if f.event == START)
    attempt = frames[last:]
    end = attempt[-1].data()
    expect(attempt[-1].event == END, f"the answer ended with {attempt[-1].event}: {end}")
    text = "".join(f.data()["text"] for f in attempt if f.event == CHUNK)
    thought = "".join(f.data()["text"] for f in attempt if f.event == REASONING)
    counts = {
        "chunks": sum(f.event == CHUNK for f in attempt),
        "text_length": len(text),
        "reasoning_chunks": sum(f.event == REASONING for f in attempt),
        "reasoning_length": len(thought),
    }
    for name, counted in counts.items():
        expect(end.get(name) == counted, f"end says {name}={end.get(name)}, the stream {counted}")
    snapshot = state.deployment.request("GET", f"/api/sessions/{state.sid}").json()
    stored = next((m for m in snapshot["messages"] if m.get("id") == state.mid), None)
    expect(stored is not None, "the snapshot after end does not hold the answer")
    expect(stored["status"] == "done", f"the snapshot says {stored['status']!r} after end")
    expect(stored["content"] == text, "the stored content differs from the streamed text")
    end_id = attempt[-1].id or ""
    expect(not id_after(end_id, snapshot["cursor"]), "the snapshot's cursor is before the end")
    return f"{counts['chunks']} chunks, {counts['text_length']} characters, stored as streamed"


def cut_points(ids: list[str]) -> list[int]:
    """Where to cut: after the first event, in the middle, before the last."""
    return sorted({0, len(ids) // 2, max(len(ids) - 2, 0)})


def resumed(state: State, header: str | None, query: str | None) -> list[EventKey]:
    raw = state.deployment.read_sse(
        f"/api/sessions/{state.sid}/events",
        until=lambda frame: frame.ends(state.mid),
        headers={"Last-Event-ID": header} if header else None,
        params={"last_event_id": query} if query else None,
        seconds=state.options.answer_seconds,
    )
    expect(raw.status == 200, f"resume from {header or query}: status {raw.status}")
    return raw.keys()


def same_tail(got: list[EventKey], expected: list[EventKey], cursor: str, how: str = "") -> None:
    """Failed, naming the first event that differs, unless `got` is `expected`."""
    if got == expected:
        return
    where = f"after {cursor}{how}"
    if got and got[0][0] == cursor:
        raise Failed(f"{where}: event {cursor} came again (resumed one event early)")
    for n, (mine, theirs) in enumerate(zip(got, expected, strict=False)):
        if mine != theirs:
            raise Failed(
                f"{where}: event {n + 1} is {mine[0]} {mine[1]}, expected {theirs[0]} {theirs[1]}"
            )
    raise Failed(f"{where}: {len(got)} events, expected {len(expected)}")


def resume_by_header(state: State) -> str:
    ids, keys = state.ids(), state.keys()
    for k in cut_points(ids):
        same_tail(resumed(state, ids[k], None), keys[k + 1 :], ids[k])
    # The header wins over the query parameter (API.md, Endpoints).
    k = cut_points(ids)[-1]
    same_tail(resumed(state, ids[k], ids[0]), keys[k + 1 :], ids[k], " (header over query)")
    return f"identical from {len(cut_points(ids))} cut points; the header wins"


def resume_by_query(state: State) -> str:
    ids, keys = state.ids(), state.keys()
    for k in cut_points(ids):
        same_tail(resumed(state, None, ids[k]), keys[k + 1 :], ids[k])
    return f"identical from {len(cut_points(ids))} cut points"


def poll_parity(state: State) -> str:
    ids, keys = state.ids(), state.keys()
    deployment = state.deployment
    same_tail(deployment.poll_all(state.sid, "0-0"), keys, "0-0", " (long-poll)")
    for k in cut_points(ids):
        same_tail(deployment.poll_all(state.sid, ids[k]), keys[k + 1 :], ids[k], " (long-poll)")
    started = time.monotonic()
    quiet = deployment.poll(state.sid, ids[-1], timeout=1)
    waited = time.monotonic() - started
    expect(quiet == {"events": [], "cursor": ids[-1], "reset": False}, f"a quiet poll: {quiet}")
    expect(waited >= 0.5, f"a quiet poll with timeout=1 answered after {waited:.2f}s")
    return f"{len(keys)} events, as SSE; a quiet poll waits and keeps the cursor"


def heartbeats(state: State) -> str:
    if state.options.skip_heartbeats:
        raise Skipped("--skip-heartbeats")
    wait = state.options.heartbeat_seconds
    raw = state.deployment.read_sse(
        f"/api/sessions/{state.sid}/events",
        headers={"Last-Event-ID": state.ids()[-1]},
        seconds=wait,
        stop_on_comment=True,
    )
    expect(raw.status == 200, f"GET events: status {raw.status}")
    expect(not raw.frames, f"a quiet stream sent events: {[f.id for f in raw.frames]}")
    expect(raw.comments, f"no keep-alive comment within {wait:g}s (see --heartbeat-seconds)")
    return f"a comment line ({json.dumps(raw.comments[0])}) on a quiet stream"
