"""An answer's steps as the write side holds them: what a step said, the calls it made, their results.

A step is one model call (API.md, Tools): its pieces (text and reasoning,
in the order they streamed), the tool calls it asked for, and, once they
have them, the calls' results. A step that called tools is recorded in the
journal (storage/journal.py) before any of them runs, as `Step.output()`:

- every piece as it streamed, so that an attempt that sends the step again
  writes the very events the first one did: a client that dropped them at
  `from_step` shows them again, and every count of `end` stays whole;
- every call, with what the loop decided of it when the step was recorded
  (`StepCall`: where it runs, whether a person approves it, why it cannot
  run, whether it is idempotent), so a later attempt acts the same whatever
  the tool sources say by then.

An attempt that goes on with an answer reads its journal back (`Plan.of`):
the finished steps before `from_step` are kept as they were, and the first
unfinished one goes on from its recorded output; the model is never asked
for a recorded step again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from webapp.storage import events, journal
from webapp.storage.journal import NewCall
from webapp.storage.parts import REASONING, TEXT, Parts
from webapp.write.llm import Delta, Finish, Messages, Reasoning
from webapp.write.tool_calls import ToolCall, ToolResult, assistant_message, tool_message
from webapp.write.tools.spec import ToolSpec

log = logging.getLogger(__name__)

# A piece as a step's record holds it: [event, text], as the answer cache does.
_EVENTS = {Delta: events.CHUNK, Reasoning: events.REASONING}


class ToolBox(Protocol):
    """What the loop asks of the tools (write/tools/registry.py's ToolRegistry)."""

    def offered(self) -> list[dict[str, Any]]: ...

    def get(self, name: str) -> ToolSpec | None: ...

    def problem(self, call: ToolCall) -> str | None: ...

    def run(
        self, call: ToolCall, *, timeout: float | None = None, ids: tuple[str, str, int] = ...
    ) -> ToolResult: ...


@dataclass(frozen=True, slots=True)
class StepCall:
    """A tool call of a step, and what the loop decided of it when the step was recorded."""

    call: ToolCall
    runs_on: str  # events.RUNS_ON_SERVER or RUNS_ON_CLIENT
    approval_id: str | None  # set: a person approves the call before it runs
    problem: str | None  # set: it cannot run, and this is its `error` result
    idempotent: bool = False  # safe to run again with the same call id

    @classmethod
    def decide(cls, call: ToolCall, tools: ToolBox) -> StepCall:
        spec = tools.get(call.name)
        problem = tools.problem(call)
        if spec is None or problem is not None:
            runs_on = spec.runs_on if spec is not None else events.RUNS_ON_SERVER
            return cls(call, runs_on, None, problem or "the tool cannot run")
        server = spec.runs_on == events.RUNS_ON_SERVER
        # The call's own id: it is what the approval endpoint's URL names.
        approval_id = call.call_id if server and spec.needs_approval else None
        return cls(call, spec.runs_on, approval_id, None, spec.idempotent)

    @property
    def call_id(self) -> str:
        return self.call.call_id

    @property
    def waits_for(self) -> str | None:
        """What the call waits for before it can settle: an approval, an output, or nothing."""
        if self.problem is not None:
            return None
        if self.runs_on == events.RUNS_ON_CLIENT:
            return events.WAIT_OUTPUT
        return events.WAIT_APPROVAL if self.approval_id else None

    @property
    def runs_now(self) -> bool:
        """Whether it runs as soon as its step is recorded: a server call, no input to wait for."""
        return self.problem is None and self.waits_for is None

    def new_call(self) -> NewCall:
        return NewCall(self.call_id, self.call.name, self.waits_for, self.runs_now)

    def event_data(self, message_id: str, step: int) -> str:
        """Its `tool_call` event's data."""
        return events.tool_call_data(
            message_id,
            step=step,
            call_id=self.call_id,
            name=self.call.name,
            arguments=self.call.arguments,
            runs_on=self.runs_on,
            approval_id=self.approval_id,
        )

    def record(self) -> dict[str, Any]:
        call = self.call
        return {
            "call_id": call.call_id,
            "name": call.name,
            "arguments": call.arguments,
            "error": call.error,
            "provider_id": call.provider_id,
            "runs_on": self.runs_on,
            "approval_id": self.approval_id,
            "problem": self.problem,
            "idempotent": self.idempotent,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> StepCall:
        call = ToolCall(
            record["call_id"],
            record["name"],
            record["arguments"],
            record.get("error"),
            record.get("provider_id"),
        )
        return cls(
            call,
            record["runs_on"],
            record.get("approval_id"),
            record.get("problem"),
            bool(record.get("idempotent")),
        )


@dataclass(slots=True)
class Step:
    """One step of an answer: its pieces, its calls and their results, how its model call ended."""

    number: int
    pieces: list[Delta | Reasoning] = field(default_factory=list)
    calls: list[StepCall] = field(default_factory=list)
    results: dict[str, ToolResult] = field(default_factory=dict)
    finish: Finish | None = None

    def output(self) -> dict[str, Any]:
        """The step's record in the journal (module docstring)."""
        finish = self.finish
        return {
            "pieces": [[_EVENTS[type(piece)], piece.text] for piece in self.pieces],
            "calls": [call.record() for call in self.calls],
            "model": finish.model if finish else None,
            "usage": finish.usage if finish else None,
        }

    @classmethod
    def recorded(
        cls, number: int, output: Mapping[str, Any], calls: Mapping[str, journal.Call]
    ) -> Step:
        """A step as the journal holds it, with the results its calls have."""
        pieces: list[Delta | Reasoning] = [
            Reasoning(text) if event == events.REASONING else Delta(text)
            for event, text in output.get("pieces", [])
        ]
        step = cls(number, pieces, [StepCall.from_record(c) for c in output.get("calls", [])])
        step.finish = Finish(
            output.get("model") or "", events.FINISH_TOOL_CALLS, output.get("usage")
        )
        for call in step.calls:
            found = calls.get(call.call_id)
            if found is not None and found.result is not None:
                step.results[call.call_id] = result_of(found.result)
        return step

    @property
    def text(self) -> str:
        return "".join(piece.text for piece in self.pieces if type(piece) is Delta)

    @property
    def reasoning(self) -> str:
        return "".join(piece.text for piece in self.pieces if type(piece) is Reasoning)

    def open_calls(self) -> list[StepCall]:
        """The calls without a result yet."""
        return [call for call in self.calls if call.call_id not in self.results]

    def history(self) -> Messages:
        """The step as the next model call's messages: the calls it made, and their results."""
        calls = [call.call for call in self.calls]
        messages = [assistant_message(self.text, calls)]
        messages.extend(tool_message(call.call, self.results[call.call_id]) for call in self.calls)
        return messages

    def add_parts(self, parts: Parts, message_id: str) -> None:
        """Add the step's parts (parts.py): its runs of text and reasoning, then its calls."""
        kind, run = "", []
        for piece in self.pieces:
            this = REASONING if type(piece) is Reasoning else TEXT
            if this != kind and run:
                parts.add_text(kind, self.number, "".join(run))
                run = []
            kind = this
            run.append(piece.text)
        if run:
            parts.add_text(kind, self.number, "".join(run))
        for call in self.calls:
            parts.apply(events.TOOL_CALL, tool_call_fields(call, message_id, self.number))
            result = self.results.get(call.call_id)
            if result is not None:
                parts.settle(call.call_id, result.status, result.output, result.error)


def tool_call_fields(call: StepCall, message_id: str, step: int) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "step": step,
        "call_id": call.call_id,
        "name": call.call.name,
        "arguments": call.call.arguments,
        "runs_on": call.runs_on,
        "approval_id": call.approval_id,
    }


def result_of(recorded: Mapping[str, Any]) -> ToolResult:
    """A result as the journal holds it (`{"status", "output", "error"}`)."""
    return ToolResult(recorded["status"], recorded.get("output"), recorded.get("error"))


def result_record(result: ToolResult) -> dict[str, Any]:
    return {"status": result.status, "output": result.output, "error": result.error}


@dataclass(frozen=True, slots=True)
class Plan:
    """Where an attempt begins: the finished steps it keeps, and the recorded step it goes on with."""

    done: Sequence[Step] = ()
    going_on: Step | None = None  # recorded, with calls that have no result yet
    inputs: Mapping[str, journal.Call] = field(default_factory=dict)  # the journal's calls

    @classmethod
    def of(cls, read: journal.Journal | None) -> Plan:
        """The plan of an answer's journal: steps 0, 1... while recorded and settled."""
        if read is None:
            return cls()
        done: list[Step] = []
        while (output := read.steps.get(len(done))) is not None:
            step = Step.recorded(len(done), output, read.calls)
            if step.open_calls():
                return cls(done, step, read.calls)
            done.append(step)
        return cls(done, None, read.calls)

    @property
    def from_step(self) -> int:
        """The first unfinished step: `start`'s `from_step`."""
        return len(self.done)

    @property
    def fresh(self) -> bool:
        """Whether the answer begins here, with nothing recorded."""
        return not self.done and self.going_on is None

    def history(self) -> Messages:
        """The finished steps as the next model call's messages."""
        return [message for step in self.done for message in step.history()]
