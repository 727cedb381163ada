"""Tool calls on the model's side: reading them from a stream, and sending them back as history.

A model asks for tools in its streamed deltas (`delta.tool_calls`), as
fragments. `ToolCallAssembler` joins them into whole `ToolCall`s, which the
model adapter (llm.py) yields after the step's text and before its `Finish`.
The next model call gets each call and its result back as OpenAI-format
history (`assistant_message`, `tool_message`).

What servers send, and how it is read (issue 23):

- OpenAI: per call, a first fragment with `index`, `id`, `type` and
  `function.name`, then fragments of `function.arguments` text under the
  same `index`. Joined per `index`.
- vLLM sometimes omits `id`: the call gets one of ours.
- Ollama sends each call whole in one delta, with no `index` or with index 0
  for every call: a fragment that brings another `id`, or a name while the
  call before it already has whole JSON arguments, begins a new call.
- gpt-4o has ended a stream that carries tool calls with `finish_reason`
  `stop`: a stream that carries calls is a step that called tools, whatever
  its finish reason (llm.py).
- `finish_reason` `length` cuts the last call's arguments short: a last call
  whose arguments do not parse then is `CUT_OFF`, never run. Arguments
  that do not parse without that are `NOT_JSON`; a call's `error` says
  which, and becomes the `error` result the model sees.

Call ids (`call_id`): always relay's own, never the server's, for three
reasons. They are idempotency keys (an MCP tool gets one in `_meta`), so they
must be unique across answers, and servers reuse theirs (`call_0` at every
step, or none at all). They appear in URLs (`.../tools/{call_id}/approval`).
And they must be stable: the id of a call is a hash of the step
(`step_key(message_id, step)`) and the call's position in it, so the model
asked again for the same step names the same calls the same way. The
server's own id, when it sent one, is kept as `provider_id` and is what the
history sends back to it (some servers accept only ids of their own making).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from webapp.storage.events import TOOL_DENIED, TOOL_ERROR, TOOL_IN_DOUBT, TOOL_OK

# Why a call's arguments cannot be used: the text of its `error` result.
CUT_OFF = "the arguments were cut off at the model's token limit (finish_reason length); the tool did not run"
NOT_JSON = "the arguments are not valid JSON; the tool did not run"
NOT_OBJECT = "the arguments are not a JSON object; the tool did not run"
NO_NAME = "the call names no tool; nothing ran"

# A server's own call id is only echoed back to it; a longer one is not an id.
_PROVIDER_ID_MAX_CHARS = 256

_IN_DOUBT_TEXT = (
    "in_doubt: the run of this call was interrupted, so it may or may not have "
    "happened. Do not assume either way; tell the user."
)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A whole tool call the model asked for: API.md's `tool_call` event.

    `arguments` is the parsed JSON object, or, when the model's text is not
    one, that text as it came; `error` then says why, and the call must not
    run: its result is that error.
    """

    call_id: str
    name: str
    arguments: dict[str, Any] | str
    error: str | None = None
    provider_id: str | None = None  # the server's own id, sent back in history

    @property
    def history_id(self) -> str:
        """The id this call goes by in the history sent back to the model."""
        return self.provider_id or self.call_id

    @property
    def arguments_json(self) -> str:
        """The arguments as the history gives them back: JSON text, or the text the model sent."""
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class ToolResult:
    """How a tool call ended: API.md's `tool_result` (`status`, `output` or `error`).

    The registry gives `ok` and `error`; `denied` and `in_doubt` are the
    journal's (a person said no; a run was lost midway).
    """

    status: str
    output: Any = None
    error: str | None = None

    @classmethod
    def ok(cls, output: Any) -> ToolResult:
        return cls(TOOL_OK, output=output)

    @classmethod
    def failed(cls, error: str) -> ToolResult:
        return cls(TOOL_ERROR, error=error)


def step_key(message_id: str, step: int) -> str:
    """What a step's call ids are made from: the same message and step give the same ids."""
    return f"{message_id}/{step}"


def tool_call_id(key: str, position: int) -> str:
    """The id of the call at `position` (from 0) of the step `key`: URL-safe, 29 characters.

    96 bits of a hash: unique across answers, and within the 40 characters
    OpenAI accepts for an id sent back in history.
    """
    digest = hashlib.sha256(f"{key}#{position}".encode()).hexdigest()
    return f"call_{digest[:24]}"


# -- reading a stream ------------------------------------------------------------


@dataclass(slots=True)
class _Draft:
    """A call while its fragments arrive."""

    provider_id: str | None = None
    name: str | None = None
    arguments: list[str] = field(default_factory=list)

    def whole(self) -> bool:
        """Whether the arguments so far are a complete JSON text."""
        try:
            json.loads("".join(self.arguments))
        except ValueError:
            return False
        return True


