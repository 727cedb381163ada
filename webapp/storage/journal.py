"""The journal of an answer in steps: what makes a tool call run exactly once (API.md, Tools).

One hash per session (keys.journal) holds the active answer's journal; the
first step an answer records replaces an earlier answer's. Every write of a
worker is fenced like a stream write: only the attempt named in the
session's `active` hash writes (lua/_fence.lua).

    step:<n>        a step's whole model output (text, reasoning, tool calls),
                    recorded before any of its tools runs; first record wins
    call:<call_id>  a tool call's progress: pending -> running -> a result,
                    or waiting for an input (a person's decision or a client
                    tool's output) that arrives once
    paused          "waiting" while the answer waits for inputs, "resuming"
                    once the last one came and a new attempt is due
    waits           the (call_id, kind) pairs a paused answer waits for
    resume_attempt  the attempt due to go on

The rules, each one script:
- `record_step`: a step's output, and a record for each of its calls.
  A new attempt reads it and never asks the model for that step again. A
  call that runs at once is recorded running already, by this attempt:
  the write that records its step is the one that marks it started.
- `start_call` before a server tool runs, `record_result` when it ends.
  A call found `running` by a later attempt was started and never finished:
  the write side runs it again only if it is idempotent, else its result is
  `in_doubt`. A call with a result never changes.
- `pause`: the answer waits, holding no worker and no timer (its claim loses
  its expiry). Unless every input arrived meanwhile: then it goes on; or a
  cancel was asked: then it ends (the cancel's `wake` found nothing paused).
- `give_input` (the web): stores a decision or an output before its 202.
  The same verdict again is accepted, another is refused (`settled`). The
  input that completes a paused answer's waits makes it due to go on as the
  next attempt, which the caller queues; a retried input answers the same,
  so a web process lost between storing and queueing is repaired by the
  client's retry.
- `resume`: the due attempt takes the stream over, once: a duplicate job of
  the same attempt is stale.
- `wake`: a cancel of a paused answer makes it due too, so that a worker
  writes its end (only workers write streams).
- `retire`: the answer ended; its journal expires with its stream.

Values are JSON text. The scripts decode a call's record (small fields of
ours) but never a result, an input or the model's arguments: cjson would
turn an empty list into an object and round big numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from webapp.storage import keys

# A call's status before it has a result (then: the result's status).
PENDING = "pending"
RUNNING = "running"
# What a worker's write finds (`Outcome.status`) besides `running`.
OK = "ok"
EXISTS = "exists"
FINAL = "final"
FENCED = "fenced"
# What `pause` answers besides FENCED.
PAUSED, GO_ON, CANCELLED = keys.PAUSED, keys.GO_ON, keys.CANCELLED


@dataclass(frozen=True, slots=True)
class NewCall:
    """A tool call as a step records it: who runs it, and what it waits for first."""

    call_id: str
    name: str
    waits_for: str | None  # "approval", "output" or None
    # It runs as soon as the step is recorded: recorded running, by the
    # recording attempt, in the same write (no `start_call` of its own).
    runs_now: bool = False

    def record(self, step: int, attempt: int) -> str:
        record: dict[str, Any] = {"step": step, "name": self.name, "waits_for": self.waits_for}
        if self.runs_now:
            record.update(status=RUNNING, attempt=attempt)
        else:
            record["status"] = PENDING if self.waits_for is None else f"waiting_{self.waits_for}"
        return _dumps(record)


@dataclass(frozen=True, slots=True)
class Call:
    """A tool call's progress, as the journal holds it."""

    call_id: str
    step: int
    name: str
    waits_for: str | None
    status: str  # pending, running, waiting_approval, waiting_output, or a result's status
    attempt: int | None  # the attempt that started it running
    result: dict[str, Any] | None  # {"status", "output", "error"} once it has one
    input: dict[str, Any] | None  # the decision or the client's output, once given

    @classmethod
    def parse(cls, call_id: str, raw: str) -> Call:
        record = json.loads(raw)
        return cls(
            call_id=call_id,
            step=int(record["step"]),
            name=str(record["name"]),
            waits_for=record.get("waits_for"),
            status=str(record["status"]),
            attempt=record.get("attempt"),
            result=json.loads(record["result"]) if "result" in record else None,
            input=json.loads(record["input"]) if "input" in record else None,
        )


@dataclass(frozen=True, slots=True)
class Journal:
    """An answer's journal as one read gives it."""

    steps: dict[int, dict[str, Any]]
    calls: dict[str, Call]
    paused: str | None  # keys.PAUSE_WAITING, keys.PAUSE_RESUMING or None
    waits: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a worker's journal write found: `ok`, or why not, with the record in the way."""

    status: str  # ok, exists, final, running, unknown, fenced
    record: str | None = None


@dataclass(frozen=True, slots=True)
class InputOutcome:
    """What `give_input` did: stored, same, settled, not_waiting or unknown; the attempt due."""

    verdict: str
    resume_attempt: int | None = None


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _keys(session_id: str) -> list[str]:
    return [keys.active(session_id), keys.journal(session_id)]


