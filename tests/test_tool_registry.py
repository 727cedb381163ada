"""The tool registry with its Python sources: TOOLS_MODULE, CLIENT_TOOLS and the demo tools.

The app's module is tests/support/app_tools.py, one tool per case. MCP
servers have their own tests (test_mcp_servers.py), and the waits under
gevent theirs (test_tool_bridge.py).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import app_tools
from tests.support.processes import ROOT
from webapp.exceptions import SettingError
from webapp.settings.config import from_env
from webapp.tools import tool
from webapp.write.tool_calls import CUT_OFF, ToolCall
from webapp.write.tools.python_tools import PythonTools
from webapp.write.tools.registry import ToolRegistry, registry_or_exit

APP_TOOLS = "tests.support.app_tools"
CLIENT_TOOLS = json.dumps(
    [
        {
            "name": "confirm",
            "description": "Ask the user to confirm.",
            "parameters": {"type": "object", "properties": {"question": {"type": "string"}}},
        }
    ]
)


def settings(**env: str) -> dict[str, Any]:
    return from_env(env)


@pytest.fixture()
def registry() -> Iterator[ToolRegistry]:
    built = ToolRegistry.from_settings(
        settings(TOOLS_MODULE=APP_TOOLS, CLIENT_TOOLS=CLIENT_TOOLS), demo_model=False
    )
    yield built
    built.close()


def call(name: str, arguments: dict[str, Any] | None = None, error: str | None = None) -> ToolCall:
    call_id = f"call_{name}_{len(app_tools.calls)}"
    return ToolCall(call_id, name, {} if arguments is None else arguments, error)


def test_the_tools_are_offered_in_openai_format_with_their_properties(
    registry: ToolRegistry,
) -> None:
    offered = {tool["function"]["name"]: tool for tool in registry.offered()}
    assert set(offered) == {
        "double",
        "triple",
        "sleepy",
        "nap",
        "sleepy_async",
        "refuse",
        "crash",
        "flood",
        "opaque",
        "pay",
        "pick_color",
        "confirm",
    }, "each declared function once, `double_again` included as `double`"
    assert offered["double"] == {
        "type": "function",
        "function": {
            "name": "double",
            "description": "Double a number.",
            "parameters": app_tools.NUMBER,
        },
    }
    assert offered["triple"]["function"]["description"] == "Triple a number, on the asyncio thread."
    double, pay, pick, confirm = (
        registry.get(n) for n in ("double", "pay", "pick_color", "confirm")
    )
    assert double.idempotent and not double.needs_approval and double.runs_on == "server"
    assert pay.needs_approval and not pay.idempotent
    assert pick.runs_on == "client" and confirm.runs_on == "client"
    assert confirm.source == "CLIENT_TOOLS" and double.source == f"TOOLS_MODULE={APP_TOOLS!r}"
    assert registry.get("nothing") is None


def test_a_tool_runs_with_its_arguments_and_its_call_id(registry: ToolRegistry) -> None:
    doubling = call("double", {"n": 21})
    assert registry.run(doubling) == type(registry.run(doubling)).ok(42)
    assert app_tools.calls[-1] == ("double", doubling.call_id)


def test_an_async_tool_runs_on_the_asyncio_thread(registry: ToolRegistry) -> None:
    result = registry.run(call("triple", {"n": 5}))
    assert (result.status, result.output) == ("ok", 15)


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"n": "four"}, "invalid arguments at n: 'four' is not of type 'integer'"),
        ({}, "invalid arguments: 'n' is a required property"),
    ],
)
def test_arguments_are_checked_before_the_tool_runs(
    registry: ToolRegistry, arguments: dict, says: str
) -> None:
    before = len(app_tools.calls)
    result = registry.run(call("double", arguments))
    assert result.status == "error" and result.error.startswith(says)
    assert len(app_tools.calls) == before, "the tool did not run"


def test_arguments_the_schema_allows_but_the_function_does_not_take_are_an_error(
    registry: ToolRegistry,
) -> None:
    before = len(app_tools.calls)
    result = registry.run(call("double", {"n": 2, "precision": 3}))
    assert result.status == "error" and "unexpected keyword argument 'precision'" in result.error
    assert len(app_tools.calls) == before


def test_a_call_whose_arguments_came_broken_does_not_run(registry: ToolRegistry) -> None:
    before = len(app_tools.calls)
    result = registry.run(ToolCall("call_cut", "double", '{"n": 4', CUT_OFF))
    assert (result.status, result.error) == ("error", CUT_OFF)
    assert len(app_tools.calls) == before


def test_an_unknown_name_is_an_error_naming_the_tools(registry: ToolRegistry) -> None:
    result = registry.run(call("dobule", {"n": 1}))
    assert result.status == "error"
    assert "no tool named 'dobule'" in result.error and "double" in result.error


@pytest.mark.parametrize("name", ["sleepy", "sleepy_async"])
def test_a_tool_that_outlives_its_timeout_is_an_error(registry: ToolRegistry, name: str) -> None:
    result = registry.run(call(name), timeout=0.2)
    assert result.status == "error" and "did not finish within 0.2 s" in result.error


def test_a_tool_error_is_read_by_the_model_and_any_other_shows_its_type_only(
    registry: ToolRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert registry.run(call("refuse")).error == "the order is closed"
    crashed = registry.run(call("crash"))
    assert crashed.error == "the tool failed (KeyError)"
    assert "4111" not in caplog.text, "an exception's text may hold personal data"
    assert "tool failed" in caplog.text and "KeyError" in caplog.text


def test_an_output_too_large_or_not_json_is_an_error(registry: ToolRegistry) -> None:
    flood = registry.run(call("flood"))
    assert flood.status == "error" and "over the 65536" in flood.error
    assert registry.run(call("opaque")).error == "the tool's output is not JSON"


def test_a_client_tool_is_never_run_here(registry: ToolRegistry) -> None:
    with pytest.raises(ValueError, match="client tool"):
        registry.run(call("pick_color"))
    with pytest.raises(ValueError, match="client tool"):
        registry.run(call("confirm", {"question": "sure?"}))


def test_log_lines_carry_the_ids_and_never_arguments_or_outputs(
    registry: ToolRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    doubling = call("double", {"n": 123456})
    registry.run(doubling, ids=("s-1", "m-1", 2))
    (line,) = [r.getMessage() for r in caplog.records if "tool ran" in r.getMessage()]
    assert "session=s-1 message=m-1 step=2" in line and doubling.call_id in line
    assert "123456" not in line and "246912" not in line


# -- which sources, and when ---------------------------------------------------------


def test_the_demo_tools_come_with_the_demo_model_and_no_other_source() -> None:
    demo = ToolRegistry.from_settings(settings(), demo_model=True)
    assert set(demo.specs()) == {"add", "current_time"}
    result = demo.run(ToolCall("call_sum", "add", {"numbers": [2, 3.5]}))
    assert (result.status, result.output) == ("ok", {"sum": 5.5})
    assert demo.run(ToolCall("call_time", "current_time", {})).output["utc"].endswith("+00:00")
    assert ToolRegistry.from_settings(settings(), demo_model=False).offered() == []
    with_client = ToolRegistry.from_settings(settings(CLIENT_TOOLS=CLIENT_TOOLS), demo_model=True)
    assert set(with_client.specs()) == {"confirm"}


def test_two_tools_of_one_name_refuse_to_start_with_one_line() -> None:
    clash = json.dumps([{"name": "double", "description": "Twice."}])
    with pytest.raises(SettingError) as caught:
        ToolRegistry.from_settings(
            settings(TOOLS_MODULE=APP_TOOLS, CLIENT_TOOLS=clash), demo_model=False
        )
    line = str(caught.value)
    assert "\n" not in line and "'double'" in line
    assert f"TOOLS_MODULE={APP_TOOLS!r}" in line and "CLIENT_TOOLS" in line


def test_the_worker_stops_with_that_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        registry_or_exit(settings(TOOLS_MODULE="tests.support.no_such_tools"), demo_model=False)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("relay: TOOLS_MODULE='tests.support.no_such_tools' cannot be imported")


def test_a_schema_that_is_not_json_schema_names_the_tool_and_the_setting() -> None:
    @tool(
        description="Broken.",
        parameters={"type": "object", "properties": {"n": {"type": "integr"}}},
    )
    def broken(n: int) -> int:
        return n

    with pytest.raises(SettingError, match="TOOLS_MODULE='x': the parameters of tool 'broken'"):
        PythonTools("TOOLS_MODULE='x'", [broken])
    client = json.dumps([{"name": "pick", "parameters": {"type": "object", "required": "n"}}])
    with pytest.raises(SettingError, match="CLIENT_TOOLS: the parameters of 'pick'"):
        ToolRegistry.from_settings(settings(CLIENT_TOOLS=client), demo_model=False)


def test_neither_web_nor_a_worker_without_mcp_servers_imports_the_sdk(tmp_path) -> None:
    probe = (
        "import sys\n"
        "from webapp import create_app\n"
        f"create_app({{'SQLALCHEMY_DATABASE_URI': 'sqlite:///{tmp_path}/x.sqlite3'}})\n"
        "from webapp.settings.config import from_env\n"
        "from webapp.write.tools.registry import ToolRegistry\n"
        f"ToolRegistry.from_settings(from_env({{'TOOLS_MODULE': '{APP_TOOLS}'}}), demo_model=True)\n"
        "print(sorted(m for m in sys.modules if m == 'mcp' or m.startswith('mcp.')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
