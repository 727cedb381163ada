"""A kept connection's next request head, read with httptools: a poll the hub may answer, or not.

After a parked poll is answered, its connection's next request is read here
(poll_connections.py) rather than by gunicorn's Python parser, which was
about a ninth of a poll's web CPU (py-spy, issue 25's bench). The parser is httptools, the
binding of llhttp (Node's HTTP parser) that uvicorn uses: this module
parses nothing itself. It feeds the parser the bytes up to the end of the
head, and holds the result to the rules gunicorn would apply before any of
it may be answered without gunicorn.

Everything is either a `PollHead`, a poll this path may hand to its plan,
or a reason to give the bytes to gunicorn, which then reads them exactly as
if it had read them first (handover.py, item 9): it answers what it
refuses with its own JSON error (refusals.py) and serves anything else.
So a doubt costs a hand-back, never a different answer. What is handed
back, by reason:

- `MALFORMED`: whatever llhttp refuses: invalid bytes in the request line,
  a header name or value (llhttp refuses exactly the bytes gunicorn
  refuses there, tests/test_poll_heads.py), bare CR or LF, obsolete line
  folding, a duplicate Content-Length, both Content-Length and
  Transfer-Encoding;
- `LIMITS`: a request line, a header line or a count of headers at or past
  gunicorn's limits (`limit_request_line`, `limit_request_field_size`,
  `limit_request_fields`), and a head longer than `MAX_HEAD_BYTES`:
  gunicorn answers 414 or 431, or serves it;
- `OTHER`: anything but an HTTP/1.1 GET of `/api/sessions/<sid>/poll`
  that asks for keep-alive (no `Connection` header, or `keep-alive`):
  another path or method, HTTP/1.0, `Connection: close`, an Upgrade; and
  a body, or a header that changes how the request is read
  (Content-Length, Transfer-Encoding, Content-Type, Expect, the scheme
  headers gunicorn trusts from a proxy), a header given twice (gunicorn
  joins or refuses those), a header name with `_` (gunicorn drops or maps
  those), an empty line before the request line, a path with `%`
  (gunicorn decodes it) or a fragment.

The head of a body-less request ends at its first empty line: there the
next request (a pipelining client's) begins, exactly as gunicorn reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import httptools

# A head still unfinished past this goes to gunicorn, which reads on under its own limits.
MAX_HEAD_BYTES = 16 * 1024
END_OF_HEAD = b"\r\n\r\n"
OTHER, MALFORMED, LIMITS = "other", "malformed", "limits"
INCOMPLETE = None  # the head has not all arrived: read more
POLL_PREFIX, POLL_SUFFIX = b"/api/sessions/", b"/poll"
# Headers that change how gunicorn reads the request or what it puts in the environ.
HANDED_BACK_HEADERS = frozenset(
    {b"content-length", b"transfer-encoding", b"content-type", b"expect", b"upgrade"}
)
# What a poll's plan reads (webapp/http/poll_plan.py, PollRequest).
READ = (b"authorization", b"origin", b"x-forwarded-for")
WANTED = frozenset({*READ, b"connection"})


# gunicorn's defaults for limit_request_line, limit_request_fields, limit_request_field_size.
LINE_BYTES, FIELDS, FIELD_BYTES = 4094, 100, 8190


@dataclass(frozen=True, slots=True)
class HeadRules:
    """gunicorn's limits on a request head, and the scheme headers it may trust (its config)."""

    line_bytes: int = LINE_BYTES  # limit_request_line
    fields: int = FIELDS  # limit_request_fields
    field_bytes: int = FIELD_BYTES  # limit_request_field_size
    # Header names (lowercase) whose request goes to gunicorn: HANDED_BACK_HEADERS,
    # and the secure_scheme_headers gunicorn may trust from a proxy.
    handed_back: frozenset[bytes] = HANDED_BACK_HEADERS

    @classmethod
    def of(cls, cfg: Any) -> HeadRules:
        """From gunicorn's config; 0 (unlimited there) keeps the default here: only stricter."""
        return cls(
            cfg.limit_request_line if cfg.limit_request_line > 0 else LINE_BYTES,
            cfg.limit_request_fields if cfg.limit_request_fields > 0 else FIELDS,
            cfg.limit_request_field_size if cfg.limit_request_field_size > 0 else FIELD_BYTES,
            HANDED_BACK_HEADERS
            | frozenset(name.lower().encode("latin-1") for name in cfg.secure_scheme_headers),
        )


class PollHead(NamedTuple):
    """A poll's head as plain values, as gunicorn would put them in the environ."""

    session_id: str  # from the path, unchecked (the plan checks it)
    query: str  # QUERY_STRING: the bytes after `?`, as latin-1
    authorization: str | None
    origin: str | None
    forwarded_for: str | None
    size: int  # bytes of the head: the next request starts there


