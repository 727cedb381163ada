"""The bench's tool, run by the worker (TOOLS_MODULE=bench.tools): it waits, and says when it ran.

The bench model server (model_server.py, `tools=`) calls it with how long
to wait and two stamps of its own; the stamps it returns, CLOCK_MONOTONIC
like theirs, tell the tool scenario (tool_steps.py) how much of a tool
step was relay's: from the model's call written to the tool started, and
from the tool's end to the next step's request.
"""

from __future__ import annotations

import time

from webapp.tools import tool

PARAMETERS = {
    "type": "object",
    "properties": {
        "ms": {"type": "number", "minimum": 0},
        "requested_ns": {"type": "integer"},
        "sent_ns": {"type": "integer"},
    },
    "required": ["ms"],
}


@tool(description="Wait this many milliseconds, then say when it ran.", parameters=PARAMETERS)
def bench_wait(ms: float, requested_ns: int = 0, sent_ns: int = 0) -> dict[str, int]:
    started = time.monotonic_ns()
    time.sleep(ms / 1000)  # the worker is monkey-patched: its greenlets go on meanwhile
    return {"started_ns": started, "ended_ns": time.monotonic_ns()}
