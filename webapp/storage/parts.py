"""An answer's `parts`, folded from its events: the one place that knows their shape (API.md, Stored).

In order: `{"type": "reasoning", "step", "text"}` and `{"type": "text",
"step", "text"}`, one part for each run of reasoning or text that nothing
else interrupts, and `{"type": "tool", "step", "call_id", "name",
"arguments", "runs_on", "status", "output", "error"}` for each tool call.
`content` and `reasoning` are the concatenated texts.

The write side folds what it writes (the parts stored in SQL at the end),
the read side folds what it reads from the stream (a snapshot's live
answer): the same events give the same parts. A `start` with `from_step`
drops the parts of that step on, as a client does.
"""

from __future__ import annotations

from typing import Any

from webapp.storage import events

REASONING = "reasoning"
TEXT = "text"
TOOL = "tool"


class Parts:
    """The parts of one answer so far."""

    def __init__(self, parts: list[dict[str, Any]] | None = None) -> None:
        self.items: list[dict[str, Any]] = [dict(part) for part in parts or []]

    @classmethod
    def of_texts(cls, content: str, reasoning: str) -> Parts:
        """The parts of an answer stored before parts were: one step, reasoning first."""
        parts = cls()
        parts.add_text(REASONING, 0, reasoning)
        parts.add_text(TEXT, 0, content)
        return parts

    @property
    def content(self) -> str:
        return "".join(part["text"] for part in self.items if part["type"] == TEXT)

    @property
    def reasoning(self) -> str:
        return "".join(part["text"] for part in self.items if part["type"] == REASONING)

    def apply(self, event: str, data: dict[str, Any]) -> None:
        """Fold one event of the answer in; events that change no part are ignored."""
        if event == events.START:
            self.drop_from(int(data.get("from_step", 0)))
        elif event in (events.CHUNK, events.REASONING):
            kind = TEXT if event == events.CHUNK else REASONING
            self.add_text(kind, int(data.get("step", 0)), data.get("text", ""))
        elif event == events.TOOL_CALL:
            self.add_call(data)
        elif event == events.TOOL_RESULT:
            self.settle(data["call_id"], data["status"], data.get("output"), data.get("error"))

    def drop_from(self, step: int) -> None:
        self.items = [part for part in self.items if part["step"] < step]

    def add_text(self, kind: str, step: int, text: str) -> None:
        if not text:
            return
        last = self.items[-1] if self.items else None
        if last is not None and last["type"] == kind and last["step"] == step:
            last["text"] += text
        else:
            self.items.append({"type": kind, "step": step, "text": text})

    def add_call(self, data: dict[str, Any]) -> None:
        """A `tool_call` event's call, waiting or running as the event says."""
        if data.get("approval_id"):
            status = events.TOOL_WAITING_APPROVAL
        elif data.get("runs_on") == events.RUNS_ON_CLIENT:
            status = events.TOOL_WAITING_OUTPUT
        else:
            status = events.TOOL_RUNNING
        self.items.append(
            {
                "type": TOOL,
                "step": int(data.get("step", 0)),
                "call_id": data["call_id"],
                "name": data["name"],
                "arguments": data.get("arguments"),
                "runs_on": data.get("runs_on", events.RUNS_ON_SERVER),
                "status": status,
                "output": None,
                "error": None,
            }
        )

    def settle(self, call_id: str, status: str, output: Any, error: str | None) -> None:
        for part in self.items:
            if part["type"] == TOOL and part["call_id"] == call_id:
                part.update(status=status, output=output, error=error)

    def tools(self) -> list[dict[str, Any]]:
        return [part for part in self.items if part["type"] == TOOL]

    @property
    def steps(self) -> int:
        """How many steps the parts span (at least one)."""
        return 1 + max((part["step"] for part in self.items), default=0)
