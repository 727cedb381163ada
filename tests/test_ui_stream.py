"""webapp/http/ui_stream.py: relay's events as the AI SDK's UI message stream.

The unit tests pin the mapping chunk by chunk. The tests that take `ai_sdk`
serve the mapper's bytes from a small local HTTP server and read them with
the real `ai` package (tests/js) through `DefaultChatTransport` and
`readUIMessageStream`, as `useChat` does: they prove the SDK accepts the
bytes and ends with exactly the text the events say, before any route
serves them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.ai_sdk import JS_DIR, AiSdk, installed_version
from tests.support.canned_chat import Routes, serve
from tests.support.canned_chat import wire as canned_wire
from webapp.http.chat_request import ChatRequest, parse_chat_request
from webapp.http.ui_messages import ui_messages
from webapp.http.ui_stream import DONE, HEADERS, Phase, UIMessageStream, encode
from webapp.read.entries import Entry
from webapp.storage import events

MID = "msg_answer_1"


def start(attempt: int = 1, mid: str = MID) -> tuple[str, dict]:
    return events.START, {"message_id": mid, "model": "m", "attempt": attempt, "cached": False}


def chunk(text: str, mid: str = MID) -> tuple[str, dict]:
    return events.CHUNK, {"message_id": mid, "text": text}


def reasoning(text: str, mid: str = MID) -> tuple[str, dict]:
    return events.REASONING, {"message_id": mid, "text": text}


def end(reason: str = "stop", mid: str = MID) -> tuple[str, dict]:
    return events.END, {"message_id": mid, "finish_reason": reason, "usage": None}


def error(code: str = "worker_lost", message: str = "The worker was lost.") -> tuple[str, dict]:
    return events.ERROR, {"message_id": MID, "error": {"code": code, "message": message}}


def reset() -> tuple[str, dict]:
    return events.RESET, {"reason": "cursor_too_old"}


def mapped(*evs: tuple[str, dict], mid: str = MID) -> list[dict]:
    ui = UIMessageStream(mid)
    return [c for event, data in evs for c in ui.feed(event, data)]


OPEN = [{"type": "start", "messageId": MID}, {"type": "start-step"}]


# --- the mapping ---------------------------------------------------------------


def test_an_answer_is_start_text_and_finish() -> None:
    assert mapped(start(), chunk("Hel"), chunk("lo"), end()) == [
        *OPEN,
        {"type": "text-start", "id": "text-1-1"},
        {"type": "text-delta", "id": "text-1-1", "delta": "Hel"},
        {"type": "text-delta", "id": "text-1-1", "delta": "lo"},
        {"type": "text-end", "id": "text-1-1"},
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "stop"},
    ]


def test_reasoning_then_answer_is_one_part_each() -> None:
    assert mapped(start(), reasoning("Hm"), reasoning("m."), chunk("Yes"), end()) == [
        *OPEN,
        {"type": "reasoning-start", "id": "reasoning-1-1"},
        {"type": "reasoning-delta", "id": "reasoning-1-1", "delta": "Hm"},
        {"type": "reasoning-delta", "id": "reasoning-1-1", "delta": "m."},
        {"type": "reasoning-end", "id": "reasoning-1-1"},
        {"type": "text-start", "id": "text-1-2"},
        {"type": "text-delta", "id": "text-1-2", "delta": "Yes"},
        {"type": "text-end", "id": "text-1-2"},
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "stop"},
    ]


def test_interleaved_reasoning_makes_a_part_per_run() -> None:
    types = [
        (c["type"], c.get("id"))
        for c in mapped(start(), reasoning("a"), chunk("b"), reasoning("c"), chunk("d"), end())
    ]
    starts = [part for kind, part in types if kind.endswith("-start")]
    assert starts == ["reasoning-1-1", "text-1-2", "reasoning-1-3", "text-1-4"]
    # Every part is closed before the next opens, and before the step finishes.
    assert [kind for kind, _ in types if kind.endswith("-end")] == [
        "reasoning-end",
        "text-end",
        "reasoning-end",
        "text-end",
    ]


@pytest.mark.parametrize(
    ("relay", "protocol"),
    [("stop", "stop"), ("length", "length"), ("content_filter", "content-filter"), ("x", "other")],
)
def test_finish_reasons_use_the_protocols_spelling(relay: str, protocol: str) -> None:
    assert mapped(start(), end(relay))[-1] == {"type": "finish", "finishReason": protocol}


def test_a_cancelled_answer_ends_with_abort_not_finish() -> None:
    assert mapped(start(), chunk("Par"), end("cancelled"))[-3:] == [
        {"type": "text-delta", "id": "text-1-1", "delta": "Par"},
        {"type": "text-end", "id": "text-1-1"},
        {"type": "abort"},
    ]


def test_an_error_closes_the_part_and_says_code_and_message() -> None:
    assert mapped(start(), chunk("So"), error())[-2:] == [
        {"type": "text-end", "id": "text-1-1"},
        {"type": "error", "errorText": "worker_lost: The worker was lost."},
    ]


def test_an_error_before_start_still_names_the_message() -> None:
    assert mapped(error("upstream_error", "")) == [
        *OPEN,
        {"type": "error", "errorText": "upstream_error"},
    ]


def test_a_new_attempt_resets_the_step_and_uses_fresh_part_ids() -> None:
    chunks = mapped(start(1), reasoning("r"), chunk("lost"), start(2), chunk("kept"), end())
    assert chunks[7:] == [
        {"type": "reset-step"},
        {"type": "text-start", "id": "text-2-3"},
        {"type": "text-delta", "id": "text-2-3", "delta": "kept"},
        {"type": "text-end", "id": "text-2-3"},
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "stop"},
    ]


def test_a_new_attempt_before_any_text_sends_nothing() -> None:
    assert mapped(start(1), start(2)) == OPEN


def test_a_start_seen_again_changes_nothing() -> None:
    assert mapped(start(2), chunk("a"), start(2), start(1), chunk("b"))[-1] == {
        "type": "text-delta",
        "id": "text-2-1",
        "delta": "b",
    }


def test_other_messages_empty_pieces_and_unknown_events_map_to_nothing() -> None:
    ui = UIMessageStream(MID)
    ui.feed(*start())
    assert ui.feed(*chunk("x", mid="another_message")) == []
    assert ui.feed(*chunk("")) == []
    assert ui.feed("usage", {"message_id": MID}) == []
    assert ui.phase is Phase.STEP


def test_nothing_follows_the_end() -> None:
    ui = UIMessageStream(MID)
    for event in (start(), chunk("a"), end()):
        ui.feed(*event)
    assert ui.finished
    assert ui.feed(*chunk("b")) == ui.feed(*start(2)) == ui.feed(*reset()) == []
    assert ui.catch_up({"content": "t", "reasoning": "r", "status": "streaming"}) == []


def test_reset_then_catch_up_shows_exactly_the_snapshot_text() -> None:
    ui = UIMessageStream(MID)
    for event in (start(), reasoning("old"), chunk("old")):
        ui.feed(*event)
    assert ui.feed(*reset()) == [{"type": "reset-step"}]
    assert ui.catch_up({"content": "what", "reasoning": "why", "status": "streaming"}) == [
        {"type": "reasoning-start", "id": "reasoning-1-3"},
        {"type": "reasoning-delta", "id": "reasoning-1-3", "delta": "why"},
        {"type": "reasoning-end", "id": "reasoning-1-3"},
        {"type": "text-start", "id": "text-1-4"},
        {"type": "text-delta", "id": "text-1-4", "delta": "what"},
    ]
    # The text part stays open for what follows the snapshot's cursor.
    assert ui.feed(*chunk("!")) == [{"type": "text-delta", "id": "text-1-4", "delta": "!"}]


def test_catch_up_on_a_fresh_stream_starts_it() -> None:
    assert UIMessageStream(MID).catch_up({"content": "so far", "status": "streaming"}) == [
        *OPEN,
        {"type": "text-start", "id": "text-0-1"},
        {"type": "text-delta", "id": "text-0-1", "delta": "so far"},
    ]


def snapshot_answer(status: str) -> dict[str, Any]:
    return {"id": MID, "role": "assistant", "content": "Hi", "reasoning": "r", "status": status}


def test_catch_up_shows_a_streaming_answer_and_keeps_its_part_open() -> None:
    ui = UIMessageStream(MID)
    assert [c["type"] for c in ui.catch_up(snapshot_answer("streaming"))] == [
        "start",
        "start-step",
        "reasoning-start",
        "reasoning-delta",
        "reasoning-end",
        "text-start",
        "text-delta",
    ]
    assert ui.feed(*chunk("!")) == [{"type": "text-delta", "id": "text-0-2", "delta": "!"}]
    # The shown attempt started before the snapshot's cursor: a start after it
    # is a new attempt, which drops what the snapshot showed.
    assert ui.feed(*start(2)) == [{"type": "reset-step"}]


def test_catch_up_of_a_queued_answer_only_starts_it() -> None:
    ui = UIMessageStream(MID)
    assert ui.catch_up({"id": MID, "content": "", "status": "queued"}) == OPEN
    assert ui.feed(*start(1)) == []


@pytest.mark.parametrize(
    ("answer", "last"),
    [
        (
            {"status": "done", "finish_reason": "length"},
            {"type": "finish", "finishReason": "length"},
        ),
        ({"status": "cancelled", "finish_reason": "cancelled"}, {"type": "abort"}),
        (
            {"status": "error", "error": {"code": "upstream_timeout", "message": "Slow."}},
            {"type": "error", "errorText": "upstream_timeout: Slow."},
        ),
    ],
)
def test_catch_up_of_a_final_answer_ends_the_stream(answer: dict, last: dict) -> None:
    ui = UIMessageStream(MID)
    chunks = ui.catch_up({"content": "Hi", **answer})
    assert (chunks[-1], ui.finished) == (last, True)
    assert {"type": "text-delta", "id": "text-0-1", "delta": "Hi"} in chunks


# --- the wire format -----------------------------------------------------------------


def test_encode_writes_one_data_line_per_chunk_and_the_entry_id_last() -> None:
    raw = encode([{"type": "a"}, {"type": "b", "delta": "x\ny\r\u2028é"}], "17-3")
    assert raw == (
        'data: {"type":"a"}\n\nid: 17-3\ndata: {"type":"b","delta":"x\\ny\\r\u2028é"}\n\n'.encode()
    )


def test_encode_of_nothing_is_no_bytes() -> None:
    assert encode([], "1-0") == b""


def test_frames_maps_an_entry_and_carries_its_id() -> None:
    ui = UIMessageStream(MID)
    entry = Entry("5-0", events.START, events.dumps(start()[1]))
    assert ui.frames(entry) == encode(OPEN, "5-0")
    assert ui.frames(Entry("6-0", events.CHUNK, events.dumps(chunk("")[1]))) == b""


def test_done_and_headers_are_the_protocols() -> None:
    assert DONE == b"data: [DONE]\n\n"
    assert HEADERS == {"x-vercel-ai-ui-message-stream": "v1"}


# --- GET /api/chat/{sid}/messages --------------------------------------------------


def test_ui_messages_put_reasoning_first_and_leave_out_the_active_answer() -> None:
    snapshot = [
        {"id": "u1", "role": "user", "content": "Hi", "status": "done"},
        {"id": "a1", "role": "assistant", "content": "Hello", "reasoning": "greet"},
        {"id": "u2", "role": "user", "content": "And?", "status": "done"},
        {"id": "a2", "role": "assistant", "content": "", "reasoning": "", "status": "error"},
        {"id": "u3", "role": "user", "content": "Again", "status": "done"},
        {"id": "a3", "role": "assistant", "content": "so fa", "status": "streaming"},
    ]
    assert ui_messages(snapshot, "a3") == [
        {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Hi"}]},
        {
            "id": "a1",
            "role": "assistant",
            "parts": [{"type": "reasoning", "text": "greet"}, {"type": "text", "text": "Hello"}],
        },
        {"id": "u2", "role": "user", "parts": [{"type": "text", "text": "And?"}]},
        {"id": "a2", "role": "assistant", "parts": [{"type": "text", "text": ""}]},
        {"id": "u3", "role": "user", "parts": [{"type": "text", "text": "Again"}]},
    ]


# --- the real AI SDK reads the bytes ------------------------------------------------


@pytest.fixture()
def server() -> Iterator[tuple[str, Routes]]:
    with serve() as served:
        yield served


def wire(*evs: tuple[str, dict], done: bool = True) -> list[bytes]:
    """The route's bytes for these events: one piece per entry, then [DONE]."""
    pieces = canned_wire(*evs, ui=UIMessageStream(MID))
    return pieces if done else [p for p in pieces if p != DONE]


