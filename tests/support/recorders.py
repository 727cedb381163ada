"""A generation's I/O, recorded: a scripted model, a stream writer and a ledger that write to a list.

Fakes of relay's own interfaces (llm.Model, writer.StreamWriter,
ledger.Ledger), never of Redis or SQL: with them a unit test runs a
generation's whole life and reads, in one `journal`, every write it made in
the order it made them, stream and SQL together. Any end-to-end test uses
the real ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from webapp.storage import models
from webapp.storage.jobs import Job
from webapp.write.llm import Piece
from webapp.write.writer import Written

Entry = tuple[Any, ...]


class RecordingWriter:
    """Writes events into the journal as (event, data), with entry ids counted from 1.

    From write number `fenced_from` on, a write is refused as a newer
    attempt's fence refuses it (recorded as ("refused", event)); from
    `cancel_from` on, its reply says a cancel was asked.
    """

    def __init__(
        self,
        journal: list[Entry],
        *,
        fenced_from: int | None = None,
        cancel_from: int | None = None,
    ) -> None:
        self.journal = journal
        self.fenced_from = fenced_from
        self.cancel_from = cancel_from
        self.writes = 0
        self._sent: Written | None = None

    def _write(self, event: str, data: str) -> Written:
        assert self._sent is None, "a write before the outcome of the one sent was read"
        self.writes += 1
        if self.fenced_from is not None and self.writes >= self.fenced_from:
            self.journal.append(("refused", event))
            return Written("", False)
        self.journal.append((event, json.loads(data)))
        cancel = self.cancel_from is not None and self.writes >= self.cancel_from
        return Written(f"{self.writes}-0", cancel)

    def send(self, event: str, data: str) -> None:
        self._sent = self._write(event, data)

    def sent_written(self) -> Written:
        sent, self._sent = self._sent, None
        assert sent is not None, "nothing was sent"
        return sent

    def append(self, event: str, data: str) -> Written:
        return self._write(event, data)

    def finish(self, event: str, data: str) -> Written:
        return self._write(event, data)


class RecordingLedger:
    """Records SQL writes in the journal as ("store", fields) and ("rollback",); metrics apart.

    `owned`, `begun` and `stores` are the answers of a fence (False: a newer
    attempt owns the answer); `store_raises` is raised by the next store,
    as an interrupt arriving during the SQL write would be.
    """

    def __init__(
        self,
        journal: list[Entry],
        turns: list[models.Turn],
        *,
        owned: bool = True,
        begun: bool = True,
        stores: bool = True,
        stored: Any = None,
        store_raises: BaseException | None = None,
    ) -> None:
        self.journal = journal
        self.turns = turns
        self.owned = owned
        self.begun = begun
        self.stores = stores
        self.stored_message = stored
        self.store_raises = store_raises
        self.metrics: list[Entry] = []

    def begin(self, job: Job) -> bool:
        self.journal.append(("begin", job.attempt))
        return self.begun

    def take(self, job: Job, model: str) -> tuple[bool, list[models.Turn]]:
        self.journal.append(("take", job.attempt))
        return self.owned, self.turns

    def stored(self, job: Job) -> Any:
        return self.stored_message

    def store(self, job: Job, **fields: Any) -> bool:
        if self.store_raises is not None:
            raise self.store_raises
        self.journal.append(("store", fields))
        return self.stores

    def rollback(self) -> None:
        self.journal.append(("rollback",))

    def first_token(self, waited_seconds: float, *, reasoning: bool) -> None:
        self.metrics.append(("first_token", reasoning))

    def ended(self, **figures: Any) -> None:
        self.metrics.append(("ended", figures["finish_reason"], figures["chunks"]))

    def failed(self, code: str, chunks: int) -> None:
        self.metrics.append(("failed", code, chunks))


class ScriptedModel:
    """A model that streams one script per request: its pieces, or an exception to raise.

    It records each request's messages and, before each item, the state of
    the generation that reads it (`watch`), which is the state it waits in.
    """

    name = "scripted"

    def __init__(self, *scripts: list[Piece | BaseException]) -> None:
        self.scripts = list(scripts)
        self.asked: list[list[dict[str, str]]] = []
        self.states_seen: list[Any] = []
        self.watched: Any = None

    def watch(self, generation: Any) -> None:
        self.watched = generation

    def stream(self, messages: list[dict[str, str]]) -> Iterator[Piece]:
        self.asked.append(messages)
        return self._play(self.scripts[len(self.asked) - 1])

    def _play(self, script: list[Piece | BaseException]) -> Iterator[Piece]:
        for item in script:
            if self.watched is not None:
                self.states_seen.append(self.watched.state)
            if isinstance(item, BaseException):
                raise item
            yield item
