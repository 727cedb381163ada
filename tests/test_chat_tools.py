"""Tool calls through the AI SDK's chat routes (chat_api.py, continuations.py), driven by the real SDK.

Two kinds of test:

- A real web (gunicorn+gevent, over HTTP) on a Redis and a database of the
  test's own, with no worker: the test writes what a worker writes
  (tests/support/played_answer.py: stream entries through the real
  StreamWriter, the journal through journal.py), in the order API.md's
  Tools section gives. The SDK's own chat (tests/js/tool_chat.mjs) sends,
  approves with `addToolApprovalResponse`, gives outputs with
  `addToolOutput`, and resubmits by itself (`sendAutomaticallyWhen`).
- End to end with a real worker answering with a tool (the loop of steps,
  webapp/write/step_loop.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.support.ai_sdk import AiSdk, ToolChatResult
from tests.support.client import create_session, post_prompt
from tests.support.model_server import TOOL_CALLS, Behavior, ModelServer
from tests.support.played_answer import PlayedAnswer, queued_job
from tests.support.processes import wait_for
from webapp.http.ui_messages import ui_messages
from webapp.storage import journal
from webapp.storage.journal import NewCall

pytestmark = pytest.mark.slow


REFUND = {"order": 7}
COLOR = {"color": "red"}


@pytest.fixture()
def background() -> Iterator[ThreadPoolExecutor]:
    """Runs the SDK's chat while the test plays the worker."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


@pytest.fixture()
def stack(private_stack):
    """A web of the test's own and no worker: the test writes what a worker would."""
    made = private_stack()
    made.url = made.web()
    return made


def chatting(pool: ThreadPoolExecutor, ai_sdk: AiSdk, stack, sid: str, **options) -> Future:
    return pool.submit(ai_sdk.tool_chat, f"{stack.url}/api/chat", sid, **options)


def answer_waits_for_refund(stack, client, sid: str, mid: str) -> PlayedAnswer:
    """Attempt 1 asks to refund order 7, and waits for a person's decision."""
    played = PlayedAnswer(stack.app, client, sid, mid).begin()
    played.start()
    played.chunk("I can refund order 7.")
    played.record_step(0, [NewCall("c_refund", "refund", "approval")])
    played.call("c_refund", "refund", REFUND, approval_id="c_refund")
    played.pause(("c_refund", "approval"))
    return played


def refund_waits(stack, client, http: httpx.Client) -> tuple[str, str]:
    """A session whose answer waits for a decision on its refund; its ids."""
    sid = create_session(http)
    mid = post_prompt(http, sid, "Refund order 7")["message_id"]
    queued_job(client, sid, resume=False)
    answer_waits_for_refund(stack, client, sid, mid)
    return sid, mid


def goes_on_after_refund(stack, client, sid: str, mid: str, attempt: int, result: dict) -> None:
    """The attempt the decision made due: the step again, its result, then the last step."""
    played = PlayedAnswer(stack.app, client, sid, mid).resume(attempt)
    played.start(from_step=0)
    played.chunk("I can refund order 7.")
    played.call("c_refund", "refund", REFUND, approval_id="c_refund")
    played.result("c_refund", **result)
    played.chunk("Done.", step=1)
    played.end(steps=2, tool_calls=1)


def listed(http: httpx.Client, sid: str) -> list[dict[str, Any]]:
    response = http.get(f"/api/chat/{sid}/messages")
    assert response.status_code == 200, response.text
    return response.json()


def shown(http: httpx.Client, sid: str) -> list[dict[str, Any]]:
    """What a page shows once its resumed stream replayed the waiting answer (as its parts list)."""
    return ui_messages(http.get(f"/api/sessions/{sid}").json()["messages"], None)


def stored_input(client, sid: str, mid: str, call_id: str) -> Any:
    found = journal.read(client, sid, mid)
    return found.calls[call_id].input if found else None


# --- through the routes, the worker played ---------------------------------------------


def test_approve_through_the_sdk_and_the_same_answer_goes_on(
    stack, ai_sdk: AiSdk, background: ThreadPoolExecutor
) -> None:
    client = stack.redis_client()
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        sid = create_session(http)
        decide = {"approved": True, "reason": "fine"}
        chat = chatting(background, ai_sdk, stack, sid, text="Refund order 7", decide=decide)
        job = queued_job(client, sid, resume=False)
        answer_waits_for_refund(stack, client, sid, job.message_id)
        resume = queued_job(client, sid, resume=True)  # the SDK approved: the decision is stored
        assert stored_input(client, sid, job.message_id, "c_refund") == decide
        goes_on_after_refund(
            stack, client, sid, job.message_id, resume.attempt, {"output": "refunded"}
        )
        result: ToolChatResult = chat.result(timeout=60)
        assert (result.status, result.error) == ("ready", None)
        assert [m["role"] for m in result.messages] == ["user", "assistant"]
        assert result.answer["id"] == job.message_id and resume.attempt == 2
        (refund,) = result.tools()
        assert (refund["state"], refund["output"]) == ("output-available", "refunded")
        assert refund["approval"] == {"id": "c_refund", **decide}
        texts = [p["text"] for p in result.answer["parts"] if p["type"] == "text"]
        assert texts == ["I can refund order 7.", "Done."]
        # The continuation streamed the rest: from its attempt's start, no step twice.
        continued = result.responses[1]["chunkTypes"]
        assert continued[:2] == ["start", "tool-output-available"]
        assert continued.count("start-step") == 1 and continued[-1] == "finish"
        assert result.requests[1]["body"]["messages"][-1]["id"] == job.message_id
        # Stored as the SDK showed it.
        (_, answer) = listed(http, sid)
        assert [p["type"] for p in answer["parts"]] == [
            "step-start",
            "text",
            "tool-refund",
            "step-start",
            "text",
        ]
        assert ai_sdk.validate(listed(http, sid)) is None


