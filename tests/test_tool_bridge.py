"""bridge.py under gevent, as the worker runs: tool calls wait on the asyncio thread, the hub stays free.

The `gevent` tests run in a gevent-patched child process
(tests/support/green.py), against the real MCP test server: if a greenlet
waiting on the asyncio thread blocked the hub, the calls below could not be
running together while this test's own greenlet watches the server. The
last test runs a patched process of its own, to see it exit.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import gevent
import pytest

from tests.support import green
from tests.support.mcp_server import McpTestServer
from tests.support.processes import ROOT, wait_for
from webapp.exceptions import HandedBack, TimedOut
from webapp.settings.config import from_env
from webapp.write.tool_calls import ToolCall
from webapp.write.tools.bridge import AsyncBridge
from webapp.write.tools.registry import ToolRegistry

pytestmark = pytest.mark.timeout(120)

# A worker's life in brief, patched as the worker is: a server by name, one
# call, and an exit that forgets registry.close().
FORGETFUL_WORKER = """
from gevent import monkey; monkey.patch_all()
import json, sys
from webapp.settings.config import from_env
from webapp.write.tool_calls import ToolCall
from webapp.write.tools.registry import ToolRegistry
servers = json.dumps([{"url": sys.argv[1]}])
registry = ToolRegistry.from_settings(from_env({"MCP_SERVERS": servers}), demo_model=False)
print(registry.run(ToolCall("call_exit_" + sys.argv[2], "lookup", {"key": "k"})).status)
"""


@pytest.mark.gevent
def test_mcp_calls_wait_together_without_blocking_the_hub(
    mcp_server: McpTestServer, unique: str
) -> None:
    assert green.patched()
    # By name: the name lookup runs where asyncio hands it, a greenlet of the
    # asyncio thread's own hub (bridge.py).
    url = mcp_server.url.replace("127.0.0.1", "localhost")
    servers = json.dumps([{"url": url}])
    registry = ToolRegistry.from_settings(from_env({"MCP_SERVERS": servers}), demo_model=False)
    try:
        assert "lookup" in registry.specs()
        calls = [
            ToolCall(f"call_{n}_{unique}", "lookup", {"key": str(n), "sleep_seconds": 5})
            for n in range(5)
        ]
        running = [gevent.spawn(registry.run, call) for call in calls]
        # This greenlet goes on while they wait: it sees the server begin all five ...
        wait_for(
            lambda: all(mcp_server.calls_with(call.call_id) for call in calls),
            timeout=30,
            what="the server to begin every call",
        )
        # ... before any has come back: they run together.
        assert not any(greenlet.ready() for greenlet in running)
        gevent.joinall(running, timeout=60, raise_error=True)
        assert [greenlet.value.status for greenlet in running] == ["ok"] * 5
    finally:
        registry.close()


@pytest.mark.gevent
def test_python_tools_time_out_and_run_async_under_gevent() -> None:
    assert green.patched()
    registry = ToolRegistry.from_settings(
        from_env({"TOOLS_MODULE": "tests.support.app_tools"}), demo_model=False
    )
    try:
        # time.sleep is gevent's here: the tool is stopped at its timeout.
        napping = registry.run(ToolCall("call_nap", "nap", {}), timeout=0.3)
        assert napping.status == "error" and "did not finish within 0.3 s" in napping.error
        tripled = registry.run(ToolCall("call_triple", "triple", {"n": 7}))
        assert (tripled.status, tripled.output) == ("ok", 21)
        late = registry.run(ToolCall("call_late", "sleepy_async", {}), timeout=0.3)
        assert late.status == "error" and "did not finish" in late.error
    finally:
        registry.close()


@pytest.mark.gevent
def test_an_interrupted_wait_cancels_its_coroutine_on_the_asyncio_thread() -> None:
    """A cancel or a hand-back raised into a waiting greenlet leaves nothing running behind it."""
    bridge = AsyncBridge().start()
    seen: list[str] = []

    async def slow() -> None:
        seen.append("began")
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    try:
        waiting = gevent.spawn(bridge.call, slow(), None)
        wait_for(lambda: seen, timeout=10, what="the coroutine to begin")
        # As the worker interrupts a generation it hands back.
        waiting.kill(HandedBack, block=True, timeout=10)
        assert waiting.dead and isinstance(waiting.exception, HandedBack)
        wait_for(lambda: "cancelled" in seen, timeout=10, what="the coroutine to be cancelled")
        with pytest.raises(TimedOut):
            bridge.call(asyncio.sleep(30), 0.1)
    finally:
        bridge.close()
    assert not bridge.running()


def test_a_process_that_never_closes_its_registry_still_exits(
    mcp_server: McpTestServer, unique: str
) -> None:
    """Pins bridge.py's exit hook (threading._register_atexit): without it, this hangs at exit."""
    url = mcp_server.url.replace("127.0.0.1", "localhost")
    done = subprocess.run(
        [sys.executable, "-c", FORGETFUL_WORKER, url, unique],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"
