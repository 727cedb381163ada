"""`Answer`: one assistant message as a front end shows it, kept up to date from events.

An answer starts from the session's snapshot (the text so far and the
`cursor` it reflects), then applies the events after that cursor, each once:
- `start` with a higher `attempt` (a worker was lost) drops the parts of
  step `from_step` on (all of them for a plain answer: its text starts over);
- `chunk` and `reasoning` grow the parts; `tool_call`, `tool_result` and
  `waiting` track tools (API.md, Tools);
- `end` checks its counts against the parts; when they disagree the answer
  is reloaded from the server, which stored it ("`end` means stored"), and
  IncompleteAnswer is raised if that disagrees too;
- a `reset` replaces everything with the reloaded snapshot's message.

`wait()` (sync) or `await answer` (asyncio) follows the answer until it is
final, or waiting for a tool decision; iterating it yields its events as
they are applied. Following again later goes on from where it stopped. A
decision given through the answer's client (`approve`, `tool_output`) shows
in its part at once (`given`, until events say more): once every call the
answer waits for has its input, following it again goes on until it is
final or waits for other calls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any, Protocol

from . import events as ev
from . import parts as p
from .actions import Plan
from .errors import AnswerFailed, NotFound
from .events import Cursor, Event

FINAL_STATUSES = frozenset({"done", "error", "cancelled"})
WAITING = "waiting"


class Driver(Protocol):
    """The client that follows an answer (client.py or async_client.py)."""

    is_async: bool

    def _follow_answer(self, answer: Answer) -> Plan[None]: ...
    def _run(self, plan: Plan[Any]) -> Any: ...
    def _iterate(self, plan: Plan[Any]) -> Any: ...


class Answer:
    """One assistant message: its parts in order, its status, and how it ended."""

    def __init__(self, session_id: str, message_id: str, driver: Driver | None = None) -> None:
        self.session_id = session_id
        self.message_id = message_id
        self.status = "queued"
        self.parts: list[p.Part] = []
        self.model: str | None = None
        self.attempt = 0
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None  # an `error` event's {"code", "message"}
        self.end: dict[str, Any] | None = None  # the `end` event's data
        self.cursor = Cursor()  # the last event applied; None until the snapshot is read
        self.loaded = False
        self.incomplete = False  # `end` disagreed with the parts (reloaded since)
        # False once a `start` kept earlier steps: `end` counts what this attempt
        # did not stream (parts loaded from a snapshot say so themselves).
        self._counts_known = True
        # call id -> (status, output, error) of an input this client gave (`give`)
        self.given: dict[str, tuple[str, Any, str | None]] = {}
        self._driver = driver

    # -- what it shows ------------------------------------------------------

    @property
    def content(self) -> str:
        return p.joined(self.parts, p.TEXT)

    @property
    def reasoning(self) -> str:
        return p.joined(self.parts, p.REASONING)

    @property
    def tool_calls(self) -> list[p.Part]:
        return [part for part in self.parts if part.type == p.TOOL]

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def settled(self) -> bool:
        """Nothing more comes without someone acting: final, or waiting for tool input."""
        return self.final or self.status == WAITING

    @property
    def needs_input(self) -> bool:
        """Waiting, for a call whose input was not given through this client."""
        return self.status == WAITING and any(
            part.status in p.WAITING_STATUSES for part in self.tool_calls
        )

    @property
    def followed_to_the_end(self) -> bool:
        """Where following stops: final, or waiting for an input not given yet."""
        return self.final or self.needs_input

    def raise_for_status(self) -> Answer:
        """AnswerFailed when the answer ended with an `error`; else the answer."""
        if self.status == "error":
            error = self.error or {}
            raise AnswerFailed(error.get("code"), str(error.get("message", "the answer failed")))
        return self

    def __repr__(self) -> str:
        return (
            f"Answer({self.session_id!r}, {self.message_id!r}, status={self.status!r}, "
            f"attempt={self.attempt}, parts={len(self.parts)}, content={self.content[:40]!r})"
        )

    # -- following -----------------------------------------------------------

    def wait(self) -> Answer:
        """Follow the answer until it is final or waiting for a tool; returns it (sync)."""
        self._sync_driver()._run(self._plan())
        return self

    def __await__(self) -> Generator[Any, None, Answer]:
        return self._await().__await__()

    async def _await(self) -> Answer:
        await self._async_driver()._run(self._plan())
        return self

    def __iter__(self) -> Iterator[Event]:
        """This answer's events as they are applied (sync), until it is settled."""
        return (e for e in self._sync_driver()._iterate(self._plan()) if self._concerns(e))

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._aevents()

    async def _aevents(self) -> AsyncIterator[Event]:
        async for event in self._async_driver()._iterate(self._plan()):
            if self._concerns(event):
                yield event

    def _plan(self) -> Plan[None]:
        assert self._driver is not None
        return self._driver._follow_answer(self)

    def _sync_driver(self) -> Driver:
        return self._driver_for(False, "an AsyncClient's answer: use `await answer`, `async for`")

    def _async_driver(self) -> Driver:
        return self._driver_for(True, "a Client's answer: use `answer.wait()` or `for`")

    def _driver_for(self, is_async: bool, otherwise: str) -> Driver:
        if self._driver is None:
            raise RuntimeError("an Answer made without a client cannot be followed")
        if self._driver.is_async != is_async:
            raise TypeError(otherwise)
        return self._driver

    def _concerns(self, event: Event) -> bool:
        return event.event == ev.RESET or event.message_id == self.message_id

    # -- applying -------------------------------------------------------------

    def load(self, message: dict[str, Any]) -> None:
        """Take the message as the server has it now (a snapshot's, or a stored one)."""
        self.status = message.get("status", self.status)
        self.parts = p.from_message(message)
        self.model = message.get("model", self.model)
        self.finish_reason = message.get("finish_reason")
        self.usage = message.get("usage")
        self.error = message.get("error") if isinstance(message.get("error"), dict) else None
        self.loaded = True
        p.show_given(self.parts, self.given)

    def load_snapshot(self, snapshot: dict[str, Any]) -> bool:
        """Take this message and the cursor from a snapshot; False when it is not there."""
        self.cursor.value = snapshot["cursor"]
        found = next((m for m in snapshot["messages"] if m.get("id") == self.message_id), None)
        if found is None:
            return False
        self.load(found)
        return True

    def apply(self, event: Event) -> bool:
        """Fold one event in (any event of the session: others are ignored); True once
        followed to the end (final, or waiting for input not given)."""
        if event.event == ev.RESET and event.snapshot is not None:
            if not self.load_snapshot(event.snapshot):
                raise NotFound(404, "message_not_found", "the message left the snapshot")
        elif event.message_id == self.message_id:
            self._fold(event.event, event.data)
            p.show_given(self.parts, self.given)
        return self.followed_to_the_end

    def _fold(self, kind: str, data: dict[str, Any]) -> None:
        step = int(data.get("step", 0) or 0)
        if kind == ev.START:
            self._started(data)
        elif kind in p.KIND_OF_EVENT:
            p.append_text(self.parts, p.KIND_OF_EVENT[kind], step, str(data.get("text", "")))
            self.status = "streaming"
        elif kind == ev.TOOL_CALL:
            p.tool_called(self.parts, data)
        elif kind == ev.TOOL_RESULT:
            p.tool_finished(self.parts, data)
        elif kind == ev.WAITING:
            p.tools_waiting(self.parts, data)
            self.status = WAITING
        elif kind == ev.END:
            self._ended(data)
        elif kind == ev.ERROR:
            self.status = "error"
            self.error = data.get("error") if isinstance(data.get("error"), dict) else None

    def _started(self, data: dict[str, Any]) -> None:
        from_step = int(data.get("from_step", 0) or 0)
        self.parts = [part for part in self.parts if part.step < from_step]
        if from_step:
            self._counts_known = False  # `end` counts steps this attempt did not stream
        self.attempt = int(data.get("attempt", self.attempt + 1) or 0)
        self.model = data.get("model", self.model)
        self.status = "streaming"
        self.error = None

    def _ended(self, data: dict[str, Any]) -> None:
        self.end = data
        self.finish_reason = data.get("finish_reason")
        self.usage = data.get("usage")
        self.status = "cancelled" if self.finish_reason == "cancelled" else "done"
        self.check_end()

    def give(self, call_id: str, status: str, output: Any = None, error: str | None = None) -> None:
        """relay took an input for `call_id`: its part shows it while relay still waits."""
        self.given[call_id] = (status, output, error)
        p.show_given(self.parts, self.given)

    def check_end(self) -> bool:
        """Whether the parts disagree with `end`'s counts (kept as `incomplete`)."""
        self.incomplete = self.end is not None and not p.whole(
            self.parts, self.end, self._counts_known
        )
        return self.incomplete
