"""`Client`: relay's HTTP API, blocking, on `httpx.Client`.

Each method runs a plan (calls.py, follow.py) and performs its actions
(actions.py); the asyncio twin, async_client.py, runs the same plans.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any, TypeVar

import httpx

from . import calls
from .actions import Plan
from .answer import Answer
from .base import ClientBase
from .drivers import SyncDriver
from .events import Event, Poll

T = TypeVar("T")


class Client(ClientBase[httpx.Client]):
    """relay's API for one deployment, blocking. Use it as a context manager, or `close()` it.

    The keyword arguments are ClientBase's (base.py): `token` or
    `token_provider`, `transport`, `policy`, `timeout`, `http`.
    """

    is_async = False
    _http_class = httpx.Client
    _driver_class = SyncDriver

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
        return self._iterate(self._events(session_id, after, transport))

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
        (`tool_call_settled`). A deployment without tools answers NotFound.
        """
        self._run(self._approve(session_id, message_id, call_id, approved, reason))

    def tool_output(
        self,
        session_id: str,
        message_id: str,
        call_id: str,
        output: Any = calls.OMITTED,
        *,
        error: str | None = None,
    ) -> None:
        """Give a client tool's result (API.md, Tools): its `output` (any JSON) or its `error`.

        The same rules as `approve`: the same result again is accepted,
        another raises Conflict; a deployment without tools answers NotFound.
        """
        self._run(self._tool_output(session_id, message_id, call_id, output, error))

    # -- performing plans (drivers.py) ------------------------------------------------

    def _run(self, plan: Plan[T]) -> T:
        return self._driver.run(plan)

    def _iterate(self, plan: Plan[Any]) -> Iterator[Event]:
        return self._driver.iterate(plan)