def test_a_client_tools_output_through_add_tool_output(
    stack, ai_sdk: AiSdk, background: ThreadPoolExecutor
) -> None:
    client = stack.redis_client()
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        sid = create_session(http)
        chat = chatting(background, ai_sdk, stack, sid, text="Pick", outputs={"pick_color": COLOR})
        job = queued_job(client, sid, resume=False)
        played = PlayedAnswer(stack.app, client, sid, job.message_id).begin()
        played.start()
        played.record_step(0, [NewCall("c_color", "pick_color", "output")])
        played.call("c_color", "pick_color", {"for": "car"}, runs_on="client")
        played.pause(("c_color", "output"))
        resume = queued_job(client, sid, resume=True)
        assert stored_input(client, sid, job.message_id, "c_color") == {"output": COLOR}
        again = PlayedAnswer(stack.app, client, sid, job.message_id).resume(resume.attempt)
        again.start()
        again.call("c_color", "pick_color", {"for": "car"}, runs_on="client")
        again.result("c_color", output=COLOR)
        again.chunk("Red it is.", step=1)
        again.end(steps=2, tool_calls=1)
        result: ToolChatResult = chat.result(timeout=60)
    assert (result.status, result.error) == ("ready", None)
    assert result.tool_calls == ["c_color"]  # onToolCall ran the tool once
    (color,) = result.tools()
    assert (color["state"], color["output"]) == ("output-available", COLOR)
    assert "providerExecuted" not in color


def test_a_waiting_answer_is_resumed_not_listed_and_a_reloaded_page_denies_it(
    stack, ai_sdk: AiSdk, background: ThreadPoolExecutor
) -> None:
    """API.md: a waiting answer is active, so the resume route replays it and /messages leaves it out."""
    client = stack.redis_client()
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        sid, mid = refund_waits(stack, client, http)
        assert [m["role"] for m in listed(http, sid)] == ["user"]
        replay = http.get(f"/api/chat/{sid}/stream")
        assert replay.status_code == 200
        assert '"type":"tool-approval-request"' in replay.text
        assert replay.text.rstrip().endswith("data: [DONE]")
        # A page reloaded with `resume: true` shows Approve and Deny from the replay.
        decide = {"approved": False, "reason": "not today"}
        chat = chatting(
            background, ai_sdk, stack, sid, messages=listed(http, sid), resume=True, decide=decide
        )
        resume = queued_job(client, sid, resume=True)
        goes_on_after_refund(
            stack, client, sid, mid, resume.attempt, {"status": "denied", "error": "not today"}
        )
        result: ToolChatResult = chat.result(timeout=60)
    assert (result.status, result.error) == ("ready", None)
    assert result.requests[0]["method"] == "GET"  # the resume came first
    (refund,) = result.tools()
    assert refund["state"] == "output-denied"
    assert refund["approval"] == {"id": "c_refund", **decide}


def continuation_body(sid: str, messages: list[dict], **tool: Any) -> dict[str, Any]:
    """The listed conversation as the SDK resubmits it, its tool part changed as given."""
    answer = json.loads(json.dumps(messages[-1]))
    for part in answer["parts"]:
        if part["type"] == "tool-refund":
            part.update(tool)
    return {"id": sid, "messages": [*messages[:-1], answer], "trigger": "submit-message"}


