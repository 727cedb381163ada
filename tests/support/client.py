"""A test client for relay's HTTP API: sessions, prompts, SSE and long-poll readers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

FINAL = ("end", "error")


@dataclass
class Event:
    id: str | None
    event: str
    data: dict[str, Any]

    @property
    def key(self) -> tuple[str | None, str, str]:
        return self.id, self.event, json.dumps(self.data, sort_keys=True)


@dataclass
class RawSSE:
    """Everything one SSE connection received, in order, as parsed fields."""

    events: list[Event] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retry: list[str] = field(default_factory=list)
    first_field: str | None = None


def polls_waiting(base_url: str) -> float:
    """Long-polls (and `?wait=` requests) the web process is waiting on, from its /metrics.

    A poll is counted once its checks have passed (the fast path) or its request
    reached Flask: a test waits for this before acting on a poll it started.
    """
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("relay_long_polls_waiting")
    )


def create_session(http: httpx.Client) -> str:
    response = http.post("/api/sessions")
    assert response.status_code == 201, response.text
    return response.json()["session_id"]


def post_prompt(http: httpx.Client, session_id: str, content: str) -> dict[str, Any]:
    response = http.post(f"/api/sessions/{session_id}/messages", json={"content": content})
    assert response.status_code == 202, response.text
    return response.json()


def assert_answer_streams_and_is_stored(base_url: str, prompt: str, chunks: list[str]) -> None:
    """Post `prompt` to a new session: its SSE answer ends with `end`, whole, and is stored done.

    The end-to-end check of a running deployment (the Procfile, a production venv).
    """
    with httpx.Client(base_url=base_url, timeout=30) as http:
        session_id = create_session(http)
        message_id = post_prompt(http, session_id, prompt)["message_id"]
        raw = read_sse(base_url, session_id, until_message=message_id)
        assert raw.events[-1].event == "end"
        assert answer_text(raw.events, message_id) == "".join(chunks)
        stored = http.get(f"/api/sessions/{session_id}").json()["messages"][-1]
        assert (stored["status"], stored["content"]) == ("done", "".join(chunks))


def iter_sse_lines(response: httpx.Response) -> Iterator[tuple[str, str]]:
    """(field, value) pairs of an SSE body; ("", "") marks the end of a message."""
    for line in response.iter_lines():
        if line == "":
            yield "", ""
            continue
        name, _, value = line.partition(":")
        yield name, value[1:] if value.startswith(" ") else value


def read_sse(
    base_url: str,
    session_id: str,
    *,
    until_message: str | None = None,
    max_events: int | None = None,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> RawSSE:
    """Read one SSE connection until the message's final event or `max_events` events."""
    raw = RawSSE()
    deadline = time.monotonic() + timeout
    url = f"{base_url}/api/sessions/{session_id}/events"
    with httpx.stream(
        "GET", url, headers=headers, params=params, timeout=httpx.Timeout(timeout, connect=5)
    ) as response:
        assert response.status_code == 200, response.read()
        fields: dict[str, str] = {}
        for name, value in iter_sse_lines(response):
            if raw.first_field is None and name:
                raw.first_field = name
            if name == "" and value == "":
                if "event" in fields or "data" in fields:
                    event = Event(
                        fields.get("id"),
                        fields.get("event", "message"),
                        json.loads(fields.get("data", "{}")),
                    )
                    raw.events.append(event)
                    if (
                        until_message
                        and event.event in FINAL
                        and event.data.get("message_id") == until_message
                    ):
                        return raw
                    if max_events is not None and len(raw.events) >= max_events:
                        return raw
                fields = {}
            elif name == "":
                raw.comments.append(value)
            elif name == "retry":
                raw.retry.append(value)
            else:
                assert name not in fields, f"field {name} twice in one event"
                fields[name] = value
            if time.monotonic() > deadline:
                raise AssertionError(f"SSE read timed out; got {len(raw.events)} events")
    return raw


