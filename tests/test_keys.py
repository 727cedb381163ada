"""keys.py holds the whole Redis protocol: no other module spells a key or a field.

The scan reads the source of webapp/ and worker.py with `ast`: a string
constant that is a protocol field name, or looks like a key (prose aside),
anywhere but keys.py is a second home for a fact that must have one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.processes import ROOT, RedisServer
from webapp.storage import keys

SOURCES = [ROOT / "worker.py", *sorted((ROOT / "webapp").rglob("*.py"))]
PROTOCOL = ROOT / "webapp" / "storage" / "keys.py"

# Field names that are also words of the JSON payloads (an event's
# `message_id`, a start's `attempt`, a poll's `data`): outside keys.py they
# may appear, just never as an argument of a Redis command.
SHARED_WITH_PAYLOADS = {keys.ACTIVE_MESSAGE_ID, keys.ACTIVE_ATTEMPT, keys.ENTRY_DATA}
DISTINCT_FIELDS = keys.HASH_FIELDS - SHARED_WITH_PAYLOADS
ALL_FIELDS = keys.HASH_FIELDS | {keys.ENTRY_EVENT, keys.ENTRY_DATA}
REDIS_COMMANDS = {
    "hget",
    "hmget",
    "hset",
    "hsetnx",
    "hdel",
    "hexists",
    "hincrby",
    "hincrbyfloat",
    "xadd",
}
KEY_MARKS = (f"{keys.PREFIX}:", "{jobs}", "{metrics}", ":stream", ":active", ":meta", ":idem:")


def strays(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, why) for every protocol name spelled in this source."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if text in DISTINCT_FIELDS:
                yield node.lineno, f"field {text!r}"
            elif not any(c.isspace() for c in text) and any(m in text for m in KEY_MARKS):
                yield node.lineno, f"key {text!r}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in REDIS_COMMANDS
        ):
            for arg in node.args:
                if isinstance(arg, ast.Constant) and arg.value in ALL_FIELDS:
                    yield arg.lineno, f"field {arg.value!r} in {node.func.attr}()"


def test_no_module_but_keys_spells_a_redis_key_or_field() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {why}"
        for path in SOURCES
        if path != PROTOCOL
        for line, why in strays(ast.parse(path.read_text(), str(path)))
    ]
    assert not found, "spell these with keys.py's names:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        'client.hget(meta, "last_id")',
        'pipe.hmget(active, "message_id", "cancel")',
        'x = "floor"',
        'key = f"relay:{{{sid}}}:stream"',
        'LIST = "relay:{jobs}:queued"',
    ],
)
def test_the_scan_finds_a_stray(source: str) -> None:
    assert list(strays(ast.parse(source)))


def test_the_scan_lets_payload_words_be() -> None:
    source = 'body = {"message_id": mid, "attempt": 2, "data": x}; message["data"]'
    assert not list(strays(ast.parse(source)))


def test_every_script_file_is_declared_once_and_its_parts_are_included() -> None:
    declared = {v.name: v for v in vars(keys).values() if isinstance(v, keys.Script)}
    files = {p.stem for p in keys.LUA_FOLDER.glob("*.lua")}
    parts = {name for name in files if name.startswith("_")}
    assert set(declared) == files - parts
    included = set()
    for script in declared.values():
        assert "-- include:" not in script.source
        included |= {
            part
            for part in parts
            if (keys.LUA_FOLDER / f"{part}.lua").read_text().strip() in script.source
        }
    assert included == parts, "a shared part that no script includes"


def test_notices_parse_and_malformed_ones_raise() -> None:
    notice = keys.parse_notice('sid 1-0 2-0 chunk {"text":"two words"}')
    assert notice == keys.Notice("sid", "1-0", "2-0", "chunk", '{"text":"two words"}')
    with pytest.raises(ValueError):
        keys.parse_notice("sid 1-0 2-0")


def test_a_script_redis_forgot_is_loaded_again(log_dir: Path) -> None:
    server = RedisServer(log_dir).start()
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        key = keys.active("forget-me")
        client.hset(key, keys.ACTIVE_MESSAGE_ID, "m1")
        assert keys.CANCEL(client, [key], ["m1"]) == 1
        client.script_flush()
        assert keys.CANCEL(client, [key], ["m1"]) == 1
        assert client.hget(key, keys.ACTIVE_CANCEL) == keys.CANCEL_REQUESTED
        client.close()
    finally:
        server.stop()
