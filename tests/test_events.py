"""The SSE wire format and cursor parsing, on their own."""

from __future__ import annotations

import json

import pytest

from webapp.exceptions import InvalidCursor
from webapp.read.entries import Entry, encode_sse
from webapp.storage.events import parse_cursor


def test_one_event_has_id_event_and_one_data_line() -> None:
    assert (
        encode_sse('{"a":1}', event="chunk", id="5-1")
        == b'id: 5-1\nevent: chunk\ndata: {"a":1}\n\n'
    )


def test_multi_line_data_becomes_several_data_lines() -> None:
    assert (
        encode_sse("one\r\ntwo\rthree\nfour")
        == b"data: one\ndata: two\ndata: three\ndata: four\n\n"
    )


def test_comment_and_retry() -> None:
    assert encode_sse(comment="keep-alive") == b": keep-alive\n\n"
    assert encode_sse(retry_ms=2000) == b"retry: 2000\n\n"


@pytest.mark.parametrize("field", ["id", "event"])
def test_cr_or_lf_in_id_or_event_is_refused(field: str) -> None:
    with pytest.raises(ValueError):
        encode_sse("x", **{field: "a\nb"})


def test_model_output_with_nul_cr_lf_stays_one_data_line() -> None:
    data = json.dumps({"text": "a\x00b\rc\nd\u2028e"}, ensure_ascii=False)
    frame = Entry("1-0", "chunk", data).sse
    assert frame.count(b"\n") == 4  # id, event, data, blank line
    assert json.loads(frame.split(b"data: ", 1)[1].strip())["text"] == "a\x00b\rc\nd\u2028e"


def test_long_poll_json_splices_data_unparsed() -> None:
    entry = Entry("7-3", "chunk", '{"message_id":"m","text":"hi"}')
    assert json.loads(entry.poll_json) == {
        "id": "7-3",
        "event": "chunk",
        "data": {"message_id": "m", "text": "hi"},
    }


@pytest.mark.parametrize(
    "raw", ["0-0", "1-0", "1700000000000-12", "18446744073709551615-18446744073709551615"]
)
def test_valid_cursors(raw: str) -> None:
    parse_cursor(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "abc",
        "-1",
        "1-",
        "-1-0",
        "1.5-0",
        "1-0 ",
        "0x1-0",
        "١-0",
        "18446744073709551616-0",
        "1-18446744073709551616",
        "1-2-3",
    ],
)
def test_invalid_cursors(raw: str) -> None:
    with pytest.raises(InvalidCursor):
        parse_cursor(raw)