class ToolCallAssembler:
    """Joins the tool-call fragments of one model call into whole calls (module docstring)."""

    def __init__(self, key: str | None = None) -> None:
        self._key = key or uuid.uuid4().hex  # without a step: ids unique, not stable
        self._drafts: list[_Draft] = []
        self._by_index: dict[int, _Draft] = {}

    def __bool__(self) -> bool:
        return bool(self._drafts)

    def add(self, fragments: object) -> None:
        """Take a delta's `tool_calls` list; anything that is not one is ignored."""
        if not isinstance(fragments, list):
            return
        for fragment in fragments:
            if isinstance(fragment, Mapping):
                self._add(fragment)

    def _add(self, fragment: Mapping[str, Any]) -> None:
        function = fragment.get("function")
        function = function if isinstance(function, Mapping) else {}
        index = fragment.get("index")
        index = index if isinstance(index, int) and not isinstance(index, bool) else None
        provider_id = _text(fragment.get("id"))
        name = _text(function.get("name"))
        draft = self._continued(index, provider_id, name)
        if draft is None:
            draft = _Draft()
            self._drafts.append(draft)
        if index is not None:
            self._by_index[index] = draft
        if provider_id and not draft.provider_id and len(provider_id) <= _PROVIDER_ID_MAX_CHARS:
            draft.provider_id = provider_id
        draft.name = draft.name or name
        arguments = function.get("arguments")
        if isinstance(arguments, Mapping):  # some servers send the object itself
            arguments = json.dumps(arguments, ensure_ascii=False)
        if isinstance(arguments, str) and arguments:
            draft.arguments.append(arguments)

    def _continued(
        self, index: int | None, provider_id: str | None, name: str | None
    ) -> _Draft | None:
        """The call this fragment continues, or None when it begins one."""
        if index is not None:
            draft = self._by_index.get(index)
        else:
            draft = self._drafts[-1] if self._drafts else None
        if draft is None:
            return None
        if provider_id and draft.provider_id:
            return draft if provider_id == draft.provider_id else None
        if name and draft.name and draft.whole():
            return None  # Ollama: index 0 (or none) again, for the next whole call
        return draft

    def calls(self, finish_reason: object) -> list[ToolCall]:
        """The whole calls, in the order they began; `finish_reason` tells a cut-off last call."""
        cut = finish_reason == "length"
        last = len(self._drafts) - 1
        return [
            _finished(draft, tool_call_id(self._key, position), cut and position == last)
            for position, draft in enumerate(self._drafts)
        ]


def _finished(draft: _Draft, call_id: str, maybe_cut: bool) -> ToolCall:
    text = "".join(draft.arguments)
    arguments: dict[str, Any] | str = text
    error = None
    try:
        # A tool without parameters: some servers send no arguments at all.
        parsed = json.loads(text) if text.strip() or maybe_cut else {}
    except ValueError:
        error = CUT_OFF if maybe_cut else NOT_JSON
    else:
        if isinstance(parsed, dict):
            arguments = parsed
        else:
            error = NOT_OBJECT
    if not draft.name:
        error = NO_NAME
    return ToolCall(call_id, draft.name or "", arguments, error, draft.provider_id)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


# -- history sent back to the model ---------------------------------------------


def assistant_message(text: str, calls: Sequence[ToolCall]) -> dict[str, Any]:
    """A step's output as the history gives it back: its text and the calls it made."""
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = [
            {
                "id": call.history_id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json},
            }
            for call in calls
        ]
    return message


def tool_message(call: ToolCall, result: ToolResult) -> dict[str, Any]:
    """A call's result as the history gives it back: a `tool` message the model reads."""
    return {"role": "tool", "tool_call_id": call.history_id, "content": result_text(result)}


def result_text(result: ToolResult) -> str:
    """What the model reads of a result: the output itself, or a line that says what happened."""
    if result.status == TOOL_OK:
        output = result.output
        return output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
    if result.status == TOOL_DENIED:
        reason = f" Their reason: {result.error}" if result.error else ""
        return f"denied: the user did not allow this call, so it did not run.{reason}"
    if result.status == TOOL_IN_DOUBT:
        return _IN_DOUBT_TEXT
    return f"error: {result.error or 'the tool failed'}"


def offered_names(tools: Iterable[Mapping[str, Any]]) -> set[str]:
    """The names in an OpenAI `tools` list (what a model was offered)."""
    names = set()
    for tool in tools:
        function = tool.get("function")
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            names.add(function["name"])
    return names
