"""The Python client with access control on (API.md, Access control): tokens renewed
through the provider before they expire and after a 401, and a refusal that stops.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from relay_client import AsyncClient, Client, Event, Forbidden, Policy, Unauthorized

from tests.support.model_server import ModelServer
from tests.support.processes import Process, start_web, wait_for

pytestmark = pytest.mark.slow

SECRET = "a-test-secret-for-the-python-client"
# Checked as `end` is yielded: the client would then reload the stored answer, which
# would hide a lost or repeated chunk.
REPAIRED = "`end` disagreed with what the events made"
POLICY = Policy(seed=7, backoff_seconds=0.05, reconnect_seconds=0.05)


class Minter:
    """A token provider, as a team's backend would be: counts its calls."""

    def __init__(self, ttl: float = 300, bad: int = 0, sub: str = "alice", **claims: Any) -> None:
        self.ttl, self.bad, self.sub, self.claims = ttl, bad, sub, claims
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            self.calls += 1
            key = "not-the-secret-" * 3 if self.calls <= self.bad else SECRET
        claims = {"sub": self.sub, "exp": int(time.time() + self.ttl), **self.claims}
        return jwt.encode(claims, key, "HS256")


@pytest.fixture(scope="module")
def auth_web(base_env: dict[str, str], app: Any, log_dir: Path, worker: Process) -> Iterator[str]:
    """A web server of the shared stack with access control on (and the shared worker)."""
    env = dict(base_env, AUTH_JWT_SECRET=SECRET, SSE_RETRY_MS="20")
    proc, base_url = start_web(env, log_dir, name="web-client-tokens")
    yield base_url
    proc.stop()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_token_that_expires_mid_answer_is_renewed_and_nothing_is_lost(
    auth_web: str, model_server: ModelServer, unique: str, mode: str
) -> None:
    prompt, texts = f"renew {mode} {unique}", [f"r{i:02d} " for i in range(20)]
    behavior = model_server.behave(prompt, chunks=texts, gate_after=5, delay_seconds=0.002)
    minter = Minter(ttl=2)

    def release_after_a_renewal() -> None:
        # The server ends the stream when its token expires (plus its leeway);
        # the client comes back with a new one, then the rest streams.
        wait_for(lambda: minter.calls >= 2, timeout=30, what="a renewal")
        behavior.gate.set()

    threading.Thread(target=release_after_a_renewal, daemon=True).start()
    if mode == "sync":
        with Client(auth_web, token_provider=minter, policy=POLICY) as relay:
            answer = relay.send(relay.create_session(), prompt)
            events: list[Event] = []
            for event in answer:
                events.append(event)
                assert not answer.incomplete, REPAIRED
    else:

        async def follow() -> tuple[Any, list[Event]]:
            async with AsyncClient(auth_web, token_provider=minter, policy=POLICY) as relay:
                answer = await relay.send(await relay.create_session(), prompt)
                events: list[Event] = []
                async for event in answer:
                    events.append(event)
                    assert not answer.incomplete, REPAIRED
                return answer, events

        answer, events = asyncio.run(follow())
    ids = [e.id for e in events]
    assert len(ids) == len(set(ids))
    # The chunks yielded are the answer's last ones, in order (its snapshot may hold
    # the first few), and the last 15 came after the renewal.
    chunks = [e.data["text"] for e in events if e.event == "chunk"]
    assert len(chunks) >= 15 and chunks == texts[-len(chunks) :]
    assert (answer.status, answer.content, answer.incomplete) == ("done", "".join(texts), False)
    assert minter.calls >= 2


def test_a_refused_token_is_renewed_once_through_an_async_provider(
    auth_web: str, unique: str
) -> None:
    minter = Minter(bad=1)

    async def provider() -> str:
        return minter()

    async def ask() -> Any:
        async with AsyncClient(auth_web, token_provider=provider, policy=POLICY) as relay:
            session_id = await relay.create_session()
            calls_after_create = minter.calls
            answer = await (await relay.send(session_id, f"async renew {unique}"))
            return calls_after_create, answer

    calls_after_create, answer = asyncio.run(ask())
    assert calls_after_create == 2  # the refused token, then its replacement
    assert answer.status == "done" and answer.content


def test_a_token_refused_after_renewal_stops_every_call_and_stream(auth_web: str) -> None:
    good = Minter()
    with Client(auth_web, token_provider=good) as relay:
        session_id = relay.create_session()
    revoked = Minter(bad=10**6)
    with Client(auth_web, token_provider=revoked, policy=POLICY) as relay:
        with pytest.raises(Unauthorized) as refused:
            relay.create_session()
        assert (refused.value.code, revoked.calls) == ("unauthorized", 2)
        with pytest.raises(Unauthorized):
            next(iter(relay.stream(session_id)))
        assert revoked.calls == 3  # its token from before, refused; one renewal, refused
    with Client(auth_web, token=jwt.encode({"sub": "x", "exp": 1}, SECRET, "HS256")) as relay:
        with pytest.raises(Unauthorized):
            relay.snapshot(session_id)


def test_sessions_are_listed_for_their_owner_and_a_scoped_token_cannot_list(
    auth_web: str, unique: str
) -> None:
    owner = Minter(sub=f"lister-{unique}")
    with Client(auth_web, token_provider=owner) as relay:
        first = relay.create_session()
        second = relay.create_session()
        relay.send(second, f"titled {unique}").wait()
        page = relay.list_sessions()
        assert [s["session_id"] for s in page["sessions"]] == [second, first]
        assert page["sessions"][0]["title"] == f"titled {unique}"
    scoped = Minter(sub=f"lister-{unique}", sid=first)
    with Client(auth_web, token_provider=scoped) as relay:
        with pytest.raises(Forbidden):
            relay.list_sessions()
        assert relay.snapshot(first)["session_id"] == first
