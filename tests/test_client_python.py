"""The Python client (clients/python) against the shared relay stack: the calls, their
errors as typed exceptions, a lost post sent again once, the CLI, and what it depends on.
"""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from relay_client import (
    AsyncClient,
    Client,
    Conflict,
    IdempotencyKeyReused,
    InvalidRequest,
    NotFound,
    Policy,
)

from tests.support.model_server import ModelServer
from tests.support.processes import ROOT, Process
from tests.support.proxies import AnswerLosingProxy
from tests.support.pyclient import PACKAGE, run_module
from tests.test_code_size import oversized

POLICY = Policy(seed=3, backoff_seconds=0.05, reconnect_seconds=0.05)


@pytest.fixture()
def relay(web: str, worker: Process) -> Client:
    with Client(web, policy=POLICY) as client:
        yield client


def test_an_answer_streams_whole_with_its_parts(relay: Client, unique: str) -> None:
    session_id = relay.create_session()
    answer = relay.send(session_id, f"parts {unique}").wait()
    stored = relay.snapshot(session_id)["messages"][-1]
    assert (answer.status, answer.content) == ("done", stored["content"])
    assert [(p.type, p.text) for p in answer.parts] == [("text", stored["content"])]
    assert answer.end is not None and answer.end["text_length"] == len(answer.content)
    assert answer.raise_for_status() is answer


@pytest.mark.parametrize("transport", ["sse", "poll", "whole"])
def test_every_transport_gives_the_same_answer(web: str, worker: Process, transport: str) -> None:
    prompt = f"the same whatever the transport ({transport})"
    with Client(web, transport=transport, policy=POLICY) as relay:
        answer = relay.send(relay.create_session(), prompt).wait()
    assert (answer.status, answer.content) == ("done", f"You said: {prompt}. " + REST)


REST = "Here is a short answer in several pieces."


def test_a_stream_and_polls_read_the_same_events(relay: Client, unique: str) -> None:
    session_id = relay.create_session()
    message_id = relay.send(session_id, f"same events {unique}").wait().message_id
    streamed = []
    for event in relay.stream(session_id, after="0-0"):
        streamed.append(event)
        if event.event == "end" and event.message_id == message_id:
            break
    poll = relay.poll(session_id, after="0-0", timeout=0)
    assert (poll.events, poll.cursor, poll.reset) == (streamed, streamed[-1].id, False)
    assert relay.poll(session_id, after=streamed[2].id, timeout=0).events == streamed[3:]


def test_cancel_ends_the_answer_cancelled(
    relay: Client, model_server: ModelServer, unique: str
) -> None:
    prompt = f"cancel me {unique}"
    behavior = model_server.behave(prompt, chunks=["a ", "b ", "c"], gate_after=1)
    session_id = relay.create_session()
    answer = relay.send(session_id, prompt)
    for event in answer:
        if event.event == "chunk":
            relay.cancel(session_id, answer.message_id)
    behavior.gate.set()
    assert (answer.status, answer.finish_reason, answer.content) == ("cancelled", "cancelled", "a ")


def test_a_second_prompt_while_one_runs_is_a_conflict_naming_it(
    relay: Client, model_server: ModelServer, unique: str
) -> None:
    prompt = f"busy {unique}"
    behavior = model_server.behave(prompt, chunks=["x"], gate_after=0)
    session_id = relay.create_session()
    running = relay.send(session_id, prompt)
    with pytest.raises(Conflict) as busy:
        relay.send(session_id, "and another")
    assert (busy.value.code, busy.value.message_id) == ("generation_active", running.message_id)
    behavior.gate.set()
    running.wait()


def test_regenerate_answers_again_and_delete_removes_the_session(
    relay: Client, unique: str
) -> None:
    session_id = relay.create_session()
    first = relay.send(session_id, f"again {unique}").wait()
    second = relay.regenerate(session_id, first.message_id).wait()
    assert second.message_id != first.message_id and second.content == first.content
    assert [m["id"] for m in relay.snapshot(session_id)["messages"]][-1] == second.message_id
    relay.delete(session_id)
    with pytest.raises(NotFound) as gone:
        relay.snapshot(session_id)
    assert gone.value.code == "session_not_found"
    with pytest.raises(NotFound):
        relay.delete(session_id)  # not lost, so not taken as done


