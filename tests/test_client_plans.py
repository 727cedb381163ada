"""The Python client's logic without a network: the answer model, tokens, waits, the
exactly-once cursor, error mapping, and the retry plans (which do no I/O by design:
clients/python/relay_client/actions.py), fed with the outcomes a network could give.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent
from relay_client import (
    Answer,
    AsyncClient,
    Client,
    Conflict,
    ConnectionLost,
    Event,
    NotFound,
    ProtocolError,
    RateLimited,
    ServerError,
    Unauthorized,
    calls,
    follow,
)
from relay_client.actions import Authorize, Emit, Open, Receive, Request, Send, Sleep
from relay_client.errors import error_from
from relay_client.events import Cursor, parse_id
from relay_client.retry import Backoff, Policy, retry_after_seconds
from relay_client.tokens import Tokens, expires_at

MID = "message-0001"


def ev(n: int, kind: str, **data: Any) -> Event:
    return Event(f"{n}-0", kind, {"message_id": MID, **data})


def fold(*events: Event) -> Answer:
    answer = Answer("session-0001", MID)
    for event in events:
        answer.apply(event)
    return answer


# -- the answer model -------------------------------------------------------------------


def test_parts_keep_their_order_and_end_checks_the_counts() -> None:
    answer = fold(
        ev(1, "start", attempt=1),
        ev(2, "reasoning", text="hmm "),
        ev(3, "chunk", text="Hel"),
        ev(4, "chunk", text="lo"),
        ev(5, "end", finish_reason="stop", chunks=2, text_length=5, reasoning_chunks=1,
           reasoning_length=4),
    )  # fmt: skip
    assert [(p.type, p.text) for p in answer.parts] == [("reasoning", "hmm "), ("text", "Hello")]
    assert (answer.status, answer.incomplete, answer.settled) == ("done", False, True)
    short = fold(ev(1, "start", attempt=1), ev(2, "chunk", text="Hel"),
                 ev(3, "end", finish_reason="stop", chunks=2, text_length=5))  # fmt: skip
    assert short.incomplete


def test_a_new_attempt_drops_what_the_lost_one_showed() -> None:
    answer = fold(
        ev(1, "start", attempt=1),
        ev(2, "chunk", text="half an ans"),
        ev(3, "start", attempt=2),
        ev(4, "chunk", text="whole"),
        ev(5, "end", finish_reason="stop", chunks=1, text_length=5),
    )
    assert (answer.attempt, answer.content, answer.incomplete) == (2, "whole", False)


def test_from_step_keeps_earlier_steps_and_tools_track_their_status() -> None:
    answer = fold(
        ev(1, "start", attempt=1, from_step=0),
        ev(2, "chunk", text="Let me look. ", step=0),
        ev(3, "tool_call", step=0, call_id="c1", name="search", arguments={"q": "x"},
           runs_on="server", approval_id="a1"),
        ev(4, "waiting", **{"for": [{"call_id": "c1", "kind": "approval"}]}),
    )  # fmt: skip
    assert answer.status == "waiting" and answer.settled and not answer.final
    assert answer.tool_calls[0].status == "waiting_approval"
    for event in [
        ev(5, "start", attempt=1, from_step=1),  # approved: the answer goes on
        ev(6, "tool_result", step=0, call_id="c1", status="ok", output={"hits": 1}),
        ev(7, "chunk", text="Found ", step=1),
        ev(8, "start", attempt=2, from_step=1),  # a worker lost during step 1
        ev(9, "chunk", text="Found one.", step=1),
        ev(10, "end", finish_reason="stop", chunks=2, text_length=23),
    ]:
        answer.apply(event)
    assert [(p.type, p.step) for p in answer.parts] == [("text", 0), ("tool", 0), ("text", 1)]
    assert answer.tool_calls[0].output == {"hits": 1}
    assert (answer.content, answer.incomplete) == ("Let me look. Found one.", False)


def test_a_tool_call_starts_in_the_status_relay_stores_for_it() -> None:
    """As API.md's Stored parts: a client tool waits for its output, a server tool runs."""
    answer = fold(
        ev(1, "tool_call", step=0, call_id="c1", name="pick", arguments={}, runs_on="client"),
        ev(2, "tool_call", step=0, call_id="c2", name="look", arguments={}),
    )
    assert [(p.status, p.runs_on) for p in answer.tool_calls] == [
        ("waiting_output", "client"),
        ("running", "server"),
    ]


