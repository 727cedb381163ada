"""What a plan asks its driver to do: the client's logic written once, without I/O.

Every request, retry, reconnect and reset is a *plan*: a generator that
yields actions and is sent back their outcomes. `Client` performs them with
`httpx.Client` and `time.sleep`, `AsyncClient` with `httpx.AsyncClient` and
`asyncio.sleep`; neither decides anything. So the sync and asyncio clients
cannot drift apart, and what the client does on a cut, a 401 or a reset is
read in one place (calls.py, follow.py).

| action      | the driver                                  | sends back                      |
| ----------- | ------------------------------------------- | ------------------------------- |
| `Authorize` | the token to send; with `renew`, asks the   | the token, or None (none, or    |
|             | provider for a new one                      | nothing to renew with)          |
| `Send`      | one request, its body read                  | `httpx.Response` or the         |
|             |                                             | `httpx.TransportError`          |
| `Open`      | opens a stream (closing any open before);   | as `Send`; the body is unread   |
|             | an answer other than 200 is read whole      | when the status is 200          |
| `Receive`   | the open stream's next SSE message          | `ServerSentEvent`, None at its  |
|             |                                             | end, or the TransportError      |
| `Sleep`     | waits                                       | None                            |
| `Emit`      | hands an event to the caller                | None                            |

A plan's return value is the call's result. Errors are raised from the
plan itself, as this package's exceptions (errors.py).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .events import Event

T = TypeVar("T")


@dataclass(frozen=True)
class Request:
    """One HTTP request, without its token (the driver adds `Authorization`)."""

    method: str
    path: str
    params: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None
    # The read timeout, when the request may wait on purpose (long-poll, ?wait=, SSE).
    read_timeout: float | None = None


@dataclass(frozen=True)
class Authorize:
    renew: bool = False


@dataclass(frozen=True)
class Send:
    request: Request
    token: str | None


@dataclass(frozen=True)
class Open:
    request: Request
    token: str | None


@dataclass(frozen=True)
class Receive:
    pass


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Emit:
    event: Event


Action = Authorize | Send | Open | Receive | Sleep | Emit
Plan = Generator[Action, Any, T]


def headers_for(request: Request, token: str | None) -> dict[str, str]:
    """The request's headers, with the bearer token when there is one."""
    if token is None:
        return dict(request.headers)
    return {**request.headers, "Authorization": f"Bearer {token}"}
