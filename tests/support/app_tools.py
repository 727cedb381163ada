"""An app's tools module, as TOOLS_MODULE names one (`tests.support.app_tools`): one tool per case."""

from __future__ import annotations

import time

import gevent

from webapp.tools import ToolError, tool

calls: list[tuple[str, str]] = []  # (tool, call_id) of every call that began

NUMBER = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


@tool(description="Double a number.", parameters=NUMBER, idempotent=True)
def double(n: int, call_id: str) -> int:
    calls.append(("double", call_id))
    return n * 2


@tool(name="triple", parameters=NUMBER)
async def triple_it(n: int) -> int:
    """Triple a number, on the asyncio thread."""
    return n * 3


@tool(description="Wait a while.", parameters={"type": "object", "properties": {}})
def sleepy() -> str:
    gevent.sleep(30)
    return "woke up"


@tool(description="Wait a while, in the standard library's way (cooperative once patched).")
def nap() -> str:
    time.sleep(30)
    return "woke up"


@tool(description="Wait a while, asynchronously.")
async def sleepy_async() -> str:
    import asyncio

    await asyncio.sleep(30)
    return "woke up"


@tool(description="Say no, in words the model reads.")
def refuse() -> None:
    raise ToolError("the order is closed")


@tool(description="Fail with a secret in the text.")
def crash() -> None:
    raise KeyError("card 4111 1111 1111 1111")


@tool(description="Answer too much.", parameters={"type": "object", "properties": {}})
def flood() -> str:
    return "x" * 100_000


@tool(description="Answer something that is not JSON.")
def opaque() -> object:
    return object()


@tool(description="Needs a person first.", needs_approval=True)
def pay() -> str:
    return "paid"


@tool(description="The front end picks a color.", runs_on="client")
def pick_color() -> None:
    raise AssertionError("a client tool's body never runs")


# Imported under a second name: still one tool.
double_again = double