def test_bad_input_raises_the_typed_error_of_its_code(relay: Client, unique: str) -> None:
    session_id = relay.create_session()
    with pytest.raises(InvalidRequest) as empty:
        relay.send(session_id, "")
    assert (empty.value.status, empty.value.code) == (400, "empty_prompt")
    with pytest.raises(InvalidRequest) as cursor:
        relay.poll(session_id, after="1-")
    assert cursor.value.code == "invalid_cursor"
    relay.send(session_id, f"keyed {unique}", idempotency_key=f"key-{unique}").wait()
    with pytest.raises(IdempotencyKeyReused):
        relay.send(session_id, "another prompt", idempotency_key=f"key-{unique}")
    with pytest.raises(NotFound):
        relay.message(session_id, "conformance000000000")


def test_the_tool_calls_go_where_api_md_says(relay: Client, unique: str) -> None:
    """An answer without that call: its tool routes answer 404 as JSON, typed (NotFound)."""
    session_id = relay.create_session()
    message_id = relay.send(session_id, f"tools {unique}").wait().message_id
    with pytest.raises(NotFound):
        relay.approve(session_id, message_id, "call_1", True, reason="fine")
    with pytest.raises(NotFound):
        relay.tool_output(session_id, message_id, "call_1", {"temperature": 21})
    with pytest.raises(ValueError):
        relay.tool_output(session_id, message_id, "call_1")  # neither output nor error


def test_a_post_whose_answer_is_lost_is_sent_again_and_queued_once(
    web: str, worker: Process, model_server: ModelServer, unique: str
) -> None:
    proxy = AnswerLosingProxy(web, lose=2).start()
    prompt = f"lost answer {unique}"
    try:
        with Client(proxy.base_url, policy=POLICY) as relay:
            answer = relay.send(relay.create_session(), prompt).wait()
    finally:
        proxy.stop()
    assert (proxy.lost, proxy.prompt_posts) == (2, 3)
    assert answer.status == "done"
    assert len(model_server.calls_for(prompt)) == 1


def test_the_async_client_does_what_the_sync_one_does(web: str, worker: Process) -> None:
    first, second = asyncio.run(asyncio.wait_for(parity(web), 30))
    assert first == second == f"You said: async parity. {REST}"


async def parity(web: str) -> tuple[str, str]:
    async with AsyncClient(web, policy=POLICY) as relay:
        session_id = await relay.create_session()
        answer = await (await relay.send(session_id, "async parity"))
        again = await (await relay.regenerate(session_id, answer.message_id))
        with pytest.raises(NotFound):
            await relay.snapshot("conformance000000000")
        return answer.content, again.content


# -- the command line -----------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_module("relay_client", *args, timeout=60)


@pytest.mark.parametrize("mode", [[], ["--poll"]], ids=["sse", "poll"])
def test_the_cli_streams_an_answer_to_the_terminal(
    web: str, worker: Process, unique: str, mode: list[str]
) -> None:
    prompt = f"from the terminal {unique}"
    result = run_cli(web, prompt, *mode)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"You said: {prompt}. {REST}\n"
    assert "relay: session " in result.stderr


def test_the_cli_says_why_it_failed(web: str) -> None:
    result = run_cli(web, "")
    assert result.returncode == 1
    assert "empty_prompt" in result.stderr


# -- what the package is made of ---------------------------------------------------------


def test_the_package_depends_on_httpx_and_httpx_sse_only() -> None:
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]
    names = {
        dep.split(">")[0].split("<")[0].split("=")[0].strip() for dep in project["dependencies"]
    }
    assert names == {"httpx", "httpx-sse"}
    imported = set()
    for path in (PACKAGE / "relay_client").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    assert imported - sys.stdlib_module_names == {"httpx", "httpx_sse"}
    assert (PACKAGE / "relay_client" / "py.typed").exists()


@pytest.mark.parametrize(
    "path",
    sorted((PACKAGE / "relay_client").rglob("*.py")),
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_every_part_of_the_client_is_within_the_size_limits(path: Path) -> None:
    found = list(oversized(path.read_text()))
    assert not found, f"{path.relative_to(ROOT)}: " + "; ".join(found)
