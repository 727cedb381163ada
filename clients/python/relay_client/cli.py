"""`python -m relay_client URL "prompt"`: stream one answer to the terminal.

The answer goes to stdout as it streams, the reasoning (with --reasoning)
and notices to stderr. When the text shown must change other than by
growing (a new attempt after a lost worker, a reset), the terminal cannot
take words back: a notice says so and the answer is shown again from its
start. Ctrl-C cancels the answer on the server, then exits.

Exit status: 0 for a finished answer, 1 for a failed or cancelled one or an
error, 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TextIO

from . import follow
from .answer import Answer
from .client import Client
from .errors import RelayError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m relay_client", description="Stream one answer from relay."
    )
    parser.add_argument("url", help="the deployment's base URL, e.g. https://relay.example.com")
    parser.add_argument("prompt", help="what to ask")
    parser.add_argument("--session", help="post in this session (default: a new one)")
    parser.add_argument(
        "--token", default=os.environ.get("RELAY_TOKEN"), help="a JWT (default: $RELAY_TOKEN)"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--poll", action="store_true", help="follow by long-poll instead of SSE")
    mode.add_argument("--whole", action="store_true", help="print the answer once it is whole")
    parser.add_argument("--reasoning", action="store_true", help="show reasoning on stderr")
    return parser.parse_args(argv)


class Shown:
    """What one stream of text has printed, so that only what is new is printed next."""

    def __init__(self, out: TextIO, label: str) -> None:
        self.out, self.label, self.text = out, label, ""

    def update(self, text: str, notice: TextIO) -> None:
        if not text.startswith(self.text):
            notice.write(f"\n[relay: the {self.label} started over; shown again from its start]\n")
            self.text = ""
        self.out.write(text[len(self.text) :])
        self.out.flush()
        self.text = text


def show(answer: Answer, reasoning: bool) -> None:
    text, thoughts = Shown(sys.stdout, "answer"), Shown(sys.stderr, "reasoning")
    for _ in answer:
        if reasoning:
            thoughts.update(answer.reasoning, sys.stderr)
        text.update(answer.content, sys.stderr)
    if reasoning:
        thoughts.update(answer.reasoning, sys.stderr)
    text.update(answer.content, sys.stderr)
    sys.stdout.write("\n")


def outcome(answer: Answer) -> int:
    if answer.status == "done":
        return 0
    if answer.status == "error" and answer.error:
        print(f"relay: the answer failed: {answer.error.get('message')}", file=sys.stderr)
    else:
        print(f"relay: the answer ended {answer.status}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    transport = follow.POLL if args.poll else follow.WHOLE if args.whole else follow.SSE
    with Client(args.url, token=args.token, transport=transport) as relay:
        answer = None
        try:
            session_id = args.session or relay.create_session()
            print(f"relay: session {session_id}", file=sys.stderr)
            answer = relay.send(session_id, args.prompt)
            show(answer, args.reasoning)
            return outcome(answer)
        except RelayError as exc:
            print(f"relay: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            if answer is not None and not answer.final:
                relay.cancel(answer.session_id, answer.message_id)
                print("\nrelay: cancelled", file=sys.stderr)
            return 130
