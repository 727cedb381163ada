"""The answer cache: the same conversation sent to the same model gets the stored answer.

Off unless ANSWER_CACHE_TTL_SECONDS > 0. The key is a hash of everything the
model sees (model name, the messages as sent, system prompt included, and the
sampling settings), so any difference misses. Only whole answers are stored
(finish_reason "stop"): failed, cancelled and cut-off answers never are. Each
entry expires after the TTL, which bounds the cache's share of Redis memory.

A hit is replayed through the session stream chunk by chunk, exactly as it
first streamed, so clients cannot tell it apart except by `"cached": true`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import redis

from . import keys
from .llm import Delta, Finish, Piece

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    chunks: list[str]
    model: str
    finish_reason: str
    usage: dict[str, int] | None

    def pieces(self) -> Iterator[Piece]:
        for text in self.chunks:
            yield Delta(text)
        yield Finish(self.model, self.finish_reason, self.usage)


def cache_key(model: str, messages: list[dict[str, str]], max_tokens: int) -> str:
    """The Redis key for this exact request to the model."""
    request = {"model": model, "messages": messages, "sampling": {"max_tokens": max_tokens}}
    canonical = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return keys.answer_cache(hashlib.sha256(canonical.encode()).hexdigest())


class AnswerCache:
    def __init__(self, client: redis.Redis, ttl_seconds: int) -> None:
        self._client = client
        self._ttl = ttl_seconds

    def get(self, key: str) -> CachedAnswer | None:
        raw = self._client.get(key)
        if raw is None:
            return None
        try:
            return CachedAnswer(**json.loads(raw))
        except (ValueError, TypeError):
            log.warning("ignoring a malformed cache entry %s", key)
            return None

    def put(self, key: str, answer: CachedAnswer) -> None:
        if answer.finish_reason != "stop":
            return  # cut off or cancelled: not an answer to repeat
        self._client.set(key, json.dumps(asdict(answer), ensure_ascii=False), ex=self._ttl)
