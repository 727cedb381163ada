"""Checks shared by the tests of state tables (STYLE.md, habit 16): one value, one table of moves."""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any, Protocol

import pytest

from webapp.exceptions import IllegalMove


class Moving(Protocol):
    state: Any

    def move(self, to: Any) -> None: ...


def reachable(moves: Mapping[Any, Set[Any]], start: Any) -> set[Any]:
    """Every state that allowed moves lead to from `start`, itself included."""
    seen, frontier = {start}, [start]
    while frontier:
        for after in moves[frontier.pop()] - seen:
            seen.add(after)
            frontier.append(after)
    return seen


def check_the_move(thing: Moving, moves: Mapping[Any, Set[Any]], what: str, to: Any) -> None:
    """`thing.move(to)` happens if the table allows it; else IllegalMove, the state unchanged."""
    state = thing.state
    if to in moves[state]:
        thing.move(to)
        assert thing.state is to
    else:
        with pytest.raises(IllegalMove, match=f"{what}: no move from {state.value} to {to.value}"):
            thing.move(to)
        assert thing.state is state, "a refused move leaves the state as it was"
