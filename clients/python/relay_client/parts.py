"""An answer's parts, in order, and how each event changes them (API.md, Tools: Stored).

Parts are what a front end renders: `reasoning` and `text` runs (one part for
each run that nothing else interrupts, as relay stores them) and `tool`
calls, each tagged with its `step`. A `start` with `from_step` k drops the
parts of step k and later: the new attempt streams them again.

Each text and reasoning part counts the events folded into it (`pieces`),
so that `end`'s `chunks` and `reasoning_chunks` can be checked; a part
loaded from a snapshot has no count (`pieces` None).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import events as ev

TEXT = "text"
REASONING = "reasoning"
TOOL = "tool"
KIND_OF_EVENT = {ev.CHUNK: TEXT, ev.REASONING: REASONING}
WAITING_STATUSES = ("waiting_approval", "waiting_output")


@dataclass
class Part:
    """One part of an answer; the tool fields are None on text and reasoning parts."""

    type: str
    step: int = 0
    text: str = ""
    pieces: int | None = 0
    call_id: str | None = None
    name: str | None = None
    arguments: Any = None
    runs_on: str | None = None
    status: str | None = None  # a tool's: running, waiting_approval, ..., ok, error
    output: Any = None
    error: str | None = None
    approval_id: str | None = None

    @classmethod
    def stored(cls, raw: dict[str, Any]) -> Part:
        """A part as the snapshot gives it."""
        fields = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        return cls(**{**fields, "pieces": None})


def append_text(parts: list[Part], kind: str, step: int, text: str) -> None:
    """A chunk or reasoning piece: the last part grows, or a new run begins."""
    last = parts[-1] if parts else None
    if last is not None and last.type == kind and last.step == step:
        last.text += text
        if last.pieces is not None:
            last.pieces += 1
        return
    parts.append(Part(kind, step, text, pieces=1))


def tool_called(parts: list[Part], data: dict[str, Any]) -> None:
    """A `tool_call`: waiting for a person, for the front end (a client tool), or running."""
    if data.get("approval_id"):
        status = "waiting_approval"
    elif data.get("runs_on") == "client":
        status = "waiting_output"
    else:
        status = "running"
    parts.append(
        Part(
            TOOL,
            int(data.get("step", 0)),
            call_id=data.get("call_id"),
            name=data.get("name"),
            arguments=data.get("arguments"),
            runs_on=data.get("runs_on", "server"),
            status=status,
            approval_id=data.get("approval_id"),
        )
    )


def find_tool(parts: list[Part], call_id: Any) -> Part | None:
    return next((p for p in reversed(parts) if p.type == TOOL and p.call_id == call_id), None)


def tool_finished(parts: list[Part], data: dict[str, Any]) -> None:
    part = find_tool(parts, data.get("call_id"))
    if part is not None:
        part.status, part.output, part.error = (
            data.get("status"),
            data.get("output"),
            data.get("error"),
        )


def tools_waiting(parts: list[Part], data: dict[str, Any]) -> None:
    for item in data.get("for") or []:
        part = find_tool(parts, item.get("call_id"))
        if part is not None:
            part.status = "waiting_approval" if item.get("kind") == "approval" else "waiting_output"


def show_given(parts: list[Part], given: dict[str, tuple[str, Any, str | None]]) -> None:
    """Tool parts still waiting for an input that was given show it (status, output, error)."""
    for part in parts:
        if part.type == TOOL and part.status in WAITING_STATUSES and part.call_id in given:
            part.status, part.output, part.error = given[part.call_id]


def from_message(message: dict[str, Any]) -> list[Part]:
    """The parts of a stored or snapshot message; reasoning, then text, when it has none."""
    if isinstance(message.get("parts"), list):
        return [Part.stored(raw) for raw in message["parts"]]
    parts = []
    if message.get("reasoning"):
        parts.append(Part(REASONING, 0, message["reasoning"], pieces=None))
    if message.get("content"):
        parts.append(Part(TEXT, 0, message["content"], pieces=None))
    return parts


def joined(parts: list[Part], kind: str) -> str:
    return "".join(p.text for p in parts if p.type == kind)


def counted(parts: list[Part], kind: str) -> int | None:
    """Events folded into the parts of `kind`, or None when some came from a snapshot."""
    pieces = [p.pieces for p in parts if p.type == kind]
    return None if None in pieces else sum(p for p in pieces if p is not None)


def whole(parts: list[Part], end: dict[str, Any], counts_known: bool) -> bool:
    """True when `end`'s lengths (and counts, where known) match the parts."""
    checks = [(TEXT, "text_length", "chunks"), (REASONING, "reasoning_length", "reasoning_chunks")]
    for kind, length_key, count_key in checks:
        length = end.get(length_key)
        if isinstance(length, int) and len(joined(parts, kind)) != length:
            return False
        count, expected = counted(parts, kind), end.get(count_key)
        if counts_known and count is not None and isinstance(expected, int) and count != expected:
            return False
    return True