def poll_until(
    http: httpx.Client,
    session_id: str,
    message_id: str,
    *,
    after: str = "0-0",
    timeout: float = 30.0,
    poll_timeout: float = 5.0,
) -> list[Event]:
    """A long-poll loop from `after` until the message's final event."""
    events: list[Event] = []
    deadline = time.monotonic() + timeout
    cursor = after
    while time.monotonic() < deadline:
        response = http.get(
            f"/api/sessions/{session_id}/poll", params={"after": cursor, "timeout": poll_timeout}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["reset"] is False
        for item in body["events"]:
            events.append(Event(item["id"], item["event"], item["data"]))
        cursor = body["cursor"]
        if any(e.event in FINAL and e.data.get("message_id") == message_id for e in events):
            return events
    raise AssertionError(f"long-poll timed out after {len(events)} events")


def answer_text(events: list[Event], message_id: str, kind: str = "chunk") -> str:
    """The text of the message's latest attempt, as a client would show it."""
    text = ""
    for event in events:
        if event.data.get("message_id") != message_id:
            continue
        if event.event == "start":
            text = ""
        elif event.event == kind:
            text += event.data["text"]
    return text


def reasoning_text(events: list[Event], message_id: str) -> str:
    """The reasoning of the message's latest attempt, as a client would show it."""
    return answer_text(events, message_id, kind="reasoning")


def id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


def assert_strictly_increasing(events: list[Event]) -> None:
    keys = [id_key(e.id) for e in events if e.id]
    assert keys == sorted(keys) and len(set(keys)) == len(keys), "ids must strictly increase"


def stream_events(http: httpx.Client, session_id: str, after: str = "0-0") -> list[Event]:
    """Everything the session stream holds after `after`, right now (polls that do not wait)."""
    events: list[Event] = []
    cursor = after
    while True:
        response = http.get(
            f"/api/sessions/{session_id}/poll", params={"after": cursor, "timeout": 0}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        if not body["events"]:
            return events
        events += [Event(item["id"], item["event"], item["data"]) for item in body["events"]]
        cursor = body["cursor"]


def count(events: list[Event], kind: str, **data: Any) -> int:
    return sum(
        1 for e in events if e.event == kind and all(e.data.get(k) == v for k, v in data.items())
    )


def follow_resuming(
    base_url: str, session_id: str, message_id: str, *, timeout: float = 60.0
) -> tuple[list[Event], list[int]]:
    """Follow SSE like a browser: on a closed stream or an error answer, reconnect with
    Last-Event-ID after a short pause. Returns the events and the statuses of failed connects."""
    events: list[Event] = []
    failures: list[int] = []
    deadline = time.monotonic() + timeout
    url = f"{base_url}/api/sessions/{session_id}/events"
    while time.monotonic() < deadline:
        headers = {"Last-Event-ID": events[-1].id} if events else {}
        try:
            with httpx.stream(
                "GET", url, headers=headers, timeout=httpx.Timeout(10, connect=2)
            ) as response:
                if response.status_code != 200:
                    response.read()
                    failures.append(response.status_code)
                    raise httpx.HTTPError(f"status {response.status_code}")
                fields: dict[str, str] = {}
                for name, value in iter_sse_lines(response):
                    if name == "" and value == "" and "data" in fields:
                        event = Event(
                            fields.get("id"),
                            fields.get("event", "message"),
                            json.loads(fields["data"]),
                        )
                        events.append(event)
                        if event.event in FINAL and event.data.get("message_id") == message_id:
                            return events, failures
                        fields = {}
                    elif name not in ("", "retry"):
                        fields[name] = value
        except httpx.HTTPError:
            pass
        time.sleep(0.2)  # a client's reconnect delay, not synchronisation
    raise AssertionError(f"never saw the end of {message_id}; got {len(events)} events")


def poll_resuming(
    base_url: str, session_id: str, message_id: str, *, timeout: float = 60.0
) -> tuple[list[Event], list[int]]:
    """A long-poll loop that retries after error answers and dropped connections."""
    events: list[Event] = []
    failures: list[int] = []
    cursor = "0-0"
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base_url, timeout=httpx.Timeout(10, connect=2)) as http:
        while time.monotonic() < deadline:
            try:
                response = http.get(
                    f"/api/sessions/{session_id}/poll", params={"after": cursor, "timeout": 2}
                )
            except httpx.HTTPError:
                time.sleep(0.2)
                continue
            if response.status_code != 200:
                failures.append(response.status_code)
                time.sleep(0.2)
                continue
            body = response.json()
            events += [Event(item["id"], item["event"], item["data"]) for item in body["events"]]
            cursor = body["cursor"]
            if any(e.event in FINAL and e.data.get("message_id") == message_id for e in events):
                return events, failures
    raise AssertionError(f"long-poll never saw the end of {message_id}")
