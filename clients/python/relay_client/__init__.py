"""relay_client: a Python client for relay that never loses or repeats a word.

    from relay_client import Client

    with Client("https://relay.example.com", token_provider=get_token) as relay:
        session_id = relay.create_session()
        answer = relay.send(session_id, "Hello").wait()
        print(answer.content)

`AsyncClient` is the same API for asyncio (`answer = await (await
relay.send(sid, "Hello"))`). It speaks only HTTP, as relay's contract (API.md)
describes it, with `httpx` and `httpx-sse`.

How it is built, in the order data flows:
- actions.py   the vocabulary of plans: what to send, open, read, wait for
- calls.py     plans for one-shot calls and their retry rules
- follow.py    plans that follow a session's events (SSE, long-poll) and an answer
- drivers.py   the blocking and asyncio drivers that perform a plan's actions
- client.py, async_client.py   the public API over those
- answer.py, parts.py   the answer model that front ends render from
- events.py    events, ids and the exactly-once cursor
- tokens.py    the token and its renewal; retry.py, the waits; errors.py, the exceptions
- conformance/ the wire-contract check for any running deployment
"""

from .answer import Answer
from .async_client import AsyncClient
from .client import Client
from .errors import (
    AnswerFailed,
    ApiError,
    Conflict,
    ConnectionLost,
    Forbidden,
    IdempotencyKeyReused,
    IncompleteAnswer,
    InvalidRequest,
    NotFound,
    PromptTooLarge,
    ProtocolError,
    RateLimited,
    RelayError,
    ServerError,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from .events import Event, Poll
from .parts import Part
from .retry import Policy

__version__ = "0.1.0"

__all__ = [
    "Answer",
    "AnswerFailed",
    "ApiError",
    "AsyncClient",
    "Client",
    "Conflict",
    "ConnectionLost",
    "Event",
    "Forbidden",
    "IdempotencyKeyReused",
    "IncompleteAnswer",
    "InvalidRequest",
    "NotFound",
    "Part",
    "Policy",
    "Poll",
    "PromptTooLarge",
    "ProtocolError",
    "RateLimited",
    "RelayError",
    "ServerError",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
]
