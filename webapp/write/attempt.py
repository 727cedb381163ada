"""What the parts of one generation attempt share: its I/O, its state, its answer, and two rules.

A generation (generation.py) makes one `Attempt` and hands it to the parts
that act for it: the step loop (step_loop.py), a model call streamed into
events (model_call.py) and a step's tool calls (tool_runs.py). None of them
does I/O but through it: the stream writer, the ledger (SQL and metrics),
the journal of steps, the model and the tools.

The two rules every write of the loop follows:

- **Fenced means stop.** A write refused because a newer attempt owns the
  answer (or its session was deleted) raises `Fenced` (exceptions.py) where
  it is seen; the generation catches it and writes nothing more.
- **A cancel is acted on at a step's edges.** The reply of every write says
  whether a cancel was asked. A model piece's write acts on it at once, as
  before tools existed; the writes of a step's tool events only note it
  (`emit`), and the loop acts on it before tools run or the answer pauses
  (`check_cancel`), so a step's events are never left half-written. A wait
  on the model or on tools is interrupted by the worker instead
  (lifecycle.INTERRUPTIBLE).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from webapp.exceptions import Cancelled, Fenced
from webapp.storage import events
from webapp.storage.jobs import Job
from webapp.write.answer import Answer
from webapp.write.ledger import Ledger
from webapp.write.lifecycle import Lifecycle, State
from webapp.write.llm import Model, RetryPolicy
from webapp.write.step_journal import StepJournal
from webapp.write.steps import ToolBox
from webapp.write.writer import StreamWriter

# An attempt's lines belong to its generation's story: one logger for all of its parts.
log = logging.getLogger("webapp.write.generation")


@dataclass(slots=True)
class Attempt:
    """One attempt of a generation: what its parts act through (module docstring)."""

    job: Job
    model: Model
    writer: StreamWriter
    ledger: Ledger
    journal: StepJournal
    tools: ToolBox
    answer: Answer
    life: Lifecycle[State]
    retries: RetryPolicy
    max_tool_steps: int
    sent: str | None = None  # the event sent without waiting, until its outcome is read
    cancel_seen: bool = False  # a write's reply said a cancel was asked

    @property
    def ids(self) -> tuple[str, str]:
        return self.job.session_id, self.job.message_id

    def fenced(self, where: str) -> Fenced:
        """The exception to raise for a write refused `where` (logged here, once)."""
        log.warning("fenced off %s session=%s message=%s", where, *self.ids)
        return Fenced(where)

    def send(self, event: str, data: str) -> None:
        """Write an event without waiting for its reply; the next write reads it first.

        For the last event before the model is asked (`start`, a step's last
        `tool_result`): the write's round trip then overlaps the model's
        request instead of coming before it.
        """
        self.writer.send(event, data)
        self.sent = event

    def confirm_sent(self) -> None:
        """Read the outcome of the event sent last, once, before any other write.

        Raises Fenced when a newer attempt owns the answer, Cancelled when a
        cancel was asked: it was `start`, or the last event of a step.
        """
        if self.sent is None:
            return
        event, self.sent = self.sent, None
        written = self.writer.sent_written()
        if written.fenced:
            raise self.fenced(f"at {event}")
        if event == events.START:
            log.info(
                "generation started session=%s message=%s attempt=%d", *self.ids, self.job.attempt
            )
        if written.cancel_requested:
            raise Cancelled()

    def emit(self, event: str, data: str) -> None:
        """Write an event of a step's tools; a cancel asked is noted, not acted on (docstring)."""
        self.confirm_sent()
        written = self.writer.append(event, data)
        if written.fenced:
            raise self.fenced(f"at {event}")
        if written.cancel_requested:
            self.cancel_seen = True

    def check_cancel(self) -> None:
        """Act on a cancel a write's reply noted: raise Cancelled."""
        if self.cancel_seen:
            raise Cancelled()
