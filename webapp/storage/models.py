"""SQL tables: chat sessions and their messages, the durable record.

Redis holds the live stream and forgets it after STREAM_TTL_SECONDS; these
rows are what a snapshot, and the model's conversation history, come from.

An answer row is fenced by attempt, as its stream is in Redis (writer.py):
`messages.attempt` names the generation attempt that owns it, and only
that attempt may finish it (`claim_answer`, `finish_answer`). So however
many attempts a lost worker causes, one message has one answer, written once.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import ForeignKey, Index, Integer, String, Text, insert, select, update
from sqlalchemy.orm import Mapped, mapped_column

from webapp.storage import events
from webapp.storage.extensions import db
from webapp.storage.jobs import FIRST_ATTEMPT
from webapp.storage.parts import Parts

USER = "user"
ASSISTANT = "assistant"

QUEUED = "queued"
STREAMING = "streaming"
DONE = "done"
# An answer paused for a person's decision or a client tool's output (API.md,
# Tools): still the session's active generation.
WAITING = "waiting"
FAILED = "error"
CANCELLED = "cancelled"
# An answer replaced by a regenerated one (sessions.py): kept in SQL, left out
# of the snapshot and of the model's history (API.md, regenerate).
SUPERSEDED = "superseded"
FINAL_STATUSES = frozenset({DONE, FAILED, CANCELLED, SUPERSEDED})
# The session's active generation, from its post to its final event.
ACTIVE_STATUSES = frozenset({QUEUED, STREAMING, WAITING})


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_session_id() -> str:
    """192 random bits, URL-safe: holding the id is the only credential."""
    return secrets.token_urlsafe(24)


def new_message_id() -> str:
    return secrets.token_urlsafe(12)


def isoformat(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # SQLite hands back naive datetimes
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat().replace("+00:00", "Z")


class ChatSession(db.Model):
    __tablename__ = "chat_sessions"
    # A caller's sessions, newest first (sessions.list_sessions).
    __table_args__ = (Index("ix_chat_sessions_owner_created_at", "owner", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The token `sub` that created it (auth.py); None while access control is off.
    owner: Mapped[str | None] = mapped_column(String(255))


class Message(db.Model):
    __tablename__ = "messages"

    # `seq` orders messages; `id` is the opaque public id.
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("chat_sessions.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text, default="")
    # What the model streamed as its reasoning (API.md); never part of the
    # history sent to the model (`turns` does not read it).
    reasoning: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16))
    model: Mapped[str | None] = mapped_column(String(128))
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    prompt_tokens: Mapped[int | None]
    completion_tokens: Mapped[int | None]
    total_tokens: Mapped[int | None]
    duration_ms: Mapped[int | None]
    # The generation attempt that owns this row; only it may finish it.
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    chunk_count: Mapped[int | None]
    reasoning_chunk_count: Mapped[int | None]
    # The answer's parts as JSON (parts.py): text, reasoning and tool calls in
    # order. None for answers stored before parts were (their texts stand in).
    parts: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

    @property
    def usage(self) -> dict[str, int] | None:
        if self.total_tokens is None:
            return None
        return {
            "prompt_tokens": self.prompt_tokens or 0,
            "completion_tokens": self.completion_tokens or 0,
            "total_tokens": self.total_tokens,
        }

    @usage.setter
    def usage(self, usage: dict[str, int] | None) -> None:
        usage = usage or {}
        self.prompt_tokens = usage.get("prompt_tokens")
        self.completion_tokens = usage.get("completion_tokens")
        self.total_tokens = usage.get("total_tokens")

    def parts_list(self) -> Parts:
        """The stored parts, or those of the texts for an answer stored before parts were."""
        if self.parts:
            return Parts(json.loads(self.parts))
        return Parts.of_texts(self.content or "", self.reasoning or "")

    def to_json(self) -> dict[str, Any]:
        """The message object of API.md's snapshot."""
        body: dict[str, Any] = {
            "id": self.id,
            "role": self.role,
            "content": self.content,
            "status": self.status,
            "created_at": isoformat(self.created_at),
        }
        if self.role == ASSISTANT:
            body.update(
                reasoning=self.reasoning or "",
                parts=self.parts_list().items,
                model=self.model,
                finish_reason=self.finish_reason,
                usage=self.usage,
            )
            if self.error_code:
                body["error"] = {"code": self.error_code, "message": self.error_message}
        return body


def conversation(session_id: str) -> list[Message]:
    """The messages of a session, oldest first, superseded answers left out."""
    query = (
        select(Message)
        .where(Message.session_id == session_id, Message.status != SUPERSEDED)
        .order_by(Message.seq)
    )
    return list(db.session.scalars(query))


class Turn(NamedTuple):
    """A message as the model's history needs it: a plain row, no ORM object to build."""

    seq: int
    id: str
    role: str
    status: str
    content: str
    attempt: int
    parts: str | None = None  # JSON (parts.py): steps go back to the model as tool messages


# The hot paths of a prompt (its insert, the worker's history read) use the
# table, not the ORM entity: SQLAlchemy then skips its ORM statement handling,
# about 90 us of CPU per statement here.
_messages = Message.__table__


def turns(session_id: str) -> list[Turn]:
    """The model's history: a session's messages, oldest first, superseded answers left out.

    Turns, not ORM objects: a long chat loads several times faster.
    """
    c = _messages.c
    query = (
        select(c.seq, c.id, c.role, c.status, c.content, c.attempt, c.parts)
        .where(c.session_id == session_id, c.status != SUPERSEDED)
        .order_by(c.seq)
    )
    return [Turn(*row) for row in db.session.execute(query)]


