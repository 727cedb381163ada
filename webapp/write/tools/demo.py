"""The demo tools: what the demo model calls, so the page shows a tool call out of the box.

They are offered only while the demo model answers (no OPENAI_API_KEY) and
no tool source is configured (TOOLS_MODULE, MCP_SERVERS and CLIENT_TOOLS
all unset): registry.py decides. The demo model (write/demo_model.py)
calls `add` on a prompt that asks for a sum ("what is 2 + 3?") and
`current_time` on one that asks the time, then answers with the result.
They are declared as an app declares its own (webapp/tools.py), which makes
them an example too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from webapp.tools import tool

if TYPE_CHECKING:
    from webapp.write.tools.python_tools import PythonTools

ADD = "add"
CLOCK = "current_time"
LABEL = "the demo tools"


@tool(
    name=ADD,
    description="Add numbers up and give their sum.",
    parameters={
        "type": "object",
        "properties": {
            "numbers": {"type": "array", "items": {"type": "number"}, "minItems": 1},
        },
        "required": ["numbers"],
        "additionalProperties": False,
    },
    idempotent=True,
)
def add(numbers: list[float]) -> dict[str, Any]:
    total = sum(numbers)
    return {"sum": int(total) if float(total).is_integer() else total}


@tool(name=CLOCK, description="The current date and time, in UTC.", idempotent=True)
def current_time() -> dict[str, str]:
    return {"utc": datetime.now(UTC).isoformat(timespec="seconds")}


def demo_tools() -> PythonTools:
    # Imported here: the demo model takes the names above, not the machinery (gevent, jsonschema).
    from webapp.write.tools.python_tools import PythonTools

    return PythonTools(LABEL, [add, current_time])
