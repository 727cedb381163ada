"""A step's tool calls, run to their results exactly once (API.md, Tools, "Exactly once").

`settle` settles every call of the step that can be now, and says which
still wait for a person's decision or a client tool's output:

- a call that cannot run (broken or invalid arguments, an unknown name:
  steps.StepCall's `problem`) gets its `error` result at once;
- a server call that needs no approval, or was approved, runs; a denied one
  gets `denied`; a client tool's output becomes its result;
- the rest wait (the step loop pauses the answer for them).

Server calls run in parallel, each in a greenlet of its own:

    start_call (journal) -> run (the registry) -> record_result (journal)

so a result is recorded the moment it exists, and a call is marked running
before it runs. A call that runs as soon as its step is recorded was marked
running by that very write (journal.record_step): it skips `start_call`. A call an earlier attempt marked running and left without
a result was lost with its worker: an idempotent tool runs again, with the
same call id as its idempotency key; any other is `in_doubt`, and is not
run again. The generation's own greenlet waits for the results in the TOOLS
state (a cancel may interrupt it) and writes each `tool_result` event as it
comes, in the order they finish.

A cancel ends the step's open calls without running them (`close`): one
that waits for a decision is `denied`, any other (it may have run, or be
running on a front end) is `in_doubt`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any

import gevent
from gevent.queue import Queue

from webapp.ops.metrics import UNKNOWN_TOOL
from webapp.storage import events, journal
from webapp.write.attempt import Attempt
from webapp.write.lifecycle import State
from webapp.write.steps import Step, StepCall, result_of, result_record
from webapp.write.tool_calls import ToolResult
from webapp.write.tools.spec import checked_output

log = logging.getLogger("webapp.write.generation")

# How long an interrupted step waits for its tool greenlets to stop.
KILL_SECONDS = 5.0
CANCELLED_DECISION = "the answer was cancelled before a decision: the tool did not run"

# What a tool greenlet hands back: the call, its result (or the exception it
# met), and how long the tool ran (None when it did not run here).
Outcome = tuple[StepCall, ToolResult | Exception, float | None]


class ToolRuns:
    """Settles one step's tool calls (module docstring)."""

    def __init__(self, attempt: Attempt, step: Step) -> None:
        self.attempt = attempt
        self.step = step
        self._done: Queue[Outcome] = Queue()
        self._now: list[tuple[StepCall, ToolResult]] = []  # results known without a run
        self._workers: list[gevent.Greenlet] = []  # the runs, one greenlet each
        self.waits: list[tuple[str, str]] = []  # (call_id, kind) still waiting for an input

    def begin(
        self, inputs: Mapping[str, journal.Call], started: AbstractSet[str] = frozenset()
    ) -> None:
        """Sort the open calls by what settles them, given the inputs so far; start the runs.

        The runs begin as soon as this greenlet next waits: while it writes
        the step's `tool_call` events, say. `finish` writes the results.
        `started`: calls this attempt recorded running with their step.
        """
        self._now, self.waits = [], []
        runnable: list[StepCall] = []
        for call in self.step.open_calls():
            found = inputs.get(call.call_id)
            given = found.input if found is not None else None
            if call.problem is not None:
                self._now.append((call, ToolResult.failed(call.problem)))
            elif call.waits_for is None:
                runnable.append(call)
            elif given is None:
                self.waits.append((call.call_id, call.waits_for))
            elif call.waits_for == events.WAIT_OUTPUT:
                self._now.append((call, output_result(given)))
            elif given.get("approved"):
                runnable.append(call)
            else:
                denied = ToolResult(events.TOOL_DENIED, error=given.get("reason"))
                self._now.append((call, denied))
        self._workers = [
            gevent.spawn(self._run_one, call, call.call_id in started) for call in runnable
        ]

    def finish(self) -> list[tuple[str, str]]:
        """Write every result as it comes (the runs' in the order they end); the waits left.

        The step's last event, when nothing waits, is sent without waiting
        for its reply (Attempt.send): the next model call goes out meanwhile.
        """
        left = len(self._now) + len(self._workers)
        ends_step = not self.waits  # else a pause's writes follow: nothing to overlap
        try:
            for call, result in self._now:
                left -= 1
                self._publish(call, self._record(call, result), None, last=ends_step and not left)
            for _ in range(len(self._workers)):
                call, outcome, seconds = self.attempt.life.during(State.TOOLS, self._done.get)
                if isinstance(outcome, Exception):
                    raise outcome
                left -= 1
                self._publish(call, outcome, seconds, last=ends_step and not left)
        finally:
            self.stop()
        return self.waits

    def stop(self) -> None:
        """Stop the runs still going: the step was interrupted (a cancel, a hand-back) or failed."""
        running = [worker for worker in self._workers if not worker.dead]
        if running:
            gevent.killall(running, timeout=KILL_SECONDS)

    def close(self) -> None:
        """A cancel ends the step: its open calls get results without running (docstring)."""
        self.stop()
        while not self._done.empty():  # results that came in as the wait was interrupted
            call, result, seconds = self._done.get()
            if isinstance(result, ToolResult) and call.call_id not in self.step.results:
                self._publish(call, result, seconds)
        for call in self.step.open_calls():
            if call.waits_for == events.WAIT_APPROVAL:
                self._publish(call, ToolResult(events.TOOL_DENIED, error=CANCELLED_DECISION), None)
            else:
                self._publish(call, ToolResult(events.TOOL_IN_DOUBT), None)

    # -- running server calls ----------------------------------------------------

    def _run_one(self, call: StepCall, started: bool) -> None:
        """In a greenlet of its own: the call's outcome, onto the queue."""
        try:
            began = time.monotonic()
            result, ran = self._outcome(call, started)
            self._done.put((call, result, time.monotonic() - began if ran else None))
        except Exception as exc:  # Fenced, or Redis gone for good: the step raises it
            self._done.put((call, exc, None))

    def _outcome(self, call: StepCall, started: bool) -> tuple[ToolResult, bool]:
        """Run the call unless the journal says otherwise; (its result, whether it ran here)."""
        attempt = self.attempt
        found = journal.Outcome(journal.OK) if started else attempt.journal.start_call(call.call_id)
        if found.status == journal.FINAL:
            return _recorded(call, found), False
        if found.status == journal.FENCED:
            raise attempt.fenced("at a tool call")
        if found.status == journal.RUNNING and not call.idempotent:
            log.warning(
                "tool call in doubt session=%s message=%s step=%d call=%s tool=%s",
                *attempt.ids,
                self.step.number,
                call.call_id,
                call.call.name,
            )
            return self._record(call, ToolResult(events.TOOL_IN_DOUBT)), False
        if found.status == journal.RUNNING:
            log.info(
                "tool call run again (idempotent) session=%s message=%s step=%d call=%s tool=%s",
                *attempt.ids,
                self.step.number,
                call.call_id,
                call.call.name,
            )
        ids = (*attempt.ids, self.step.number)
        return self._record(call, attempt.tools.run(call.call, ids=ids)), True

    def _record(self, call: StepCall, result: ToolResult) -> ToolResult:
        """Record a result in the journal: the one recorded first is the result."""
        recorded = self.attempt.journal.record_result(call.call_id, result_record(result))
        if recorded.status == journal.FENCED:
            raise self.attempt.fenced("at a tool result")
        return _recorded(call, recorded) if recorded.status == journal.FINAL else result

    # -- results -----------------------------------------------------------------

    def _publish(
        self, call: StepCall, result: ToolResult, seconds: float | None, last: bool = False
    ) -> None:
        """Write the `tool_result` event (sent, if `last`); the step holds the result from then on."""
        attempt = self.attempt
        number = self.step.number
        data = result_data(attempt.job.message_id, number, call, result)
        if last:
            attempt.confirm_sent()
            attempt.send(events.TOOL_RESULT, data)
        else:
            attempt.emit(events.TOOL_RESULT, data)
        self.step.results[call.call_id] = result
        known = call.problem is None or attempt.tools.get(call.call.name) is not None
        attempt.ledger.tool_result(
            call.call.name if known else UNKNOWN_TOOL, result.status, seconds
        )
        log.info(
            "tool result session=%s message=%s step=%d call=%s tool=%s status=%s ms=%s",
            *attempt.ids,
            number,
            call.call_id,
            call.call.name if known else UNKNOWN_TOOL,
            result.status,
            "-" if seconds is None else int(seconds * 1000),
        )


def result_data(message_id: str, step: int, call: StepCall, result: ToolResult) -> str:
    """A result's `tool_result` event data."""
    return events.tool_result_data(
        message_id,
        step=step,
        call_id=call.call_id,
        status=result.status,
        output=result.output,
        error=result.error,
    )


def output_result(given: Mapping[str, Any]) -> ToolResult:
    """A client tool's result from its output (`{"output"}` or `{"error"}`, tool_inputs.py)."""
    if "error" in given:
        return ToolResult.failed(str(given["error"]))
    return checked_output(ToolResult.ok(given.get("output")))


def _recorded(call: StepCall, found: journal.Outcome) -> ToolResult:
    recorded = journal.Call.parse(call.call_id, found.record or "{}").result
    return result_of(recorded) if recorded is not None else ToolResult(events.TOOL_IN_DOUBT)
