"""The demo model: a deterministic stand-in used when no OPENAI_API_KEY is set.

It streams a fixed answer per prompt at a reading pace, so the app is useful
out of the box and tests know every word it will send. Its model name is "demo".
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

from webapp.storage.events import FINISH_STOP
from webapp.write.llm import Delta, Finish, Piece, Reasoning


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

    def stream(self, messages: list[dict[str, str]]) -> Iterator[Piece]:
        prompt = messages[-1]["content"] if messages else ""
        pieces = 0
        if self._reasoning:
            for word in _words(self.reasoning(prompt)):
                time.sleep(self._delay)
                pieces += 1
                yield Reasoning(word)
        for word in _words(self.answer(prompt)):
            time.sleep(self._delay)
            pieces += 1
            yield Delta(word)
        prompt_tokens = sum(len(m["content"]) for m in messages) // 4
        yield Finish(
            self.name,
            FINISH_STOP,
            {
                "prompt_tokens": prompt_tokens,
                # Reasoning is paid for as completion tokens, as real APIs count it.
                "completion_tokens": pieces,
                "total_tokens": prompt_tokens + pieces,
            },
        )


def _words(text: str) -> list[str]:
    """`text` as the demo streams it: word by word, each but the last with its space."""
    pieces = [word + " " for word in text.split(" ")]
    pieces[-1] = pieces[-1].rstrip(" ")
    return pieces
