"""A tool as the registry knows it: its description for the model, its properties, its checks.

`ToolSpec` is what every source gives, whatever it is (a Python function,
an MCP server's tool, a front end's): the name, description and JSON Schema
the model is offered (`openai()`), and the properties the generation loop
acts on: `idempotent` (safe to run again with the same call id),
`needs_approval` (a person approves each call first), `runs_on` (`server`,
or `client`: the front end runs it).

Arguments are checked against the schema with `jsonschema` (the reference
implementation for Python, which the `mcp` SDK uses too) before any tool
runs; an output is checked to be JSON within config.TOOL_OUTPUT_MAX_BYTES.
Both failures are `error` results the model reads, never exceptions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import jsonschema.exceptions
import jsonschema.protocols

from webapp.settings.config import TOOL_OUTPUT_MAX_BYTES
from webapp.storage.events import RUNS_ON_SERVER, TOOL_OK
from webapp.write.tool_calls import ToolResult


class SchemaInvalid(ValueError):
    """A tool's parameters are not a JSON Schema; the text says where."""


@dataclass(frozen=True)
class ToolSpec:
    """One tool: what the model is offered, and what the loop needs to know of it."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    source: str  # the setting it comes from, for log and error lines: "MCP_SERVERS https://..."
    idempotent: bool = False
    needs_approval: bool = False
    runs_on: str = RUNS_ON_SERVER
    _validator: jsonschema.protocols.Validator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        cls = jsonschema.validators.validator_for(self.parameters)
        try:
            cls.check_schema(self.parameters)
        except jsonschema.exceptions.SchemaError as exc:
            where = "/".join(str(part) for part in exc.path) or "the top"
            raise SchemaInvalid(f"{exc.message} (at {where})") from None
        object.__setattr__(self, "_validator", cls(self.parameters))

    def openai(self) -> dict[str, Any]:
        """The tool in OpenAI's function-tool format, as a request's `tools` lists it."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": dict(self.parameters),
            },
        }

    def argument_problem(self, arguments: Mapping[str, Any]) -> str | None:
        """Why `arguments` do not fit the schema, for the model to read; None when they do."""
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(arguments))
        if error is None:
            return None
        where = "/".join(str(part) for part in error.absolute_path)
        at = f" at {where}" if where else ""
        return f"invalid arguments{at}: {error.message}; the tool did not run"


def checked_output(result: ToolResult) -> ToolResult:
    """`result`, or an error result when its output is not JSON or is too large to pass on."""
    if result.status != TOOL_OK:
        return result
    try:
        text = json.dumps(result.output, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return ToolResult.failed("the tool's output is not JSON")
    size = len(text.encode())
    if size > TOOL_OUTPUT_MAX_BYTES:
        return ToolResult.failed(
            f"the tool's output is {size} bytes of JSON, over the {TOOL_OUTPUT_MAX_BYTES} "
            "relay passes on; ask for less"
        )
    return result
