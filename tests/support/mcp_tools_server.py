"""The test MCP server's process: three tools, one of each kind (tests/support/mcp_server.py says which).

Run as `python -m tests.support.mcp_tools_server PORT`. No `from __future__
import annotations` here: the SDK reads the tools' signatures at run time.
"""

import sys
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations
from starlette.requests import Request
from starlette.responses import JSONResponse

server = MCPServer("relay-test-tools")
calls: list[dict[str, Any]] = []


async def run(tool: str, ctx: Context, arguments: dict[str, Any]) -> str:
    """Record the call as it begins, then sleep and answer as its arguments ask."""
    meta = ctx.request_context.meta or {}
    calls.append(
        {"tool": tool, "arguments": arguments, "idempotency_key": meta.get("idempotency_key")}
    )
    await anyio.sleep(arguments.get("sleep_seconds", 0))
    return "x" * arguments["size"] if arguments.get("size") else f"{tool} done: {arguments}"


@server.tool(
    description="Look a key up.",
    annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True),
)
async def lookup(key: str, ctx: Context, sleep_seconds: float = 0, size: int = 0) -> str:
    return await run("lookup", ctx, {"key": key, "sleep_seconds": sleep_seconds, "size": size})


@server.tool(description="Add a note.", annotations=ToolAnnotations(destructive_hint=False))
async def note(text: str, ctx: Context, sleep_seconds: float = 0, size: int = 0) -> str:
    return await run("note", ctx, {"text": text, "sleep_seconds": sleep_seconds, "size": size})


@server.tool(description="Delete an item.")
async def delete_item(item: str, ctx: Context, sleep_seconds: float = 0, size: int = 0) -> str:
    return await run(
        "delete_item", ctx, {"item": item, "sleep_seconds": sleep_seconds, "size": size}
    )


@server.custom_route("/calls", methods=["GET"])
async def recorded(request: Request) -> JSONResponse:
    return JSONResponse(calls)


if __name__ == "__main__":
    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