def test_continuation_errors_are_the_tool_routes_json_and_change_nothing(
    stack, ai_sdk: AiSdk
) -> None:
    client = stack.redis_client()
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        sid, mid = refund_waits(stack, client, http)
        messages = shown(http, sid)
        approve = {"state": "approval-responded", "approval": {"id": "c_refund", "approved": True}}
        cases = [
            (continuation_body(sid, messages), 409, "not_waiting"),
            (
                continuation_body(sid, messages, **approve, toolCallId="c_other"),
                404,
                "tool_call_not_found",
            ),
            (
                continuation_body(
                    sid, messages, state="approval-responded", approval={"approved": 1}
                ),
                400,
                "invalid_tool_input",
            ),
        ]
        for body, status, code in cases:
            response = http.post("/api/chat", json=body)
            assert (response.status_code, response.json()["error"]["code"]) == (status, code)
        assert stored_input(client, sid, mid, "c_refund") is None
        # Another decision came first (another tab, the relay route): the SDK's is refused.
        tools = f"/api/sessions/{sid}/messages/{mid}/tools/c_refund"
        assert http.post(f"{tools}/approval", json={"approved": False}).status_code == 202
        refused = ai_sdk.tool_chat(
            f"{stack.url}/api/chat", sid, messages=messages, decide={"approved": True}
        )
        assert refused.status == "error" and refused.error["statusCode"] == 409
        assert json.loads(refused.error["responseBody"])["error"]["code"] == "tool_call_settled"
        assert stored_input(client, sid, mid, "c_refund") == {"approved": False, "reason": None}


def test_the_same_decision_again_streams_the_same_answer(
    stack, ai_sdk: AiSdk, background: ThreadPoolExecutor
) -> None:
    """Given first through the relay route: the SDK's same decision is accepted and follows on."""
    client = stack.redis_client()
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        sid, mid = refund_waits(stack, client, http)
        messages = shown(http, sid)
        tools = f"/api/sessions/{sid}/messages/{mid}/tools/c_refund"
        assert http.post(f"{tools}/approval", json={"approved": True}).status_code == 202
        first = queued_job(client, sid, resume=True)
        chat = chatting(
            background, ai_sdk, stack, sid, messages=messages, decide={"approved": True}
        )
        again = queued_job(client, sid, resume=True)  # queued again: the duplicate is stale
        assert again.attempt == first.attempt
        goes_on_after_refund(stack, client, sid, mid, first.attempt, {"output": "refunded"})
        result: ToolChatResult = chat.result(timeout=60)
    assert (result.status, result.error) == ("ready", None)
    assert result.tools()[0]["state"] == "output-available"


# --- end to end: a real worker answers with a tool ------------------------------------------


def tool_step(name: str, arguments: str = "{}") -> Behavior:
    call = {"index": 0, "id": "call_1", "type": "function"}
    return Behavior(
        script=[(TOOL_CALLS, [{**call, "function": {"name": name, "arguments": arguments}}])],
        finish_reason="tool_calls",
    )


def answering_with(
    private_stack, model_server: ModelServer, prompt: str, tool: str, text: list[str]
) -> str:
    """A web and a worker with the test app's tools; the model calls `tool`, then says `text`."""
    made = private_stack(TOOLS_MODULE="tests.support.app_tools")
    web = made.web()
    made.worker()
    model_server.behave(prompt, steps=[tool_step(tool), Behavior(chunks=text)])
    return web


def test_end_to_end_an_approval_continues_the_same_answer(
    private_stack, ai_sdk: AiSdk, model_server: ModelServer, unique: str
) -> None:
    prompt = f"pay for it {unique}"
    web = answering_with(private_stack, model_server, prompt, "pay", ["Paid", "."])
    with httpx.Client(base_url=web, timeout=30) as http:
        sid = create_session(http)
        result = ai_sdk.tool_chat(f"{web}/api/chat", sid, text=prompt, decide={"approved": True})
        assert (result.status, result.error) == ("ready", None)
        assert len(result.requests) == 2  # the prompt, then the resubmit with the approval
        (pay,) = result.tools()
        assert (pay["state"], pay["output"]) == ("output-available", "paid")
        assert pay["approval"]["approved"] is True
        assert [p["text"] for p in result.answer["parts"] if p["type"] == "text"][-1] == "Paid."
        wait_for(lambda: http.get(f"/api/chat/{sid}/stream").status_code == 204, what="the end")
        (_, stored) = listed(http, sid)
        assert stored["id"] == result.answer["id"]
        assert [p["state"] for p in stored["parts"] if p["type"] == "tool-pay"] == [
            "output-available"
        ]


def test_end_to_end_a_client_tool_through_add_tool_output(
    private_stack, ai_sdk: AiSdk, model_server: ModelServer, unique: str
) -> None:
    prompt = f"pick a color {unique}"
    web = answering_with(private_stack, model_server, prompt, "pick_color", ["Red", "!"])
    with httpx.Client(base_url=web, timeout=30) as http:
        sid = create_session(http)
        result = ai_sdk.tool_chat(
            f"{web}/api/chat", sid, text=prompt, outputs={"pick_color": COLOR}
        )
    assert (result.status, result.error) == ("ready", None)
    assert len(result.tool_calls) == 1  # onToolCall ran it once
    (color,) = result.tools()
    assert (color["state"], color["output"]) == ("output-available", COLOR)
    assert result.answer["parts"][-1]["text"] == "Red!"
    # The model got the client's output as the tool's result.
    history = model_server.calls_for(prompt)[-1].body["messages"]
    assert json.loads(history[-1]["content"]) == COLOR
