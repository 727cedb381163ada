"""A generation's life, without Redis, SQL or a model: its state table and what it writes when.

The generation runs with relay's own interfaces recorded (tests/support/
recorders.py): a scripted model, a writer and a ledger that append every
write to one journal, so each test reads the order of stream and SQL
writes, and the state it ends in. Also how the conversation sent to the
model is built. End to end, with the real Redis, SQL and model server:
test_worker.py, test_faults.py, test_model_failures.py, test_shutdown.py.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import ROOT
from tests.support.recorders import (
    ANSWER,
    ASKED,
    PROMPT,
    QUEUED,
    USAGE,
    Lived,
    ScriptedModel,
    live,
    stop,
)
from webapp.exceptions import Cancelled, HandedBack, IllegalMove, ModelError
from webapp.storage import events, models
from webapp.storage.models import Turn
from webapp.write.generation import fail_lost
from webapp.write.history import build_prompt
from webapp.write.lifecycle import INTERRUPTIBLE, MOVES, Lifecycle, State
from webapp.write.llm import Delta, Reasoning


def msg(role: str, content: str, status: str = models.DONE) -> Turn:
    return Turn(seq=1, id="x" * 8, role=role, status=status, content=content, attempt=1)


def test_system_prompt_history_then_new_prompt() -> None:
    history = [msg("user", "q1"), msg("assistant", "a1"), msg("user", "q2")]
    assert build_prompt(history, "sys", 10_000) == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
    ]


def test_oldest_turns_are_dropped_first_to_fit_the_budget() -> None:
    history = [
        msg("user", "a" * 50),
        msg("assistant", "b" * 50),
        msg("user", "c" * 50),
        msg("assistant", "d" * 50),
        msg("user", "new"),
    ]
    prompt = build_prompt(history, "sys", 3 + 3 + 100)
    assert [m["content"][0] for m in prompt] == ["s", "c", "d", "n"]


def test_the_new_prompt_is_kept_even_over_budget() -> None:
    prompt = build_prompt([msg("user", "q" * 500)], "", 10)
    assert prompt == [{"role": "user", "content": "q" * 500}]


def test_failed_and_unfinished_answers_are_left_out() -> None:
    history = [
        msg("user", "q1"),
        msg("assistant", "", models.FAILED),
        msg("assistant", "partial", models.STREAMING),
        msg("user", "q2"),
    ]
    assert [m["content"] for m in build_prompt(history, "", 1000)] == ["q1", "q2"]


# -- a generation's life, recorded -------------------------------------------------


def test_an_answer_streams_then_is_stored_then_ends() -> None:
    model = ScriptedModel([Reasoning("hm"), Delta("Hel"), Delta("lo"), stop()])
    lived = live(model)

    assert lived.generation.state is State.ENDED
    # End means stored: the row is final before `end` is written.
    assert lived.writes == ["take", "start", "reasoning", "chunk", "chunk", "store", "end"]
    assert lived.data("start") == {
        "message_id": ANSWER,
        "model": "scripted",
        "attempt": 1,
        "cached": False,
        "from_step": 0,
    }
    stored = lived.data("store")
    assert stored["status"] == models.DONE
    assert (stored["content"], stored["chunk_count"], stored["reasoning"]) == ("Hello", 2, "hm")
    assert (stored["finish_reason"], stored["usage"], stored["model"]) == (
        "stop",
        USAGE,
        "scripted-1",
    )
    end = lived.data("end")
    assert (end["finish_reason"], end["usage"], end["chunks"], end["text_length"]) == (
        "stop",
        USAGE,
        2,
        5,
    )
    assert (end["reasoning_chunks"], end["reasoning_length"]) == (1, 2)
    assert model.asked == [ASKED]
    # Every wait on the model is in the one state a cancel may interrupt.
    assert model.states_seen == [State.ASKING] * 4
    # The first piece of each kind: time to first reasoning, then to first token.
    assert lived.ledger.metrics == [
        ("first_token", True),
        ("first_token", False),
        ("ended", "stop", 2),
    ]


def test_a_cancel_in_a_write_reply_ends_the_answer_cancelled_with_its_text() -> None:
    model = ScriptedModel([Delta("a"), Delta("b"), Delta("never read"), stop()])
    lived = live(model, cancel_from=3)  # the reply to the second chunk says a cancel was asked

    assert lived.generation.state is State.ENDED
    assert lived.writes == ["take", "start", "chunk", "chunk", "store", "end"]
    assert (lived.data("store")["status"], lived.data("store")["content"]) == ("cancelled", "ab")
    assert lived.data("end")["finish_reason"] == events.FINISH_CANCELLED
    assert len(model.states_seen) == 2  # the model was read no further


def test_a_cancel_raised_while_waiting_on_the_model_ends_the_answer_cancelled() -> None:
    # What the worker raises into a generation whose model is silent (worker.py, _apply_cancels).
    model = ScriptedModel([Delta("a"), Cancelled()])
    lived = live(model)

    assert model.states_seen == [State.ASKING, State.ASKING]
    assert set(model.states_seen) <= INTERRUPTIBLE
    assert lived.generation.state is State.ENDED
    assert lived.writes == ["take", "start", "chunk", "store", "end"]
    assert (lived.data("store")["status"], lived.data("store")["content"]) == ("cancelled", "a")
    assert lived.data("end")["finish_reason"] == events.FINISH_CANCELLED


def test_a_model_error_after_text_is_not_asked_again_and_ends_in_error() -> None:
    broke = ModelError(events.UPSTREAM_ERROR, "the model stream broke", retryable=True)
    model = ScriptedModel([Delta("par"), broke], [Delta("tial"), stop()])
    lived = live(model)

    assert len(model.asked) == 1  # a new request would stream "par" again
    assert lived.generation.state is State.ENDED
    assert lived.writes == ["take", "start", "chunk", "rollback", "store", "error"]
    stored = lived.data("store")
    assert (stored["status"], stored["content"], stored["chunk_count"]) == (models.FAILED, "par", 1)
    assert (stored["error_code"], stored["error_message"]) == (
        events.UPSTREAM_ERROR,
        "the model stream broke",
    )
    assert lived.data("error") == {
        "message_id": ANSWER,
        "error": {"code": events.UPSTREAM_ERROR, "message": "the model stream broke"},
    }
    assert lived.ledger.metrics == [("first_token", False), ("failed", events.UPSTREAM_ERROR, 1)]


def test_a_model_error_before_any_text_is_asked_again() -> None:
    timeout = ModelError(events.UPSTREAM_TIMEOUT, "the model timed out", retryable=True)
    model = ScriptedModel([timeout], [Delta("ok"), stop()])
    lived = live(model)

    assert model.asked == [ASKED, ASKED]
    assert lived.generation.state is State.ENDED
    assert lived.writes == ["take", "start", "chunk", "store", "end"]


@pytest.mark.parametrize(
    ("script", "code"),
    [
        ([Delta("a")], events.UPSTREAM_ERROR),  # the stream ended without a finish
        ([Delta("a"), RuntimeError("a bug")], events.INTERNAL_ERROR),
    ],
    ids=["no-finish", "crash"],
)
def test_an_answer_that_cannot_finish_ends_in_error(script: list, code: str) -> None:
    lived = live(ScriptedModel(script))

    assert lived.generation.state is State.ENDED
    assert lived.writes == ["take", "start", "chunk", "rollback", "store", "error"]
    assert lived.data("error")["error"]["code"] == code


@pytest.mark.parametrize(
    ("options", "writes"),
    [
        # A newer attempt took the stream over: the next write is refused.
        ({"fenced_from": 3}, ["take", "start", "chunk", "refused"]),
        ({"fenced_from": 1}, ["take", "refused"]),
        # ... or the SQL row: the final store is refused, so no `end` follows.
        ({"stores": False}, ["take", "start", "chunk", "chunk", "chunk", "store"]),
        # ... before this attempt claimed it.
        ({"owned": False}, ["take"]),
        ({"turns": [PROMPT, QUEUED._replace(attempt=2)]}, ["take"]),
        # A later attempt whose job is stale stops before it reads anything.
        ({"attempt": 2, "begun": False}, ["begin"]),
    ],
    ids=["mid-answer", "at-start", "in-sql-at-the-end", "at-claim", "newer-row", "stale-job"],
)
def test_fenced_by_a_newer_attempt_it_writes_nothing_more(
    options: dict[str, Any], writes: list[str]
) -> None:
    model = ScriptedModel([Delta("a"), Delta("b"), Delta("c"), stop()])
    lived = live(model, **options)

    assert lived.generation.state is State.FENCED
    assert lived.writes == writes
    assert "end" not in lived.writes and "error" not in lived.writes


def test_handed_back_while_waiting_on_the_model_it_writes_nothing_more() -> None:
    # What the worker raises into its generations when the shutdown grace runs out.
    model = ScriptedModel([Delta("a"), HandedBack()])
    lived = live(model)

    assert lived.generation.state is State.HANDED_BACK
    assert lived.writes == ["take", "start", "chunk"]
    assert lived.ledger.metrics == [("first_token", False)]


@pytest.mark.parametrize("cancel_from", [None, 2], ids=["finished", "cancelled"])
def test_handed_back_during_the_final_store_it_writes_no_final_event(
    cancel_from: int | None,
) -> None:
    model = ScriptedModel([Delta("a"), stop()])
    lived = live(model, cancel_from=cancel_from, store_raises=HandedBack())

    assert lived.generation.state is State.HANDED_BACK
    assert lived.writes == ["take", "start", "chunk"]  # the next attempt finishes it


def test_an_answer_final_already_gets_its_final_event_again() -> None:
    stored = models.Message(
        id=ANSWER,
        status=models.DONE,
        content="said before",
        reasoning="",
        finish_reason="stop",
        duration_ms=7,
        chunk_count=1,
        reasoning_chunk_count=0,
    )
    model = ScriptedModel()
    lived = live(
        model, attempt=2, turns=[PROMPT, QUEUED._replace(status=models.DONE)], stored=stored
    )

    assert lived.generation.state is State.ENDED
    assert lived.writes == ["begin", "take", "end"]
    assert (lived.data("end")["chunks"], lived.data("end")["text_length"]) == (1, 11)
    assert model.asked == []


def test_a_job_for_a_missing_message_ends_in_error() -> None:
    model = ScriptedModel()
    lived = live(model, turns=[PROMPT])

    assert lived.generation.state is State.ENDED
    assert lived.writes == ["take", "error"]
    assert model.asked == []


@pytest.mark.parametrize(
    ("begun", "state", "writes"),
    [
        (True, State.ENDED, ["begin", "rollback", "store", "error"]),
        (False, State.FENCED, ["begin"]),
    ],
    ids=["fails-it", "settled-meanwhile"],
)
def test_a_job_lost_too_often_fails_for_good_unless_settled(
    begun: bool, state: State, writes: list[str]
) -> None:
    lived = Lived(ScriptedModel(), attempt=3, begun=begun)
    fail_lost(lived.generation)

    assert lived.generation.state is state
    assert lived.writes == writes
    if begun:
        assert lived.data("error")["error"]["code"] == events.WORKER_LOST


# -- the table -----------------------------------------------------------------


def reachable(start: State) -> set[State]:
    seen, todo = {start}, [start]
    while todo:
        for after in MOVES[todo.pop()] - seen:
            seen.add(after)
            todo.append(after)
    return seen


def test_every_state_is_reached_from_new_and_every_life_can_end() -> None:
    assert reachable(State.NEW) == set(State)
    for state in State:
        assert any(not MOVES[end] for end in reachable(state)), state
    assert all(MOVES[state] for state in INTERRUPTIBLE)  # an interrupted wait goes on to an end


def test_a_move_the_table_does_not_list_raises_and_changes_nothing() -> None:
    refused = [(a, b) for a in State for b in State if b not in MOVES[a]]
    assert len(refused) > len(State)
    for current, to in refused:
        life = Lifecycle(MOVES, current)
        with pytest.raises(IllegalMove):
            life.move(to)
        assert life.state is current


def test_during_comes_back_to_the_state_before_however_the_call_ends() -> None:
    life = Lifecycle(MOVES, State.WRITING)
    assert life.during(State.ASKING, lambda: life.state) is State.ASKING
    assert life.state is State.WRITING

    def fail() -> None:
        raise ModelError(events.UPSTREAM_ERROR, "broke")

    with pytest.raises(ModelError):
        life.during(State.ASKING, fail)
    assert life.state is State.WRITING


def test_during_refuses_a_state_it_could_not_come_back_from() -> None:
    life, called = Lifecycle(MOVES, State.WRITING), []
    with pytest.raises(IllegalMove):
        life.during(State.ENDED, called.append, "called")
    assert (called, life.state) == ([], State.WRITING)


# -- no state is set outside the table ---------------------------------------------

STATE_NAMES = frozenset({"state", "_state"})
# Where a state may be assigned: the lifecycle's start, and its one method that moves.
ALLOWED = {("lifecycle.py", "Lifecycle.__init__"), ("lifecycle.py", "Lifecycle.move")}


def state_assignments(source: str) -> Iterator[str]:
    """Where `source` assigns an attribute named like a state: "Class.function" or "<module>"."""
    scope: list[str] = []

    def visit(node: ast.AST) -> Iterator[str]:
        named = isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        if named:
            scope.append(node.name)
        where = ".".join(scope) or "<module>"
        if isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Load):
            if node.attr in STATE_NAMES:
                yield where
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            texts = {a.value for a in node.args if isinstance(a, ast.Constant)}
            if name in ("setattr", "__setattr__") and texts & STATE_NAMES:
                yield where
        for child in ast.iter_child_nodes(node):
            yield from visit(child)
        if named:
            scope.pop()

    yield from visit(ast.parse(source))


def test_the_scan_finds_a_state_set_by_assignment_or_setattr() -> None:
    source = (
        "class Generation:\n"
        "    def end(self):\n"
        "        self.state = 'ended'\n"
        "        self.life._state, x = 'ended', 1\n"
        "        setattr(self, 'state', 'ended')\n"
        "        object.__setattr__(self, '_state', 'ended')\n"
        "        print(self.state)\n"
    )
    assert list(state_assignments(source)) == ["Generation.end"] * 4


def test_no_code_in_webapp_write_sets_a_state_but_the_lifecycle() -> None:
    write = Path(ROOT, "webapp", "write")
    found = {
        (path.name, where)
        for path in sorted(write.rglob("*.py"))
        for where in state_assignments(path.read_text())
    }
    assert found == ALLOWED
