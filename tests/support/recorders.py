"""A generation's I/O, recorded: a scripted model, a stream writer, a ledger and a step journal.

Fakes of relay's own interfaces (llm.Model, writer.StreamWriter,
ledger.Ledger, step_journal.StepJournal), never of Redis or SQL: with them
a unit test runs a generation's whole life and reads, in one `journal`,
every write it made in the order it made them, stream, SQL and the step
journal together. `MemoryJournal` keeps storage/journal.py's rules in
memory (test_journal.py pins the real ones on a real Redis). Any
end-to-end test uses the real ones.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from webapp.storage import journal, models
from webapp.storage.jobs import Job
from webapp.storage.journal import Journal, NewCall, Outcome
from webapp.storage.models import Turn
from webapp.write.generation import Generation
from webapp.write.llm import Finish, Piece, RetryPolicy
from webapp.write.tools.registry import ToolRegistry
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

    def pause(self, job: Job, **fields: Any) -> bool:
        self.journal.append(("store_waiting", fields))
        return self.stores

    def rollback(self) -> None:
        self.journal.append(("rollback",))

    def first_token(self, waited_seconds: float, *, reasoning: bool) -> None:
        self.metrics.append(("first_token", reasoning))

    def ended(self, **figures: Any) -> None:
        self.metrics.append(("ended", figures["finish_reason"], figures["chunks"]))

    def failed(self, code: str, chunks: int) -> None:
        self.metrics.append(("failed", code, chunks))

    def tool_result(self, tool: str, status: str, seconds: float | None) -> None:
        self.metrics.append(("tool", tool, status, seconds is not None))

    def waiting(self, job: Job, waiting: bool) -> None:
        self.metrics.append(("waiting", waiting))


class ScriptedModel:
    """A model that streams one script per request: its pieces, or an exception to raise.

    It records each request's messages and, before each item, the state of
    the generation that reads it (`watch`), which is the state it waits in.
    """

    name = "scripted"

    def __init__(self, *scripts: list[Piece | BaseException]) -> None:
        self.scripts = list(scripts)
        self.asked: list[list[dict[str, Any]]] = []
        self.requests: list[dict[str, Any]] = []  # each request's tools, tool_choice, step_key
        self.states_seen: list[Any] = []
        self.watched: Any = None

    def watch(self, generation: Any) -> None:
        self.watched = generation

    def stream(self, messages: list[dict[str, Any]], **request: Any) -> Iterator[Piece]:
        self.asked.append(list(messages))
        self.requests.append(request)
        return self._play(self.scripts[len(self.asked) - 1])

    def _play(self, script: list[Piece | BaseException]) -> Iterator[Piece]:
        for item in script:
            if self.watched is not None:
                self.states_seen.append(self.watched.state)
            if isinstance(item, BaseException):
                raise item
            yield item


class MemoryJournal:
    """An answer's step journal in memory, with storage/journal.py's rules, writing as `attempt`.

    Its writes are recorded in the shared `log` as ("step_recorded", n),
    ("call_started", id), ("result_recorded", id, status), ("paused", waits)
    or ("went_on", waits), ("resumed", attempt), ("retired",), so a test reads them in order with
    the stream's and SQL's. `owner` is the attempt the fence lets write;
    `give` stores a person's or front end's input as the web does (and
    `before_pause`, if set, runs as a pause begins: an input arriving just
    then); `cancel` is the session's cancel flag.
    """

    def __init__(self, log: list[Entry], attempt: int = 1) -> None:
        self.log = log
        self.attempt = attempt
        self.owner = attempt
        self.steps: dict[int, dict[str, Any]] = {}
        self.calls: dict[str, dict[str, Any]] = {}
        self.paused: str | None = None
        self.waits: list[tuple[str, str]] = []
        self.cancel = False
        self.resumes = True  # what `resume` answers
        self.before_pause: Callable[[], None] | None = None

    def give(self, call_id: str, given: dict[str, Any]) -> None:
        self.calls[call_id]["input"] = given

    def read(self) -> Journal | None:
        if not self.steps:
            return None
        calls = {
            call_id: journal.Call(
                call_id,
                record["step"],
                record["name"],
                record["waits_for"],
                record["status"],
                record.get("attempt"),
                record.get("result"),
                record.get("input"),
            )
            for call_id, record in self.calls.items()
        }
        return Journal(dict(self.steps), calls, self.paused, list(self.waits))

    def _fenced(self) -> bool:
        return self.attempt != self.owner

    def record_step(self, step: int, output: dict[str, Any], calls: list[NewCall]) -> Outcome:
        if self._fenced():
            return Outcome("fenced")
        if step in self.steps:
            return Outcome("exists", json.dumps(self.steps[step]))
        self.log.append(("step_recorded", step))
        self.steps[step] = json.loads(json.dumps(output))  # as JSON keeps it
        for call in calls:
            self.calls.setdefault(call.call_id, json.loads(call.record(step, self.attempt)))
        return Outcome("ok")

    def start_call(self, call_id: str) -> Outcome:
        if self._fenced():
            return Outcome("fenced")
        record = self.calls.get(call_id)
        if record is None:
            return Outcome("unknown")
        self.log.append(("call_started", call_id))
        if record.get("result") is not None:
            return Outcome("final", self._raw(record))
        if record["status"] == "running" and record.get("attempt") != self.attempt:
            return Outcome("running", self._raw(record))
        record.update(status="running", attempt=self.attempt)
        return Outcome("ok")

    def record_result(self, call_id: str, result: dict[str, Any]) -> Outcome:
        if self._fenced():
            return Outcome("fenced")
        record = self.calls[call_id]
        if record.get("result") is not None:
            return Outcome("final", self._raw(record))
        self.log.append(("result_recorded", call_id, result["status"]))
        record.update(result=json.loads(json.dumps(result)), status=result["status"])
        return Outcome("ok")

    def pause(self, waits: list[tuple[str, str]]) -> str:
        if self.before_pause is not None:
            self.before_pause()
        if self._fenced():
            return "fenced"
        if self.cancel:
            return "cancelled"
        if all(self.calls[call_id].get("input") is not None for call_id, _ in waits):
            self.log.append(("went_on", list(waits)))
            return "go_on"
        self.log.append(("paused", list(waits)))
        self.paused, self.waits = "waiting", list(waits)
        return "paused"

    def resume(self) -> bool:
        self.log.append(("resumed", self.attempt))
        if self.resumes:
            self.paused, self.waits, self.owner = None, [], self.attempt
        return self.resumes

    def retire(self) -> None:
        self.log.append(("retired",))

    @staticmethod
    def _raw(record: dict[str, Any]) -> str:
        """A call's record as the script gives it back: its result as JSON text."""
        raw = dict(record)
        for name in ("result", "input"):
            if raw.get(name) is not None:
                raw[name] = json.dumps(raw[name])
        return json.dumps(raw)


