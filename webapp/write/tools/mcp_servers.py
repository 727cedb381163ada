"""MCP servers over streamable HTTP (MCP_SERVERS), through the official `mcp` SDK.

Imported only by a worker whose MCP_SERVERS names a server (registry.py),
so no other process pays for the SDK. Everything here that awaits runs on
the worker's asyncio thread (bridge.py says how that lives beside gevent);
greenlets only call `specs()` and `call()`.

Each server is one `McpServer`, whose `state` reads:

    CONNECTING ─┬─> UP ── a call finds the connection broken ──> CONNECTING
                └─> DOWN ── after a pause (1 s, doubling, at most 15 s) ──> CONNECTING

One task per server keeps its session: it connects, lists the tools, and
holds the session open for every call until one finds it broken. A server
that does not answer is DOWN: the worker logs one warning naming its URL,
offers none of its tools, and tries again at least every 15 s (API.md asks
for 30), logging when it answers again.

A tool's properties come from its annotations (API.md, MCP_SERVERS): a
tool that is not `readOnlyHint: true` and does not say `destructiveHint:
false` is destructive, as in MCP; `approval` (destructive, always, never)
makes `needs_approval` from that. `idempotentHint: true` makes it
`idempotent`, and so does `readOnlyHint: true`: a tool that changes nothing
is safe to run twice. A tool whose name OpenAI would refuse, or whose input
schema is not an object's, is not offered (with a warning).

A call carries its `call_id` as `_meta.idempotency_key`. Whatever goes
wrong with it (the SDK's timeout at TOOL_TIMEOUT_SECONDS, an error answer,
a dropped connection) is an `error` result for the model; a dropped
connection also sends the session round to CONNECTING.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import logging
from collections.abc import Callable, Mapping
from typing import Any

import httpx2
import mcp
import mcp.types
from mcp.client.streamable_http import streamable_http_client

from webapp.exceptions import TimedOut
from webapp.settings.config import McpServerConfig, mask_url
from webapp.settings.tool_parsers import APPROVAL_DESTRUCTIVE, TOOL_NAME, is_object_schema
from webapp.write.lifecycle import Lifecycle
from webapp.write.tool_calls import ToolResult
from webapp.write.tools.bridge import AsyncBridge
from webapp.write.tools.python_tools import timeout_text
from webapp.write.tools.spec import SchemaInvalid, ToolSpec

log = logging.getLogger(__name__)

RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 15.0
# Connecting and listing the tools, at start and after a break.
CONNECT_TIMEOUT_SECONDS = 10.0
# A call is bounded by the SDK at its timeout; the greenlet's wait gives up this much later.
CALL_GRACE_SECONDS = 5.0
# A server that pages its tool list forever cannot hold the worker.
LIST_PAGES_MAX = 100
IDEMPOTENCY_KEY = "idempotency_key"


class State(enum.Enum):
    CONNECTING = "connecting"
    UP = "up"  # the session is open and the tools are listed
    DOWN = "down"  # it did not answer: waiting to try again


# The module docstring's picture, as lifecycle.py's table (UP may fail to DOWN too).
MOVES: Mapping[State, frozenset[State]] = {
    State.CONNECTING: frozenset({State.UP, State.DOWN}),
    State.UP: frozenset({State.CONNECTING, State.DOWN}),
    State.DOWN: frozenset({State.CONNECTING}),
}


class McpServer:
    """One of MCP_SERVERS: its session, its tools, its calls (module docstring)."""

    def __init__(
        self,
        config: McpServerConfig,
        bridge: AsyncBridge,
        taken: Callable[[str, object], str | None],
    ) -> None:
        self.config = config
        self.url = mask_url(config.url)  # for lines: never a password
        self.label = f"MCP_SERVERS {self.url}"
        self.life = Lifecycle(MOVES, State.CONNECTING, "MCP server")
        # Names another source offers already, found when the tools were listed.
        self.duplicates: dict[str, str] = {}
        self.first_attempt: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._bridge = bridge
        self._taken = taken  # the label of another source that offers a name, if any
        self._started = False  # set by the registry once the worker runs: log, not refuse
        self._tools: Mapping[str, ToolSpec] = {}
        self._client: mcp.Client | None = None
        self._broken = asyncio.Event()
        self._warned = False

    # -- what greenlets call ---------------------------------------------------------

    def start(self) -> None:
        self._bridge.submit(self._keep())

    def running(self) -> None:
        """The worker runs: a duplicate found from now on is logged, no longer refused."""
        self._started = True

    def specs(self) -> Mapping[str, ToolSpec]:
        return self._tools if self.life.state is State.UP else {}

    def call(
        self, spec: ToolSpec, arguments: Mapping[str, Any], call_id: str, timeout: float
    ) -> ToolResult:
        try:
            return self._bridge.call(
                self._call(spec.name, dict(arguments), call_id, timeout),
                timeout + CALL_GRACE_SECONDS,
            )
        except TimedOut:
            return ToolResult.failed(timeout_text(timeout))

    # -- on the asyncio thread ---------------------------------------------------------

    async def _keep(self) -> None:
        pause = RETRY_FIRST_SECONDS
        while True:
            if self.life.state is not State.CONNECTING:
                self.life.move(State.CONNECTING)
            try:
                await self._session()
                pause = RETRY_FIRST_SECONDS  # it was up: reconnect at once, then back off
                continue
            except Exception as exc:
                self._down(exc)
            await asyncio.sleep(pause)
            pause = min(pause * 2, RETRY_MAX_SECONDS)

    async def _session(self) -> None:
        """Connect, list the tools, and serve calls until one finds the session broken."""
        async with contextlib.AsyncExitStack() as stack:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                # Ours to close: the SDK closes only an HTTP client it made itself.
                # No read timeout of its own: each call is bounded by TOOL_TIMEOUT_SECONDS.
                http = await stack.enter_async_context(
                    httpx2.AsyncClient(
                        headers=dict(self.config.headers),
                        timeout=httpx2.Timeout(CONNECT_TIMEOUT_SECONDS, read=None),
                    )
                )
                transport = streamable_http_client(self.config.url, http_client=http)
                # No response cache: the tool list is read fresh at each connection.
                client = await stack.enter_async_context(mcp.Client(transport, cache=None))
                tools = await _list_tools(client)
            self._broken.clear()
            self._up(client, tools)
            try:
                await self._broken.wait()
            finally:
                self._client = None

    def _up(self, client: mcp.Client, tools: list[mcp.types.Tool]) -> None:
        specs: dict[str, ToolSpec] = {}
        for tool in tools:
            spec = self._spec(tool)
            if spec is None:
                continue
            other = self._taken(spec.name, self)
            if other is None:
                specs[spec.name] = spec
            elif spec.name not in self.duplicates:
                self.duplicates[spec.name] = other
                if self._started:
                    log.error(
                        "tool %r is offered by %s and by %s: only the first one's is offered",
                        spec.name,
                        other,
                        self.label,
                    )
        was_down, self._warned = self._warned, False
        log.info(
            "MCP server %s %s tools=%d", self.url, "answers again" if was_down else "up", len(specs)
        )
        # Published last: whoever sees the tools offered finds the line logged.
        self._client, self._tools = client, specs
        self.life.move(State.UP)
        _settle(self.first_attempt)

    def _down(self, exc: BaseException) -> None:
        self._tools = {}
        self.life.move(State.DOWN)
        if not self._warned:
            self._warned = True
            log.warning(
                "MCP server %s did not answer (%s): its tools are not offered until it does; "
                "trying again every %.0f s at most",
                self.url,
                _reason(exc),
                RETRY_MAX_SECONDS,
            )
        _settle(self.first_attempt)

    def _spec(self, tool: mcp.types.Tool) -> ToolSpec | None:
        if not TOOL_NAME.match(tool.name) or not is_object_schema(tool.input_schema):
            log.warning(
                "%s: tool %r is not offered: its name or input schema is not one OpenAI takes",
                self.label,
                tool.name[:64],
            )
            return None
        hints = tool.annotations or mcp.types.ToolAnnotations()
        read_only = bool(hints.read_only_hint)
        destructive = not read_only and hints.destructive_hint is not False
        approval = self.config.approval
        try:
            return ToolSpec(
                tool.name,
                tool.description or tool.title or "",
                tool.input_schema,
                self.label,
                idempotent=read_only or bool(hints.idempotent_hint),
                needs_approval=approval == "always"
                or (approval == APPROVAL_DESTRUCTIVE and destructive),
            )
        except SchemaInvalid as exc:
            log.warning(
                "%s: tool %r is not offered: its input schema is invalid: %s",
                self.label,
                tool.name,
                exc,
            )
            return None

    async def _call(
        self, name: str, arguments: dict[str, Any], call_id: str, timeout: float
    ) -> ToolResult:
        client = self._client
        if client is None:
            return ToolResult.failed(f"the MCP server {self.url} is not connected; try again later")
        try:
            result = await client.call_tool(
                name, arguments, read_timeout_seconds=timeout, meta={IDEMPOTENCY_KEY: call_id}
            )
        except mcp.MCPError as exc:
            if exc.code == mcp.types.REQUEST_TIMEOUT:
                return ToolResult.failed(timeout_text(timeout))
            return ToolResult.failed(f"the MCP server refused the call: {exc.message}")
        except Exception as exc:
            log.warning(
                "MCP call failed call=%s tool=%s server=%s: %s",
                call_id,
                name,
                self.url,
                _reason(exc),
            )
            self._broken.set()  # reconnect: the session may be gone
            return ToolResult.failed(f"the MCP server failed to answer ({_reason(exc)})")
        return _result(result)


async def _list_tools(client: mcp.Client) -> list[mcp.types.Tool]:
    tools: list[mcp.types.Tool] = []
    cursor = None
    for _ in range(LIST_PAGES_MAX):
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            break
    return tools


def _result(result: mcp.types.CallToolResult) -> ToolResult:
    """A CallToolResult as relay's: the structured content, else the text, else the blocks."""
    texts = [block.text for block in result.content if isinstance(block, mcp.types.TextContent)]
    if result.is_error:
        return ToolResult.failed("\n".join(texts) or "the tool failed")
    if result.structured_content is not None:
        return ToolResult.ok(result.structured_content)
    if len(texts) == len(result.content):
        return ToolResult.ok("\n".join(texts))
    return ToolResult.ok(
        [
            block.model_dump(mode="json", by_alias=True, exclude_none=True)
            for block in result.content
        ]
    )


def _reason(exc: BaseException) -> str:
    """A short, safe account of a failure: the innermost exception's type and first line."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _settle(future: concurrent.futures.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
