"""One model call of a step, streamed into the answer's events as its pieces come.

The hot path of every answer: each piece of text or reasoning goes to a
fenced append (a `chunk` or `reasoning` event carrying its `step`), joined
with the pieces that come while the previous append is on its way
(piece_writes.py), and to a list, nothing more. The tool calls the model
asked for come after the step's text (llm.py); they are collected, decided
on (steps.StepCall) and returned with the step when the call's `Finish`
comes. Nothing of them is written here: the step loop records the step
before any of its events.

Every wait on the model (its next piece, a pause before asking again) runs
in the ASKING state, the one in which the worker may cancel. A failed call
is asked again as the attempt's RetryPolicy allows, only while the step
has sent nothing: after a piece, asking again would repeat it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

from webapp.exceptions import ModelError
from webapp.storage import events
from webapp.write.attempt import Attempt
from webapp.write.lifecycle import State
from webapp.write.llm import Delta, Finish, Messages, Piece, Reasoning
from webapp.write.piece_writes import PieceWrites
from webapp.write.steps import Step, StepCall
from webapp.write.tool_calls import ToolCall, step_key


class ModelCall:
    """Streams a step's model call into events (module docstring)."""

    def __init__(self, attempt: Attempt) -> None:
        self.attempt = attempt

    def ask(
        self,
        messages: Messages,
        number: int,
        tools: Sequence[dict[str, Any]],
        tool_choice: str | None,
    ) -> Step:
        """Ask the model for step `number` and stream it; the step, ended by its Finish."""
        attempt = self.attempt
        pieces = attempt.retries.stream(
            attempt.model,
            messages,
            text_sent=lambda: attempt.answer.sent,
            wait=functools.partial(attempt.life.during, State.ASKING),
            ids=attempt.ids,
            tools=tools,
            tool_choice=tool_choice,
            step_key=step_key(attempt.job.message_id, number),
        )
        return self.write(number, pieces)

    def write(self, number: int, pieces: Iterable[Piece], *, join: bool = True) -> Step:
        """Write `pieces` as step `number`'s events; the step once its Finish comes.

        `join`: pieces that come while a write is on its way go out as one
        (piece_writes.py); False writes one event a piece.
        """
        step = Step(number)
        self.attempt.answer.begin(step)
        calls: list[ToolCall] = []
        writes = PieceWrites(self.attempt, number, join=join)
        try:
            for index, piece in enumerate(pieces):
                if index == 0:
                    self.attempt.confirm_sent()
                kind = type(piece)
                if kind is Delta or kind is Reasoning:
                    writes.put(piece)  # type: ignore[arg-type]
                elif kind is Finish:
                    writes.flush()
                    step.finish = piece  # type: ignore[assignment]
                    step.calls = [StepCall.decide(call, self.attempt.tools) for call in calls]
                    return step
                else:
                    calls.append(piece)  # type: ignore[arg-type]
        except ModelError:
            writes.flush()  # what the model sent before it failed is written, as it came
            raise
        except BaseException:
            writes.close()
            raise
        writes.flush()
        raise ModelError(events.UPSTREAM_ERROR, "the model stream ended without finishing")
