"""webapp/tools.py: the declaration API an app writes its tools with, and the mistakes it refuses."""

from __future__ import annotations

from typing import Any

import pytest

from webapp.tools import ToolError, declared, tool


def test_a_declaration_keeps_the_function_and_reads_its_defaults() -> None:
    @tool
    def lookup(order_id: str) -> str:
        """Find an order.

        More text for people."""
        return order_id

    declaration = declared(lookup)
    assert lookup("o-1") == "o-1", "the function is returned unchanged"
    assert declaration is not None
    assert (declaration.name, declaration.runs_on) == ("lookup", "server")
    assert declaration.description.startswith("Find an order.")
    assert declaration.parameters == {"type": "object", "properties": {}}
    assert not (declaration.idempotent or declaration.needs_approval or declaration.takes_call_id)


def test_a_declaration_with_everything_given() -> None:
    schema = {"type": "object", "properties": {"amount": {"type": "number"}}}

    @tool(
        name="charge-card",
        description="Charge the card.",
        parameters=schema,
        idempotent=True,
        needs_approval=True,
    )
    def charge(amount: float, *, call_id: str) -> str:
        return call_id

    declaration = declared(charge)
    assert declaration is not None and declaration.name == "charge-card"
    assert declaration.parameters == schema and declaration.takes_call_id
    assert declaration.idempotent and declaration.needs_approval


def test_undeclared_things_have_no_declaration() -> None:
    assert declared(print) is None and declared("tool") is None and declared(None) is None


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"name": "no spaces"}, "is not 1 to 64 letters"),
        ({"name": "a" * 65}, "is not 1 to 64 letters"),
        ({"description": "  "}, "give a description"),
        ({"parameters": {"type": "array"}}, "JSON Schema of an object"),
        ({"parameters": ["n"]}, "JSON Schema of an object"),
        ({"runs_on": "browser"}, "runs_on is"),
        (
            {"parameters": {"type": "object", "properties": {"call_id": {"type": "string"}}}},
            "'call_id' is relay's",
        ),
    ],
)
def test_a_wrong_declaration_fails_when_the_module_loads(
    options: dict[str, Any], says: str
) -> None:
    options.setdefault("description", "Does a thing.")
    with pytest.raises(ValueError, match=says) as caught:

        @tool(**options)
        def thing(call_id: str) -> None:
            pass

    assert "@tool " in str(caught.value) and "thing" in str(caught.value)


def test_tool_error_is_an_exception_with_the_text_for_the_model() -> None:
    assert str(ToolError("the order is closed")) == "the order is closed"
