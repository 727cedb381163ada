"""The model adapter: the network edge between a generation and an LLM.

`Model.stream(messages)` yields the answer's `Delta`s, interleaved with
`Reasoning` pieces when the model streams its reasoning, and then one
`Finish`. Two implementations:

- `OpenAIModel` speaks to any OpenAI-compatible server through the `openai`
  SDK's client (`stream=True`, usage included), with explicit timeouts, and
  reads the streamed body itself (see `_request` for why). It takes its
  HTTP client from the caller, so tests point it at a local model server.
- `DemoModel` (demo_model.py) needs no key: it streams a deterministic answer at a reading
  pace, so the app is useful out of the box. Its model name is "demo".

Reasoning (issue 16): reasoning models served through OpenAI-compatible
servers stream what they think in the delta's `reasoning_content` (DeepSeek,
SGLang, LiteLLM, vLLM before 0.19.1) or `reasoning` (vLLM since, Ollama,
OpenRouter), before the answer's `content` and sometimes between its parts.
`reasoning_content` wins when a delta has both, so text is never doubled.
Both models yield `Reasoning` pieces only when built with `reasoning=True`,
as the worker builds them (generation.py writes them as `reasoning`
events, API.md); built without it, a model yields answer text alone.

Finish reasons: `stop`, `length` and `content_filter` (events.FINISH_REASONS,
the ones API.md's `end` names) pass through in `Finish`. Any other (`tool_calls`,
`function_call`, a server's own `eos`) means the model did not answer as
asked: it is raised as a ModelError `upstream_error` naming the reason, so
the answer ends with `error`, never with a silent `end`.

Every failure leaves as a `ModelError` (exceptions.py): `code` is API.md's
error code (`upstream_error` or `upstream_timeout`), `retryable` says
whether trying again before any text was sent may help.

Retries follow `RetryPolicy`, run by the caller (generation.py): only it
knows whether text was already sent, after which trying again would repeat
the answer.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx2
import openai

from webapp.exceptions import ModelError
from webapp.storage.events import FINISH_REASONS, UPSTREAM_ERROR, UPSTREAM_TIMEOUT

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Delta:
    """The next piece of the answer: API.md's `chunk` event."""

    text: str


@dataclass(frozen=True, slots=True)
class Reasoning:
    """The next piece of the model's reasoning: API.md's `reasoning` event.

    A class of its own, not a flag on Delta, so a consumer dispatches on the
    type (`type(piece) is Delta`) and a chunk writer can never take one for
    answer text by mistake.
    """

    text: str


@dataclass(frozen=True, slots=True)
class Finish:
    model: str
    finish_reason: str
    usage: dict[str, int] | None


Piece = Delta | Reasoning | Finish

# What a chunk without choices or a delta reads as; shared, not built per chunk.
_EMPTY: Mapping[str, Any] = {}


