"""The structural property of issue 5: many clients, few Redis connections, every event delivered."""

from __future__ import annotations

import httpx
import pytest
import redis as redis_py

from tests.support.client import create_session, post_prompt, stream_events
from tests.support.model_server import ModelServer
from tests.support.raw_sse import StreamSet

pytestmark = pytest.mark.slow

SESSIONS = 50
CLIENTS_PER_SESSION = 10


def test_500_streams_on_50_sessions_hold_at_most_12_redis_connections(
    private_stack, model_server: ModelServer, unique: str
) -> None:
    stack = private_stack(MAX_STREAMS_PER_CLIENT="1000")  # every client here is 127.0.0.1
    web = stack.web()
    stack.worker()
    port = int(web.rsplit(":", 1)[1])
    observer = redis_py.Redis.from_url(stack.redis.url, single_connection_client=True)
    most = 0

    def app_connections() -> int:
        nonlocal most
        own_id = observer.client_id()
        others = [client for client in observer.client_list() if int(client["id"]) != own_id]
        most = max(most, len(others))
        return len(others)

    streams = StreamSet()
    try:
        with httpx.Client(base_url=web, timeout=30) as http:
            sessions = [create_session(http) for _ in range(SESSIONS)]
            by_session = {
                sid: [
                    streams.open(port, f"/api/sessions/{sid}/events")
                    for _ in range(CLIENTS_PER_SESSION)
                ]
                for sid in sessions
            }
            streams.pump(
                lambda: all(s.started for s in streams.streams),
                timeout=60,
                what="500 streams to start",
            )
            for i, sid in enumerate(sessions):
                prompt = f"connections {i} {unique}"
                model_server.behave(
                    prompt, chunks=[f"c{j} " for j in range(10)], delay_seconds=0.02
                )
                post_prompt(http, sid, prompt)

            def all_ended() -> bool:
                app_connections()
                return all(s.ended for s in streams.streams)

            streams.pump(all_ended, timeout=90, what="every stream to see its end")
            for sid, readers in by_session.items():
                expected = [e.id for e in stream_events(http, sid)]
                assert len(expected) == 12  # start, 10 chunks, end
                for reader in readers:
                    assert reader.event_ids == expected
    finally:
        streams.close()
        observer.close()
    assert 0 < most <= 12, f"web and worker held {most} Redis connections"