class HeadReader:
    """One request head, fed to httptools as its bytes arrive (an httptools protocol)."""

    __slots__ = ("_parser", "_fed", "_url", "_headers", "_messages", "_method", "_version")
    __slots__ += ("_upgrade",)

    def __init__(self) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self.reset()

    def reset(self) -> None:
        """Ready for the next head, after one read as a PollHead (llhttp is ready for it too)."""
        self._fed = 0  # bytes of the buffer given to the parser so far
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._messages = 0
        self._method, self._version, self._upgrade = b"", "", False

    # -- httptools' callbacks --------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        # Read here: once the message is complete llhttp starts on the next one.
        parser = self._parser
        self._method, self._version = parser.get_method(), parser.get_http_version()
        self._upgrade = parser.should_upgrade()

    def on_message_complete(self) -> None:
        self._messages += 1

    # -- reading -----------------------------------------------------------------------

    def read(self, buffer: bytes, rules: HeadRules) -> PollHead | str | None:
        """The head at the start of `buffer`: a PollHead, a reason to hand back, or INCOMPLETE."""
        end = buffer.find(END_OF_HEAD, max(self._fed - 3, 0))
        upto = len(buffer) if end < 0 else end + len(END_OF_HEAD)
        try:
            self._parser.feed_data(buffer[self._fed : upto])
        except httptools.HttpParserUpgrade:
            return OTHER
        except httptools.HttpParserError:
            return MALFORMED
        self._fed = upto
        if end < 0:
            line_end = buffer.find(b"\r\n")
            too_long = len(buffer) > (rules.line_bytes if line_end < 0 else MAX_HEAD_BYTES)
            return LIMITS if too_long else INCOMPLETE
        if buffer.startswith(b"\r\n") or self._messages != 1 or self._upgrade:
            return OTHER
        if upto > MAX_HEAD_BYTES or not self._within(buffer, upto, rules):
            return LIMITS
        return self._poll(upto, rules)

    def _within(self, buffer: bytes, size: int, rules: HeadRules) -> bool:
        """Under gunicorn's limits (a margin of one byte each: at a limit, gunicorn judges)."""
        line_end = buffer.find(b"\r\n")
        if line_end >= rules.line_bytes or len(self._headers) >= rules.fields:
            return False
        if size - line_end < rules.field_bytes:  # no header line can be as long: no need to look
            return True
        lines = buffer[line_end + 2 : size - 4].split(b"\r\n")
        return max(map(len, lines)) + 2 < rules.field_bytes

    def _poll(self, size: int, rules: HeadRules) -> PollHead | str:
        """The PollHead, if the request is a plain keep-alive GET of the poll route."""
        url = self._url
        path, _, query = url.partition(b"?")
        if (
            self._method != b"GET"
            or self._version != "1.1"
            or not path.startswith(POLL_PREFIX)
            or not path.endswith(POLL_SUFFIX)
            or b"#" in url
            or b"%" in path
        ):
            return OTHER
        session_id = path[len(POLL_PREFIX) : -len(POLL_SUFFIX)]
        if not session_id or b"/" in session_id:
            return OTHER
        values = _read_headers(self._headers, rules)
        if values is None:
            return OTHER
        authorization, origin, forwarded_for = values
        return PollHead(
            session_id.decode("latin-1"),
            query.decode("latin-1"),
            authorization,
            origin,
            forwarded_for,
            size,
        )


def _read_headers(
    headers: list[tuple[bytes, bytes]], rules: HeadRules
) -> tuple[str | None, str | None, str | None] | None:
    """The values a poll's plan reads, as gunicorn puts them in the environ; None to hand back."""
    seen: set[bytes] = set()
    values: dict[bytes, bytes] = {}
    handed_back = rules.handed_back
    for raw_name, raw_value in headers:
        name = raw_name.lower()
        if name in seen or name in handed_back or b"_" in name:
            return None
        seen.add(name)
        if name in WANTED:
            values[name] = raw_value
    connection = values.get(b"connection")
    if connection is not None and connection.strip(b" \t").lower() != b"keep-alive":
        return None
    # Stripped as gunicorn strips them (llhttp keeps trailing blanks).
    authorization, origin, forwarded_for = (values.get(name) for name in READ)
    return (
        None if authorization is None else authorization.strip(b" \t").decode("latin-1"),
        None if origin is None else origin.strip(b" \t").decode("latin-1"),
        None if forwarded_for is None else forwarded_for.strip(b" \t").decode("latin-1"),
    )
