"""Restart redis-server (append-only on) under live streams: nothing lost, nothing restarted."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.client import (
    answer_text,
    assert_strictly_increasing,
    create_session,
    follow_resuming,
    poll_resuming,
    post_prompt,
    stream_events,
)
from tests.support.model_server import ModelServer
from tests.support.processes import RedisServer, wait_for

pytestmark = pytest.mark.slow


def test_redis_restart_loses_nothing(private_stack, model_server: ModelServer, unique: str) -> None:
    stack = private_stack(appendonly=True)
    web = stack.web()
    worker = stack.worker()
    web_proc = stack.processes[0]
    answers = {}
    with httpx.Client(base_url=web, timeout=30) as http:
        sessions = []
        for i in range(3):
            prompt = f"outage {i} {unique}"
            texts = [f"s{i}w{j:02d} " for j in range(80)]
            model_server.behave(prompt, chunks=texts, delay_seconds=0.05)
            session_id = create_session(http)
            message_id = post_prompt(http, session_id, prompt)["message_id"]
            sessions.append((session_id, message_id))
            answers[message_id] = "".join(texts)

        with ThreadPoolExecutor(max_workers=16) as pool:  # 12 readers and the hammer
            readers = [
                pool.submit(follow_resuming, web, sid, mid, timeout=90)
                for sid, mid in sessions
                for _ in range(2)
            ]
            readers += [
                pool.submit(poll_resuming, web, sid, mid, timeout=90)
                for sid, mid in sessions
                for _ in range(2)
            ]
            wait_for(
                lambda: all(len(stream_events(http, sid)) > 10 for sid, _ in sessions),
                timeout=30,
                what="answers under way",
            )

            # Requests made during the outage answer 503 JSON, or succeed.
            outage_answers: list[httpx.Response] = []
            stop = threading.Event()

            def hammer() -> None:
                with httpx.Client(base_url=web, timeout=10) as h:
                    while not stop.is_set():
                        outage_answers.append(h.post("/api/sessions"))
                        outage_answers.append(h.get(f"/api/sessions/{sessions[0][0]}"))
                        outage_answers.append(h.get("/readyz"))

            hammering = pool.submit(hammer)
            stack.redis.stop()
            wait_for(
                lambda: any(r.status_code == 503 for r in list(outage_answers)),
                timeout=20,
                what="a 503 during the outage",
            )
            stack.redis = RedisServer(stack.log_dir, port=stack.redis.port, appendonly=True).start()
            results = [reader.result(timeout=120) for reader in readers]
            stop.set()
            hammering.result(timeout=30)

    for (events, _), (_, message_id) in zip(
        results, [s for s in sessions for _ in range(2)] * 2, strict=True
    ):
        assert answer_text(events, message_id) == answers[message_id]
        assert_strictly_increasing(events)
        assert len({e.id for e in events}) == len(events)  # each event once
    for response in outage_answers:
        assert response.status_code in (200, 201, 503), response.text
        if response.status_code == 503:
            assert response.json()["error"]["code"] == "unavailable"
    assert web_proc.alive() and worker.alive()
