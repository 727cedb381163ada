"""What the checks share: the options, the deployment, and the one answer they all read."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

from .report import Failed, expect
from .wire import Deployment, EventKey, RawStream

SESSION_ID = re.compile(r"\A[A-Za-z0-9_-]{8,64}\Z")


@dataclass
class Options:
    url: str
    token: str | None = None
    origin: str | None = None
    heartbeat_seconds: float = 20.0  # how long to wait for a keep-alive (server default: 15)
    skip_heartbeats: bool = False
    answer_seconds: float = 120.0  # how long an answer may take
    reset_session: str | None = None  # a session whose stream was trimmed, for `reset`
    reset_prompts: int = 2  # answers in the reset check's own session, to trim it


@dataclass
class State:
    options: Options
    deployment: Deployment
    prompt: str = field(default_factory=lambda: f"relay conformance {uuid.uuid4().hex[:8]}: hi")
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    session_id: str | None = None
    message_id: str | None = None
    sessions: list[str] = field(default_factory=list)  # to delete at the end
    _read: RawStream | None = None

    @property
    def sid(self) -> str:
        expect(self.session_id, "no session")
        return str(self.session_id)

    @property
    def mid(self) -> str:
        expect(self.message_id, "no prompt was accepted")
        return str(self.message_id)

    def new_session(self) -> str:
        response = self.deployment.request("POST", "/api/sessions")
        expect(response.status_code == 201, f"POST /api/sessions: status {response.status_code}")
        session_id = response.json().get("session_id")
        expect(
            isinstance(session_id, str) and SESSION_ID.match(session_id),
            f"session_id {session_id!r} is not [A-Za-z0-9_-]{{8,64}}",
        )
        self.sessions.append(session_id)
        return session_id

    def uninterrupted(self) -> RawStream:
        """The session's SSE from its start until the answer's final event, read once."""
        if self._read is None:
            mid = self.mid
            raw = self.deployment.read_sse(
                f"/api/sessions/{self.sid}/events",
                until=lambda frame: frame.ends(mid),
                seconds=self.options.answer_seconds,
            )
            expect(raw.status == 200, f"GET events: status {raw.status}: {raw.body[:120]}")
            expect(raw.frames and raw.frames[-1].ends(mid), "the answer did not end in time")
            self._read = raw
        return self._read

    def keys(self) -> list[EventKey]:
        return self.uninterrupted().keys()

    def ids(self) -> list[str]:
        ids = [frame.id for frame in self.uninterrupted().frames]
        if any(i is None for i in ids):
            raise Failed("an event without exactly one id")
        return [str(i) for i in ids]

    def cleanup(self) -> None:
        for session_id in self.sessions:
            try:
                self.deployment.request("DELETE", f"/api/sessions/{session_id}")
            except Exception:  # best effort: the check's result stands either way
                pass