def test_an_input_given_shows_in_its_part_and_following_goes_on() -> None:
    answer = fold(
        ev(1, "start", attempt=1, from_step=0),
        ev(2, "tool_call", step=0, call_id="c1", name="pay", arguments={}, approval_id="a1"),
        ev(3, "waiting", **{"for": [{"call_id": "c1", "kind": "approval"}]}),
    )
    assert answer.needs_input and answer.followed_to_the_end
    answer.give("c1", "running")
    assert (answer.tool_calls[0].status, answer.needs_input) == ("running", False)
    assert answer.status == "waiting" and not answer.followed_to_the_end  # until relay goes on
    stale = {"id": MID, "status": "waiting", "parts": [{"type": "tool", "step": 0,
             "call_id": "c1", "name": "pay", "status": "waiting_approval"}]}  # fmt: skip
    answer.load(stale)  # a snapshot read before relay took the approval up
    assert (answer.tool_calls[0].status, answer.followed_to_the_end) == ("running", False)
    answer.apply(ev(4, "start", attempt=1, from_step=0))
    answer.apply(
        ev(5, "tool_call", step=0, call_id="c1", name="pay", arguments={}, approval_id="a1")
    )
    answer.apply(ev(6, "tool_result", step=0, call_id="c1", status="ok", output="paid"))
    assert answer.tool_calls[0].status == "ok" and answer.status == "streaming"


def test_a_reset_loads_the_message_from_the_snapshot() -> None:
    answer = fold(ev(1, "start", attempt=1), ev(2, "chunk", text="par"))
    snapshot = {
        "cursor": "9-0",
        "messages": [{"id": MID, "role": "assistant", "status": "streaming",
                      "content": "partial", "reasoning": "why"}],
    }  # fmt: skip
    answer.apply(Event(None, "reset", {"reason": "cursor_expired"}, snapshot))
    assert [(p.type, p.text) for p in answer.parts] == [("reasoning", "why"), ("text", "partial")]
    assert answer.cursor.value == "9-0"
    answer.apply(ev(10, "chunk", text=" more"))
    answer.apply(ev(11, "end", finish_reason="stop", chunks=99, text_length=12))
    assert (answer.content, answer.incomplete) == ("partial more", False)  # counts unknown


def test_other_messages_events_are_ignored() -> None:
    answer = fold(Event("1-0", "chunk", {"message_id": "someone-else", "text": "x"}))
    assert (answer.parts, answer.status) == ([], "queued")


# -- tokens, waits, cursors, errors ---------------------------------------------------------


