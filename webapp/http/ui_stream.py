"""The AI SDK's UI message stream: relay's events in the shape `useChat` reads.

API.md, "AI SDK front ends", makes relay a backend for the AI SDK's
`DefaultChatTransport` (npm `ai`, the version pinned in tests/js/package.json,
whose tests/test_ui_stream.py proves these bytes against it). This module is
the stream's protocol and does no I/O: the routes read Redis and SQL and
pass plain values in. Its neighbours: ui_tools.py (a tool call's chunks and
part), ui_messages.py (`GET /api/chat/{sid}/messages`), chat_request.py
(the body of `POST /api/chat`); the routes are chat_api.py, their body
chat_stream.py.

- `UIMessageStream`: one answer's stream state; `feed` maps one relay event
  to the protocol's chunks, `frames` does that for a stream entry and
  encodes the result as SSE, `catch_up` shows a snapshot's answer.
- `encode`, `DONE`, `HEADERS`: the wire format.

Mapping (API.md): `start` -> `start` (`messageId`) + `start-step`; each
later step -> `finish-step` + `start-step` before its first piece; a run of
`reasoning` pieces -> `reasoning-start`, `reasoning-delta`...,
`reasoning-end`; a run of `chunk`s -> `text-start`, `text-delta`...,
`text-end`; `tool_call` and `tool_result` -> ui_tools.py's chunks; `end` ->
`finish-step` + `finish` (`finishReason`), or `abort` when cancelled;
`waiting` -> `finish-step` + `finish` (`tool-calls`), as a response whose
tool calls wait for the app ends; `error` -> `error` (`errorText`). Then
the route writes `data: [DONE]`. An answer without tools is one step and
streams exactly as it did before tools.

Wiring (the chat routes): one per response. From a snapshot, then the hub
after the snapshot's cursor:

    ui = UIMessageStream(message_id, given=inputs)
    yield encode(ui.catch_up(answer), cursor)  # the snapshot's object, cursor
    for entry in entries_after(cursor):  # the hub's, in order
        out = ui.frames(entry)           # b"" when it maps to nothing
        if out: yield out
        if ui.finished: break
    ... and when ui.finished: yield DONE

A continuation (`POST /api/chat` that gives a waiting answer its inputs)
makes it with `shown_step`, the step the client shows last (it shows the
answer up to there: no `start-step` for it). With `resume_attempt`, the
attempt the inputs made due, it follows from before that attempt began and
skips what comes before its `start` (the paused attempt's last entries).

Deliberate choices:
- A run of one kind of piece is one part: reasoning that comes between
  chunks closes the text part and opens a new reasoning part, as the SDK's
  own `streamText` does for interleaved reasoning.
- A new attempt (a `start` with a higher `attempt`) goes on from its
  `from_step`: when that is the step the client shows last, `reset-step`
  drops what that step shows and the attempt sends it again; a later step
  drops nothing. `reset-step` removes the current step's parts only, so an
  earlier `from_step` (which the journal's rules never give) leaves the
  steps between on the client. `reset-step` exists from ai 7.0.70 on
  (vercel/ai d3cc3fe, packages/ai/src/ui/process-ui-message-stream.ts,
  `case 'reset-step'`); 5.x and 6.x clients fail there with a type
  validation error, and reloading messages shows the final answer.
- A continuation that meets its attempt's `start` at the step the client
  shows does not reset it: the client already shows that step whole (a
  step waits only once its model output is complete), so the attempt's
  text and calls sent again for it are skipped and only its results are
  shown. The page does not flicker, and no client tool runs again.
- A result for a call this response has not shown, and the client does not
  show, is skipped: the SDK throws on a result for a call it does not know.
- A `reset` (relay's cursor-too-old event) is a `reset-step` too; the route
  then loads the snapshot and calls `catch_up` with the answer as it stands.
- Part ids are ours (`text-<attempt>-<n>`): the protocol only needs them
  unique within one response, and a retry never reuses its lost attempt's.
- Events for another message are ignored: a chat stream is one answer.
- `error` carries `"<code>: <message>"`, so an app can tell a timeout from
  a lost worker without parsing prose.
"""

