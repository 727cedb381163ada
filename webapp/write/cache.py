"""The answer cache: the same conversation sent to the same model gets the stored answer.

Off unless ANSWER_CACHE_TTL_SECONDS > 0. The key is a hash of everything the
model sees (model name, the messages as sent, system prompt included, and the
sampling settings), so any difference misses. Only whole answers are stored
(finish_reason "stop"): failed, cancelled and cut-off answers never are, nor
is an answer that called a tool (API.md, Exactly once: its result may differ
next time, and a replay would not run it), nor is one served to an answer
that goes on after a tool. Each
entry expires after the TTL, which bounds the cache's share of Redis memory.

A hit is replayed through the session stream piece by piece, exactly as it
first streamed (reasoning and answer interleaved as they came), so clients
cannot tell it apart except by `"cached": true`. An entry stored in an older
shape reads as a miss (`get`), and is replaced.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import redis

from webapp.ops import metrics
from webapp.storage import events, keys
from webapp.write.llm import Delta, Finish, Messages, Piece, Reasoning

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    # Each piece as [event, text], the event `chunk` or `reasoning`, in stream order.
    parts: list[list[str]]
    model: str
    finish_reason: str
    usage: dict[str, int] | None

    @classmethod
    def of(cls, pieces: list[Delta | Reasoning], finish: Finish) -> CachedAnswer:
        """The answer an attempt streamed, to store."""
        parts = [
            [events.REASONING if type(p) is Reasoning else events.CHUNK, p.text] for p in pieces
        ]
        return cls(parts, finish.model, finish.finish_reason, finish.usage)

    def pieces(self) -> Iterator[Piece]:
        for event, text in self.parts:
            yield Reasoning(text) if event == events.REASONING else Delta(text)
        yield Finish(self.model, self.finish_reason, self.usage)


def cache_key(
    model: str, messages: Messages, max_tokens: int, tools: Sequence[Mapping[str, Any]] = ()
) -> str:
    """The Redis key for this exact request to the model (the tools it is offered included)."""
    request: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "sampling": {"max_tokens": max_tokens},
    }
    if tools:  # without tools, the key is what it always was
        request["tools"] = list(tools)
    canonical = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return keys.answer_cache(hashlib.sha256(canonical.encode()).hexdigest())


class AnswerCache:
    """Whole answers, by the exact request that produced them, each kept for the TTL."""

    def __init__(self, client: redis.Redis, ttl_seconds: int, max_tokens: int) -> None:
        self._client = client
        self._ttl = ttl_seconds
        self._max_tokens = max_tokens

    @classmethod
    def from_settings(cls, client: redis.Redis, settings: Mapping[str, Any]) -> AnswerCache | None:
        """The cache, or None when ANSWER_CACHE_TTL_SECONDS turns it off."""
        ttl = settings["ANSWER_CACHE_TTL_SECONDS"]
        return cls(client, ttl, settings["LLM_MAX_TOKENS"]) if ttl > 0 else None

    def lookup(
        self, model: str, messages: Messages, tools: Sequence[Mapping[str, Any]] = ()
    ) -> tuple[str, CachedAnswer | None]:
        """This request's cache key, and its stored answer if there is one (counted in metrics)."""
        key = cache_key(model, messages, self._max_tokens, tools)
        cached = self.get(key)
        metrics.cache_lookup(self._client, hit=cached is not None)
        return key, cached

    def get(self, key: str) -> CachedAnswer | None:
        raw = self._client.get(key)
        if raw is None:
            return None
        try:
            return CachedAnswer(**json.loads(raw))
        except (ValueError, TypeError):  # malformed, or an older shape
            log.warning("ignoring a malformed cache entry %s", key)
            return None

    def put(self, key: str, answer: CachedAnswer) -> None:
        if answer.finish_reason != events.FINISH_STOP:
            return  # cut off or cancelled: not an answer to repeat
        self._client.set(key, json.dumps(asdict(answer), ensure_ascii=False), ex=self._ttl)
