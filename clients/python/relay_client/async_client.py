"""`AsyncClient`: relay's HTTP API for asyncio, on `httpx.AsyncClient`.

The same plans as `Client` (client.py), performed by the asyncio driver;
each method is documented on `Client`. An answer is awaited (`await
answer`) or iterated (`async for event in answer`). A caller that stops
iterating a stream early closes it with `contextlib.aclosing`, so that its
connection is released at once rather than when the generator is collected.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import httpx

from . import calls
from .actions import Plan
from .answer import Answer
from .base import ClientBase
from .drivers import AsyncDriver
from .events import Event, Poll

T = TypeVar("T")


class AsyncClient(ClientBase[httpx.AsyncClient]):
    """relay's API for one deployment, for asyncio; `token_provider` may be async."""

    is_async = True
    _http_class = httpx.AsyncClient
    _driver_class = AsyncDriver

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def create_session(self) -> str:
        return await self._run(calls.create_session(self.policy))

    async def snapshot(self, session_id: str) -> dict[str, Any]:
        return await self._run(calls.snapshot(session_id, self.policy))

    async def send(
        self, session_id: str, content: str, *, idempotency_key: str | None = None
    ) -> Answer:
        key = idempotency_key or uuid.uuid4().hex
        accepted = await self._run(calls.post_prompt(session_id, content, key, self.policy))
        return self.answer(session_id, accepted["message_id"])

    async def regenerate(self, session_id: str, message_id: str) -> Answer:
        accepted = await self._run(calls.regenerate(session_id, message_id, self.policy))
        return self.answer(session_id, accepted["message_id"])

    async def message(
        self, session_id: str, message_id: str, *, wait: float | None = None
    ) -> dict[str, Any]:
        return await self._run(calls.message(session_id, message_id, self.policy, wait))

    async def cancel(self, session_id: str, message_id: str) -> None:
        await self._run(calls.cancel(session_id, message_id, self.policy))

    async def delete(self, session_id: str) -> None:
        await self._run(calls.delete(session_id, self.policy))

    async def list_sessions(self, before: str | None = None) -> dict[str, Any]:
        return await self._run(calls.list_sessions(before, self.policy))

    async def poll(self, session_id: str, after: str | None = None, timeout: float = 20.0) -> Poll:
        return await self._run(calls.poll(session_id, after, timeout, self.policy))

    def stream(
        self, session_id: str, after: str | None = None, *, transport: str | None = None
    ) -> AsyncIterator[Event]:
        return self._iterate(self._events(session_id, after, transport))

    async def approve(
        self,
        session_id: str,
        message_id: str,
        call_id: str,
        approved: bool,
        reason: str | None = None,
    ) -> None:
        await self._run(self._approve(session_id, message_id, call_id, approved, reason))

    async def tool_output(
        self,
        session_id: str,
        message_id: str,
        call_id: str,
        output: Any = calls.OMITTED,
        *,
        error: str | None = None,
    ) -> None:
        await self._run(self._tool_output(session_id, message_id, call_id, output, error))

    async def _run(self, plan: Plan[T]) -> T:
        return await self._driver.run(plan)

    def _iterate(self, plan: Plan[Any]) -> AsyncIterator[Event]:
        return self._driver.iterate(plan)
