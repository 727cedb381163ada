"""The wire as it is: SSE read line by line, long-polls, and the deployment they come from.

The client (relay_client) forgives: it drops repeats, reconnects, skips
what it does not know. The check must not, so it reads the SSE text itself
and keeps every field of every message, in order, as the server sent it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..events import FINAL, id_after, parse_id
from .report import Failed

EventKey = tuple[str | None, str | None, Any]  # (id, event, data parsed): what must match


@dataclass
class Frame:
    """One SSE message: its fields in order (comments apart)."""

    fields: list[tuple[str, str]] = field(default_factory=list)

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.fields if key == name]

    def one(self, name: str) -> str | None:
        found = self.values(name)
        return found[0] if len(found) == 1 else None

    @property
    def id(self) -> str | None:
        return self.one("id")

    @property
    def event(self) -> str | None:
        return self.one("event")

    def data(self) -> Any:
        """The data parsed as JSON, or Failed naming the frame."""
        raw = "\n".join(self.values("data"))
        try:
            return json.loads(raw)
        except ValueError:
            raise Failed(f"event {self.id} {self.event}: data is not JSON: {raw[:80]!r}") from None

    def key(self) -> EventKey:
        return self.id, self.event, self.data()

    def ends(self, message_id: str) -> bool:
        if self.event not in FINAL:
            return False
        data = self.data()
        return isinstance(data, dict) and data.get("message_id") == message_id


@dataclass
class RawStream:
    """Everything one SSE response carried, as sent."""

    status: int
    headers: httpx.Headers
    body: str = ""  # an answer other than 200
    first_field: str | None = None
    retry: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    timed_out: bool = False

    def keys(self) -> list[EventKey]:
        return [frame.key() for frame in self.frames]


class Deployment:
    """The deployment under check: its URL, the token, and one HTTP client."""

    def __init__(self, base_url: str, token: str | None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def headers(self, extra: dict[str, str] | None = None, *, auth: bool = True) -> dict[str, str]:
        headers = dict(extra or {})
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def request(self, method: str, path: str, *, auth: bool = True, **kw: Any) -> httpx.Response:
        headers = self.headers(kw.pop("headers", None), auth=auth)
        return self.http.request(method, path, headers=headers, **kw)

    def read_sse(
        self,
        path: str,
        *,
        until: Callable[[Frame], bool] | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        seconds: float = 60.0,
        stop_on_comment: bool = False,
        auth: bool = True,
    ) -> RawStream:
        """One SSE connection, read until `until(frame)`, a comment (if asked), or `seconds`."""
        deadline = time.monotonic() + seconds
        timeout = httpx.Timeout(10.0, read=seconds)
        with self.http.stream(
            "GET", path, headers=self.headers(headers, auth=auth), params=params, timeout=timeout
        ) as response:
            raw = RawStream(response.status_code, response.headers)
            if response.status_code != 200:
                raw.body = response.read().decode(errors="replace")
                return raw
            try:
                read_frames(response, raw, until, deadline, stop_on_comment)
            except httpx.ReadTimeout:
                raw.timed_out = True
        return raw

    def poll(self, session_id: str, after: str | None, timeout: float = 0) -> dict[str, Any]:
        params = {"timeout": f"{timeout:g}"}
        if after is not None:
            params["after"] = after
        response = self.request(
            "GET", f"/api/sessions/{session_id}/poll", params=params, timeout=timeout + 15
        )
        if response.status_code != 200:
            raise Failed(f"poll after {after}: status {response.status_code}")
        body = response.json()
        if not isinstance(body, dict) or set(body) != {"events", "cursor", "reset"}:
            raise Failed(f"poll after {after}: not {{events, cursor, reset}}: {str(body)[:120]}")
        return body

    def poll_all(self, session_id: str, after: str | None) -> list[EventKey]:
        """Every event after `after` now, by polls that do not wait."""
        keys: list[EventKey] = []
        cursor = after
        while True:
            body = self.poll(session_id, cursor)
            if body["reset"]:
                raise Failed(f"poll after {cursor}: an unexpected reset")
            if not body["events"]:
                return keys
            first = body["events"][0].get("id")
            if cursor not in (None, "0-0") and not (valid_id(first) and id_after(first, cursor)):
                raise Failed(f"poll after {cursor}: the first event is {first}, not after it")
            keys += [(e.get("id"), e.get("event"), e.get("data")) for e in body["events"]]
            if body["cursor"] != body["events"][-1].get("id"):
                raise Failed(f"poll after {cursor}: cursor {body['cursor']} is not the last id")
            cursor = body["cursor"]

    def post_prompt(self, session_id: str, content: str, key: str | None = None) -> httpx.Response:
        headers = {"Idempotency-Key": key or uuid.uuid4().hex}
        return self.request(
            "POST",
            f"/api/sessions/{session_id}/messages",
            json={"content": content},
            headers=headers,
        )

    def follow(self, session_id: str, message_id: str, after: str | None, seconds: float) -> str:
        """Poll until the message's final event; the id of that event."""
        deadline = time.monotonic() + seconds
        cursor = after
        while time.monotonic() < deadline:
            body = self.poll(
                session_id, cursor, timeout=min(5, max(deadline - time.monotonic(), 0))
            )
            for event in body["events"]:
                data = event.get("data") or {}
                if event.get("event") in FINAL and data.get("message_id") == message_id:
                    return str(event["id"])
            cursor = body["cursor"]
        raise Failed(f"message {message_id} did not end within {seconds:g}s")


def read_frames(
    response: httpx.Response,
    raw: RawStream,
    until: Callable[[Frame], bool] | None,
    deadline: float,
    stop_on_comment: bool,
) -> None:
    frame = Frame()
    for line in response.iter_lines():
        if line == "":
            if frame.fields:
                raw.frames.append(frame)
                if until is not None and until(frame):
                    return
            frame = Frame()
        elif line.startswith(":"):
            raw.comments.append(line[1:].strip())
            if stop_on_comment:
                return
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            raw.first_field = raw.first_field or name
            if name == "retry":
                raw.retry.append(value)
            else:
                frame.fields.append((name, value))
        if time.monotonic() > deadline:
            raw.timed_out = True
            return


def valid_id(raw: str | None) -> bool:
    try:
        ms, seq = parse_id(raw or "")
    except ValueError:
        return False
    return ms < 2**64 and seq < 2**64