SID = "sess_abcdefgh"
RETRIED = [
    start(1),
    reasoning("Let me "),
    reasoning("think."),
    chunk("Lost "),
    chunk("words"),
    start(2),
    reasoning("Thinking "),
    reasoning("again.\n"),
    chunk("Hello, "),
    chunk("wörld ✓\n\nbye"),
    end(),
]


def test_the_pinned_sdk_is_installed(ai_sdk: AiSdk) -> None:
    pinned = json.loads((JS_DIR / "package.json").read_text())["dependencies"]["ai"]
    assert installed_version() == pinned


def test_sdk_reads_an_answer_retried_after_a_lost_worker(ai_sdk: AiSdk, server) -> None:
    base, routes = server
    routes.stream("/api/chat", wire(*RETRIED))
    result = ai_sdk.chat(f"{base}/api/chat", SID, text="Hi")
    assert (result.status, result.error) == ("finished", None)
    assert result.message["id"] == MID
    # Exactly the final attempt's texts, once each: one reasoning and one text part.
    assert [(p["type"], p["text"]) for p in result.message["parts"] if "text" in p] == [
        ("reasoning", "Thinking again.\n"),
        ("text", "Hello, wörld ✓\n\nbye"),
    ]
    assert result.chunk_types.count("reset-step") == 1
    assert result.chunk_types[-2:] == ["finish-step", "finish"]


