"""The loop of steps: a model call, the step recorded, its tools, the next call with their results.

    ask the model (model_call.py) ─> no tool calls: the answer's Finish
            │
            └─> record the step (journal) ─> `tool_call` events ─> settle the
                calls (tool_runs.py) ─> all settled: the next step, with the
                calls and results as history; some wait: pause the answer

After MAX_TOOL_STEPS steps that called tools, the next call is offered the
tools with `tool_choice: "none"`, and its text ends the answer whatever it
asks for. A step is recorded before any of its tools runs, so an attempt
that goes on with the answer (a lost worker, a resume after waiting) never
asks the model for it again: it sends the recorded step again, as it was
first written, and goes on with its calls that have no result yet (the
generation's `start` names that step, `from_step`).

Pausing: the calls that wait for a decision or an output are listed in the
journal (`pause`), which holds no worker and no timer. Inputs that all
came in meanwhile make it go on at once; a cancel asked before makes it
end; otherwise the answer is stored as `waiting` in SQL, the `waiting`
event is written, and this attempt is over (PAUSED): the input that
completes the waits queues the next attempt (tool_inputs.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import redis

from webapp.exceptions import Cancelled
from webapp.storage import events, journal
from webapp.write.attempt import Attempt
from webapp.write.cache import CachedAnswer
from webapp.write.lifecycle import State
from webapp.write.llm import Finish, Messages, Reasoning
from webapp.write.model_call import ModelCall
from webapp.write.steps import Plan, Step
from webapp.write.tool_runs import ToolRuns, result_data

log = logging.getLogger("webapp.write.generation")

# The last call's `tool_choice` (API.md, Tools): the tools stay described, none may be called.
NO_TOOLS = "none"


class StepLoop:
    """Runs an answer's steps to its Finish, or to a pause (module docstring)."""

    def __init__(
        self,
        attempt: Attempt,
        messages: Messages,
        plan: Plan,
        tools: Sequence[dict[str, Any]],
    ) -> None:
        self.attempt = attempt
        self.messages = list(messages)
        self.plan = plan
        self.tools = tools
        self.going_on = plan.going_on  # the recorded step to send again, until it is
        self.runs: ToolRuns | None = None  # the current step's calls

    def cached(self, cached: CachedAnswer) -> Finish:
        """A cached answer, streamed as step 0 as it first streamed."""
        return self._final(ModelCall(self.attempt).write(0, cached.pieces(), join=False))

    def run(self) -> Finish | None:
        """Steps until one has no tool calls: the answer's Finish; None when the answer paused."""
        number = self.plan.from_step
        while True:
            if self.going_on is not None:
                step = self._send_again(self.going_on)
                self._begin(step, self.plan.inputs)
            else:
                step = self._ask(number)
                if not step.calls:
                    return self._final(step)
                self._record(step)
            if not self._settle(step):
                return None
            self.messages.extend(step.history())
            number += 1

    def _ask(self, number: int) -> Step:
        offer = number < self.attempt.max_tool_steps
        choice = None if offer else NO_TOOLS
        step = ModelCall(self.attempt).ask(self.messages, number, self.tools, choice)
        if step.calls and not offer:
            log.warning(
                "tool calls after the last tool step ignored session=%s message=%s step=%d calls=%d",
                *self.attempt.ids,
                number,
                len(step.calls),
            )
            step.calls = []
            finish = step.finish
            if finish is not None:
                step.finish = Finish(finish.model, events.FINISH_STOP, finish.usage)
        return step

    def _final(self, step: Step) -> Finish:
        """The answer's Finish: the last step's model and reason, every step's tokens."""
        assert step.finish is not None
        return Finish(step.finish.model, step.finish.finish_reason, self.attempt.answer.usage())

    def _record(self, step: Step) -> None:
        """Record the step, start its runs, and write its `tool_call` events meanwhile.

        Recorded first: no tool runs before the step is in the journal. The
        runs begin as this greenlet waits on its first event's write, so the
        events and the calls' starts overlap; the events still come before
        any result, which this greenlet writes after them.
        """
        attempt = self.attempt
        calls = [call.new_call() for call in step.calls]
        if attempt.journal.record_step(step.number, step.output(), calls).status == journal.FENCED:
            raise attempt.fenced("at a step's record")
        # Recorded running with the step: they start without a write of their own.
        runs = self._begin(step, {}, started={c.call_id for c in step.calls if c.runs_now})
        try:
            for call in step.calls:
                attempt.emit(events.TOOL_CALL, call.event_data(attempt.job.message_id, step.number))
                log.info(
                    "tool call session=%s message=%s step=%d call=%s tool=%s runs_on=%s "
                    "approval=%s",
                    *attempt.ids,
                    step.number,
                    call.call_id,
                    call.call.name,
                    call.runs_on,
                    "yes" if call.approval_id else "no",
                )
            attempt.check_cancel()  # a cancel noted meanwhile: close_cancelled ends the runs
        except BaseException as exc:
            if not isinstance(exc, Cancelled):
                runs.stop()
            raise

    def _begin(
        self,
        step: Step,
        inputs: Mapping[str, journal.Call],
        started: frozenset[str] | set[str] = frozenset(),
    ) -> ToolRuns:
        self.runs = ToolRuns(self.attempt, step)
        self.runs.begin(inputs, started)
        return self.runs

    def _send_again(self, step: Step) -> Step:
        """Write a recorded step's events again, as they were first written (module docstring)."""
        attempt = self.attempt
        attempt.confirm_sent()
        self.going_on = None
        attempt.answer.begin(step)
        message_id, number = attempt.job.message_id, step.number
        for piece in step.pieces:
            if type(piece) is Reasoning:
                attempt.emit(
                    events.REASONING, events.reasoning_data(message_id, piece.text, number)
                )
            else:
                attempt.emit(events.CHUNK, events.chunk_data(message_id, piece.text, number))
        attempt.answer.written += len(step.pieces)
        for call in step.calls:
            attempt.emit(events.TOOL_CALL, call.event_data(message_id, number))
        for call in step.calls:
            if (result := step.results.get(call.call_id)) is not None:
                attempt.emit(events.TOOL_RESULT, result_data(message_id, number, call, result))
        log.info(
            "step sent again session=%s message=%s step=%d pieces=%d calls=%d settled=%d",
            *attempt.ids,
            number,
            len(step.pieces),
            len(step.calls),
            len(step.results),
        )
        return step

    def _settle(self, step: Step) -> bool:
        """Settle the step's calls (their runs begun); False when the answer paused for some."""
        attempt = self.attempt
        runs = self.runs
        assert runs is not None and runs.step is step
        waits = runs.finish()
        while waits:
            attempt.check_cancel()
            verdict = attempt.journal.pause(waits)
            if verdict == journal.FENCED:
                raise attempt.fenced("at a pause")
            if verdict == journal.CANCELLED:
                raise Cancelled()
            if verdict == journal.PAUSED:
                self._paused(step, waits)
                return False
            read = attempt.journal.read()  # go_on: every input came meanwhile
            runs.begin(read.calls if read is not None else {})
            waits = runs.finish()
        return True

    def _paused(self, step: Step, waits: list[tuple[str, str]]) -> None:
        """Store the answer as waiting, then write `waiting`: this attempt is over."""
        attempt = self.attempt
        attempt.ledger.waiting(attempt.job, True)
        model = step.finish.model if step.finish and step.finish.model else attempt.model.name
        if not attempt.answer.pause(model):
            raise attempt.fenced("at a pause, in SQL")
        attempt.emit(events.WAITING, events.waiting_data(attempt.job.message_id, waits))
        attempt.life.move(State.PAUSED)
        log.info(
            "answer waiting session=%s message=%s step=%d for=%s",
            *attempt.ids,
            step.number,
            ",".join(f"{call_id}:{kind}" for call_id, kind in waits),
        )

    @property
    def recorded(self) -> bool:
        """Whether the answer has steps in the journal (recorded by this attempt or before)."""
        return not self.plan.fresh or any(step.calls for step in self.attempt.answer.steps)

    def retire(self) -> None:
        """The answer ended: a journal it recorded expires with its stream."""
        if not self.recorded:
            return  # nothing recorded: no round trip
        try:
            self.attempt.journal.retire()
        except redis.RedisError as exc:
            log.warning("journal kept session=%s message=%s: %s", *self.attempt.ids, exc)

    def close_cancelled(self) -> None:
        """A cancel ends the answer: the step it was in gets its events whole, its calls results."""
        if self.going_on is not None:  # cancelled as it began: send the step it goes on with
            self._send_again(self.going_on)
        step = self.attempt.answer.current
        if step is not None and step.open_calls():
            (
                self.runs if self.runs and self.runs.step is step else ToolRuns(self.attempt, step)
            ).close()
