"""How the conversation sent to the model is built."""

from __future__ import annotations

from webapp.storage import models
from webapp.storage.models import Turn
from webapp.write.generation import build_prompt


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
