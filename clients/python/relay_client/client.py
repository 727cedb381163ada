"""`Client`: relay's HTTP API, blocking, on `httpx.Client`.

Each method runs a plan (calls.py, follow.py) and performs its actions
(actions.py); the asyncio twin, async_client.py, runs the same plans.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any, TypeVar

import httpx

from . import calls, follow
from .actions import Plan
from .answer import Answer
from .drivers import SyncDriver
from .events import Cursor, Event, Poll
from .retry import Policy
from .tokens import TokenProvider, Tokens

T = TypeVar("T")


class Client:
    """relay's API for one deployment. Use it as a context manager, or `close()` it.

    `token` is sent as `Authorization: Bearer`; `token_provider` is called
    for one when there is none, before it expires, and again on a 401.
    `transport` is how answers are followed: "sse" (default), "poll"
    (long-poll) or "whole" (`?wait=`, the whole answer at once).
    """

    is_async = False

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        transport: str = follow.SSE,
        policy: Policy | None = None,
        timeout: float = 30.0,
        http: httpx.Client | None = None,
    ) -> None:
        if transport not in follow.TRANSPORTS:
            raise ValueError(f"transport must be one of {follow.TRANSPORTS}")
        self.transport = transport
        self.policy = policy or Policy()
        self.tokens = Tokens(token, token_provider)
        self._http = http or httpx.Client(base_url=base_url, timeout=timeout)
        self._driver = SyncDriver(self._http, self.tokens, httpx.Timeout(timeout))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- the API ------------------------------------------------------------

    def create_session(self) -> str:
        """A new session's id."""
        return self._run(calls.create_session(self.policy))

    def snapshot(self, session_id: str) -> dict[str, Any]:
        """The session's stored messages, the active answer so far, and `cursor`."""
        return self._run(calls.snapshot(session_id, self.policy))

    def send(self, session_id: str, content: str, *, idempotency_key: str | None = None) -> Answer:
        """Post a prompt; its answer, to `wait()` for or iterate.

        The post carries an Idempotency-Key (a fresh one unless given) and is
        sent again under it when its answer is lost, so it is queued once.
        """
        key = idempotency_key or uuid.uuid4().hex
        accepted = self._run(calls.post_prompt(session_id, content, key, self.policy))
        return self.answer(session_id, accepted["message_id"])

    def answer(self, session_id: str, message_id: str) -> Answer:
        """An answer to follow, by its ids (one this client did not send, too)."""
        return Answer(session_id, message_id, self)

    def regenerate(self, session_id: str, message_id: str) -> Answer:
        """Answer the last prompt again; `message_id` is the last, final answer."""
        accepted = self._run(calls.regenerate(session_id, message_id, self.policy))
        return self.answer(session_id, accepted["message_id"])

    def message(
        self, session_id: str, message_id: str, *, wait: float | None = None
    ) -> dict[str, Any]:
        """One message; with `wait`, once finished or after `wait` seconds (at most 25)."""
        return self._run(calls.message(session_id, message_id, self.policy, wait))

    def cancel(self, session_id: str, message_id: str) -> None:
        """Stop a generation; its stream ends with `finish_reason` "cancelled"."""
        self._run(calls.cancel(session_id, message_id, self.policy))

    def delete(self, session_id: str) -> None:
        """Delete a session, its messages and its stream."""
        self._run(calls.delete(session_id, self.policy))

    def list_sessions(self, before: str | None = None) -> dict[str, Any]:
        """One page of the caller's sessions (access control on): `sessions` and `next`."""
        return self._run(calls.list_sessions(before, self.policy))

    def poll(self, session_id: str, after: str | None = None, timeout: float = 20.0) -> Poll:
        """One long-poll: events after `after` (default: the start), waiting up to `timeout`."""
        return self._run(calls.poll(session_id, after, timeout, self.policy))

    def stream(
        self, session_id: str, after: str | None = None, *, transport: str | None = None
    ) -> Iterator[Event]:
        """The session's events after `after`, each once, resumed after every cut; endless.

        `after` None starts at the beginning of what the server retains. A
        `reset` event carries the reloaded snapshot in `.snapshot`.
        """
        plan = follow.session_events(
            session_id, Cursor(after), self.policy, transport or self.transport
        )
        return self._iterate(plan)

    def approve(
        self,
        session_id: str,
        message_id: str,
        call_id: str,
        approved: bool,
        reason: str | None = None,
    ) -> None:
        """Approve or deny a tool call that waits for a person (API.md, Tools).

        Sending the same decision again is accepted; another raises Conflict
        (`tool_call_settled`).
        """
        body = calls.approval_body(approved, reason)
        self._run(calls.tool_input(session_id, message_id, call_id, "approval", body, self.policy))

    def tool_output(
        self,
        session_id: str,
        message_id: str,
        call_id: str,
        output: Any = calls.OMITTED,
        *,
        error: str | None = None,
    ) -> None:
        """Give a client tool's result (API.md, Tools): its `output` (any JSON) or its `error`."""
        body = calls.output_body(output, error)
        self._run(calls.tool_input(session_id, message_id, call_id, "output", body, self.policy))

    # -- performing plans (drivers.py) ------------------------------------------------

    def _follow_answer(self, answer: Answer) -> Plan[None]:
        return follow.answer(answer, self.policy, self.transport)

    def _run(self, plan: Plan[T]) -> T:
        return self._driver.run(plan)

    def _iterate(self, plan: Plan[Any]) -> Iterator[Event]:
        return self._driver.iterate(plan)