def jwt_with(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256'})}.{part(claims)}.signature"


def test_a_token_is_renewed_a_quarter_of_its_life_early_at_most_30_seconds() -> None:
    assert expires_at(jwt_with({"exp": 1000})) == 1000.0
    assert expires_at("not-a-jwt") is None and expires_at(jwt_with({"sub": "x"})) is None
    now = [0.0]
    tokens = Tokens(provider=lambda: "unused", clock=lambda: now[0])
    assert tokens.due()  # none yet
    tokens.store(jwt_with({"exp": 8}))
    now[0] = 5.9
    assert not tokens.due()
    now[0] = 6.0  # 8 - 8/4
    assert tokens.due()
    tokens.store(jwt_with({"exp": 3606}))
    now[0] = 3575.9
    assert not tokens.due()
    assert Tokens(token="fixed").due() is False


def test_waits_back_off_with_jitter_and_honour_the_server() -> None:
    backoff = Backoff(0.5, 8.0)
    for failures, ceiling in [(1, 0.5), (2, 1.0), (4, 4.0), (9, 8.0)]:
        assert ceiling / 2 <= backoff.delay(failures) <= ceiling
    assert backoff.delay(1, at_least=3.0) == 3.0
    assert Backoff(0.0).delay(1) == 0.0 and Backoff(0.0).delay(2) >= 0.25
    assert retry_after_seconds("7") == 7.0 and retry_after_seconds("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (retry_after_seconds(later) or 0) <= 30


def test_the_cursor_admits_each_id_once_comparing_numbers() -> None:
    cursor = Cursor("9-5")
    assert [cursor.admit(i) for i in ["9-5", "10-0", "9-9", "10-1"]] == [False, True, False, True]
    assert (cursor.value, cursor.dropped) == ("10-1", 2)
    for bad in ["abc", "-1", "1-", "1.5-0"]:
        with pytest.raises(ValueError):
            parse_id(bad)
        with pytest.raises(ProtocolError):
            Cursor().admit(bad)


def answer(status: int, body: Any = None, text: str = "", **headers: str) -> httpx.Response:
    request = httpx.Request("GET", "http://relay.test/api/sessions/x")
    if body is not None:
        return httpx.Response(status, json=body, headers=headers, request=request)
    return httpx.Response(status, text=text, headers=headers, request=request)


def test_error_answers_become_the_exception_of_their_status() -> None:
    body = {"error": {"code": "generation_active", "message": "busy", "message_id": "m1"}}
    busy = error_from(answer(409, body))
    assert isinstance(busy, Conflict) and (busy.code, busy.message_id) == (
        "generation_active",
        "m1",
    )
    limited = error_from(answer(429, {"error": {"code": "rate_limited", "message": "slow"}},
                                **{"Retry-After": "12"}))  # fmt: skip
    assert isinstance(limited, RateLimited) and limited.retry_after == 12.0
    page = error_from(answer(502, text="<html>Bad Gateway</html>"))
    assert isinstance(page, ServerError) and page.code is None and "Bad Gateway" in page.message


# -- the retry plans, fed by hand ---------------------------------------------------------


def drive(
    plan: Any, outcomes: list[Any], received: list[Any] | None = None, log: list[Any] | None = None
) -> tuple[Any, list[Any]]:
    """Run a plan, answering each network action with the next outcome (a Receive with
    the next of `received`); (its result, the actions it took, also kept in `log`)."""
    actions: list[Any] = [] if log is None else log
    reply = None
    try:
        while True:
            action = plan.send(reply)
            actions.append(action)
            if isinstance(action, Authorize):
                reply = "renewed" if action.renew else "t"
            elif isinstance(action, Send | Open):
                reply = outcomes.pop(0)
            elif isinstance(action, Receive):
                reply = (received or []).pop(0)
            else:
                reply = None
    except StopIteration as done:
        return done.value, actions


def sse(event: str = "", data: str = "", id: str = "", retry: int | None = None) -> Any:
    return ServerSentEvent(event=event, data=data, id=id, retry=retry)


def test_a_stream_waits_the_servers_retry_resumes_by_id_and_stops_on_a_final_error() -> None:
    plan = follow.sse_events("s1", Cursor(), Policy(seed=1), until=None)
    chunk = sse("chunk", json.dumps({"message_id": MID, "text": "hi"}), "5-0")
    busy = answer(503, {"error": {"code": "unavailable", "message": "x"}}, **{"Retry-After": "7"})
    gone = answer(404, {"error": {"code": "session_not_found", "message": "x"}})
    log: list[Any] = []
    with pytest.raises(NotFound):
        drive(plan, [answer(200), busy, gone], [sse(retry=3000), chunk, None], log)
    opened = [a.request.headers.get("Last-Event-ID") for a in log if isinstance(a, Open)]
    assert opened == [None, "5-0", "5-0"]
    assert [a.event.id for a in log if isinstance(a, Emit)] == ["5-0"]
    first, second = [a.seconds for a in log if isinstance(a, Sleep)]
    assert 1.5 <= first <= 3.0  # the server's retry: 3000, jittered
    assert second >= 7.0  # never less than Retry-After


def test_a_stream_held_by_a_proxy_is_followed_by_long_poll_from_the_same_cursor() -> None:
    """Headers, then not one byte: held (a cut or a stall after a byte is not); long-poll
    for the stint, then SSE again; the events go on from one cursor, each once."""
    policy = Policy(seed=1, sse_retry_seconds=(0.0, 60.0))
    plan = follow.session_events("s1", Cursor("3-0"), policy, "sse", lambda e: e.event == "end")

    def item(n: int, kind: str) -> dict[str, Any]:
        return {"id": f"{n}-0", "event": kind, "data": {"message_id": MID, "text": "x"}}

    def polled(cursor: str, *items: dict[str, Any]) -> httpx.Response:
        return answer(200, {"events": list(items), "cursor": cursor, "reset": False})

    chunk = sse("chunk", json.dumps({"message_id": MID, "text": "hi"}), "4-0")
    held = httpx.ReadTimeout("no byte")
    opens = [httpx.ConnectError("refused"), answer(200), answer(200), answer(200)]
    polls = [polled("5-0", item(4, "chunk"), item(5, "chunk")), polled("6-0", item(6, "end"))]
    log: list[Any] = []
    drive(plan, opens + polls, [sse(retry=50), chunk, held, held, held], log)
    opened = [a.request.headers.get("Last-Event-ID") for a in log if isinstance(a, Open)]
    assert opened == ["3-0", "3-0", "4-0", "4-0"]  # a stint of 0 s: SSE again at once
    sent = [a.request for a in log if isinstance(a, Send)]
    assert [(r.path, r.params) for r in sent] == [
        ("/api/sessions/s1/poll", {"timeout": "20", "after": "4-0"}),
        ("/api/sessions/s1/poll", {"timeout": "20", "after": "5-0"}),
    ]
    assert [a.event.id for a in log if isinstance(a, Emit)] == ["4-0", "5-0", "6-0"]


def test_no_sse_retries_means_long_poll_for_good_once_a_stream_was_held() -> None:
    policy = Policy(seed=1, sse_retry_seconds=())
    plan = follow.session_events("s1", Cursor("3-0"), policy, "sse", lambda e: e.event == "end")
    end = {"id": "4-0", "event": "end", "data": {"message_id": MID}}
    poll = answer(200, {"events": [end], "cursor": "4-0", "reset": False})
    log: list[Any] = []
    drive(plan, [answer(200), poll], [httpx.ReadTimeout("no byte")], log)
    assert len([a for a in log if isinstance(a, Open)]) == 1  # SSE never again
    assert [a.event.id for a in log if isinstance(a, Emit)] == ["4-0"]


def test_a_lost_answer_is_asked_again_after_the_servers_wait() -> None:
    policy = Policy(seed=1)
    lost = httpx.ReadError("cut")
    busy = answer(503, {"error": {"code": "unavailable", "message": "x"}}, **{"Retry-After": "2"})
    plan = calls.exchange(Request("GET", "/x"), policy)
    reply, actions = drive(plan, [lost, busy, answer(200, {"ok": True})])
    assert (reply.response.status_code, reply.lost) == (200, True)
    sleeps = [a.seconds for a in actions if isinstance(a, Sleep)]
    assert len(sleeps) == 2 and sleeps[1] >= 2.0


def test_a_409_after_a_lost_prompt_is_asked_again_under_the_same_key() -> None:
    plan = calls.post_prompt("s1", "hi", "key-1", Policy(seed=1))
    conflict = answer(409, {"error": {"code": "generation_active", "message": "x"}})
    accepted = answer(202, {"message_id": "m1"})
    body, actions = drive(plan, [httpx.ReadError("cut"), conflict, accepted])
    assert body == {"message_id": "m1"}
    keys = {a.request.headers["Idempotency-Key"] for a in actions if isinstance(a, Send)}
    assert keys == {"key-1"}


def test_a_401_renews_once_then_raises() -> None:
    refused = answer(401, {"error": {"code": "unauthorized", "message": "x"}})
    reply, actions = drive(calls.exchange(Request("GET", "/x"), Policy()), [refused, refused])
    assert reply.response.status_code == 401
    assert [a.renew for a in actions if isinstance(a, Authorize)] == [False, True, False]
    with pytest.raises(Unauthorized):
        calls.expect(reply, 200)


def test_no_answer_after_every_try_is_connection_lost() -> None:
    plan = calls.exchange(Request("POST", "/x"), Policy(attempts=3, seed=1))
    with pytest.raises(ConnectionLost):
        drive(plan, [httpx.ConnectError("refused")] * 3)


def test_an_answer_is_followed_the_way_its_client_works() -> None:
    with pytest.raises(RuntimeError):
        Answer("session-0001", MID).wait()
    with Client("http://127.0.0.1:9") as relay, pytest.raises(TypeError):
        asyncio.run(relay.answer("session-0001", MID)._await())
    relay = AsyncClient("http://127.0.0.1:9")
    with pytest.raises(TypeError):
        relay.answer("session-0001", MID).wait()
    asyncio.run(relay.aclose())
