"""A generation's states and the moves between them: one table, and one method that moves.

STYLE.md, habit 16: a generation's life is one value, not flags. `MOVES`
lists every state and the states it may move to, read top to bottom;
`Lifecycle.move` is the only code that changes a state, and it raises
`IllegalMove` (exceptions.py) for a move the table does not list.
tests/test_generation.py checks, by reading webapp/write with `ast`, that
no other code assigns a state.

    NEW ─> CLAIMING ─┬─> WRITING <─> ASKING   (ASKING: on the model; TOOLS: on
                     │      │   <─> TOOLS      the step's tool calls; the two
                     │      │                   states a cancel interrupts)
                     │      ├─> PAUSED         waiting for a person or the front end
                     │      ├─> ENDED          `end` or `error` written
                     │      ├─> FENCED         a newer attempt owns the answer
                     │      └─> HANDED_BACK    the worker gave the job back
                     ├─> ENDED                 the answer was final already, or is missing
                     ├─> FENCED                the job is stale
                     └─> HANDED_BACK

A state with no move out is final: the attempt writes nothing more. PAUSED
is final for the attempt, not for the answer: a decision, an output or a
cancel queues the next attempt, which goes on with it (issue 23).

Adding states: a new member of `State`, its line in `MOVES`, and the moves
into it from the states it follows; what may be interrupted by a cancel
goes in `INTERRUPTIBLE`. `Lifecycle` takes any enum and table.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from webapp.exceptions import IllegalMove


class State(enum.Enum):
    """Where one attempt of a generation is in its life."""

    NEW = "new"
    CLAIMING = "claiming"  # taking the stream and the answer row over, reading the history
    WRITING = "writing"  # writing events
    ASKING = "asking"  # waiting on the model's next piece, or pausing before asking it again
    TOOLS = "tools"  # waiting on the step's tool calls, which run in greenlets of their own
    PAUSED = "paused_for_inputs"  # the answer waits; this attempt is over, its job acked
    ENDED = "ended"  # its final event (`end` or `error`) is written
    FENCED = "fenced"  # another attempt owns the answer: this one writes nothing more
    HANDED_BACK = "handed_back"  # back in the queue: the next attempt takes over


MOVES: Mapping[State, frozenset[State]] = {
    State.NEW: frozenset({State.CLAIMING}),
    State.CLAIMING: frozenset({State.WRITING, State.ENDED, State.FENCED, State.HANDED_BACK}),
    State.WRITING: frozenset(
        {
            State.ASKING,
            State.TOOLS,
            State.PAUSED,
            State.ENDED,
            State.FENCED,
            State.HANDED_BACK,
        }
    ),
    # Back to WRITING whatever ends the wait: a piece, a failure or an interrupt.
    State.ASKING: frozenset({State.WRITING}),
    State.TOOLS: frozenset({State.WRITING}),
    State.PAUSED: frozenset(),
    State.ENDED: frozenset(),
    State.FENCED: frozenset(),
    State.HANDED_BACK: frozenset(),
}

# Where the worker may raise `Cancelled` into a generation (worker.py, _apply_cancels):
# waiting on the network, never half-way through a write.
INTERRUPTIBLE = frozenset({State.ASKING, State.TOOLS})

S = TypeVar("S", bound=enum.Enum)
T = TypeVar("T")


class Lifecycle(Generic[S]):
    """One value's state, moved only as its table allows."""

    __slots__ = ("_moves", "_state", "_what")

    def __init__(self, moves: Mapping[S, frozenset[S]], start: S, what: str = "generation") -> None:
        self._moves = moves
        self._state = start
        self._what = what  # what IllegalMove names

    @property
    def state(self) -> S:
        return self._state

    @property
    def final(self) -> bool:
        """Whether no move is left: the life is over."""
        return not self._moves[self._state]

    def move(self, to: S) -> None:
        """Move to `to`; IllegalMove, and no change, if the table does not allow it."""
        if to not in self._moves[self._state]:
            raise IllegalMove(self._what, self._state, to)
        self._state = to

    def during(self, state: S, call: Callable[..., T], *args: Any) -> T:
        """`call(*args)` in `state`, then back to the state before, however the call ends.

        Both moves are checked before the call, so a failing call is never
        hidden behind an IllegalMove on the way back.
        """
        before = self._state
        if before not in self._moves[state]:
            raise IllegalMove(self._what, state, before)
        self.move(state)
        try:
            return call(*args)
        finally:
            self.move(before)
