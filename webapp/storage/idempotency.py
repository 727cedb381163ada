"""Retried prompt posts (API.md, Retried posts): one key, one answer, for 24 hours.

A post with an Idempotency-Key stores the answer it got (its body and
Location) under a key of its session (keys.idempotency, named by a digest of
the header), together with a digest of the prompt, and lists that key in the
session's index set (keys.idempotency_index), which a session delete reads. The same key sent again
gets that answer back, marked `Idempotent-Replayed: true`, and queues
nothing; with another prompt it is a 422.

Two posts with one key may race: the second finds the session's generation
active (409) and looks for the first one's answer again before refusing
(http/prompts.py, `submit`), so a request sent twice at once is still answered once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import redis

from webapp.exceptions import ApiError
from webapp.storage import keys


@dataclass(frozen=True, slots=True)
class IdempotentPost:
    """A prompt post made with an Idempotency-Key."""

    key: str  # the Redis key of its stored answer
    index: str  # the session's set of such keys (read by a delete)
    content_sha256: str


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    body: str
    location: str


def post(session_id: str, header: str | None, content: str) -> IdempotentPost | None:
    """The post's idempotency, or None when it sent no Idempotency-Key."""
    if header is None:
        return None
    key_digest = hashlib.sha256(header.encode()).hexdigest()[:32]
    content_digest = hashlib.sha256(content.encode()).hexdigest()
    return IdempotentPost(
        keys.idempotency(session_id, key_digest),
        keys.idempotency_index(session_id),
        content_digest,
    )


def earlier_answer(client: redis.Redis, post: IdempotentPost | None) -> StoredAnswer | None:
    """The answer a first post with this key got; 422 if that post had another prompt."""
    if post is None or not (stored := client.get(post.key)):
        return None
    record = json.loads(stored)
    if record["content_sha256"] != post.content_sha256:
        raise ApiError(
            422, "idempotency_key_reused", "This Idempotency-Key was used with a different prompt."
        )
    return StoredAnswer(record["body"], record["location"])


def remember(client: redis.Redis, post: IdempotentPost | None, answer: StoredAnswer) -> None:
    """Keep the answer for posts that send this key again."""
    if post is None:
        return
    record = {
        "content_sha256": post.content_sha256,
        "body": answer.body,
        "location": answer.location,
    }
    # One slot (the session's hash tag), so one atomic transaction, Cluster too.
    with client.pipeline(transaction=True) as pipe:
        pipe.set(post.key, json.dumps(record), ex=keys.IDEMPOTENCY_TTL_SECONDS)
        pipe.sadd(post.index, post.key)
        pipe.expire(post.index, keys.IDEMPOTENCY_TTL_SECONDS)
        pipe.execute()