from __future__ import annotations

import enum
from typing import Any

from webapp.http import ui_tools
from webapp.http.ui_tools import Given
from webapp.read.entries import Entry, encode_sse
from webapp.storage import events, models
from webapp.storage.parts import REASONING, TEXT, Parts

Chunk = dict[str, Any]

HEADERS = {"x-vercel-ai-ui-message-stream": "v1"}
# The protocol's last line; a client stops reading at it. No `id:`: it is no entry.
DONE = encode_sse("[DONE]")

# relay's finish_reason -> the protocol's FinishReason spelling.
FINISH_REASONS = {"stop": "stop", "length": "length", "content_filter": "content-filter"}
CANCELLED_REASON = "cancelled"  # the finish_reason of a cancelled answer (API.md)
# How a response whose tool calls wait for the app ends (the SDK's streamText says so too).
WAITING_REASON = "tool-calls"


class Phase(enum.Enum):
    """Where one answer's UI stream is; transitions read top to bottom."""

    NEW = "new"  # nothing sent; the client shows nothing of the answer
    SHOWN = "shown"  # nothing sent; the client shows the answer up to `step`
    AWAITING = "awaiting"  # as SHOWN, and entries before `attempt`'s start are skipped
    STEP = "step"  # start sent; the current step shows nothing
    PARTS = "parts"  # the current step shows parts, none open
    REPLAYED = "replayed"  # the client shows the current step whole: only results are new
    REASONING = "reasoning"  # a reasoning part is open
    TEXT = "text"  # a text part is open
    FINISHED = "finished"  # finish, abort or error sent: nothing more follows


# The part each phase has open, and the chunk-type prefix of that part.
_PART_OF = {Phase.REASONING: "reasoning", Phase.TEXT: "text"}
# Phases whose current step shows something a reset-step would drop.
_SHOWING = frozenset({Phase.PARTS, Phase.REPLAYED, Phase.REASONING, Phase.TEXT})