def test_sdk_reconnects_to_a_replayed_stream_and_gets_null_when_none(ai_sdk: AiSdk, server) -> None:
    base, routes = server
    routes.stream(f"/api/chat/{SID}/stream", wire(*RETRIED))
    replayed = ai_sdk.chat(f"{base}/api/chat", SID, action="reconnect")
    assert (replayed.text, replayed.reasoning) == ("Hello, wörld ✓\n\nbye", "Thinking again.\n")
    # No route for this chat: the server answers 204, the transport returns null.
    assert ai_sdk.chat(f"{base}/api/chat", "sess_other_1", action="reconnect").status == "no-stream"


def test_sdk_reads_a_cancelled_answer_ending_in_abort(ai_sdk: AiSdk, server) -> None:
    base, routes = server
    routes.stream("/api/chat", wire(start(), chunk("Partial "), chunk("answ"), end("cancelled")))
    result = ai_sdk.chat(f"{base}/api/chat", SID, text="Hi")
    assert (result.status, result.text) == ("finished", "Partial answ")
    assert result.chunk_types[-1] == "abort"


def test_sdk_surfaces_a_failed_generation_as_an_error(ai_sdk: AiSdk, server) -> None:
    base, routes = server
    routes.stream("/api/chat", wire(start(), chunk("Some"), error()))
    result = ai_sdk.chat(f"{base}/api/chat", SID, text="Hi")
    assert result.status == "error"
    assert result.error["message"] == "worker_lost: The worker was lost."
    assert result.text == "Some"