class Model(Protocol):
    name: str

    def stream(self, messages: list[dict[str, str]]) -> Iterator[Piece]: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When a generation asks the model again after a failure, and how long it waits first.

    Only before any text was sent (after it, a new request would repeat the
    answer), only for failures marked `retryable`, at most `retries` times.
    A server's Retry-After (429, 503) lengthens the pause, up to a cap.
    """

    retries: int = 3
    backoff_seconds: tuple[float, ...] = (0.5, 1.0, 2.0)
    retry_after_max_seconds: float = 10.0

    def pause(self, retry: int, error: ModelError, text_sent: bool) -> float | None:
        """Seconds to wait before asking again after failure number `retry` (from 0); None: give up."""
        if text_sent or not error.retryable or retry >= self.retries:
            return None
        pause = self.backoff_seconds[min(retry, len(self.backoff_seconds) - 1)]
        if error.retry_after_seconds is not None:
            pause = min(max(pause, error.retry_after_seconds), self.retry_after_max_seconds)
        return pause

    def stream(
        self,
        model: Model,
        messages: list[dict[str, str]],
        *,
        text_sent: Callable[[], bool],
        wait: Callable[..., Any],
        ids: tuple[str, str],
    ) -> Iterator[Piece]:
        """`model.stream(messages)`, asked again after failures as this policy allows.

        Each step that waits on the model (the next piece, a pause before
        asking again) runs as `wait(function, *args)`, so the caller knows
        when it waits; `ids` (session, message) name it in the log.
        """
        for retry in range(self.retries + 1):
            pieces = model.stream(messages)
            try:
                while (piece := wait(next, pieces, None)) is not None:
                    yield piece
                return
            except ModelError as exc:
                pause = self.pause(retry, exc, text_sent())
                if pause is None:
                    raise
                log.warning(
                    "model failed before any text, retry %d in %.1fs session=%s message=%s: %s",
                    retry + 1,
                    pause,
                    *ids,
                    exc.message,
                )
                wait(time.sleep, pause)
            finally:
                close = getattr(pieces, "close", None)
                if close is not None:
                    close()


MODEL_RETRIES = RetryPolicy()


class OpenAIModel:
    """Chat completions from any OpenAI-compatible server, streamed."""

    def __init__(
        self, client: openai.OpenAI, name: str, max_tokens: int, *, reasoning: bool = False
    ) -> None:
        self._client = client
        self.name = name
        self._max_tokens = max_tokens
        self._reasoning = reasoning  # yield Reasoning pieces (module docstring)

    @classmethod
    def from_settings(
        cls,
        settings: Mapping[str, Any],
        http_client: httpx2.Client | None = None,
        *,
        reasoning: bool = False,
    ) -> OpenAIModel:
        timeout = httpx2.Timeout(
            settings["LLM_READ_TIMEOUT_SECONDS"],
            connect=settings["LLM_CONNECT_TIMEOUT_SECONDS"],
        )
        client = openai.OpenAI(
            api_key=settings["OPENAI_API_KEY"],
            base_url=settings["OPENAI_BASE_URL"],
            timeout=timeout,
            # generation.py retries, and only before the first chunk.
            max_retries=0,
            http_client=http_client,
        )
        # The SDK names the platform in each request's headers, worked out on the
        # first request: `platform.platform()` then runs `uname -p` in a
        # subprocess, a fork of the whole worker (13 ms in issue 18's fan-out,
        # while 100 answers were starting). Work it out now, before answers wait.
        client.platform_headers()
        return cls(client, settings["LLM_MODEL"], settings["LLM_MAX_TOKENS"], reasoning=reasoning)

    def stream(self, messages: list[dict[str, str]]) -> Iterator[Piece]:
        model, finish_reason, usage = self.name, None, None
        reasoning = self._reasoning
        try:
            response = self._request(messages)
            try:
                for chunk in _sse_data(response.iter_lines()):
                    model = chunk.get("model") or model
                    if chunk.get("usage"):
                        usage = _usage(chunk["usage"])
                    choices = chunk.get("choices")
                    choice = choices[0] if choices else _EMPTY  # n is 1: one choice
                    delta = choice.get("delta") or _EMPTY
                    if reasoning:
                        # Reasoning first: a delta holding both ends its thinking there.
                        thought = delta.get("reasoning_content") or delta.get("reasoning")
                        if thought and isinstance(thought, str):
                            yield Reasoning(thought)
                    text = delta.get("content")
                    if text:
                        yield Delta(text)
                    finish_reason = choice.get("finish_reason") or finish_reason
            finally:
                response.close()
        except openai.APITimeoutError as exc:
            raise ModelError(UPSTREAM_TIMEOUT, "the model timed out", retryable=True) from exc
        except openai.APIStatusError as exc:
            raise status_error(exc) from exc
        except openai.APIError as exc:  # connection errors
            raise ModelError(UPSTREAM_ERROR, f"the model failed: {exc}", retryable=True) from exc
        except httpx2.TimeoutException as exc:  # silent for longer than the read timeout
            raise ModelError(UPSTREAM_TIMEOUT, "the model timed out", retryable=True) from exc
        except (httpx2.RequestError, ssl.SSLError) as exc:  # a drop mid-stream
            raise ModelError(
                UPSTREAM_ERROR, f"the model stream broke: {exc}", retryable=True
            ) from exc
        except httpx2.HTTPError as exc:
            raise ModelError(UPSTREAM_ERROR, f"the model stream broke: {exc}") from exc
        if finish_reason is None:
            # A body cut short can look like a normal end (a close-delimited
            # response, a proxy): only a finish_reason says the answer is whole.
            raise ModelError(UPSTREAM_ERROR, "the model stream ended before the answer finished")
        if not isinstance(finish_reason, str) or finish_reason not in FINISH_REASONS:
            raise unsupported_finish(finish_reason)
        yield Finish(model, finish_reason, usage)

    def _request(self, messages: list[dict[str, str]]) -> httpx2.Response:
        """POST the chat completion through the SDK; the streamed body is left unread.

        The SDK's client makes the request (auth, headers, timeouts, its error
        types for failed requests), but the body is read here, not by
        `chat.completions.create()`: its stream stops reading at `[DONE]`, before
        the end of the HTTP body, so httpcore closes the connection instead of
        pooling it, and every answer paid for a new connection (a TLS handshake
        with a real provider). Its per-chunk pydantic models and request
        validation also cost about 1 ms of CPU before each first token.
        `client.post(..., cast_to=httpx.Response)` is the SDK's documented way
        to get the raw response (README, "Undocumented endpoints").
        """
        body = {
            "model": self.name,
            "messages": messages,
            "max_tokens": self._max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        return self._client.post(
            "/chat/completions", body=body, cast_to=httpx2.Response, stream=True
        )


def _sse_data(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The JSON `data` of each server-sent event, up to `[DONE]`.

    An
    `error` object in place of a chunk (the API's way to fail mid-stream) is
    raised as a retryable ModelError, as the SDK's own stream raises it.
    """
    data: list[str] = []
    for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            payload, data = "\n".join(data), []
            if payload == "[DONE]":
                _drain(lines)
                return
            try:
                chunk = json.loads(payload)
            except ValueError as exc:
                raise ModelError(UPSTREAM_ERROR, "the model sent malformed JSON") from exc
            if not isinstance(chunk, dict):
                raise ModelError(UPSTREAM_ERROR, "the model sent an unexpected event")
            if chunk.get("error"):
                error = chunk["error"]
                message = error.get("message") if isinstance(error, dict) else None
                raise ModelError(
                    UPSTREAM_ERROR, f"the model failed: {message or error}", retryable=True
                )
            yield chunk


def _drain(lines: Iterator[str]) -> None:
    """Read the body to its end (normally nothing but the end itself) so the connection is pooled."""
    try:
        for _ in lines:
            pass
    except (httpx2.HTTPError, ssl.SSLError):
        pass  # the answer is whole already; only the connection is not reused


def _usage(raw: dict[str, Any]) -> dict[str, int]:
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
