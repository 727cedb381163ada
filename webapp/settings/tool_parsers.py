"""The parsers of the tool settings: TOOLS_MODULE, MCP_SERVERS, CLIENT_TOOLS (API.md, "Tools").

What can be checked without importing anything is checked here, when any
process starts: the shape of the JSON, the URLs, the names. What cannot (the
TOOLS_MODULE import, the JSON Schemas, the MCP servers' own tools) is checked
by the worker when it builds its tool registry (write/tools/registry.py),
with one line naming the variable too. Like parsers.py, this module imports
only the standard library.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from webapp.exceptions import Invalid

# A tool's name as OpenAI's function tools accept it (and most servers, after them).
TOOL_NAME = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")
TOOL_NAME_RULE = "1 to 64 letters, digits, _ or -"

# API.md, MCP_SERVERS: which calls of a server's tools a person approves first.
APPROVAL_DESTRUCTIVE = "destructive"
APPROVALS = (APPROVAL_DESTRUCTIVE, "always", "never")

_MODULE_PATH = re.compile(r"\A[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\Z")


class McpServerConfig(NamedTuple):
    """One entry of MCP_SERVERS."""

    url: str
    headers: Mapping[str, str]
    approval: str


class ClientToolConfig(NamedTuple):
    """One entry of CLIENT_TOOLS: a tool the front end runs."""

    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True)
class ImportPath:
    expected: str = "a Python module path, like myapp.tools"

    def __call__(self, raw: str) -> str:
        if not _MODULE_PATH.match(raw):
            raise ValueError
        return raw


@dataclass(frozen=True)
class McpServers:
    expected: str = (
        'a JSON array of {"url": "https://...", "headers": {...}, '
        '"approval": "destructive", "always" or "never"} objects'
    )

    def __call__(self, raw: str) -> tuple[McpServerConfig, ...]:
        servers = tuple(_mcp_server(item, at) for at, item in _items(raw))
        _once([server.url for server in servers], "{} is listed twice")
        return servers


@dataclass(frozen=True)
class ClientTools:
    expected: str = 'a JSON array of {"name", "description", "parameters"} objects'

    def __call__(self, raw: str) -> tuple[ClientToolConfig, ...]:
        tools = tuple(_client_tool(item, at) for at, item in _items(raw))
        _once([repr(tool.name) for tool in tools], "the name {} is used twice")
        return tools


def _items(raw: str) -> list[tuple[str, dict[str, Any]]]:
    """The objects of a JSON array, each with the words that point at it in an error."""
    try:
        items = json.loads(raw)
    except ValueError:
        raise Invalid("it is not JSON") from None
    if not isinstance(items, list):
        raise Invalid("it is not a JSON array")
    found = []
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise Invalid(f"item {number} is not an object")
        found.append((f"item {number}", item))
    return found


def _once(values: list[str], twice: str) -> None:
    """Refuse a value that comes twice, saying so with `twice` (a format with one `{}`)."""
    for value in values:
        if values.count(value) > 1:
            raise Invalid(twice.format(value))


def _keys(item: Mapping[str, Any], at: str, required: set[str], optional: set[str]) -> None:
    missing = sorted(required - item.keys())
    unknown = sorted(item.keys() - required - optional)
    if missing:
        raise Invalid(f"{at} has no {missing[0]!r}")
    if unknown:
        raise Invalid(f"{at} has an unknown key {unknown[0]!r}")


def _mcp_server(item: Mapping[str, Any], at: str) -> McpServerConfig:
    _keys(item, at, {"url"}, {"headers", "approval"})
    url = item["url"]
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
        _ = parts.port if parts else None
    except ValueError:
        parts = None
    if not parts or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise Invalid(f"{at}'s url is not an http:// or https:// URL")
    headers = item.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        # Header values may be secrets: the line names the key only.
        raise Invalid(f"{at}'s headers are not an object of texts")
    approval = item.get("approval", APPROVAL_DESTRUCTIVE)
    if approval not in APPROVALS:
        raise Invalid(f"{at}'s approval is not one of {', '.join(APPROVALS)}")
    return McpServerConfig(url, dict(headers), approval)


def _client_tool(item: Mapping[str, Any], at: str) -> ClientToolConfig:
    _keys(item, at, {"name"}, {"description", "parameters"})
    name = item["name"]
    if not isinstance(name, str) or not TOOL_NAME.match(name):
        raise Invalid(f"{at}'s name is not {TOOL_NAME_RULE}")
    description = item.get("description", "")
    if not isinstance(description, str):
        raise Invalid(f"{at}'s description is not a text")
    parameters = item.get("parameters", {"type": "object", "properties": {}})
    if not is_object_schema(parameters):
        raise Invalid(f"{at}'s parameters are not a JSON Schema of an object")
    return ClientToolConfig(name, description, parameters)


def is_object_schema(schema: object) -> bool:
    """Whether `schema` can be a function's parameters: a JSON Schema whose type is object.

    The schema itself is checked against JSON Schema by the worker (jsonschema).
    """
    return isinstance(schema, dict) and schema.get("type", "object") == "object"