def add_prompt(session_id: str, content: str, answer_id: str) -> None:
    """Add a prompt and its queued answer, in that order (`seq`), to the open transaction.

    The answer row is born owned by the job's first attempt, so that attempt
    starts with a read, not a write (generation.py). One Core statement: the
    ORM's unit of work would build two objects and flush them one by one.
    """
    # Both rows name the same columns, or SQLAlchemy sends one statement per row.
    rows = [
        {"id": new_message_id(), "role": USER, "content": content, "status": DONE, "attempt": 0},
        _queued_answer(answer_id),
    ]
    db.session.execute(insert(_messages), [{"session_id": session_id, **row} for row in rows])


def add_answer(session_id: str, answer_id: str) -> None:
    """Add a queued answer to the last prompt, in the open transaction (a regenerate)."""
    db.session.execute(insert(_messages), [{"session_id": session_id, **_queued_answer(answer_id)}])


def _queued_answer(answer_id: str) -> dict[str, Any]:
    """An answer row born owned by the job's first attempt (see add_prompt)."""
    return {
        "id": answer_id,
        "role": ASSISTANT,
        "content": "",
        "status": QUEUED,
        "attempt": FIRST_ATTEMPT,
    }


def supersede(session_id: str, message_id: str) -> bool:
    """Mark a final answer superseded, in the open transaction; False if it is not one."""
    c = _messages.c
    result = db.session.execute(
        update(_messages)
        .where(
            c.session_id == session_id,
            c.id == message_id,
            c.role == ASSISTANT,
            c.status.in_(FINAL_STATUSES - {SUPERSEDED}),
        )
        .values(status=SUPERSEDED)
    )
    return result.rowcount == 1


# An answer that can never finish: its job was never queued (a web process
# died mid-POST) or its claim was lost with Redis's data (jobs.py, snapshot.py).
ORPHAN_ERROR = (
    events.INTERNAL_ERROR,
    "the answer was lost to a server failure before it could finish",
)


def fail_orphans(session_id: str) -> int:
    """Fail the session's unfinished answers, in the open transaction; how many there were.

    Call it only once the session's claim succeeded: then no generation of
    the session is queued or running (the final event releases the claim,
    after the row is final), so an unfinished answer is one whose job was
    never queued.
    """
    c = _messages.c
    result = db.session.execute(
        update(_messages)
        .where(
            c.session_id == session_id,
            c.role == ASSISTANT,
            c.status.not_in(FINAL_STATUSES),
        )
        .values(
            status=FAILED,
            error_code=ORPHAN_ERROR[0],
            error_message=ORPHAN_ERROR[1],
            finished_at=utcnow(),
        )
    )
    return result.rowcount


def find_message(session_id: str, message_id: str) -> Message | None:
    query = select(Message).where(Message.session_id == session_id, Message.id == message_id)
    return db.session.scalar(query)


def claim_answer(session_id: str, message_id: str, attempt: int, model: str) -> bool:
    """Make `attempt` the owner of the answer row, unless a later one is or it is final.

    In the open transaction; the first attempt never needs it (`add_prompt`
    stores the row owned by it already).
    """
    c = _messages.c
    result = db.session.execute(
        update(_messages)
        .where(
            c.session_id == session_id,
            c.id == message_id,
            c.attempt < attempt,
            c.status.not_in(FINAL_STATUSES),
        )
        .values(attempt=attempt, status=STREAMING, model=model)
    )
    return result.rowcount == 1


def take_answer(
    session_id: str, message_id: str, attempt: int, model: str
) -> tuple[bool, list[Turn]]:
    """Claim the answer row for `attempt` and read the session's turns, then commit.

    (whether the attempt owns the row, the turns.) The first attempt owns it
    from birth (`add_prompt`), so it only reads. The transaction ends here:
    a long answer must not hold a pooled connection.
    """
    claimed = attempt == FIRST_ATTEMPT or claim_answer(session_id, message_id, attempt, model)
    history = turns(session_id)
    db.session.commit()
    return claimed, history


def finish_answer(
    session_id: str,
    message_id: str,
    attempt: int,
    *,
    status: str,
    content: str,
    chunk_count: int,
    usage: dict[str, int] | None = None,
    **values: Any,
) -> bool:
    """Store the final answer if `attempt` still owns the row, and commit; False if fenced off.

    An attempt that died before claiming the row leaves it with an older
    attempt number, which a later attempt may still finish.
    """
    usage = usage or {}
    return _update_owned(
        session_id,
        message_id,
        attempt,
        status=status,
        content=content,
        chunk_count=chunk_count,
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        total_tokens=usage.get("total_tokens"),
        finished_at=utcnow(),
        **values,
    )


def pause_answer(
    session_id: str, message_id: str, attempt: int, *, content: str, **values: Any
) -> bool:
    """Store a paused answer as `waiting`, with what it holds so far, and commit; False if fenced off.

    It stays the session's active generation (ACTIVE_STATUSES): the next
    attempt that goes on with it claims the row back (`claim_answer`).
    """
    return _update_owned(session_id, message_id, attempt, status=WAITING, content=content, **values)


def _update_owned(session_id: str, message_id: str, attempt: int, **values: Any) -> bool:
    """Update the answer row if `attempt` (or an older one) owns it and it is not final; commit."""
    c = _messages.c
    result = db.session.execute(
        update(_messages)
        .where(
            c.session_id == session_id,
            c.id == message_id,
            c.attempt <= attempt,
            c.status.not_in(FINAL_STATUSES),
        )
        .values(**values)
    )
    db.session.commit()
    return result.rowcount == 1