# -- a generation's life, recorded -------------------------------------------------

SESSION, ANSWER = "sess_generation", "answer_1"
PROMPT = Turn(seq=1, id="prompt_1", role=models.USER, status=models.DONE, content="hi?", attempt=1)
QUEUED = Turn(seq=2, id=ANSWER, role=models.ASSISTANT, status=models.QUEUED, content="", attempt=1)
USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
ASKED = [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi?"}]


def stop() -> Finish:
    return Finish("scripted-1", "stop", USAGE)


class Lived:
    """A generation with recording I/O, and what it wrote."""

    def __init__(
        self,
        model: ScriptedModel,
        *,
        attempt: int = 1,
        turns: list[Turn] | None = None,
        fenced_from: int | None = None,
        cancel_from: int | None = None,
        steps: MemoryJournal | None = None,
        tools: ToolRegistry | None = None,
        resume: bool = False,
        max_tool_steps: int = 8,
        **ledger_options: Any,
    ) -> None:
        self.journal: list[Entry] = []
        writer = RecordingWriter(self.journal, fenced_from=fenced_from, cancel_from=cancel_from)
        turns = [PROMPT, QUEUED] if turns is None else turns
        self.ledger = RecordingLedger(self.journal, turns, **ledger_options)
        self.steps = steps if steps is not None else MemoryJournal(self.journal, attempt)
        self.steps.log = self.journal
        self.generation = Generation(
            Job(SESSION, ANSWER, attempt, resume=resume),
            model,
            writer,
            self.ledger,
            journal=self.steps,
            tools=tools if tools is not None else ToolRegistry([], 5.0),
            system_prompt="sys",
            budget_chars=10_000,
            max_tool_steps=max_tool_steps,
            retries=RetryPolicy(backoff_seconds=(0.0,)),  # no pause before asking again
        )
        model.watch(self.generation)

    @property
    def writes(self) -> list[str]:
        """What was written, stream and SQL, in order: event names, "store", "refused"..."""
        return [entry[0] for entry in self.journal]

    def data(self, name: str) -> dict[str, Any]:
        (data,) = [entry[1] for entry in self.journal if entry[0] == name]
        return data


def live(model: ScriptedModel, **options: Any) -> Lived:
    lived = Lived(model, **options)
    lived.generation.run()
    return lived
