"""One way to ask for an answer: `submit`, for a prompt post, a regenerate and `POST /api/chat`.

The views check access and parse their bodies, then call `submit` with what
is asked (a kind below). It does, in this order:

1. the Idempotency-Key (API.md, Retried posts; storage/idempotency.py): a
   key sent again with the same request gets the first answer again;
2. RATE_LIMIT, per client address;
3. the kind's queueing: claim the session (at most one active generation,
   API.md), store the rows, queue the job (`queue_answer`);
4. when the session is busy, the Idempotency-Key again before the 409
   `generation_active`: the same request sent twice at once is one answer;
5. the answer remembered under the key.

It returns a plain `Submitted`, which each view turns into its response (a
202 with JSON, or a UI message stream).

A kind says what it asks for: what its Idempotency-Key record digests
(`key_text`: the same key with another one is a 422) and how it is queued
(`queue`: the new answer's id, or `Busy`). `Prompt` and `Regenerate` are
the kinds. A tool continuation (an approval or a client tool's output that
lets a waiting answer go on, through `POST /api/chat`) is not one: it asks
for no new answer, so none of the steps above is its; it gives its inputs
as the tool input routes do, beside `submit` (continuations.py says why).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

import redis
from flask import current_app, request, url_for

from webapp.exceptions import ApiError
from webapp.http import limits, params
from webapp.storage import idempotency, jobs, models
from webapp.storage.extensions import db, redis_store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Busy:
    """The session's active generation, which a new answer must wait for."""

    message_id: str


class Submission(Protocol):
    """What a client asks for."""

    kind: ClassVar[str]  # its name in log lines

    @property
    def key_text(self) -> str:
        """What the Idempotency-Key's record digests: the same key with another is a 422."""
        ...

    def queue(self, client: redis.Redis, session_id: str) -> str | Busy:
        """Store and queue the answer: its message id, or Busy (nothing stored then)."""
        ...


@dataclass(frozen=True, slots=True)
class Submitted:
    """What a submission got: the answer that will stream, and its 202 body."""

    message_id: str
    answer: idempotency.StoredAnswer  # the JSON body and Location, as kept for a retry
    replayed: bool  # an earlier request with this Idempotency-Key got this answer first


def submit(session_id: str, asked: Submission) -> Submitted:
    """Queue the answer `asked` for, once per Idempotency-Key (module docstring)."""
    client, config = redis_store.client, current_app.config
    retried = idempotency.post(session_id, params.idempotency_key(), asked.key_text)
    if earlier := idempotency.earlier_answer(client, retried):
        return replayed(earlier)
    address = limits.client_address(request, config["PROXY_HOPS"])
    limits.check_prompt_rate(client, address, config["RATE_LIMIT"])
    queued = asked.queue(client, session_id)
    if isinstance(queued, Busy):
        if earlier := idempotency.earlier_answer(client, retried):
            return replayed(earlier)  # the same request, sent twice at once
        raise ApiError(
            409,
            "generation_active",
            "An answer is still being generated.",
            message_id=queued.message_id,
        )
    answer = queued_answer(session_id, queued)
    idempotency.remember(client, retried, answer)
    log.info("answer queued session=%s message=%s kind=%s", session_id, queued, asked.kind)
    return Submitted(queued, answer, replayed=False)


def replayed(earlier: idempotency.StoredAnswer) -> Submitted:
    return Submitted(json.loads(earlier.body)["message_id"], earlier, replayed=True)


def queued_answer(session_id: str, message_id: str) -> idempotency.StoredAnswer:
    """A queued answer's 202 body (API.md, a prompt post) and Location."""
    body = json.dumps(
        {
            "session_id": session_id,
            "message_id": message_id,
            "status": models.QUEUED,
            "events_url": url_for("stream.events", session_id=session_id),
            "poll_url": url_for("stream.poll", session_id=session_id),
        }
    )
    location = url_for("api.get_message", session_id=session_id, message_id=message_id)
    return idempotency.StoredAnswer(body, location)


# -- the kinds ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prompt:
    """A new prompt (checked already: params.prompt), and its answer."""

    content: str
    kind: ClassVar[str] = "prompt"

    @property
    def key_text(self) -> str:
        return self.content

    def queue(self, client: redis.Redis, session_id: str) -> str | Busy:
        message_id = models.new_message_id()

        def store() -> None:
            models.add_prompt(session_id, self.content, message_id)

        return queue_answer(client, session_id, message_id, store)


# The idempotency "prompt" of a regenerate: NUL is refused in prompts, so no
# submitted prompt has this digest.
REGENERATE_KEY_TEXT = "\x00regenerate"


@dataclass(frozen=True, slots=True)
class Regenerate:
    """A new answer to the last prompt; the one it replaces is `superseded` (API.md).

    `message_id` must be the session's last answer, and final: 404
    `message_not_found` for an id the session does not have, 409
    `not_regenerable` otherwise. None (an AI SDK regenerate that names
    none) means the last answer, whichever it is.
    """

    message_id: str | None
    kind: ClassVar[str] = "regenerate"
    key_text: ClassVar[str] = REGENERATE_KEY_TEXT

    def queue(self, client: redis.Redis, session_id: str) -> str | Busy:
        answer_id, superseded = models.new_message_id(), ""

        def store() -> None:
            nonlocal superseded
            superseded = self._supersede(session_id)
            models.add_answer(session_id, answer_id)

        queued = queue_answer(client, session_id, answer_id, store)
        if queued == answer_id:
            log.info(
                "answer regenerated session=%s message=%s superseded=%s",
                session_id,
                answer_id,
                superseded,
            )
        return queued

    def _supersede(self, session_id: str) -> str:
        """Mark the answer to replace `superseded` (in the open transaction); its id."""
        if self.message_id and models.find_message(session_id, self.message_id) is None:
            raise ApiError(404, "message_not_found", "No message with that id in this session.")
        # The claim is ours, so no answer of the session is queued or running:
        # an unfinished one is an orphan, which the snapshot shows as failed.
        models.fail_orphans(session_id)
        history = models.turns(session_id)
        last = next((t for t in reversed(history) if t.role == models.ASSISTANT), None)
        replaced = self.message_id or (last.id if last else "")
        if last is None or last.id != replaced or not models.supersede(session_id, replaced):
            raise ApiError(
                409,
                "not_regenerable",
                "Only the session's last finished answer can be regenerated.",
            )
        return replaced


def queue_answer(
    client: redis.Redis, session_id: str, message_id: str, store: Callable[[], None]
) -> str | Busy:
    """Claim the session for `message_id`, store its rows with `store`, queue its job.

    Returns `message_id` once queued, or Busy with the message id already
    active (nothing is stored then). When `store` or anything after the
    claim fails, the transaction is rolled back, the claim released and the
    error raised.
    """
    claimed = jobs.claim(client, session_id, message_id)
    if claimed.active is not None:
        return Busy(claimed.active)
    try:
        if claimed.previous_unfinished and (orphans := models.fail_orphans(session_id)):
            log.warning("unfinished answer failed session=%s count=%d", session_id, orphans)
        store()
        db.session.commit()
        jobs.enqueue(client, session_id, message_id)
    except Exception:
        db.session.rollback()
        jobs.release(client, session_id, message_id)
        raise
    return message_id
