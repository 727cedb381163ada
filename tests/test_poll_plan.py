"""The plan's reading of a poll's query (webapp/http/poll_plan.py, `query_of`), against werkzeug's.

Flask's view reads `request.args`; the plan reads the raw query string
itself, whichever way in the poll took (a kept connection's among them,
serving/poll_connections.py). Over queries made to be odd, each name's
first value must be what werkzeug gives, and bytes that are not UTF-8 a
400.
How the whole answer compares, way for way, is tests/test_poll_parity.py's.
"""

from __future__ import annotations

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from webapp.exceptions import ApiError
from webapp.http.poll_plan import query_of

QUERIES = [
    "",
    "after=1-0&timeout=20",
    "after=1-0&after=2-0",
    "after=&timeout",
    "&&after=1-0&",
    "=x&after==1",
    "after=1-0;timeout=5",
    "a=b=c",
    "access_token=eyJ.a-b_c.d",
    "after=1%2D0&timeout=2%30",
    "after=1+0&name=a+b",
    "x=%zz&after=1-0",
    "x=%C3%A9",
    "x=%FF",
    "x=\u00e9".encode().decode("latin-1"),  # UTF-8 bytes, as WSGI passes them
]


def werkzeugs(query: str) -> dict[str, str]:
    environ = EnvironBuilder().get_environ()
    environ["QUERY_STRING"] = query
    args = Request(environ).args
    return {name: args.get(name) for name in args}


@pytest.mark.parametrize("query", QUERIES)
def test_each_names_first_value_is_werkzeugs(query: str) -> None:
    assert query_of(query) == werkzeugs(query)


def test_bytes_that_are_not_utf8_are_a_400() -> None:
    with pytest.raises(ApiError) as raised:
        query_of("after=\xff")
    assert (raised.value.status, raised.value.code) == (400, "bad_request")
