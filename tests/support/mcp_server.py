"""A small MCP server for tests, built with the official SDK: the handle tests start it with.

The server itself is tests/support/mcp_tools_server.py, run as its own
process (`python -m tests.support.mcp_tools_server PORT`), so no test
process imports the SDK for it. It
serves streamable HTTP on 127.0.0.1:PORT/mcp with three tools, one of each
kind API.md tells apart:

- `lookup` (`readOnlyHint`, `idempotentHint`): read-only, so idempotent
  and never asks for approval;
- `note` (`destructiveHint: false`): a plain tool, neither idempotent nor
  destructive;
- `delete_item` (no hints: destructive, as MCP reads it): asks a person
  first under the default `approval`.

Each takes `sleep_seconds` (it sleeps that long before answering: a tool
that is still running) and `size` (it answers that many characters: an
oversize output). The server records every call, with the `_meta`
`idempotency_key` it carried, as the call begins (and `cancelled` when the
client gives it up): `GET /calls` returns them, so exactly-once tests count
runs and keys. `McpTestServer` starts
and stops it by pid, on a port chosen before it starts (a server that is
down at first, then up, keeps its URL).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from tests.support.processes import Process, free_port, python, wait_for

TOOLS = ("lookup", "note", "delete_item")


class McpTestServer(Process):
    """The test MCP server as a child process (module docstring)."""

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        argv = [python(), "-m", "tests.support.mcp_tools_server", str(self.port)]
        super().__init__(f"mcp-{self.port}", argv, os.environ, log_dir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> McpTestServer:
        super().start()
        wait_for(self._answers, timeout=30, what=f"the MCP test server on {self.port}")
        return self

    def _answers(self) -> bool:
        if not self.alive():
            raise AssertionError(f"{self.name} exited:\n{self.log_text()[-3000:]}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/calls", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def calls(self) -> list[dict[str, Any]]:
        """Every call the server began, in order: {"tool", "arguments", "idempotency_key"}."""
        response = httpx.get(f"http://127.0.0.1:{self.port}/calls", timeout=5)
        response.raise_for_status()
        return response.json()

    def calls_with(self, key: str) -> list[dict[str, Any]]:
        return [call for call in self.calls() if call["idempotency_key"] == key]