def test_sdk_reads_interleaved_reasoning_keep_alives_and_split_writes(
    ai_sdk: AiSdk, server
) -> None:
    base, routes = server
    raw = b"".join(
        wire(start(), reasoning("a"), chunk("b"), reasoning("c"), chunk("d"), end("length"))
    )
    # What the hub adds around the chunks, and TCP splitting lines anywhere.
    raw = b"retry: 1000\n\n: keep-alive\n\n" + raw
    routes.stream("/api/chat", [raw[i : i + 7] for i in range(0, len(raw), 7)])
    result = ai_sdk.chat(f"{base}/api/chat", SID, text="Hi")
    assert result.status == "finished"
    assert [(p["type"], p["text"]) for p in result.message["parts"] if "text" in p] == [
        ("reasoning", "a"),
        ("text", "b"),
        ("reasoning", "c"),
        ("text", "d"),
    ]
    assert result.chunk_types[-1] == "finish"


def test_sdk_shows_the_snapshot_text_after_a_reset(ai_sdk: AiSdk, server) -> None:
    base, routes = server
    ui = UIMessageStream(MID)
    pieces = [
        encode([c for e in (start(), chunk("stale "), chunk("text")) for c in ui.feed(*e)], "3-0"),
        encode(ui.feed(*reset())),
        encode(ui.catch_up({"content": "fresh text", "status": "streaming"})),
        encode(ui.feed(*chunk(" and more")) + ui.feed(*end()), "9-0"),
        DONE,
    ]
    routes.stream("/api/chat", pieces)
    result = ai_sdk.chat(f"{base}/api/chat", SID, text="Hi")
    assert (result.status, result.text) == ("finished", "fresh text and more")


