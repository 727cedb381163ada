"""The model adapter: the network edge between a generation and an LLM.

`Model.stream(messages, tools=..., tool_choice=..., step_key=...)` yields
the answer's `Delta`s, interleaved with `Reasoning` pieces when the model
streams its reasoning, then the `ToolCall`s it asked for, if any, and then
one `Finish`. Two implementations:

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

Tools (issue 23): `tools` (OpenAI function tools) and `tool_choice` go out
with the request; the stream's tool-call fragments are joined into whole
`ToolCall`s by tool_calls.py, whose docstring says what each server sends.
A stream that carries tool calls ends with `Finish` `tool_calls`
(events.FINISH_TOOL_CALLS), whatever the server's finish reason. Offered no
tools, a model is read as before: tool-call deltas are not looked at.

Finish reasons: `stop`, `length` and `content_filter` (events.FINISH_REASONS,
the ones API.md's `end` names) pass through in `Finish`. Any other (`tool_calls`
with no call in the stream, `function_call`, a server's own `eos`) means the
model did not answer as asked: it is raised as a ModelError `upstream_error`
naming the reason, so the answer ends with `error`, never with a silent `end`.

Every failure leaves as a `ModelError` (exceptions.py): `code` is API.md's
error code (`upstream_error` or `upstream_timeout`), `retryable` says
whether trying again before any text was sent may help.

Retries follow `RetryPolicy`, run by the caller (generation.py): only it
knows whether text was already sent, after which trying again would repeat
the answer.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx2
import openai

from webapp.exceptions import ModelError
from webapp.storage.events import (
    FINISH_REASONS,
    FINISH_TOOL_CALLS,
    UPSTREAM_ERROR,
    UPSTREAM_TIMEOUT,
)
from webapp.write.model_wire import sse_data, status_error, unsupported_finish, usage_of
from webapp.write.tool_calls import ToolCall, ToolCallAssembler

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


Piece = Delta | Reasoning | ToolCall | Finish

# A conversation as the model takes it: OpenAI chat messages (`tool_calls`
# and `tool` messages included, tool_calls.py builds those).
Messages = list[dict[str, Any]]
# The tools offered, in OpenAI's function-tool format (the registry's `offered()`).
Tools = Sequence[Mapping[str, Any]]

# What a chunk without choices or a delta reads as; shared, not built per chunk.
_EMPTY: Mapping[str, Any] = {}


class Model(Protocol):
    name: str

    def stream(
        self,
        messages: Messages,
        *,
        tools: Tools = (),
        tool_choice: str | None = None,
        step_key: str | None = None,
    ) -> Iterator[Piece]:
        """The step's pieces; `step_key` (tool_calls.step_key) makes its call ids stable."""
        ...


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
        messages: Messages,
        *,
        text_sent: Callable[[], bool],
        wait: Callable[..., Any],
        ids: tuple[str, str],
        **request: Any,
    ) -> Iterator[Piece]:
        """`model.stream(messages, **request)`, asked again after failures as this policy allows.

        Each step that waits on the model (the next piece, a pause before
        asking again) runs as `wait(function, *args)`, so the caller knows
        when it waits; `ids` (session, message) name it in the log.
        `request` is the rest of Model.stream's keywords (tools and the
        step): asked again, the model is asked the same, and names its
        calls the same.
        """
        for retry in range(self.retries + 1):
            pieces = model.stream(messages, **request)
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

    def stream(
        self,
        messages: Messages,
        *,
        tools: Tools = (),
        tool_choice: str | None = None,
        step_key: str | None = None,
    ) -> Iterator[Piece]:
        # Offered no tools, the stream is read as it always was (module docstring).
        calls = ToolCallAssembler(step_key) if tools else None
        state = _Read(self.name)
        try:
            response = self._request(messages, tools, tool_choice)
            try:
                yield from self._read(response, state, calls)
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
        yield from _finish(state, calls)

    def _read(
        self, response: httpx2.Response, state: _Read, calls: ToolCallAssembler | None
    ) -> Iterator[Piece]:
        """The text and reasoning pieces of the streamed body; the rest is noted in `state` and `calls`."""
        reasoning = self._reasoning
        for chunk in sse_data(response.iter_bytes()):
            state.model = chunk.get("model") or state.model
            if chunk.get("usage"):
                state.usage = usage_of(chunk["usage"])
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
            if calls is not None and (fragments := delta.get("tool_calls")):
                calls.add(fragments)
            state.finish_reason = choice.get("finish_reason") or state.finish_reason

    def _request(
        self, messages: Messages, tools: Tools, tool_choice: str | None
    ) -> httpx2.Response:
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
        body: dict[str, Any] = {
            "model": self.name,
            "messages": messages,
            "max_tokens": self._max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if tools:
            body["tools"] = list(tools)
            # Servers refuse a tool_choice without tools: it goes only with them.
            if tool_choice is not None:
                body["tool_choice"] = tool_choice
        return self._client.post(
            "/chat/completions", body=body, cast_to=httpx2.Response, stream=True
        )


@dataclass(slots=True)
class _Read:
    """What a streamed body said besides its text: the model that answered, usage, finish reason."""

    model: str
    usage: dict[str, int] | None = None
    finish_reason: object = None


def _finish(state: _Read, calls: ToolCallAssembler | None) -> Iterator[Piece]:
    """The step's tool calls, if any, then its Finish; or the ModelError a bad ending is."""
    if state.finish_reason is None:
        # A body cut short can look like a normal end (a close-delimited
        # response, a proxy): only a finish_reason says the answer is whole.
        raise ModelError(UPSTREAM_ERROR, "the model stream ended before the answer finished")
    if calls:
        # Calls in the stream make a tool step, whatever the finish reason says
        # (gpt-4o has sent `stop`); `length` may have cut the last one short.
        yield from calls.calls(state.finish_reason)
        yield Finish(state.model, FINISH_TOOL_CALLS, state.usage)
        return
    if not isinstance(state.finish_reason, str) or state.finish_reason not in FINISH_REASONS:
        raise unsupported_finish(state.finish_reason)
    yield Finish(state.model, state.finish_reason, state.usage)
