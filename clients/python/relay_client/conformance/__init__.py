"""The conformance check: relay's wire contract (API.md), run against any deployment.

    python -m relay_client.conformance https://relay.example.com [--token JWT] [--origin URL]

It makes a session, sends one prompt, and reads its answer every way the
contract offers; each row of the table is one check, in this order:

| check            | what must hold                                                   |
| ---------------- | ---------------------------------------------------------------- |
| health           | /healthz and /readyz answer 200                                  |
| create session   | 201 and a well-formed session id                                 |
| send prompt      | 202 with its fields; the same Idempotency-Key replays it         |
| event format     | SSE headers, `retry:` first, each event's id/event/data once,    |
|                  | data a JSON object with message_id, the answer opens with start  |
| event ids        | valid `<ms>-<seq>` ids, strictly increasing: none repeated       |
| end counts       | `end`'s counts match the stream; the snapshot stores the answer  |
| resume by header | Last-Event-ID from three cut points reads exactly the rest       |
| resume by query  | the same with ?last_event_id=                                    |
| long-poll parity | long-polls read what SSE read; a quiet poll waits                |
| json errors      | bad input gets API.md's JSON error with its code, never HTML     |
| cors             | with --origin: preflight, JSON and SSE answers allow it, and     |
|                  | only it                                                          |
| access control   | with --token: ?access_token= works, a bad token gets 401         |
| heartbeats       | a quiet stream sends a keep-alive comment (bounded wait)         |
| reset            | a cursor below a trimmed stream's floor resets (reset_check.py)  |

A check that cannot run (no --origin, an untrimmed stream) is skipped with
the reason; one whose prerequisite failed is skipped naming it. The
sessions it made are deleted at the end. Exit status: 0 when nothing
failed, 1 otherwise, with the failed checks named on the last line.
"""

from __future__ import annotations

from collections.abc import Callable

from . import edge_checks, reset_check, stream_checks
from .report import Report
from .state import Options, State
from .wire import Deployment

Check = Callable[[State], str]
CHECKS: list[tuple[str, Check, tuple[str, ...]]] = [
    ("health", stream_checks.health, ()),
    ("create session", stream_checks.create_session, ()),
    ("send prompt", stream_checks.send_prompt, ("create session",)),
    ("event format", stream_checks.event_format, ("send prompt",)),
    ("event ids", stream_checks.event_ids, ("send prompt",)),
    ("end counts", stream_checks.end_counts, ("send prompt",)),
    ("resume by header", stream_checks.resume_by_header, ("send prompt",)),
    ("resume by query", stream_checks.resume_by_query, ("send prompt",)),
    ("long-poll parity", stream_checks.poll_parity, ("send prompt",)),
    ("json errors", edge_checks.json_errors, ("send prompt",)),
    ("cors", edge_checks.cors, ("send prompt",)),
    ("access control", edge_checks.access_control, ("send prompt",)),
    ("heartbeats", stream_checks.heartbeats, ("send prompt",)),
    ("reset", reset_check.reset, ("send prompt",)),
]
NAMES = [name for name, _, _ in CHECKS]


def run(options: Options) -> Report:
    """Every check against `options.url`, in order; the report."""
    state = State(options, Deployment(options.url, options.token))
    report = Report()
    try:
        for name, check, needs in CHECKS:
            report.run(name, lambda check=check: check(state), needs)
    finally:
        state.cleanup()
        state.deployment.close()
    return report


__all__ = ["NAMES", "Options", "Report", "run"]
