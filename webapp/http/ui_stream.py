"""The AI SDK's UI message stream: relay's events in the shape `useChat` reads.

API.md, "AI SDK front ends", makes relay a backend for the AI SDK's
`DefaultChatTransport` (npm `ai`, the version pinned in tests/js/package.json,
whose tests/test_ui_stream.py proves these bytes against it). This module is
the whole protocol and does no I/O: the routes read Redis and SQL and pass
plain values in.

- `UIMessageStream`: one answer's stream state; `feed` maps one relay event
  to the protocol's chunks, `frames` does that for a stream entry and
  encodes the result as SSE.
- `encode`, `DONE`, `HEADERS`: the wire format.
- `ui_messages`: a snapshot's messages as UI messages (`GET /api/chat/{sid}/messages`).
- `parse_chat_request`: the body `DefaultChatTransport` POSTs (`POST /api/chat`).

The routes (chat_api.py; their streaming body is chat_stream.py), each with
the checks of its relay twin (access control, CORS, rate limits,
Idempotency-Key, SSE_MAX_SECONDS):
- `POST /api/chat`: `parse_chat_request`, then a prompt post (submit) or a
  regenerate (regenerate-message; `message_id` None: the last answer); an
  error is API.md's JSON with its status, which the transport throws with
  the body as its message. Success: `200` SSE, headers `HEADERS` and the SSE
  ones, body as `UIMessageStream` says. A replayed Idempotency-Key streams
  the first request's answer (`catch_up` ends it when it is finished).
- `GET /api/chat/{sid}/stream`: `204` when the snapshot has no active
  answer, else the same body for `active_message_id`.
- `GET /api/chat/{sid}/messages`: `ui_messages(snapshot messages, active id)`.
- `POST /api/chat/{sid}/stop`: the cancel of the active answer, `202`.

Mapping (API.md): `start` -> `start` (`messageId`) + `start-step`; a run of
`reasoning` pieces -> `reasoning-start`, `reasoning-delta`..., `reasoning-end`;
a run of `chunk`s -> `text-start`, `text-delta`..., `text-end`; `end` ->
`finish-step` + `finish` (`finishReason`), or `abort` when cancelled;
`error` -> `error` (`errorText`). Then the route writes `data: [DONE]`.

Deliberate choices:
- A run of one kind of piece is one part: reasoning that comes between
  chunks closes the text part and opens a new reasoning part, as the SDK's
  own `streamText` does for interleaved reasoning. A model that reasons
  first and then answers (the usual case) makes one part of each.
- A new attempt after a lost worker (a `start` with a higher `attempt`) is a
  `reset-step`: the client removes every part of the current step (all this
  answer's parts: it has one step), so the retry's text is never shown next
  to the lost attempt's. `reset-step` exists from ai 7.0.70 on
  (vercel/ai d3cc3fe, "Added a `reset-step` UI stream chunk";
  packages/ai/src/ui/process-ui-message-stream.ts, `case 'reset-step'`).
  Older clients (5.x, 6.x) reject the unknown chunk type, so their stream
  fails with a type validation error at that point: the answer stops there
  and the app sees an error; reloading messages shows the final answer.
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
from dataclasses import dataclass
from typing import Any, Literal

from webapp.exceptions import ApiError
from webapp.read.entries import Entry, encode_sse
from webapp.storage import events, models

Chunk = dict[str, Any]

HEADERS = {"x-vercel-ai-ui-message-stream": "v1"}
# The protocol's last line; a client stops reading at it. No `id:`: it is no entry.
DONE = encode_sse("[DONE]")

# relay's finish_reason -> the protocol's FinishReason spelling.
FINISH_REASONS = {"stop": "stop", "length": "length", "content_filter": "content-filter"}
CANCELLED_REASON = "cancelled"  # the finish_reason of a cancelled answer (API.md)

SUBMIT = "submit-message"
REGENERATE = "regenerate-message"


class Phase(enum.Enum):
    """Where one answer's UI stream is; transitions read top to bottom."""

    NEW = "new"  # nothing sent yet
    STEP = "step"  # start and start-step sent; the current step shows nothing
    REASONING = "reasoning"  # a reasoning part is open
    TEXT = "text"  # a text part is open
    FINISHED = "finished"  # finish, abort or error sent: nothing more follows


# The part each phase has open, and the chunk-type prefix of that part.
_PART_OF = {Phase.REASONING: "reasoning", Phase.TEXT: "text"}


