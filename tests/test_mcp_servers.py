"""MCP servers as tool sources, against a real one built with the official SDK.

The server (tests/support/mcp_tools_server.py) runs as its own process on
127.0.0.1 with a read-only, a plain and a destructive tool, and records each
call with the `_meta` idempotency key it carried. These tests run in
pytest's own process; test_tool_bridge.py runs the same bridge under gevent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.mcp_server import McpTestServer
from tests.support.processes import free_port, wait_for
from webapp.exceptions import SettingError
from webapp.settings.config import from_env
from webapp.write.tool_calls import ToolCall
from webapp.write.tools.registry import ToolRegistry

pytestmark = pytest.mark.timeout(120)


def registry_for(*servers: dict[str, Any], **env: str) -> ToolRegistry:
    return ToolRegistry.from_settings(
        from_env({"MCP_SERVERS": json.dumps(list(servers)), **env}), demo_model=True
    )


@pytest.fixture()
def registry(mcp_server: McpTestServer) -> Iterator[ToolRegistry]:
    built = registry_for({"url": mcp_server.url})
    yield built
    built.close()


def test_tools_are_listed_with_properties_from_their_annotations(registry: ToolRegistry) -> None:
    assert set(registry.specs()) == {"lookup", "note", "delete_item"}, "and no demo tools"
    lookup, note, delete = (registry.get(name) for name in ("lookup", "note", "delete_item"))
    # Read-only: idempotent, no approval. Plain (destructiveHint false): neither.
    # No hints: destructive, so approved first under the default `approval`.
    assert (lookup.idempotent, lookup.needs_approval) == (True, False)
    assert (note.idempotent, note.needs_approval) == (False, False)
    assert (delete.idempotent, delete.needs_approval) == (False, True)
    assert {spec.runs_on for spec in registry.specs().values()} == {"server"}
    offered = {tool["function"]["name"]: tool["function"] for tool in registry.offered()}
    assert offered["lookup"]["description"] == "Look a key up."
    assert offered["lookup"]["parameters"]["required"] == ["key"]


@pytest.mark.parametrize(("approval", "asks"), [("always", {True}), ("never", {False})])
def test_approval_always_or_never_overrides_the_annotations(
    mcp_server: McpTestServer, approval: str, asks: set[bool]
) -> None:
    registry = registry_for({"url": mcp_server.url, "approval": approval})
    try:
        assert {spec.needs_approval for spec in registry.specs().values()} == asks
    finally:
        registry.close()


def test_a_call_carries_its_call_id_as_the_idempotency_key(
    registry: ToolRegistry, mcp_server: McpTestServer, unique: str
) -> None:
    call = ToolCall(f"call_{unique}", "note", {"text": "hello"})
    result = registry.run(call)
    assert result.status == "ok" and "note done" in result.output["result"]
    (seen,) = mcp_server.calls_with(call.call_id)
    assert seen["tool"] == "note" and seen["arguments"]["text"] == "hello"


def test_a_call_that_outlives_its_timeout_is_an_error(
    registry: ToolRegistry, mcp_server: McpTestServer, unique: str
) -> None:
    call = ToolCall(f"call_{unique}", "lookup", {"key": "k", "sleep_seconds": 10})
    result = registry.run(call, timeout=0.5)
    assert result.status == "error" and "did not finish within 0.5 s" in result.error
    assert len(mcp_server.calls_with(call.call_id)) == 1
    # The session is still good for the next call.
    assert registry.run(ToolCall(f"call_next_{unique}", "lookup", {"key": "k"})).status == "ok"


def test_an_oversize_output_is_an_error(registry: ToolRegistry, unique: str) -> None:
    result = registry.run(ToolCall(f"call_{unique}", "lookup", {"key": "k", "size": 70_000}))
    assert result.status == "error" and "bytes of JSON, over the 65536" in result.error


def test_invalid_arguments_and_unknown_names_never_reach_the_server(
    registry: ToolRegistry, mcp_server: McpTestServer, unique: str
) -> None:
    wrong = registry.run(ToolCall(f"call_a_{unique}", "lookup", {"key": 5}))
    assert wrong.status == "error" and "invalid arguments at key" in wrong.error
    unknown = registry.run(ToolCall(f"call_b_{unique}", "drop_table", {}))
    assert unknown.status == "error" and "no tool named 'drop_table'" in unknown.error
    assert not mcp_server.calls_with(f"call_a_{unique}") + mcp_server.calls_with(f"call_b_{unique}")


def test_a_server_down_at_start_is_retried_and_offered_once_it_answers(
    log_dir: Path, caplog: pytest.LogCaptureFixture, unique: str
) -> None:
    caplog.set_level(logging.INFO)
    server = McpTestServer(log_dir, port=free_port())
    registry = registry_for({"url": server.url})
    try:
        assert registry.offered() == [], "not the demo tools either: a source is configured"
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(server.url in w and "did not answer" in w for w in warnings), warnings
        server.start()
        wait_for(lambda: "lookup" in registry.specs(), timeout=40, what="the server's tools")
        assert any("answers again" in r.getMessage() for r in caplog.records)
        call = ToolCall(f"call_{unique}", "lookup", {"key": "k"})
        assert registry.run(call).status == "ok"
        assert len(server.calls_with(call.call_id)) == 1
    finally:
        registry.close()
        server.stop()


def test_a_server_that_restarts_is_connected_again(log_dir: Path, unique: str) -> None:
    server = McpTestServer(log_dir).start()
    registry = registry_for({"url": server.url})
    try:
        assert registry.run(ToolCall(f"call_a_{unique}", "lookup", {"key": "k"})).status == "ok"
        server.stop()
        lost = registry.run(ToolCall(f"call_b_{unique}", "lookup", {"key": "k"}))
        assert lost.status == "error" and "MCP server" in lost.error
        server.start()

        def answers() -> bool:
            call = ToolCall(f"call_c_{unique}", "lookup", {"key": "k"})
            return registry.run(call).status == "ok"

        wait_for(answers, timeout=40, interval=0.5, what="the restarted server to answer")
    finally:
        registry.close()
        server.stop()


def test_two_servers_with_a_tool_of_one_name_refuse_to_start(
    mcp_server: McpTestServer, log_dir: Path
) -> None:
    twin = McpTestServer(log_dir).start()
    try:
        with pytest.raises(SettingError) as caught:
            registry_for({"url": mcp_server.url}, {"url": twin.url})
    finally:
        twin.stop()
    line = str(caught.value)
    assert "\n" not in line and line.startswith("tool '")
    assert f"MCP_SERVERS {mcp_server.url}" in line and f"MCP_SERVERS {twin.url}" in line


def test_a_python_tool_and_a_server_tool_of_one_name_refuse_to_start(
    mcp_server: McpTestServer,
) -> None:
    clash = json.dumps([{"name": "lookup", "description": "The front end's own."}])
    with pytest.raises(
        SettingError, match="'lookup' is offered by CLIENT_TOOLS and by MCP_SERVERS"
    ):
        registry_for({"url": mcp_server.url}, CLIENT_TOOLS=clash)
