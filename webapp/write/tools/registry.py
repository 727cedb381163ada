"""The tools a worker offers its model, and how a server tool's call runs: what the generation loop asks.

    registry = registry_or_exit(app.config, demo_model=...)  # at worker start
    registry.offered()   # the next model request's `tools` (OpenAI format); [] when none
    registry.get(name)   # a ToolSpec: idempotent, needs_approval, runs_on; None if unknown
    registry.problem(call)  # why a call cannot run (its error result), or None
    registry.run(call)   # a server tool's ToolResult, `ok` or `error`: never an exception
    registry.close()     # at worker exit: stops the asyncio thread, if any

Sources, in the order they win a name: TOOLS_MODULE, CLIENT_TOOLS, then
MCP_SERVERS in their order; and the demo tools (demo.py), only when the
demo model answers and none of the three is set. Two sources that offer
one name stop the worker at start, with one line naming the tool and both
sources. An MCP server that answers only later is checked when it does: a
name already offered is logged as an error and its tool not offered.

`run` checks before it runs: arguments the model sent broken (`call.error`),
a name no source offers now, arguments that do not fit the schema. Each is
an `error` result the model reads and may act on; so are a timeout
(TOOL_TIMEOUT_SECONDS), a failure of the tool, and an output that is not
JSON or is over config.TOOL_OUTPUT_MAX_BYTES. Client tools are never run
here: the loop hands them to the front end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from webapp.exceptions import SettingError, TimedOut
from webapp.settings.config import ClientToolConfig, exit_on
from webapp.storage.events import RUNS_ON_CLIENT, RUNS_ON_SERVER
from webapp.write.tool_calls import NOT_OBJECT, ToolCall, ToolResult
from webapp.write.tools.bridge import AsyncBridge, wait
from webapp.write.tools.demo import demo_tools
from webapp.write.tools.python_tools import PythonTools
from webapp.write.tools.spec import SchemaInvalid, ToolSpec, checked_output

log = logging.getLogger(__name__)

# At start, each MCP server gets this long to answer before the worker goes on without it.
START_WAIT_SECONDS = 15.0


class Source(Protocol):
    """Where tools come from: PythonTools, ClientTools, McpServer."""

    label: str  # the setting it comes from, as lines name it

    def specs(self) -> Mapping[str, ToolSpec]:
        """The tools it offers now (an MCP server that is down offers none)."""
        ...

    def call(
        self, spec: ToolSpec, arguments: Mapping[str, Any], call_id: str, timeout: float
    ) -> ToolResult:
        """Run a server tool whose arguments were checked; an error is a result, not a raise."""
        ...


class ClientTools:
    """CLIENT_TOOLS: described to the model, run by the front end."""

    label = "CLIENT_TOOLS"

    def __init__(self, configs: Sequence[ClientToolConfig]) -> None:
        specs = {}
        for config in configs:
            try:
                specs[config.name] = ToolSpec(
                    config.name,
                    config.description,
                    config.parameters,
                    self.label,
                    runs_on=RUNS_ON_CLIENT,
                )
            except SchemaInvalid as exc:
                raise SettingError(
                    f"CLIENT_TOOLS: the parameters of {config.name!r} are not a JSON Schema: {exc}"
                ) from None
        self._specs: Mapping[str, ToolSpec] = specs

    def specs(self) -> Mapping[str, ToolSpec]:
        return self._specs

    def call(self, spec: ToolSpec, *_: Any) -> ToolResult:
        raise ValueError(f"{spec.name!r} is a client tool: the front end runs it")


class _LazyBridge:
    """The worker's asyncio thread, started when a source first needs it."""

    def __init__(self) -> None:
        self.bridge: AsyncBridge | None = None

    def __call__(self) -> AsyncBridge:
        if self.bridge is None:
            self.bridge = AsyncBridge().start()
        return self.bridge

    def close(self) -> None:
        if self.bridge is not None:
            self.bridge.close()