def test_sdk_throws_http_errors_with_status_and_body(ai_sdk: AiSdk, server) -> None:
    base, routes = server
    text = routes.json_error("/api/chat", 409, "generation_active")
    result = ai_sdk.chat(f"{base}/api/chat", SID, text="Hi")
    assert result.status == "error"
    assert (result.error["statusCode"], result.error["message"]) == (409, text)
    assert json.loads(result.error["responseBody"])["error"]["code"] == "generation_active"


def test_harness_aborts_a_stream_mid_answer(ai_sdk: AiSdk, server) -> None:
    base, routes = server
    held = threading.Event()
    pieces = wire(start(), chunk("12345"), chunk("67890"), chunk("late"), end())
    routes.stream("/api/chat", [*pieces[:3], held, *pieces[3:]])
    try:
        result = ai_sdk.chat(f"{base}/api/chat", SID, text="Hi", abortAfterChars=10)
    finally:
        held.set()
    assert (result.status, result.text) == ("aborted", "1234567890")


def test_sdk_requests_parse_as_relay_reads_them(ai_sdk: AiSdk, server) -> None:
    base, routes = server
    routes.stream("/api/chat", wire(start(), chunk("ok"), end()))
    auth = {"Authorization": "Bearer token-1"}
    ai_sdk.chat(f"{base}/api/chat", SID, text="Hi there", headers=auth)
    history = [
        {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Hi"}]},
        {"id": MID, "role": "assistant", "parts": [{"type": "text", "text": "ok"}]},
    ]
    ai_sdk.chat(
        f"{base}/api/chat",
        SID,
        trigger="regenerate-message",
        messages=history[:1],
        messageId=MID,
        headers=auth,
    )
    ai_sdk.chat(f"{base}/api/chat", SID, action="reconnect", headers=auth)
    (m1, path1, h1, b1), (m2, _, _, b2), (m3, path3, h3, _) = routes.requests
    assert (m1, path1, h1["content-type"], h1["authorization"]) == (
        "POST",
        "/api/chat",
        "application/json",
        "Bearer token-1",
    )
    assert parse_chat_request(json.loads(b1)) == ChatRequest(
        SID, "submit-message", "Hi there", None
    )
    assert (m2, parse_chat_request(json.loads(b2))) == (
        "POST",
        ChatRequest(SID, "regenerate-message", "", MID),
    )
    # The transport's headers go with the resume request too.
    assert (m3, path3, h3["authorization"]) == ("GET", f"/api/chat/{SID}/stream", "Bearer token-1")
