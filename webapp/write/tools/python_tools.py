"""Tools written in Python with `@tool` (webapp/tools.py): an app's TOOLS_MODULE, and the demo's.

A plain function runs in the calling greenlet, under a `gevent.Timeout`
(it stops at its next wait for I/O: a loop that never waits cannot be
stopped, as in any gevent program). An `async def` one runs on the
worker's asyncio thread (bridge.py), cancelled at the timeout.

What a function does wrong becomes an `error` result for the model, never
an exception out of the registry: `ToolError`'s text as it is, any other
exception as its type only (its text may hold data that should reach no
one: the log line has the type and where it was raised, never the text).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import gevent

from webapp.exceptions import SettingError, TimedOut
from webapp.tools import Declared, ToolError, declared
from webapp.write.tool_calls import ToolResult
from webapp.write.tools.bridge import AsyncBridge
from webapp.write.tools.spec import SchemaInvalid, ToolSpec

log = logging.getLogger(__name__)


def timeout_text(seconds: float) -> str:
    return f"the tool did not finish within {seconds:g} s (TOOL_TIMEOUT_SECONDS); it was stopped"


class PythonTools:
    """The tools declared with `@tool` in one module, or in a list of functions."""

    def __init__(
        self,
        label: str,
        functions: Iterable[Callable[..., Any]],
        bridge: Callable[[], AsyncBridge] | None = None,
    ) -> None:
        self.label = label
        self._bridge = bridge  # the worker's asyncio thread, started on first use
        self._declared: dict[str, Declared] = {}
        found: dict[str, ToolSpec] = {}
        for declaration in _declarations(functions):
            if declaration.name in found:
                raise SettingError(f"{label}: two tools are named {declaration.name!r}")
            found[declaration.name] = _spec(declaration, label)
            self._declared[declaration.name] = declaration
        self._specs: Mapping[str, ToolSpec] = found

    @classmethod
    def from_module(cls, path: str, bridge: Callable[[], AsyncBridge] | None = None) -> PythonTools:
        """The tools of TOOLS_MODULE; SettingError, one line naming it, when it cannot give them."""
        label = f"TOOLS_MODULE={path!r}"
        try:
            module = importlib.import_module(path)
        except Exception as exc:  # whatever the app's module raises while it loads
            detail = str(exc).splitlines()[0] if str(exc) else ""
            raise SettingError(
                f"{label} cannot be imported: {type(exc).__name__}: {detail}"
            ) from None
        tools = cls(label, vars(module).values(), bridge)
        if not tools.specs():
            log.warning("%s declares no tool with @tool (webapp.tools)", label)
        return tools

    @property
    def asynchronous(self) -> bool:
        """Whether any of these tools needs the asyncio thread."""
        return any(inspect.iscoroutinefunction(d.function) for d in self._declared.values())

    def specs(self) -> Mapping[str, ToolSpec]:
        return self._specs

    def call(
        self, spec: ToolSpec, arguments: Mapping[str, Any], call_id: str, timeout: float
    ) -> ToolResult:
        declaration = self._declared[spec.name]
        keywords = dict(arguments)
        if declaration.takes_call_id:
            keywords["call_id"] = call_id
        try:
            # Arguments the schema lets through but the function does not take:
            # the model's to correct, told in names only.
            inspect.signature(declaration.function).bind(**keywords)
        except TypeError as exc:
            return ToolResult.failed(f"invalid arguments: {exc}; the tool did not run")
        try:
            return ToolResult.ok(self._run(declaration, keywords, timeout))
        except ToolError as exc:
            return ToolResult.failed(str(exc) or "the tool failed")
        except TimedOut:
            log.warning("tool timed out call=%s tool=%s after %.1fs", call_id, spec.name, timeout)
            return ToolResult.failed(timeout_text(timeout))
        except Exception as exc:
            log.warning(
                "tool failed call=%s tool=%s: %s at %s",
                call_id,
                spec.name,
                type(exc).__name__,
                _where(exc),
            )
            return ToolResult.failed(f"the tool failed ({type(exc).__name__})")

    def _run(self, declaration: Declared, keywords: dict[str, Any], timeout: float) -> Any:
        function = declaration.function
        if inspect.iscoroutinefunction(function):
            if self._bridge is None:
                raise RuntimeError("no asyncio thread for an async tool")
            return self._bridge().call(function(**keywords), timeout)
        timer = gevent.Timeout(timeout)
        timer.start()
        try:
            return function(**keywords)
        except gevent.Timeout as exc:
            if exc is not timer:
                raise  # someone else's: an outer timeout of the caller
            raise TimedOut from None
        finally:
            timer.close()


def _where(exc: BaseException) -> str:
    """Where `exc` was raised (file:line in function): what a developer needs, and no data."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{last.filename}:{last.lineno} in {last.name}"


def _declarations(functions: Iterable[Callable[..., Any]]) -> list[Declared]:
    """Each declared function once, in the order found (a module may hold one under two names)."""
    seen: set[int] = set()
    found = []
    for function in functions:
        declaration = declared(function)
        if declaration is not None and id(declaration) not in seen:
            seen.add(id(declaration))
            found.append(declaration)
    return found


def _spec(declaration: Declared, label: str) -> ToolSpec:
    try:
        return ToolSpec(
            declaration.name,
            declaration.description,
            declaration.parameters,
            label,
            idempotent=declaration.idempotent,
            needs_approval=declaration.needs_approval,
            runs_on=declaration.runs_on,
        )
    except SchemaInvalid as exc:
        raise SettingError(
            f"{label}: the parameters of tool {declaration.name!r} are not a JSON Schema: {exc}"
        ) from None
