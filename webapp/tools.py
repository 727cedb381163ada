"""Tools an app writes for its model: `@tool` and `ToolError` (TOOLS_MODULE, API.md "Tools").

    # myapp/tools.py, run with TOOLS_MODULE=myapp.tools
    from webapp.tools import ToolError, tool

    @tool(
        description="The status of one of the user's orders.",
        parameters={
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
        idempotent=True,
    )
    def order_status(order_id: str) -> dict:
        order = orders.find(order_id)
        if order is None:
            raise ToolError(f"there is no order {order_id}")
        return {"status": order.status}

What relay does with it:
- The worker imports TOOLS_MODULE when it starts and offers the model every
  function declared with `@tool` that the module holds (functions it
  imports from elsewhere too). A declaration that is wrong stops the worker
  with one line naming TOOLS_MODULE.
- The model's arguments are checked against `parameters` (JSON Schema)
  before the function runs, and passed as keywords. A function with a
  parameter named `call_id` gets the call's id too: an idempotency key for
  what it calls in turn, the same when relay runs the call again (which it
  does only for `idempotent=True` tools, after a worker was lost mid-run).
- It returns any JSON value: the result the model reads (at most
  config.TOOL_OUTPUT_MAX_BYTES of JSON, else an error result).
- `raise ToolError("...")` gives the model that text as an error result, to
  act on. Any other exception gives it "the tool failed" and the
  exception's type only: its text may hold data that should reach no one.
- `async def` functions run on the worker's asyncio thread
  (write/tools/bridge.py); plain ones in the answer's greenlet, so their
  I/O must cooperate with gevent (the worker is monkey-patched: the
  standard library's sockets do, and so do most pure-Python clients).
- A call that runs longer than TOOL_TIMEOUT_SECONDS is stopped (a plain
  function at its next wait for I/O) and the model gets an error result.
- `needs_approval=True`: a person approves each call before it runs.
- `runs_on="client"`: the front end runs the tool; relay only describes it
  to the model, and the function's body never runs.

This module imports nothing heavy: it is what an app's module imports.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from webapp.settings.tool_parsers import TOOL_NAME, TOOL_NAME_RULE, is_object_schema
from webapp.storage.events import RUNS_ON_CLIENT, RUNS_ON_SERVER

F = TypeVar("F", bound=Callable[..., Any])

# The keyword a function names to be given the call's id.
CALL_ID = "call_id"
_ATTRIBUTE = "__relay_tool__"
_NO_PARAMETERS: Mapping[str, Any] = {"type": "object", "properties": {}}


class ToolError(Exception):
    """Raised by a tool: its text is the error result the model reads."""


@dataclass(frozen=True)
class Declared:
    """A function's `@tool` declaration, as the worker's registry reads it."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    idempotent: bool
    needs_approval: bool
    runs_on: str
    function: Callable[..., Any]
    takes_call_id: bool


def tool(
    function: F | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    idempotent: bool = False,
    needs_approval: bool = False,
    runs_on: str = RUNS_ON_SERVER,
) -> Any:
    """Declare `function` a tool the model may call (module docstring); it is returned unchanged.

    `name` defaults to the function's, `description` to its docstring;
    `parameters` (a JSON Schema of an object) to no parameters at all.
    Works bare (`@tool`) or with arguments (`@tool(...)`).
    """

    def declare(function: F) -> F:
        declared = _declaration(
            function,
            name or function.__name__,
            description if description is not None else inspect.getdoc(function) or "",
            _NO_PARAMETERS if parameters is None else parameters,
            idempotent=idempotent,
            needs_approval=needs_approval,
            runs_on=runs_on,
        )
        setattr(function, _ATTRIBUTE, declared)
        return function

    return declare if function is None else declare(function)


def _declaration(
    function: Callable[..., Any],
    name: str,
    description: str,
    parameters: Mapping[str, Any],
    **properties: Any,
) -> Declared:
    where = f"@tool {getattr(function, '__qualname__', name)}"
    if not TOOL_NAME.match(name):
        raise ValueError(f"{where}: the name {name!r} is not {TOOL_NAME_RULE}")
    if not description.strip():
        raise ValueError(f"{where}: give a description (or a docstring): the model reads it")
    if not is_object_schema(parameters):
        raise ValueError(f"{where}: parameters must be a JSON Schema of an object")
    if properties["runs_on"] not in (RUNS_ON_SERVER, RUNS_ON_CLIENT):
        raise ValueError(f"{where}: runs_on is {RUNS_ON_SERVER!r} or {RUNS_ON_CLIENT!r}")
    takes_call_id = CALL_ID in inspect.signature(function).parameters
    if takes_call_id and CALL_ID in parameters.get("properties", {}):
        raise ValueError(f"{where}: {CALL_ID!r} is relay's; name the model's parameter otherwise")
    return Declared(
        name,
        description.strip(),
        parameters,
        function=function,
        takes_call_id=takes_call_id,
        **properties,
    )


def declared(value: object) -> Declared | None:
    """The declaration `@tool` put on `value`, if it has one."""
    found = getattr(value, _ATTRIBUTE, None) if callable(value) else None
    return found if isinstance(found, Declared) else None
