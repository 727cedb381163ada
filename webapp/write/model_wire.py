"""The wire of an OpenAI-compatible chat completion: its streamed body, and its failures classified.

llm.py's model adapter reads the body through `sse_data` and turns HTTP
errors and finish reasons it cannot use into `ModelError`s here, so the
adapter itself is only the request and the pieces.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from typing import Any

import httpx2
import openai

from webapp.exceptions import ModelError
from webapp.storage.events import UPSTREAM_ERROR


def sse_data(body: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    """The JSON `data` of each server-sent event in the body's bytes, up to `[DONE]`.

    Read from the bytes as they come (the response's `iter_bytes()`): lines
    are split a network read at a time, not through httpx's text and line
    decoders, a generator each per piece (the read of a piece: 43 -> 37 µs of
    CPU in issue 25's measurement). Lines end with LF, CRLF or CR, as the SSE format
    allows. An `error` object in place of a chunk (the API's way to fail
    mid-stream) is raised as a retryable ModelError, as the SDK's own stream
    raises it.
    """
    data: list[bytes] = []
    rest = b""
    for read in body:
        rest = rest + read if rest else read
        if b"\r" in rest:
            rest = _lf_only(rest)
        if b"\n" not in rest:
            continue
        lines = rest.split(b"\n")
        rest = lines.pop()
        for line in lines:
            if line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif not line and data:
                payload = data[0] if len(data) == 1 else b"\n".join(data)
                data = []
                if payload == b"[DONE]":
                    _drain(body)
                    return
                yield _chunk(payload)


def _lf_only(text: bytes) -> bytes:
    """CRLF and CR as LF; a CR at the end is kept, its LF may be in the next read."""
    held = text.endswith(b"\r")
    text = (text[:-1] if held else text).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return text + b"\r" if held else text


def _chunk(payload: bytes) -> dict[str, Any]:
    try:
        # Decoded as httpx decodes text: a byte that is not UTF-8 is replaced, not fatal.
        chunk = json.loads(payload.decode("utf-8", "replace"))
    except ValueError as exc:
        raise ModelError(UPSTREAM_ERROR, "the model sent malformed JSON") from exc
    if not isinstance(chunk, dict):
        raise ModelError(UPSTREAM_ERROR, "the model sent an unexpected event")
    if chunk.get("error"):
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else None
        raise ModelError(UPSTREAM_ERROR, f"the model failed: {message or error}", retryable=True)
    return chunk


def _drain(body: Iterator[bytes]) -> None:
    """Read the body to its end (normally nothing but the end itself) so the connection is pooled."""
    try:
        for _ in body:
            pass
    except (httpx2.HTTPError, ssl.SSLError):
        pass  # the answer is whole already; only the connection is not reused


def usage_of(raw: dict[str, Any]) -> dict[str, int]:
    return {
        "prompt_tokens": raw.get("prompt_tokens") or 0,
        "completion_tokens": raw.get("completion_tokens") or 0,
        "total_tokens": raw.get("total_tokens") or 0,
    }


def _retry_after(response: httpx2.Response) -> float | None:
    try:
        return float(response.headers.get("retry-after", ""))
    except ValueError:
        return None


def unsupported_finish(finish_reason: object) -> ModelError:
    """A finish reason API.md does not name: the model stopped without answering as asked.

    Not retryable: the same request would most likely stop the same way
    (`tool_calls` from a model that wants tools relay does not offer).
    """
    shown = repr(finish_reason) if not isinstance(finish_reason, str) else finish_reason
    return ModelError(
        UPSTREAM_ERROR, f"the model stopped with an unsupported finish_reason: {shown[:64]}"
    )


def status_error(exc: openai.APIStatusError) -> ModelError:
    """Classify an HTTP error answer of the model server."""
    status = exc.status_code
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body) if isinstance(body.get("error", body), dict) else {}
    if status == 429 and "insufficient_quota" in (error.get("code"), error.get("type")):
        # Out of credit: waiting will not help, so say so at once.
        return ModelError(UPSTREAM_ERROR, "the model provider's quota is exhausted")
    retryable = status in (408, 409, 429) or status >= 500
    return ModelError(
        UPSTREAM_ERROR,
        f"the model answered HTTP {status}",
        retryable=retryable,
        retry_after_seconds=_retry_after(exc.response),
    )
