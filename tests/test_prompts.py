"""prompts.py: one way to ask for an answer, on the real Redis and SQL (and worker, end to end).

A prompt post, a regenerate and `POST /api/chat` all go through `submit`:
the same Idempotency-Key rules, the same RATE_LIMIT, the same 409.
test_abuse.py, test_sessions.py and test_chat_api.py test each route's
own behaviour.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import httpx
import pytest
import redis
from flask import Flask

from tests.support.client import create_session, poll_until, post_prompt
from tests.support.processes import Process
from webapp.exceptions import ApiError
from webapp.http import prompts
from webapp.settings.config import Rate
from webapp.storage import idempotency, models
from webapp.storage.extensions import db


@contextmanager
def request_from(app: Flask, address: str, headers: dict[str, str] | None = None) -> Iterator[None]:
    """A request context as a route's, from `address` (RATE_LIMIT counts per address)."""
    environ = {"REMOTE_ADDR": address}
    with app.test_request_context(environ_base=environ, headers=headers or {}):
        yield


def new_session(app: Flask) -> str:
    session_id = models.new_session_id()
    db.session.add(models.ChatSession(id=session_id))
    db.session.commit()
    return session_id


@dataclass(frozen=True)
class LosesTheRace:
    """A submission that finds the session busy with `first`, the same request sent at once.

    When `first_answered`, the first request's answer is remembered under the
    key meanwhile, as it is when two posts with one key race.
    """

    first: str
    first_answered: bool
    kind: ClassVar[str] = "test"
    key_text: ClassVar[str] = "the same prompt"

    def queue(self, client: redis.Redis, session_id: str) -> str | prompts.Busy:
        if self.first_answered:
            retried = idempotency.post(session_id, "one-key", self.key_text)
            idempotency.remember(client, retried, prompts.queued_answer(session_id, self.first))
        return prompts.Busy(self.first)


@pytest.mark.parametrize("first_answered", [True, False], ids=["replayed", "refused"])
def test_a_request_that_finds_its_twin_active_gets_the_twins_answer(
    app: Flask, unique: str, first_answered: bool
) -> None:
    first = models.new_message_id()
    with app.app_context():
        session_id = new_session(app)
        with request_from(app, f"race-{unique}", {"Idempotency-Key": "one-key"}):
            if first_answered:
                submitted = prompts.submit(session_id, LosesTheRace(first, first_answered))
                assert (submitted.message_id, submitted.replayed) == (first, True)
            else:
                with pytest.raises(ApiError) as refused:
                    prompts.submit(session_id, LosesTheRace(first, first_answered))
                assert (refused.value.status, refused.value.code) == (409, "generation_active")
                assert refused.value.extra == {"message_id": first}


def test_a_regenerate_counts_against_rate_limit_as_a_prompt_does(
    app: Flask, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "RATE_LIMIT", Rate(1, 3600))
    with app.app_context():
        session_id = new_session(app)
        with request_from(app, f"rate-{unique}"):
            answer = prompts.submit(session_id, prompts.Prompt(f"counted {unique}")).message_id
        with request_from(app, f"rate-{unique}"), pytest.raises(ApiError) as limited:
            prompts.submit(session_id, prompts.Regenerate(answer))
        # Refused before anything was stored: the first answer still stands.
        assert [t.id for t in models.turns(session_id)][1:] == [answer]
    assert (limited.value.status, limited.value.code) == (429, "rate_limited")


def test_a_retried_regenerate_gets_the_first_answer_again(
    client: httpx.Client, worker: Process, unique: str
) -> None:
    session_id = create_session(client)
    answer = post_prompt(client, session_id, f"regenerate once {unique}")["message_id"]
    poll_until(client, session_id, answer, timeout=30)
    key = {"Idempotency-Key": f"regenerate-{unique}"}
    url = f"/api/sessions/{session_id}/messages/{answer}/regenerate"

    first = client.post(url, headers=key)
    again = client.post(url, headers=key)

    assert (first.status_code, again.status_code) == (202, 202)
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["Location"] == first.headers["Location"]
    messages = client.get(f"/api/sessions/{session_id}").json()["messages"]
    assert [m["id"] for m in messages if m["role"] == "assistant"] == [first.json()["message_id"]]
    # One key, one request: the same key on a prompt is another request.
    posted = client.post(
        f"/api/sessions/{session_id}/messages", json={"content": "hi"}, headers=key
    )
    assert (posted.status_code, posted.json()["error"]["code"]) == (422, "idempotency_key_reused")