def record_step(
    client: redis.Redis,
    session_id: str,
    message_id: str,
    attempt: int,
    step: int,
    output: dict[str, Any],
    calls: list[NewCall],
) -> Outcome:
    """Record a step's whole model output and its calls; `exists` gives the first record back."""
    pairs = [value for call in calls for value in (call.call_id, call.record(step, attempt))]
    reply = keys.JOURNAL_STEP_SCRIPT(
        client, _keys(session_id), [message_id, attempt, step, _dumps(output), *pairs]
    )
    return _outcome(reply)


def start_call(
    client: redis.Redis, session_id: str, message_id: str, attempt: int, call_id: str
) -> Outcome:
    """Mark a server call running before it runs: `ok`, or `running`/`final` with its record."""
    reply = keys.JOURNAL_CALL_SCRIPT(
        client, _keys(session_id), [message_id, attempt, call_id, "start"]
    )
    return _outcome(reply)


def record_result(
    client: redis.Redis,
    session_id: str,
    message_id: str,
    attempt: int,
    call_id: str,
    result: dict[str, Any],
) -> Outcome:
    """Record a call's result (`{"status", "output", "error"}`); `final` if it had one already."""
    args = [message_id, attempt, call_id, "result", _dumps(result), result["status"]]
    return _outcome(keys.JOURNAL_CALL_SCRIPT(client, _keys(session_id), args))


def pause(
    client: redis.Redis,
    session_id: str,
    message_id: str,
    attempt: int,
    waits: list[tuple[str, str]],
) -> str:
    """Pause the answer for these inputs: `paused`, `go_on` (all came already), `cancelled` or `fenced`."""
    listed = _dumps([{"call_id": call_id, "kind": kind} for call_id, kind in waits])
    call_ids = [call_id for call_id, _ in waits]
    reply = keys.JOURNAL_PAUSE(client, _keys(session_id), [message_id, attempt, listed, *call_ids])
    return _text(reply[0])


def give_input(
    client: redis.Redis,
    session_id: str,
    message_id: str,
    call_id: str,
    kind: str,
    given: dict[str, Any],
    verdict: str,
) -> InputOutcome:
    """Store a decision or a client output for a waiting call (the web, before its 202).

    `verdict` is what makes two inputs the same (approved or not; the output
    itself). A `resume_attempt` in the outcome is due to be queued.
    """
    reply = keys.JOURNAL_INPUT(
        client, _keys(session_id), [message_id, call_id, kind, _dumps(given), verdict]
    )
    due = _text(reply[1]) if len(reply) > 1 else ""
    return InputOutcome(_text(reply[0]), int(due) if due else None)


def resume(client: redis.Redis, session_id: str, message_id: str, attempt: int) -> bool:
    """The due attempt of a paused answer takes the stream over; False if it is not the one."""
    return bool(keys.JOURNAL_RESUME(client, _keys(session_id), [message_id, attempt]))


def wake(client: redis.Redis, session_id: str, message_id: str) -> int | None:
    """Make a paused answer due without an input (a cancel); the attempt to queue, or None."""
    due = _text(keys.JOURNAL_WAKE(client, _keys(session_id), [message_id]))
    return int(due) if due else None


def retire(client: redis.Redis, session_id: str, message_id: str, seconds: int) -> bool:
    """The answer ended: keep its journal `seconds` more (as its stream), then forget it."""
    return bool(keys.JOURNAL_RETIRE(client, _keys(session_id), [message_id, seconds]))


def read(client: redis.Redis, session_id: str, message_id: str) -> Journal | None:
    """The journal of `message_id`; None when the session's journal is another answer's."""
    fields = client.hgetall(keys.journal(session_id))
    if _text(fields.get(keys.JOURNAL_MESSAGE_ID)) != message_id:
        return None
    steps: dict[int, dict[str, Any]] = {}
    calls: dict[str, Call] = {}
    for raw_name, raw_value in fields.items():
        name, value = _text(raw_name), _text(raw_value)
        if name.startswith(keys.JOURNAL_STEP):
            steps[int(name.removeprefix(keys.JOURNAL_STEP))] = json.loads(value)
        elif name.startswith(keys.JOURNAL_CALL):
            call_id = name.removeprefix(keys.JOURNAL_CALL)
            calls[call_id] = Call.parse(call_id, value)
    listed = json.loads(_text(fields.get(keys.JOURNAL_WAITS)) or "[]")
    return Journal(
        steps=steps,
        calls=calls,
        paused=_text(fields.get(keys.JOURNAL_PAUSED)) or None,
        waits=[(wait["call_id"], wait["kind"]) for wait in listed],
    )


def _outcome(reply: list[str | bytes]) -> Outcome:
    return Outcome(_text(reply[0]), _text(reply[1]) if len(reply) > 1 else None)


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value
