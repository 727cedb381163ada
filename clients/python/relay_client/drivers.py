"""The two drivers that perform plans' actions (actions.py): blocking, and asyncio.

They decide nothing: each action becomes one httpx call, a sleep or a token,
and its outcome goes back to the plan. Network errors go back as values
(the plan decides whether to retry); a response that is not SSE raises
ProtocolError. A plan's emitted events are yielded; its return value ends
the run, as `Done` for the asyncio driver (an async generator cannot return
a value).

A driver holds at most one open stream per run and closes it when the run
ends, however it ends (a caller that stops iterating included).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, aclosing, closing
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx
from httpx_sse import EventSource, ServerSentEvent, SSEError

from .actions import Authorize, Emit, Open, Plan, Request, Send, Sleep, headers_for
from .errors import ProtocolError
from .events import Event
from .tokens import Tokens

T = TypeVar("T")
Outcome = httpx.Response | httpx.TransportError


@dataclass(frozen=True)
class Done(Generic[T]):
    value: T


def timeout_for(request: Request, default: httpx.Timeout) -> httpx.Timeout:
    if request.read_timeout is None:
        return default
    return httpx.Timeout(
        connect=default.connect, read=request.read_timeout, write=default.write, pool=default.pool
    )


def request_args(request: Request, token: str | None, default: httpx.Timeout) -> dict[str, Any]:
    return {
        "params": request.params,
        "headers": headers_for(request, token),
        "timeout": timeout_for(request, default),
    }


def step(plan: Plan[Any], outcome: Any) -> Any:
    """The plan's next action, or `Done` with its result."""
    try:
        return plan.send(outcome)
    except StopIteration as done:
        return Done(done.value)


class SyncDriver:
    """Performs plans with `httpx.Client` and `time.sleep`."""

    def __init__(self, http: httpx.Client, tokens: Tokens, timeout: httpx.Timeout) -> None:
        self.http, self.tokens, self.timeout = http, tokens, timeout

    def run(self, plan: Plan[T]) -> T:
        with closing(self.drive(plan)) as items:
            for item in items:
                if isinstance(item, Done):
                    return item.value
        raise AssertionError("a plan ended without a result")

    def iterate(self, plan: Plan[Any]) -> Iterator[Event]:
        return (item for item in self.drive(plan) if not isinstance(item, Done))

    def drive(self, plan: Plan[Any]) -> Generator[Event | Done[Any], None, None]:
        stream: AbstractContextManager[httpx.Response] | None = None
        events: Iterator[ServerSentEvent] | None = None
        outcome: Any = None
        try:
            while not isinstance(action := step(plan, outcome), Done):
                outcome = None
                if isinstance(action, Emit):
                    yield action.event
                elif isinstance(action, Sleep):
                    time.sleep(action.seconds)
                elif isinstance(action, Authorize):
                    outcome = self.authorize(action.renew)
                elif isinstance(action, Send):
                    outcome = self.send(action)
                elif isinstance(action, Open):
                    if stream is not None:
                        stream.__exit__(None, None, None)
                    stream, events, outcome = self.open(action)
                else:
                    assert events is not None, "Receive before Open"
                    outcome = receive(events)
        finally:
            if stream is not None:
                stream.__exit__(None, None, None)
            plan.close()
        yield action  # Done, once everything is closed

    def authorize(self, renew: bool) -> str | None:
        provider = self.tokens.provider
        if provider is not None and (renew or self.tokens.due()):
            self.tokens.store(provider())  # type: ignore[arg-type]
        return self.tokens.current if (provider or not renew) else None

    def send(self, action: Send) -> Outcome:
        request = action.request
        args = request_args(request, action.token, self.timeout)
        try:
            return self.http.request(request.method, request.path, json=request.json, **args)
        except httpx.TransportError as exc:
            return exc

    def open(self, action: Open) -> tuple[Any, Iterator[ServerSentEvent] | None, Outcome]:
        """(the open stream or None, its events, the outcome for the plan)."""
        request = action.request
        args = request_args(request, action.token, self.timeout)
        context = self.http.stream(request.method, request.path, **args)
        try:
            response = context.__enter__()
        except httpx.TransportError as exc:
            return None, None, exc
        if response.status_code == 200:
            return context, EventSource(response).iter_sse(), response
        try:
            response.read()
        except httpx.TransportError as exc:
            return None, None, exc
        finally:
            context.__exit__(None, None, None)
        return None, None, response


