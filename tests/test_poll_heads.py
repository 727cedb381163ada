"""A kept connection's request heads, read with httptools (webapp/serving/poll_heads.py).

No sockets: heads as bytes. The rule that matters is that the hub answers
a request only where gunicorn would read it the same way: every head the
reader takes for a poll, here over a few thousand heads made to be odd, is
parsed by gunicorn's own parser into the same request, with the same
environ values and the same bytes left for the next request. Over real
sockets, the answers themselves are tests/test_poll_wire.py's.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from gunicorn.config import Config
from gunicorn.http.errors import ParseException
from gunicorn.http.message import Request
from gunicorn.http.unreader import IterUnreader

from webapp.serving.poll_heads import (
    HANDED_BACK_HEADERS,
    INCOMPLETE,
    LIMITS,
    MALFORMED,
    MAX_HEAD_BYTES,
    OTHER,
    HeadReader,
    HeadRules,
    PollHead,
)

RULES = HeadRules.of(Config())
PATH = "/api/sessions/abcdefgh12/poll"
QUERY = "after=0-0&timeout=20"


def poll(*lines: str, target: str = f"{PATH}?{QUERY}", version: str = "HTTP/1.1") -> bytes:
    return ("\r\n".join([f"GET {target} {version}", "Host: x", *lines]) + "\r\n\r\n").encode(
        "latin-1"
    )


def read(data: bytes) -> PollHead | str | None:
    return HeadReader().read(data, RULES)


def test_a_poll_head_is_read_with_what_its_plan_needs() -> None:
    data = poll(
        "Authorization: Bearer t ", "Origin:  https://a.example", "X-Forwarded-For: 1.2.3.4"
    )
    assert read(data + b"GET /next") == PollHead(
        "abcdefgh12", QUERY, "Bearer t", "https://a.example", "1.2.3.4", len(data)
    )
    data = poll("Connection: Keep-Alive")
    assert read(data) == PollHead("abcdefgh12", QUERY, None, None, None, len(data))


def test_a_head_fed_as_it_arrives_is_read_once_whole() -> None:
    data = poll("Authorization: Bearer t")
    for cut in range(1, len(data)):
        reader = HeadReader()
        assert reader.read(data[:cut], RULES) is INCOMPLETE, cut
        assert reader.read(data, RULES) == read(data), cut


def test_gunicorns_limits_are_read_from_its_config() -> None:
    cfg = Config()
    assert RULES == HeadRules(
        4094,
        100,
        8190,
        HANDED_BACK_HEADERS
        | frozenset({b"x-forwarded-proto", b"x-forwarded-protocol", b"x-forwarded-ssl"}),
    )
    cfg.set("limit_request_line", 0)  # unlimited there: the default here, only stricter
    assert HeadRules.of(cfg).line_bytes == 4094


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (poll("Content-Length: 0", "Content-Length: 5"), MALFORMED),
        (poll("Content-Length: 5", "Transfer-Encoding: chunked"), MALFORMED),
        (poll("X: a\nY: b"), MALFORMED),
        (poll("X: a", " b"), MALFORMED),
        (poll("Transfer-Encoding: chunked"), OTHER),
        (poll("Content-Length: 0"), OTHER),
        (poll("Content-Type: text/plain"), OTHER),
        (poll("Expect: 100-continue"), OTHER),
        (poll("Connection: close"), OTHER),
        (poll("Connection: Upgrade", "Upgrade: websocket"), OTHER),
        (poll("Upgrade: h2c"), OTHER),
        (poll("X-Forwarded-Proto: https"), OTHER),
        (poll("X_Forwarded_For: 1.2.3.4"), OTHER),
        (poll("Origin: a", "Origin: b"), OTHER),
        (poll(version="HTTP/1.0"), OTHER),
        (poll(target=f"{PATH}#x"), OTHER),
        (poll(target=PATH.replace("poll", "p%6fll")), OTHER),
        (poll(target="/api/sessions/a/b/poll"), OTHER),
        (poll(target="/api/sessions//poll"), OTHER),
        (poll(target=f"http://x{PATH}"), OTHER),
        (poll(target="/healthz"), OTHER),
        (b"\r\n" + poll(), OTHER),
        (b"POST" + poll()[3:], OTHER),
        (b"get" + poll()[3:], MALFORMED),
    ],
)
def test_what_is_not_a_plain_poll_goes_to_gunicorn(data: bytes, reason: str) -> None:
    assert read(data) == reason


def test_at_gunicorns_limits_gunicorn_judges() -> None:
    def line(length: int) -> bytes:
        target = f"{PATH}?{QUERY}&p="
        return poll(target=target + "x" * (length - len(f"GET {target} HTTP/1.1")))

    assert isinstance(read(line(RULES.line_bytes - 1)), PollHead)
    assert read(line(RULES.line_bytes)) == LIMITS
    assert read(line(RULES.line_bytes + 1)[: RULES.line_bytes + 1]) == LIMITS, "before its end"
    many = [f"X-{i}: v" for i in range(RULES.fields - 2)]  # and Host
    assert isinstance(read(poll(*many)), PollHead)
    assert read(poll(*many, "X-last: v")) == LIMITS

    def field(length: int) -> bytes:
        return poll("X-Big: " + "a" * (length - len("X-Big: ") - 2))

    assert isinstance(read(field(RULES.field_bytes - 1)), PollHead)
    assert read(field(RULES.field_bytes)) == LIMITS
    assert read(poll(*(f"X-{i}: {'v' * 1000}" for i in range(20)))) == LIMITS
    assert read(poll("X: " + "v" * MAX_HEAD_BYTES)[: MAX_HEAD_BYTES + 1]) == LIMITS


# -- every poll the hub reads, gunicorn reads the same --------------------------------------


def odd_heads() -> Iterator[bytes]:
    """Heads around a poll's, with every byte in each place, and odd lines."""
    for byte in map(chr, range(256)):
        yield poll(f"X-Value: a{byte}b")
        yield poll(f"X-Na{byte}me: v")
        yield poll(target=f"/api/sessions/abcd{byte}efgh/poll?{QUERY}")
        yield poll(target=f"{PATH}?after=0-0{byte}&timeout=1")
        yield poll(f"Authorization: Bearer{byte}t")
        yield poll(f"Origin: {byte}https://a.example{byte}")
    for line in (
        "Connection: keep-alive",
        "Connection: KEEP-ALIVE ",
        "Via: 1.1 x",
        "X-A:",
        "X-A: \t",
    ):
        yield poll(line)
    yield poll("Host: again")
    yield poll(target=f"{PATH}?")
    yield poll(target=f"{PATH}??a=b")