class ToolRegistry:
    """Every tool a worker offers (module docstring)."""

    def __init__(self, sources: Sequence[Source], timeout_seconds: float) -> None:
        self.sources = list(sources)
        self.timeout_seconds = timeout_seconds
        self._bridge = _LazyBridge()

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], *, demo_model: bool) -> ToolRegistry:
        """The registry of the configured tools, MCP servers connected (or retried); SettingError: one line."""
        registry = cls([], settings["TOOL_TIMEOUT_SECONDS"])
        try:
            registry._add_sources(settings, demo_model)
        except BaseException:
            registry.close()
            raise
        return registry

    def _add_sources(self, settings: Mapping[str, Any], demo_model: bool) -> None:
        if settings["TOOLS_MODULE"]:
            python = PythonTools.from_module(settings["TOOLS_MODULE"], self._bridge)
            self._add(python)
            if python.asynchronous:
                self._bridge()  # start it now, not at an answer's first call
        if settings["CLIENT_TOOLS"]:
            self._add(ClientTools(settings["CLIENT_TOOLS"]))
        if settings["MCP_SERVERS"]:
            self._start_mcp(settings["MCP_SERVERS"])
        elif not self.sources and demo_model:
            self._add(demo_tools())

    def _add(self, source: Source) -> None:
        for name in source.specs():
            _refuse(name, self.owner(name, source), source.label)
        self.sources.append(source)

    def _start_mcp(self, configs: Sequence[Any]) -> None:
        from webapp.write.tools.mcp_servers import McpServer  # the SDK: only with MCP servers

        bridge = self._bridge()
        servers = [McpServer(config, bridge, self.owner) for config in configs]
        self.sources.extend(servers)
        for server in servers:
            server.start()
        deadline = time.monotonic() + START_WAIT_SECONDS
        for server in servers:
            try:
                wait(server.first_attempt, max(deadline - time.monotonic(), 0))
            except TimedOut:
                pass  # still connecting: it goes on in the background, as a down one does
        for server in servers:
            for name, other in server.duplicates.items():
                _refuse(name, other, server.label)
            server.running()

    def owner(self, name: str, besides: object) -> str | None:
        """The label of a source other than `besides` that offers `name` now, if any."""
        for source in self.sources:
            if source is not besides and name in source.specs():
                return source.label
        return None

    def specs(self) -> dict[str, ToolSpec]:
        """Every tool offered now, by name (the first source wins a name)."""
        found: dict[str, ToolSpec] = {}
        for source in self.sources:
            for name, spec in source.specs().items():
                found.setdefault(name, spec)
        return found

    def offered(self) -> list[dict[str, Any]]:
        """The tools for the next model request, in OpenAI's format; [] when there are none."""
        return [spec.openai() for spec in self.specs().values()]

    def get(self, name: str) -> ToolSpec | None:
        return self.specs().get(name)

    def run(
        self,
        call: ToolCall,
        *,
        timeout: float | None = None,
        ids: tuple[str, str, int] = ("-", "-", -1),
    ) -> ToolResult:
        """Run a server tool's call to its result (module docstring); `ids` (session, message, step) are for the log."""
        problem = self.problem(call)
        found = self._find(call.name)
        if problem is not None or found is None or not isinstance(call.arguments, dict):
            return ToolResult.failed(problem or NOT_OBJECT)
        spec, source = found
        if spec.runs_on != RUNS_ON_SERVER:
            raise ValueError(f"{call.name!r} is a client tool: the front end runs it")
        seconds = self.timeout_seconds if timeout is None else timeout
        started = time.monotonic()
        result = checked_output(source.call(spec, call.arguments, call.call_id, seconds))
        log.info(
            "tool ran session=%s message=%s step=%s call=%s tool=%s status=%s duration_ms=%d",
            *ids,
            call.call_id,
            call.name,
            result.status,
            (time.monotonic() - started) * 1000,
        )
        return result

    def problem(self, call: ToolCall) -> str | None:
        """Why `call` cannot run as the model sent it, for its `error` result; None if it can.

        Broken arguments, a name no source offers now, arguments that do not
        fit the schema: the loop asks before a person is asked to approve a
        call, or a front end to run one.
        """
        if call.error is not None or not isinstance(call.arguments, dict):
            return call.error or NOT_OBJECT
        spec = self.get(call.name)
        if spec is None:
            names = ", ".join(sorted(self.specs())) or "none"
            return f"there is no tool named {call.name!r} (the tools: {names}); nothing ran"
        return spec.argument_problem(call.arguments)

    def _find(self, name: str) -> tuple[ToolSpec, Source] | None:
        for source in self.sources:
            spec = source.specs().get(name)
            if spec is not None:
                return spec, source
        return None

    def close(self) -> None:
        self._bridge.close()


def _refuse(name: str, other: str | None, label: str) -> None:
    if other is not None:
        raise SettingError(
            f"tool {name!r} is offered by {other} and by {label}: "
            "rename one (two tools of one name cannot both be offered)"
        )


def registry_or_exit(settings: Mapping[str, Any], *, demo_model: bool) -> ToolRegistry:
    """The worker's registry, or the process stops with one line, as on a malformed setting."""
    try:
        return ToolRegistry.from_settings(settings, demo_model=demo_model)
    except SettingError as exc:
        exit_on(exc)