class AsyncDriver:
    """Performs plans with `httpx.AsyncClient` and `asyncio.sleep`."""

    def __init__(self, http: httpx.AsyncClient, tokens: Tokens, timeout: httpx.Timeout) -> None:
        self.http, self.tokens, self.timeout = http, tokens, timeout

    async def run(self, plan: Plan[T]) -> T:
        async with aclosing(self.drive(plan)) as items:
            async for item in items:
                if isinstance(item, Done):
                    return item.value
        raise AssertionError("a plan ended without a result")

    async def iterate(self, plan: Plan[Any]) -> AsyncIterator[Event]:
        async with aclosing(self.drive(plan)) as items:
            async for item in items:
                if not isinstance(item, Done):
                    yield item

    async def drive(self, plan: Plan[Any]) -> AsyncGenerator[Event | Done[Any], None]:
        stream: AbstractAsyncContextManager[httpx.Response] | None = None
        events: AsyncIterator[ServerSentEvent] | None = None
        outcome: Any = None
        try:
            while not isinstance(action := step(plan, outcome), Done):
                outcome = None
                if isinstance(action, Emit):
                    yield action.event
                elif isinstance(action, Sleep):
                    await asyncio.sleep(action.seconds)
                elif isinstance(action, Authorize):
                    outcome = await self.authorize(action.renew)
                elif isinstance(action, Send):
                    outcome = await self.send(action)
                elif isinstance(action, Open):
                    if stream is not None:
                        await stream.__aexit__(None, None, None)
                    stream, events, outcome = await self.open(action)
                else:
                    assert events is not None, "Receive before Open"
                    outcome = await areceive(events)
        finally:
            if stream is not None:
                await stream.__aexit__(None, None, None)
            plan.close()
        yield action  # Done, once everything is closed

    async def authorize(self, renew: bool) -> str | None:
        provider = self.tokens.provider
        if provider is not None and (renew or self.tokens.due()):
            token = provider()
            self.tokens.store(await token if inspect.isawaitable(token) else token)
        return self.tokens.current if (provider or not renew) else None

    async def send(self, action: Send) -> Outcome:
        request = action.request
        args = request_args(request, action.token, self.timeout)
        try:
            return await self.http.request(request.method, request.path, json=request.json, **args)
        except httpx.TransportError as exc:
            return exc

    async def open(
        self, action: Open
    ) -> tuple[Any, AsyncIterator[ServerSentEvent] | None, Outcome]:
        request = action.request
        args = request_args(request, action.token, self.timeout)
        context = self.http.stream(request.method, request.path, **args)
        try:
            response = await context.__aenter__()
        except httpx.TransportError as exc:
            return None, None, exc
        if response.status_code == 200:
            return context, EventSource(response).aiter_sse(), response
        try:
            await response.aread()
        except httpx.TransportError as exc:
            return None, None, exc
        finally:
            await context.__aexit__(None, None, None)
        return None, None, response


def receive(events: Iterator[ServerSentEvent]) -> ServerSentEvent | Outcome | None:
    try:
        return next(events, None)
    except httpx.TransportError as exc:
        return exc
    except SSEError as exc:
        raise ProtocolError(str(exc)) from exc


async def areceive(events: AsyncIterator[ServerSentEvent]) -> ServerSentEvent | Outcome | None:
    try:
        return await anext(events, None)
    except httpx.TransportError as exc:
        return exc
    except SSEError as exc:
        raise ProtocolError(str(exc)) from exc