def as_gunicorn_reads(data: bytes) -> tuple[Request, bytes] | None:
    """gunicorn's Request for the head, and the bytes it leaves, or None if it refuses it."""
    unreader = IterUnreader([data])
    try:
        request = Request(Config(), unreader, ("127.0.0.1", 1))
    except ParseException:
        return None
    return request, unreader.read()


def environ_values(request: Request) -> tuple[str | None, str | None, str | None]:
    """The values gunicorn's environ would hold for the plan's headers (joined when repeated)."""
    found: dict[str, list[str]] = {}
    for name, value in request.headers:
        found.setdefault(name, []).append(value)
    return tuple(  # type: ignore[return-value]
        ",".join(found[name]) if name in found else None
        for name in ("AUTHORIZATION", "ORIGIN", "X-FORWARDED-FOR")
    )


def test_every_poll_the_hub_reads_gunicorn_reads_the_same() -> None:
    read_here = 0
    for data in odd_heads():
        head = read(data + b"NEXT")
        if not isinstance(head, PollHead):
            continue
        read_here += 1
        theirs = as_gunicorn_reads(data + b"NEXT")
        assert theirs is not None, f"gunicorn refuses what the hub would answer: {data!r}"
        request, rest = theirs
        assert (request.method, request.version, request.should_close()) == ("GET", (1, 1), False)
        assert request.path == f"/api/sessions/{head.session_id}/poll", data
        assert request.query == head.query, data
        assert environ_values(request) == (head.authorization, head.origin, head.forwarded_for)
        assert request.body.read() == b"" and rest == b"NEXT", "the next request starts there"
        assert io.BytesIO(data).read(head.size) == data
    assert read_here > 500, "the corpus must reach the polls the hub reads"
