"""The demo model: a deterministic stand-in used when no OPENAI_API_KEY is set.

It streams a fixed answer per prompt at a reading pace, so the app is useful
out of the box and tests know every word it will send. Its model name is "demo".

Offered the demo tools (tools/demo.py: the registry offers them with this
model when no tool source is configured), it calls one when the prompt asks
for it, as a real model would: `add` for a sum ("what is 2 + 3?"),
`current_time` for the time ("what time is it?"). That step ends with the
call; the next one, whose messages end with the tool's result, answers with
that result. So the page shows a tool call out of the box.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator, Sequence
from typing import Any

from webapp.storage.events import FINISH_STOP, FINISH_TOOL_CALLS
from webapp.write.llm import Delta, Finish, Messages, Piece, Reasoning, Tools
from webapp.write.tool_calls import ToolCall, offered_names, tool_call_id
from webapp.write.tools.demo import ADD, CLOCK

# "2 + 3", "1.5+2+10": a sum the prompt asks for.
_SUM = re.compile(r"-?\d+(?:\.\d+)?(?:\s*\+\s*-?\d+(?:\.\d+)?)+")
_TIME = re.compile(r"\bwhat time is it\b|\bwhat(?:'s| is) the time\b|\bcurrent time\b", re.I)


class DemoModel:
    """A deterministic stand-in model, used when no OPENAI_API_KEY is set.

    Built with `reasoning=True`, it thinks briefly (`reasoning(prompt)`)
    before it answers (`answer(prompt)`), so a newcomer sees reasoning stream.
    """

    name = "demo"

    def __init__(self, delay_seconds: float = 0.04, *, reasoning: bool = False) -> None:
        self._delay = delay_seconds
        self._reasoning = reasoning

    @staticmethod
    def reasoning(prompt: str) -> str:
        """The demo's reasoning before its answer to a prompt: deterministic, and short."""
        words = len(prompt.split())
        return (
            f"The user wrote {words} word{'' if words == 1 else 's'}. No API key is set, "
            "so a real model cannot answer. Quote the prompt back and say how relay "
            "streams: a short, friendly reply fits."
        )

    @staticmethod
    def answer(prompt: str) -> str:
        """The demo's answer to a prompt: the same prompt always gets the same text."""
        digest = hashlib.sha256(prompt.encode()).hexdigest()[:8]
        quoted = " ".join(prompt.split())[:200]
        return (
            "This is **relay's demo model**: no `OPENAI_API_KEY` is set, so no real "
            "model was asked.\n\n"
            f"You wrote: *{quoted}*\n\n"
            "Every word of this answer travelled from the worker through a Redis "
            "stream to your browser. Switch tabs, reload the page or drop the "
            "network: the answer picks up where it was, with nothing lost and "
            "nothing repeated.\n\n"
            f"- answer fingerprint: `{digest}`\n"
            "- set `OPENAI_API_KEY` (and `OPENAI_BASE_URL` for another server) "
            "to talk to a real model."
        )

    def stream(
        self,
        messages: Messages,
        *,
        tools: Tools = (),
        tool_choice: str | None = None,
        step_key: str | None = None,
    ) -> Iterator[Piece]:
        prompt = _last_user_text(messages)
        results = _tool_results(messages)
        call = None if results or tool_choice == "none" else tool_call_for(prompt, tools)
        if results:
            thought, text = "The tool answered: put its result in words.", answer_with(results)
        elif call is not None:
            thought, text = f"The user asks for what the {call[0]} tool gives: call it.", ""
        else:
            thought, text = self.reasoning(prompt), self.answer(prompt)
        pieces = 0
        if self._reasoning:
            for word in _words(thought):
                time.sleep(self._delay)
                pieces += 1
                yield Reasoning(word)
        for word in _words(text) if text else ():
            time.sleep(self._delay)
            pieces += 1
            yield Delta(word)
        if call is not None:
            pieces += 1
            yield ToolCall(tool_call_id(step_key or prompt, 0), call[0], call[1])
        yield self._finish(messages, pieces, FINISH_STOP if call is None else FINISH_TOOL_CALLS)

    def _finish(self, messages: Messages, pieces: int, reason: str) -> Finish:
        prompt_tokens = sum(len(m.get("content") or "") for m in messages) // 4
        return Finish(
            self.name,
            reason,
            {
                "prompt_tokens": prompt_tokens,
                # Reasoning is paid for as completion tokens, as real APIs count it.
                "completion_tokens": pieces,
                "total_tokens": prompt_tokens + pieces,
            },
        )


def tool_call_for(prompt: str, tools: Tools) -> tuple[str, dict[str, Any]] | None:
    """The demo tool call (name, arguments) a prompt asks for, if that tool is offered."""
    offered = offered_names(tools)
    if ADD in offered and (expression := _SUM.search(prompt)):
        numbers = [json.loads(n.strip()) for n in expression[0].split("+")]
        return ADD, {"numbers": numbers}
    if CLOCK in offered and _TIME.search(prompt):
        return CLOCK, {}
    return None


def answer_with(results: Sequence[tuple[str, str]]) -> str:
    """The demo's answer once its tools answered: each tool's name and what it said."""
    lines = [
        f"I asked the `{name}` tool, and it answered: `{content}`" for name, content in results
    ]
    return (
        "\n\n".join(lines) + "\n\nThat was a tool call: the call, its result and this answer "
        "each streamed through relay, and a reload shows them all again."
    )


def _last_user_text(messages: Messages) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message.get("content") or ""
    return ""


def _tool_results(messages: Messages) -> list[tuple[str, str]]:
    """(tool name, result text) of the `tool` messages that end the conversation, if any do."""
    first = len(messages)
    while first > 0 and messages[first - 1].get("role") == "tool":
        first -= 1
    if first == len(messages):
        return []
    calls = messages[first - 1].get("tool_calls") or [] if first > 0 else []
    names = {c.get("id"): (c.get("function") or {}).get("name", "?") for c in calls}
    return [
        (names.get(m.get("tool_call_id"), "?"), m.get("content") or "") for m in messages[first:]
    ]


def _words(text: str) -> list[str]:
    """`text` as the demo streams it: word by word, each but the last with its space."""
    pieces = [word + " " for word in text.split(" ")]
    pieces[-1] = pieces[-1].rstrip(" ")
    return pieces
