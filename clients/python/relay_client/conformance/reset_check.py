"""The `reset` check: a cursor older than what the stream retains (API.md, Events).

relay sends `reset` only when the cursor is below the stream's floor, and a
stream has a floor only once it was trimmed (STREAM_MAXLEN entries kept per
session, applied when an answer ends) or expired. An untrimmed stream keeps
everything, so no cursor is too old for it: `1-0` there reads the whole
stream, as it must. The check therefore makes a trimmed stream:
- a session of its own, with `--reset-prompts` answers (two by default),
  which trim it once the deployment's STREAM_MAXLEN is below that many
  entries (CI runs relay with a small one);
- or `--reset-session SID`, a session the operator knows to be trimmed.
The session is never followed before the check: it waits for each answer
through the snapshot only. A web process that follows a session keeps its
newest entries in memory and serves a cursor from them even after Redis
trimmed them (relay's hub), which is right (nothing is lost) but would hide
the reset. On a stream that is still whole, `1-0` must read everything
without a reset, and the check is skipped, saying why.

On a trimmed stream, `1-0` (below any floor) must get:
- from a long-poll: `{"events": [], "cursor": <floor>, "reset": true}`, and
  a poll from that cursor reads what is retained;
- from SSE: a `reset` event with no id first, then what is retained.
"""

from __future__ import annotations

import time

from .report import Failed, Skipped, expect
from .state import State
from .wire import EventKey, valid_id

BELOW_ANY_FLOOR = "1-0"


def retained(state: State, session_id: str) -> list[EventKey]:
    return state.deployment.poll_all(session_id, "0-0")


def answered_unfollowed(state: State) -> str:
    """A new session with `--reset-prompts` answers, awaited through its snapshot only."""
    session_id = state.new_session()
    for n in range(state.options.reset_prompts):
        response = state.deployment.post_prompt(session_id, f"{state.prompt} (reset {n + 1})")
        expect(response.status_code == 202, f"a prompt: status {response.status_code}")
        wait_in_snapshot(state, session_id, response.json()["message_id"])
    return session_id


def wait_in_snapshot(state: State, session_id: str, message_id: str) -> None:
    deadline = time.monotonic() + state.options.answer_seconds
    while time.monotonic() < deadline:
        snapshot = state.deployment.request("GET", f"/api/sessions/{session_id}").json()
        if snapshot.get("active_message_id") != message_id and any(
            m.get("id") == message_id for m in snapshot["messages"]
        ):
            return
        time.sleep(0.25)  # a snapshot every quarter second, never a follower
    raise Failed(f"message {message_id} did not end within {state.options.answer_seconds:g}s")


def reset(state: State) -> str:
    if not (state.options.reset_session or state.options.reset_prompts > 0):
        raise Skipped("--reset-prompts 0 and no --reset-session")
    session_id = state.options.reset_session or answered_unfollowed(state)
    body = state.deployment.poll(session_id, BELOW_ANY_FLOOR)
    if not body["reset"]:
        expect(body["events"], "a poll after 1-0 on a stream with answers read nothing")
        raise Skipped(
            "the stream was not trimmed, so nothing is too old to reset (1-0 read it whole); "
            "use --reset-session SID, more --reset-prompts, or a small STREAM_MAXLEN"
        )
    keys = retained(state, session_id)
    expect(keys, "a trimmed stream that retains nothing")
    floor = check_poll_reset(state, session_id, keys)
    check_sse_reset(state, session_id, keys)
    return f"1-0 resets to {floor} by long-poll and SSE; {len(keys)} entries retained"


def check_poll_reset(state: State, session_id: str, keys: list[EventKey]) -> str:
    body = state.deployment.poll(session_id, BELOW_ANY_FLOOR)
    expect(body["reset"] is True, f"a poll after 1-0 did not reset: {str(body)[:120]}")
    expect(body["events"] == [], "a reset poll carried events")
    floor = body["cursor"]
    expect(valid_id(floor), f"a reset poll's cursor {floor!r} is not an entry id")
    expect(
        state.deployment.poll_all(session_id, floor) == keys,
        f"a poll from the reset's cursor {floor} does not read what is retained",
    )
    return floor


def check_sse_reset(state: State, session_id: str, keys: list[EventKey]) -> None:
    last = keys[-1][0]
    raw = state.deployment.read_sse(
        f"/api/sessions/{session_id}/events",
        headers={"Last-Event-ID": BELOW_ANY_FLOOR},
        until=lambda frame: frame.id == last,
        seconds=30,
    )
    expect(raw.status == 200, f"SSE from 1-0: status {raw.status}")
    expect(raw.frames, "SSE from 1-0 sent nothing")
    first = raw.frames[0]
    expect(first.event == "reset", f"SSE from 1-0 began with {first.event!r}, not reset")
    expect(not first.values("id"), "the reset event has an id")
    data = first.data()
    expect(isinstance(data, dict) and isinstance(data.get("reason"), str), "reset without reason")
    got = [frame.key() for frame in raw.frames[1:]]
    expect(got == keys, f"after the reset SSE sent {len(got)} events, not the {len(keys)} retained")
