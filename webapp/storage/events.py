"""Events of a session stream: names, payloads, cursors, and their two wire formats.

A stream entry has two fields (keys.py), the event type and its data: one
JSON object, built here and serialised once by the writer. Readers never
re-serialise `data`: the SSE frame and the long-poll JSON both splice the
stored text in as is (read/entries.py).

To add an event type: name it below, give it a payload builder beside the
others, have generation.py write it and snapshot.py fold it into the live
message; the hub, SSE and long-poll carry any event as it is.

Deliberate choices:
- `data` is produced by `json.dumps` (`dumps` below), which escapes every
  control character, so it is always a single line.
- A cursor is a Redis entry id `<ms>-<seq>` with both parts within 64 bits;
  anything else is rejected before it reaches Redis.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from webapp.exceptions import InvalidCursor

START = "start"
CHUNK = "chunk"
REASONING = "reasoning"
END = "end"
ERROR = "error"
RESET = "reset"
# An answer in steps (API.md, Tools): a call the model asked for, its result,
# and a pause for a person's decision or the front end's output.
TOOL_CALL = "tool_call"
TOOL_RESULT = "tool_result"
WAITING = "waiting"

# Events after which a message has nothing more to say.
FINAL_EVENTS = frozenset({END, ERROR})
# Events after which nothing more comes of a message until someone acts: the
# final ones, and a pause for a person's decision or the front end's output.
AT_REST_EVENTS = FINAL_EVENTS | {WAITING}

# `end`'s finish_reason: the model's own (stop, length, content_filter), or ours.
FINISH_STOP = "stop"
FINISH_CANCELLED = "cancelled"
# The finish reasons of `end` that a model can give (`cancelled` is relay's
# own); any other is an `upstream_error` (llm.py).
FINISH_REASONS = frozenset({FINISH_STOP, "length", "content_filter"})
# A model call that asked for tools ends its step so, whatever finish reason
# the server gave (write/tool_calls.py); never an answer's `end`.
FINISH_TOOL_CALLS = "tool_calls"

# Tools (API.md, "Tools"): where a tool runs, and `tool_result`'s statuses.
RUNS_ON_SERVER = "server"
RUNS_ON_CLIENT = "client"
TOOL_OK = "ok"
TOOL_ERROR = "error"
TOOL_DENIED = "denied"
TOOL_IN_DOUBT = "in_doubt"

# `error`'s codes (API.md, Events and Errors).
UPSTREAM_ERROR = "upstream_error"
UPSTREAM_TIMEOUT = "upstream_timeout"
WORKER_LOST = "worker_lost"
INTERNAL_ERROR = "internal_error"

# A tool call's status: in `tool_result` (the last four) and in a stored
# tool part (all of them).
TOOL_RUNNING = "running"
TOOL_WAITING_APPROVAL = "waiting_approval"
TOOL_WAITING_OUTPUT = "waiting_output"
TOOL_OK = "ok"
TOOL_ERROR = "error"
TOOL_DENIED = "denied"
TOOL_IN_DOUBT = "in_doubt"
TOOL_RESULT_STATUSES = frozenset({TOOL_OK, TOOL_ERROR, TOOL_DENIED, TOOL_IN_DOUBT})
# Where a tool runs, and what a `waiting` entry waits for.
RUNS_ON_SERVER = "server"
RUNS_ON_CLIENT = "client"
WAIT_APPROVAL = "approval"
WAIT_OUTPUT = "output"

# `reset`'s reason.
CURSOR_EXPIRED = "cursor_expired"

ZERO_ID = "0-0"
_U64_MAX = 2**64 - 1
_CURSOR = re.compile(r"\A([0-9]{1,20})-([0-9]{1,20})\Z")


def parse_cursor(raw: str) -> tuple[int, int]:
    """Return `(ms, seq)` of an entry id, or raise InvalidCursor."""
    match = _CURSOR.match(raw)
    if not match:
        raise InvalidCursor(raw)
    ms, seq = int(match[1]), int(match[2])
    if ms > _U64_MAX or seq > _U64_MAX:
        raise InvalidCursor(raw)
    return ms, seq


# Remembered: a long-poll compares about 14 ids (its channel's bisect, the
# followers' cursors), mostly the same few, and a hit costs a fifth of a parse.
@functools.lru_cache(maxsize=8192)
def id_key(entry_id: str) -> tuple[int, int]:
    """Sort key of a valid entry id (ids compare as number pairs, not text)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


# One encoder, built once: `json.dumps` with any option builds a new JSONEncoder
# on every call, about 0.6 us of the worker's CPU per event (issue 25).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps(data: dict[str, Any]) -> str:
    """Serialise event data the one way every writer does."""
    return _ENCODER.encode(data)


# -- payloads: each event's `data`, as API.md's Events table lists it ------------


def start_data(
    message_id: str, *, model: str, attempt: int, cached: bool, from_step: int = 0
) -> str:
    """`start`: a client drops what it shows of the message from `from_step` on."""
    return dumps(
        {
            "message_id": message_id,
            "model": model,
            "attempt": attempt,
            "cached": cached,
            "from_step": from_step,
        }
    )


def chunk_data(message_id: str, text: str, step: int = 0) -> str:
    return dumps({"message_id": message_id, "text": text, "step": step})


def reasoning_data(message_id: str, text: str, step: int = 0) -> str:
    return dumps({"message_id": message_id, "text": text, "step": step})


def tool_call_data(
    message_id: str,
    *,
    step: int,
    call_id: str,
    name: str,
    arguments: Any,
    runs_on: str,
    approval_id: str | None,
) -> str:
    """`tool_call`: `arguments` is the parsed object, or the model's text when it was not JSON."""
    return dumps(
        {
            "message_id": message_id,
            "step": step,
            "call_id": call_id,
            "name": name,
            "arguments": arguments,
            "runs_on": runs_on,
            "approval_id": approval_id,
        }
    )


def tool_result_data(
    message_id: str, *, step: int, call_id: str, status: str, output: Any, error: str | None
) -> str:
    """`tool_result`: `output` with `ok`, `error` with `error`; both null otherwise."""
    return dumps(
        {
            "message_id": message_id,
            "step": step,
            "call_id": call_id,
            "status": status,
            "output": output,
            "error": error,
        }
    )


def waiting_data(message_id: str, waits: list[tuple[str, str]]) -> str:
    """`waiting`: each (call_id, kind) the answer waits for; kind is approval or output."""
    return dumps(
        {
            "message_id": message_id,
            "for": [{"call_id": call_id, "kind": kind} for call_id, kind in waits],
        }
    )


def end_data(
    message_id: str,
    *,
    finish_reason: str | None,
    usage: dict[str, int] | None,
    duration_ms: int | None,
    chunks: int,
    text_length: int,
    reasoning_chunks: int = 0,
    reasoning_length: int = 0,
    steps: int = 1,
    tool_calls: int = 0,
) -> str:
    """`end`: the counts let a client check that what it shows is whole."""
    return dumps(
        {
            "message_id": message_id,
            "finish_reason": finish_reason,
            "usage": usage,
            "duration_ms": duration_ms,
            "chunks": chunks,
            "text_length": text_length,
            "reasoning_chunks": reasoning_chunks,
            "reasoning_length": reasoning_length,
            "steps": steps,
            "tool_calls": tool_calls,
        }
    )


def error_data(message_id: str, code: str, message: str) -> str:
    return dumps({"message_id": message_id, "error": {"code": code, "message": message}})


def reset_data(reason: str) -> str:
    return dumps({"reason": reason})
