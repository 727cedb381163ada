"""A session's conversation as the AI SDK's UI messages (`GET /api/chat/{sid}/messages`).

`ui_messages(snapshot messages, active id, given)` gives the JSON array an
app passes to `useChat` as its initial `messages`. A user message is one
text part. An answer without tools is its reasoning part (when there is
any) then its text part, even when empty (a failed answer), so every answer
is a message the app can regenerate. An answer with tools is its stored
parts in the protocol's shape: a `step-start` before each step, text and
reasoning parts `done`, and tool parts in ui_tools.py's states, so the
SDK's `lastAssistantMessageIsComplete...` helpers find its last step.

Deliberate choices:
- The active answer is left out, queued, streaming or waiting for tool
  inputs (API.md): `useChat` resumes it from `GET /api/chat/{sid}/stream`,
  which replays it from its beginning, so listed here too it would show
  twice.
- `given`: inputs already given to an answer's waiting calls and not yet
  acted on (from its journal), shown as given: `approval-responded`, or the
  client tool's output (ui_tools.py, as the stream of a waiting answer
  shows them).
"""

from __future__ import annotations

from typing import Any

from webapp.http import ui_tools
from webapp.http.ui_tools import Given
from webapp.storage import models
from webapp.storage.parts import REASONING, TEXT, TOOL

Chunk = dict[str, Any]


def ui_messages(
    messages: list[dict[str, Any]],
    active_message_id: str | None,
    given: dict[str, Given] | None = None,
) -> list[Chunk]:
    """A snapshot's messages as UI messages, leaving out the active answer (module docstring)."""
    out = []
    for message in messages:
        if message["id"] == active_message_id:
            continue
        if message["role"] != models.ASSISTANT:
            parts = [{"type": "text", "text": message.get("content", "")}]
        else:
            parts = answer_parts(message, given or {})
        out.append({"id": message["id"], "role": message["role"], "parts": parts})
    return out


def answer_parts(message: dict[str, Any], given: dict[str, Given]) -> list[Chunk]:
    """An answer's UI parts: as before tools when it has none, else each step in the protocol's shape."""
    stored = message.get("parts") or []
    if not any(part["type"] == TOOL for part in stored):
        parts = []
        if message.get("reasoning"):
            parts.append({"type": "reasoning", "text": message["reasoning"]})
        parts.append({"type": "text", "text": message.get("content", "")})
        return parts
    out: list[Chunk] = []
    step = None
    for part in stored:
        if part["step"] != step:
            step = part["step"]
            out.append({"type": "step-start"})
        if part["type"] in (REASONING, TEXT):
            out.append({"type": part["type"], "text": part["text"], "state": "done"})
        elif part["type"] == TOOL:
            out.append(ui_tools.tool_part(part, given.get(part["call_id"])))
    return out