class UIMessageStream:
    """One answer's UI message stream: which part is open, which attempt shows.

    Wiring (the chat routes): make one per response with the answer's
    message id. Start it from a snapshot, then follow the hub after the
    snapshot's cursor:

        ui = UIMessageStream(message_id)
        yield encode(ui.catch_up(answer), cursor)  # the snapshot's object, cursor
        for entry in entries_after(cursor):  # the hub's, in order
            out = ui.frames(entry)           # b"" when it maps to nothing
            if out: yield out
            if ui.finished: break
        ... and when ui.finished: yield DONE

    `catch_up` sends the text so far as one delta and, for a finished
    answer, its end, so the same code replays a finished answer. A `start`
    after a catch-up that showed text is a new attempt (the shown one
    started before the cursor), so it resets the step. On a `reset` entry,
    `frames` sends `reset-step`: take a new snapshot and `catch_up` again.
    A generic SSE client that reconnects with `Last-Event-ID` is followed
    from that id with no catch-up (it has the text up to there).
    """

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.phase = Phase.NEW
        self.attempt = 0  # the attempt the client shows; 0: unknown (a snapshot's)
        self._part_id = ""  # the open part's id, when phase is REASONING or TEXT
        self._parts = 0  # parts opened so far, for unique ids

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
        if event == events.REASONING:
            return self._piece(Phase.REASONING, data.get("text", ""))
        if event == events.CHUNK:
            return self._piece(Phase.TEXT, data.get("text", ""))
        if event == events.END:
            return self._end(data.get("finish_reason"))
        if event == events.ERROR:
            return self._error(data.get("error") or {})
        return []  # a newer event type: nothing to show

    def resync(self, reasoning: str, content: str) -> list[Chunk]:
        """Show exactly these texts so far, replacing whatever the step shows."""
        if self.phase is Phase.FINISHED:
            return []
        chunks = self._started() + self._reset_step()
        return chunks + self._piece(Phase.REASONING, reasoning) + self._piece(Phase.TEXT, content)

    def catch_up(self, message: dict[str, Any]) -> list[Chunk]:
        """Show a snapshot's answer as it stands: its texts, and its end if it has one.

        `message` is the answer's object from a snapshot (API.md). This is how
        a route starts a response from a snapshot (then follows the stream
        after the snapshot's cursor), answers after a `reset`, or replays a
        finished answer (an Idempotency-Key sent again).
        """
        chunks = self.resync(message.get("reasoning") or "", message.get("content") or "")
        status = message.get("status")
        if status == models.DONE:
            return chunks + self._end(message.get("finish_reason"))
        if status == models.CANCELLED:
            return chunks + self._end(CANCELLED_REASON)
        if status == models.FAILED:
            return chunks + self._error(message.get("error") or {})
        return chunks

    def _started(self) -> list[Chunk]:
        """`start` and `start-step`, unless sent already."""
        if self.phase is not Phase.NEW:
            return []
        self.phase = Phase.STEP
        return [{"type": "start", "messageId": self.message_id}, {"type": "start-step"}]

    def _start(self, data: dict[str, Any]) -> list[Chunk]:
        attempt = int(data.get("attempt") or 1)
        if self.phase is Phase.NEW:
            self.attempt = attempt
            return self._started()
        if attempt <= self.attempt:
            return []  # this attempt's start, seen before
        self.attempt = attempt
        return self._reset_step()

    def _reset_step(self) -> list[Chunk]:
        """Drop what the current step shows (nothing to drop: no chunk)."""
        if self.phase not in _PART_OF:
            return []
        self.phase = Phase.STEP
        return [{"type": "reset-step"}]

    def _piece(self, phase: Phase, text: str) -> list[Chunk]:
        """A reasoning or text piece, opening its part (and closing the other) first."""
        if not text:
            return []
        chunks = self._started()
        if self.phase is not phase:
            chunks += self._close_part()
            self._parts += 1
            self._part_id = f"{_PART_OF[phase]}-{self.attempt}-{self._parts}"
            self.phase = phase
            chunks.append({"type": f"{_PART_OF[phase]}-start", "id": self._part_id})
        chunks.append({"type": f"{_PART_OF[phase]}-delta", "id": self._part_id, "delta": text})
        return chunks

    def _close_part(self) -> list[Chunk]:
        if self.phase not in _PART_OF:
            return []
        kind, self.phase = _PART_OF[self.phase], Phase.STEP
        return [{"type": f"{kind}-end", "id": self._part_id}]

    def _end(self, finish_reason: str | None) -> list[Chunk]:
        chunks = self._started() + self._close_part()
        self.phase = Phase.FINISHED
        if finish_reason == CANCELLED_REASON:
            return [*chunks, {"type": "abort"}]
        reason = FINISH_REASONS.get(finish_reason or "stop", "other")
        return [*chunks, {"type": "finish-step"}, {"type": "finish", "finishReason": reason}]

    def _error(self, error: dict[str, Any]) -> list[Chunk]:
        chunks = self._started() + self._close_part()
        self.phase = Phase.FINISHED
        code = error.get("code") or "error"
        text = f"{code}: {error['message']}" if error.get("message") else code
        return [*chunks, {"type": "error", "errorText": text}]


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