class UIMessageStream:
    """One answer's UI message stream: its phase, step and attempt as the client sees them."""

    def __init__(
        self,
        message_id: str,
        *,
        given: dict[str, Given] | None = None,
        shown_step: int | None = None,
        resume_attempt: int | None = None,
    ) -> None:
        self.message_id = message_id
        self.phase = Phase.NEW
        self.step = 0  # the relay step of the client's current step
        self.attempt = 0  # the attempt the client shows; 0: unknown (a snapshot's)
        if shown_step is not None:
            self.phase, self.step = Phase.SHOWN, shown_step
        if resume_attempt is not None:
            self.phase, self.attempt = Phase.AWAITING, resume_attempt
        self.given = given or {}  # inputs given to the answer's calls (ui_tools.Given)
        self._part_id = ""  # the open part's id, when phase is REASONING or TEXT
        self._parts = 0  # parts opened so far, for unique ids
        self._calls: dict[str, int] = {}  # call id -> step, for the calls this response shows
        self._pending: dict[str, str] = {}  # call id -> approval id shown requested, unanswered

    @property
    def finished(self) -> bool:
        return self.phase is Phase.FINISHED

    def frames(self, entry: Entry) -> bytes:
        """The SSE bytes for one stream entry (b"" when it maps to no chunk)."""
        return encode(self.feed(entry.event, entry.parsed()), entry.id)

    def feed(self, event: str, data: dict[str, Any]) -> list[Chunk]:
        """The chunks for one relay event, in order (often none, never an error)."""
        if self.phase is Phase.FINISHED:
            return []
        if event == events.RESET:
            return self._reset_step()
        if data.get("message_id") != self.message_id:
            return []
        if event == events.START:
            return self._start(data)
        if event == events.END:
            return self._end(data.get("finish_reason"))
        if event == events.ERROR:
            return self._error(data.get("error") or {})
        if self.phase is Phase.AWAITING:
            return []  # the paused attempt's last words, shown already
        return self._step_event(event, data)

    def _step_event(self, event: str, data: dict[str, Any]) -> list[Chunk]:
        step = int(data.get("step") or 0)
        if event == events.REASONING:
            return self._piece(Phase.REASONING, data.get("text", ""), step)
        if event == events.CHUNK:
            return self._piece(Phase.TEXT, data.get("text", ""), step)
        if event == events.TOOL_CALL:
            return self._tool_call(data, step)
        if event == events.TOOL_RESULT:
            return self._tool_result(data, step)
        if event == events.WAITING:
            return self._finish(WAITING_REASON)
        return []  # a newer event type: nothing to show

    def catch_up(self, message: dict[str, Any]) -> list[Chunk]:
        """Show a snapshot's answer as it stands: its parts, and its end if it has one.

        `message` is the answer's object from a snapshot (API.md). The step
        the client shows last is dropped and sent again with every later
        one, so this starts a response from a snapshot (then the route
        follows the stream after the snapshot's cursor), answers after a
        `reset`, or replays a finished answer (an Idempotency-Key sent again).
        """
        status = message.get("status")
        if self.phase is Phase.FINISHED or (
            self.phase is Phase.AWAITING and status == models.WAITING
        ):
            return []  # still paused: the attempt to follow has not begun
        chunks = self._started() + self._reset_step()
        for part in _parts_of(message):
            if part["step"] >= self.step:
                chunks += [
                    c for event, data in _events_of(part) for c in self._step_event(event, data)
                ]
        if status == models.DONE:
            return chunks + self._end(message.get("finish_reason"))
        if status == models.CANCELLED:
            return chunks + self._end(CANCELLED_REASON)
        if status == models.FAILED:
            return chunks + self._error(message.get("error") or {})
        if status == models.WAITING:
            return chunks + self._finish(WAITING_REASON)
        return chunks

    def _started(self) -> list[Chunk]:
        """`start` (and `start-step` when the client shows nothing yet), unless sent already."""
        if self.phase is Phase.NEW:
            self.phase = Phase.STEP
            return [{"type": "start", "messageId": self.message_id}, {"type": "start-step"}]
        if self.phase in (Phase.SHOWN, Phase.AWAITING):
            self.phase = Phase.PARTS
            return [{"type": "start", "messageId": self.message_id}]
        return []

    def _start(self, data: dict[str, Any]) -> list[Chunk]:
        attempt, from_step = int(data.get("attempt") or 1), int(data.get("from_step") or 0)
        if self.phase is Phase.NEW:
            self.attempt = attempt
            return self._started()
        if attempt < self.attempt or (attempt == self.attempt and self.phase is not Phase.AWAITING):
            return []  # an attempt's start, seen before (or one the awaited attempt replaced)
        continuing = self.phase is Phase.AWAITING
        self.attempt = attempt
        chunks = self._started()
        if from_step > self.step:
            return chunks  # it goes on after every step the client shows
        if from_step == self.step and continuing:
            self.phase = Phase.REPLAYED
            return chunks
        chunks += self._reset_step()
        self.step = from_step
        return chunks

    def _reset_step(self) -> list[Chunk]:
        """Drop what the current step shows (nothing to drop: no chunk)."""
        if self.phase not in _SHOWING:
            return []
        self.phase = Phase.STEP
        self._calls = {call: step for call, step in self._calls.items() if step != self.step}
        return [{"type": "reset-step"}]

    def _at_step(self, step: int, *, result: bool = False) -> list[Chunk] | None:
        """Chunks that make `step` the current one; None for what the client shows already."""
        chunks = self._started()
        if step <= self.step:
            skip = self.phase is Phase.REPLAYED and not result
            return None if skip else chunks
        chunks += self._close_part()
        chunks += [{"type": "finish-step"}, {"type": "start-step"}] * (step - self.step)
        self.phase, self.step = Phase.STEP, step
        return chunks

    def _piece(self, phase: Phase, text: str, step: int) -> list[Chunk]:
        """A reasoning or text piece, opening its part (and closing the other) first."""
        if not text or (chunks := self._at_step(step)) is None:
            return []
        if self.phase is not phase:
            chunks += self._close_part()
            self._parts += 1
            self._part_id = f"{_PART_OF[phase]}-{self.attempt}-{self._parts}"
            self.phase = phase
            chunks.append({"type": f"{_PART_OF[phase]}-start", "id": self._part_id})
        chunks.append({"type": f"{_PART_OF[phase]}-delta", "id": self._part_id, "delta": text})
        return chunks

    def _tool_call(self, data: dict[str, Any], step: int) -> list[Chunk]:
        if (chunks := self._at_step(step)) is None:
            return []
        call_id = str(data["call_id"])
        shown, pending = ui_tools.call_chunks(data, self.given.get(call_id))
        if pending is not None:
            self._pending[call_id] = pending
        self._calls[call_id] = self.step
        chunks += self._close_part()
        self.phase = Phase.PARTS
        return chunks + shown

    def _tool_result(self, data: dict[str, Any], step: int) -> list[Chunk]:
        call_id = str(data["call_id"])
        chunks = self._at_step(step, result=True) or []
        if call_id not in self._calls and self.phase is not Phase.REPLAYED:
            return chunks  # its call is not on the client (module docstring)
        return chunks + ui_tools.result_chunks(call_id, data, self._pending.pop(call_id, None))

    def _close_part(self) -> list[Chunk]:
        if self.phase not in _PART_OF:
            return []
        kind, self.phase = _PART_OF[self.phase], Phase.PARTS
        return [{"type": f"{kind}-end", "id": self._part_id}]

    def _last(self, *final: Chunk) -> list[Chunk]:
        """Close what is open, then the chunks that end the response: nothing follows them."""
        chunks = self._started() + self._close_part()
        self.phase = Phase.FINISHED
        return [*chunks, *final]

    def _finish(self, reason: str) -> list[Chunk]:
        return self._last({"type": "finish-step"}, {"type": "finish", "finishReason": reason})

    def _end(self, finish_reason: str | None) -> list[Chunk]:
        if finish_reason == CANCELLED_REASON:
            return self._last({"type": "abort"})
        return self._finish(FINISH_REASONS.get(finish_reason or "stop", "other"))

    def _error(self, error: dict[str, Any]) -> list[Chunk]:
        code = error.get("code") or "error"
        text = f"{code}: {error['message']}" if error.get("message") else code
        return self._last({"type": "error", "errorText": text})


def _parts_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A snapshot answer's parts (an answer from before parts: its texts, one step)."""
    if message.get("parts") is not None:
        return message["parts"]
    return Parts.of_texts(message.get("content") or "", message.get("reasoning") or "").items


def _events_of(part: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A stored part as the events that made it (a tool's call, and its result once it has one)."""
    if part["type"] in (REASONING, TEXT):
        event = events.REASONING if part["type"] == REASONING else events.CHUNK
        return [(event, {"step": part["step"], "text": part["text"]})]
    result = ui_tools.stored_result(part)
    call = (events.TOOL_CALL, ui_tools.stored_call(part))
    return [call, (events.TOOL_RESULT, result)] if result else [call]


def encode(chunks: list[Chunk], entry_id: str | None = None) -> bytes:
    """Chunks as SSE events, one `data:` line each; the last carries `entry_id`.

    The `id:` on the last event made from an entry lets a generic SSE client
    resume after it with `Last-Event-ID`, as on relay's own streams.
    """
    if not chunks:
        return b""
    last = len(chunks) - 1
    return b"".join(
        encode_sse(events.dumps(chunk), id=entry_id if i == last else None)
        for i, chunk in enumerate(chunks)
    )
