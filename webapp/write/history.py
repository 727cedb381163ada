"""The conversation the model sees: the system prompt, the earlier turns, the new prompt.

An earlier answer that called tools goes back to the model as it happened
(API.md, Stored): each of its steps as an assistant message with its
`tool_calls`, then a `tool` message with each call's result, built from the
answer's stored `parts`; its last step's text ends it. An answer without
tools is its `content`, as always. Reasoning is never sent back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from itertools import groupby
from typing import Any

from webapp.storage import events, models
from webapp.storage.parts import TEXT, TOOL
from webapp.write.llm import Messages
from webapp.write.tool_calls import ToolCall, ToolResult, assistant_message, tool_message


def build_prompt(history: Sequence[models.Turn], system_prompt: str, budget_chars: int) -> Messages:
    """The conversation the model sees: system prompt, earlier turns, new prompt.

    Earlier turns are dropped oldest-first until the whole fits the budget;
    the system prompt and the newest prompt are always kept. Assistant turns
    that failed or are still running say nothing worth repeating.
    """
    turns = [turn_messages(t) for t in history if t.role == models.USER or _worth_sending(t)]
    newest, earlier = turns[-1:], turns[:-1]
    used = len(system_prompt) + sum(_size(t) for t in newest)
    kept: list[Messages] = []
    for turn in reversed(earlier):
        used += _size(turn)
        if used > budget_chars:
            break
        kept.append(turn)
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return system + [message for turn in [*kept[::-1], *newest] for message in turn]


def _worth_sending(turn: models.Turn) -> bool:
    return turn.status in models.FINAL_STATUSES and bool(turn.content or _tool_parts(turn))


def _tool_parts(turn: models.Turn) -> list[dict[str, Any]]:
    if turn.role != models.ASSISTANT or not turn.parts:
        return []
    return [part for part in json.loads(turn.parts) if part["type"] == TOOL]


def turn_messages(turn: models.Turn) -> Messages:
    """One stored turn as the messages the model is sent (module docstring)."""
    if turn.role == models.USER or not _tool_parts(turn):
        return [{"role": turn.role, "content": turn.content}]
    messages: Messages = []
    parts = json.loads(turn.parts or "[]")
    for _, in_step in groupby(parts, key=lambda part: part["step"]):
        step = list(in_step)
        text = "".join(part["text"] for part in step if part["type"] == TEXT)
        calls = [(_call(part), _result(part)) for part in step if part["type"] == TOOL]
        if not calls:
            if text:
                messages.append({"role": models.ASSISTANT, "content": text})
            continue
        messages.append(assistant_message(text, [call for call, _ in calls]))
        messages.extend(tool_message(call, result) for call, result in calls)
    return messages


def _call(part: dict[str, Any]) -> ToolCall:
    return ToolCall(part["call_id"], part["name"], part.get("arguments") or {})


def _result(part: dict[str, Any]) -> ToolResult:
    status = part.get("status")
    if status not in events.TOOL_RESULT_STATUSES:
        # Stored without a result (the answer failed as it ran): it may have happened.
        return ToolResult(events.TOOL_IN_DOUBT)
    return ToolResult(status, part.get("output"), part.get("error"))


def _size(messages: Messages) -> int:
    """What a turn costs of the budget: its texts, and its calls' arguments."""
    size = 0
    for message in messages:
        size += len(message.get("content") or "")
        for call in message.get("tool_calls") or ():
            size += len(call["function"]["arguments"])
    return size