def ui_messages(messages: list[dict[str, Any]], active_message_id: str | None) -> list[Chunk]:
    """A snapshot's messages as UI messages, leaving out the active answer.

    The active answer is left out because `useChat` resumes it from
    `GET /api/chat/{sid}/stream`, which replays it from its beginning:
    listed here too, it would show twice. An answer has its reasoning part
    first (when there is any reasoning), then its text part, even when empty
    (a failed answer), so every answer is a message the app can regenerate.
    """
    out = []
    for message in messages:
        if message["id"] == active_message_id:
            continue
        parts = []
        if message.get("reasoning"):
            parts.append({"type": "reasoning", "text": message["reasoning"]})
        parts.append({"type": "text", "text": message.get("content", "")})
        out.append({"id": message["id"], "role": message["role"], "parts": parts})
    return out


@dataclass(frozen=True)
class ChatRequest:
    """What a `POST /api/chat` asks for, its ids still unchecked in shape."""

    session_id: str  # the body's `id`: the chat id given to useChat
    trigger: Literal["submit-message", "regenerate-message"]
    prompt: str  # submit: the last user message's text; regenerate: ""
    message_id: str | None  # regenerate: the answer to regenerate (None: the last)


def parse_chat_request(body: Any) -> ChatRequest:
    """Read the body `DefaultChatTransport` sends: `{id, messages, trigger, messageId}`.

    `body` is the parsed JSON (None when it did not parse). Raises ApiError
    with API.md's 400 codes. The caller then checks the ids' shape and the
    prompt as a prompt post does (`valid_id`, the prompt rules and
    MAX_PROMPT_CHARS), so those rules keep one home.

    For `submit-message` the prompt is the text parts of the last message,
    which must be the user's, joined by blank lines; other parts (files) are
    ignored and the rest of `messages` is not read: relay's stored history is
    the conversation. The body's `messageId` (an edit of an earlier message)
    is not supported and is ignored.
    """
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The body must be a JSON object.")
    session_id = body.get("id")
    if not isinstance(session_id, str):
        raise ApiError(400, "invalid_session_id", 'The body\'s "id" must be a session id.')
    trigger = body.get("trigger", SUBMIT)
    if trigger == REGENERATE:
        message_id = body.get("messageId")
        if message_id is not None and not isinstance(message_id, str):
            raise ApiError(400, "invalid_message_id", '"messageId" must be a message id.')
        return ChatRequest(session_id, REGENERATE, "", message_id)
    if trigger != SUBMIT:
        raise ApiError(400, "invalid_json", f'"trigger" must be "{SUBMIT}" or "{REGENERATE}".')
    return ChatRequest(session_id, SUBMIT, _last_user_text(body.get("messages")), None)


def _last_user_text(messages: Any) -> str:
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "invalid_json", '"messages" must be a non-empty array.')
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        raise ApiError(400, "invalid_prompt", "The last message must be the user's.")
    parts = last.get("parts")
    if not isinstance(parts, list):
        raise ApiError(400, "invalid_json", 'A message\'s "parts" must be an array.')
    texts = []
    for part in parts:
        if not isinstance(part, dict):
            raise ApiError(400, "invalid_json", "A message part must be an object.")
        if part.get("type") == "text":
            if not isinstance(part.get("text"), str):
                raise ApiError(400, "invalid_json", 'A text part\'s "text" must be a string.')
            texts.append(part["text"])
    if not texts:
        raise ApiError(400, "empty_prompt", "The last user message has no text.")
    return "\n\n".join(texts)
