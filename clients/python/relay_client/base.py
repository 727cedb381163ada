"""What `Client` and `AsyncClient` share: their settings, and the answers they make."""

from __future__ import annotations

import weakref
from typing import Any, ClassVar, Generic, TypeVar

import httpx

from . import calls, follow
from .actions import Plan
from .answer import Answer
from .events import Cursor
from .retry import Policy
from .tokens import TokenProvider, Tokens

H = TypeVar("H", httpx.Client, httpx.AsyncClient)


class ClientBase(Generic[H]):
    """relay's API for one deployment; the subclass says how its plans are performed.

    `token` is sent as `Authorization: Bearer`; `token_provider` is called
    for one when there is none, before it expires, and again on a 401 (an
    AsyncClient's may be async). `transport` is how answers are followed:
    "sse" (default), "poll" (long-poll) or "whole" (`?wait=`, the whole
    answer at once). `http` is an httpx client of your own (proxies, TLS);
    its base URL is then the one used.
    """

    is_async: ClassVar[bool]
    _http_class: ClassVar[type]
    _driver_class: ClassVar[type]

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        transport: str = follow.SSE,
        policy: Policy | None = None,
        timeout: float = 30.0,
        http: H | None = None,
    ) -> None:
        if transport not in follow.TRANSPORTS:
            raise ValueError(f"transport must be one of {follow.TRANSPORTS}")
        self.transport = transport
        self.policy = policy or Policy()
        self.tokens = Tokens(token, token_provider)
        self._http: H = http or self._http_class(base_url=base_url, timeout=timeout)
        self._driver: Any = self._driver_class(self._http, self.tokens, httpx.Timeout(timeout))
        # The answers handed out, told of the tool inputs given here (Answer.give).
        self._answers: weakref.WeakValueDictionary[str, Answer] = weakref.WeakValueDictionary()

    def answer(self, session_id: str, message_id: str) -> Answer:
        """An answer to follow, by its ids (one this client did not send, too)."""
        answer = Answer(session_id, message_id, self)
        self._answers[message_id] = answer
        return answer

    def _approve(
        self, sid: str, mid: str, call_id: str, approved: bool, reason: str | None
    ) -> Plan[None]:
        yield from calls.approve(sid, mid, call_id, approved, reason, self.policy)
        self._given(mid, call_id, "running" if approved else "denied")

    def _tool_output(
        self, sid: str, mid: str, call_id: str, output: Any, error: str | None
    ) -> Plan[None]:
        yield from calls.tool_output(sid, mid, call_id, output, error, self.policy)
        if error is None:
            self._given(mid, call_id, "ok", output=output)
        else:
            self._given(mid, call_id, "error", error=error)

    def _given(self, mid: str, call_id: str, status: str, **result: Any) -> None:
        """relay took a tool input: the answer followed here shows it and goes on."""
        answer = self._answers.get(mid)
        if answer is not None:
            answer.give(call_id, status, **result)

    def _follow_answer(self, answer: Answer) -> Plan[None]:
        return follow.answer(answer, self.policy, self.transport)

    def _events(self, session_id: str, after: str | None, transport: str | None) -> Plan[None]:
        return follow.session_events(
            session_id, Cursor(after), self.policy, transport or self.transport
        )
