"""Tool calls on the chat page (API.md, Tools; static/tools.js), driven in headless Chromium.

Each test runs a web and a worker of its own with the test app's tools
(tests/support/app_tools.py: `double`, `pay` which needs approval, `nap`
which runs long), and the model server scripts the steps: a call, then text;
one runs the demo model with its demo tools, as a newcomer sees the page,
and one renders cards of every status, with hostile text, in the page itself.
What a card shows is compared with what relay stored. The phone test also
writes the screenshots of docs/chat-page.md to test-artifacts/.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.browser import PHONE, ChatPage, chromium
from tests.support.model_server import Behavior, ModelServer
from tests.support.processes import ROOT
from tests.support.tool_answers import answer_in_steps, calls_step, fragment, text_step

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(180)]

ARTIFACTS = ROOT / "test-artifacts"
TOOLS = {"TOOLS_MODULE": "tests.support.app_tools", "JOB_LEASE_SECONDS": "1.5"}
CARD = 'li.message[data-message-id="{}"] .tool-card'


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as browser:
        yield browser


@pytest.fixture()
def tabs(browser) -> Iterator[Any]:
    """Open the page in new contexts (desktop, or `phone=True`); each checked for JS errors."""
    made: list[tuple[Any, ChatPage]] = []

    def open_(url: str, phone: bool = False) -> ChatPage:
        context = browser.new_context(
            **(PHONE if phone else {"viewport": {"width": 960, "height": 720}})
        )
        chat = ChatPage(context).open(url)
        made.append((context, chat))
        return chat

    yield open_
    for context, chat in made:
        chat.check_no_errors()
        context.close()


@pytest.fixture()
def stack(private_stack) -> Any:
    return private_stack(**TOOLS)


@pytest.fixture()
def tool_web(stack) -> str:
    """The stack's web, with a worker running."""
    web = stack.web()
    stack.worker()
    return web


def card(chat: ChatPage, answer_id: str) -> Any:
    return chat.page.locator(CARD.format(answer_id))


def wait_card(chat: ChatPage, answer_id: str, status: str) -> None:
    chat.wait_for(
        "document.querySelector(arg[0])?.dataset.status === arg[1]",
        [CARD.format(answer_id), status],
    )


def wait_asked(chat: ChatPage, answer_id: str) -> None:
    """Wait until the card offers Approve and Deny."""
    chat.wait_for(
        "document.querySelector(arg + ' .tool-actions')?.hidden === false", CARD.format(answer_id)
    )


def stored_tool(web: str, chat: ChatPage, answer_id: str) -> dict[str, Any]:
    """The answer's one tool part, as the snapshot has it."""
    messages = httpx.get(f"{web}/api/sessions/{chat.session_id}", timeout=10).json()["messages"]
    parts = next(m["parts"] for m in messages if m["id"] == answer_id)
    (tool,) = [part for part in parts if part["type"] == "tool"]
    return tool


def pay_then(model_server: ModelServer, prompt: str, *text: str) -> None:
    answer_in_steps(model_server, prompt, calls_step(("pay", {})), text_step(*text))


def test_a_tool_card_streams_with_its_arguments_status_and_result(
    tool_web: str, tabs, model_server: ModelServer, unique: str
) -> None:
    web = tool_web
    prompt = f"double it {unique}"
    # Step 0 says something, then calls; step 1 answers with the result.
    calls = [("content", "Let me double it. "), ("tool_calls", [fragment(0, "double", {"n": 21})])]
    first = Behavior(script=calls, finish_reason="tool_calls")
    after = text_step("Twice ", "21 ", "is ", "42.", gate_after=1)
    answer_in_steps(model_server, prompt, first, after)
    chat = tabs(web)
    answer_id = chat.send(prompt)

    # The result shows while the next step is still being written.
    wait_card(chat, answer_id, "ok")
    assert chat.answer(answer_id).get_attribute("data-status") == "streaming"
    tool = card(chat, answer_id)
    assert tool.locator(".tool-name").text_content() == "double"
    assert tool.locator(".tool-status").text_content() == "done"
    assert tool.locator(".tool-result").text_content() == "42"
    arguments = tool.locator("details.tool-arguments")
    assert arguments.get_attribute("open") is None  # collapsed
    assert json.loads(arguments.locator("pre").text_content()) == {"n": 21}
    assert tool.locator(".tool-actions").is_hidden()
    after.gate.set()
    chat.wait_status(answer_id, "done")
    # Each step's text a paragraph of its own, not run together.
    paragraphs = chat.answer(answer_id).locator(".body > p").all_text_contents()
    assert paragraphs == ["Let me double it.", "Twice 21 is 42."]

    part = stored_tool(web, chat, answer_id)
    assert (part["name"], part["status"], part["output"]) == ("double", "ok", 42)
    assert tool.get_attribute("data-call-id") == part["call_id"]


def test_out_of_the_box_the_demo_model_shows_a_tool_card(private_stack, tabs, unique: str) -> None:
    """No API key and no tool source: the demo model calls its `add` tool on a sum."""
    demo = private_stack(OPENAI_API_KEY="")
    web = demo.web()
    demo.worker()
    chat = tabs(web)
    answer_id = chat.send(f"what is 2 + 3? ({unique})")
    wait_card(chat, answer_id, "ok")
    tool = card(chat, answer_id)
    assert tool.locator(".tool-name").text_content() == "add"
    assert json.loads(tool.locator("details.tool-arguments pre").text_content()) == {
        "numbers": [2, 3]
    }
    assert json.loads(tool.locator(".tool-result").text_content()) == {"sum": 5}
    chat.wait_status(answer_id, "done")
    assert "I asked the add tool" in chat.answer_text(answer_id)


def test_approve_works_after_a_reload(
    tool_web: str, tabs, model_server: ModelServer, unique: str
) -> None:
    web = tool_web
    prompt = f"pay after a reload {unique}"
    pay_then(model_server, prompt, "Paid", ".")
    chat = tabs(web)
    answer_id = chat.send(prompt)
    wait_card(chat, answer_id, "waiting_approval")
    chat.wait_status(answer_id, "waiting")
    assert chat.page.locator("#stop").is_visible() and chat.page.locator("#send").is_disabled()

    chat.page.reload()
    chat.wait_connection("live")
    wait_card(chat, answer_id, "waiting_approval")
    tool = card(chat, answer_id)
    assert tool.locator(".tool-status").text_content() == "needs your approval"
    ARTIFACTS.mkdir(exist_ok=True)
    top = {"x": 0, "y": 0, "width": 960, "height": 320}
    chat.page.screenshot(path=str(ARTIFACTS / "tools-desktop.png"), clip=top)
    tool.get_by_role("button", name="Approve").click()
    wait_card(chat, answer_id, "ok")
    chat.wait_status(answer_id, "done")
    assert tool.locator(".tool-result").text_content() == "paid"
    assert tool.locator(".tool-actions").is_hidden()
    assert chat.answer_text(answer_id) == "Paid."
    part = stored_tool(web, chat, answer_id)
    assert (part["status"], part["output"]) == ("ok", "paid")


def test_a_deny_in_a_second_tab_shows_in_the_first(
    tool_web: str, tabs, model_server: ModelServer, unique: str
) -> None:
    web = tool_web
    prompt = f"pay from two tabs {unique}"
    pay_then(model_server, prompt, "Not paid", ".")
    first = tabs(web)
    answer_id = first.send(prompt)
    second = tabs(f"{web}/?session={first.session_id}")
    for chat in (first, second):
        wait_card(chat, answer_id, "waiting_approval")
        wait_asked(chat, answer_id)

    card(second, answer_id).get_by_role("button", name="Deny").click()
    for chat in (first, second):
        wait_card(chat, answer_id, "denied")
        chat.wait_status(answer_id, "done")
        tool = card(chat, answer_id)
        assert tool.locator(".tool-status").text_content() == "denied"
        assert tool.locator(".tool-result").text_content() == "Denied: it did not run."
        assert tool.locator(".tool-actions").is_hidden()
        assert chat.answer_text(answer_id) == "Not paid."
    part = stored_tool(web, first, answer_id)
    assert part["status"] == "denied"


def test_a_call_lost_as_it_ran_says_it_may_or_may_not_have_happened(
    stack, tabs, model_server: ModelServer, unique: str
) -> None:
    web = stack.web()
    worker = stack.worker()
    prompt = f"nap once {unique}"
    answer_in_steps(model_server, prompt, calls_step(("nap", {})), text_step("Maybe", "."))
    chat = tabs(web)
    answer_id = chat.send(prompt)
    wait_card(chat, answer_id, "running")
    assert card(chat, answer_id).locator(".tool-status").text_content() == "running…"
    worker.kill()  # while the tool runs: it may or may not have done its work
    stack.worker()

    wait_card(chat, answer_id, "in_doubt")
    chat.wait_status(answer_id, "done", timeout_ms=60_000)
    tool = card(chat, answer_id)
    assert tool.locator(".tool-status").text_content() == "may or may not have happened"
    assert "this action may or may not have happened" in tool.locator(".tool-result").text_content()
    assert stored_tool(web, chat, answer_id)["status"] == "in_doubt"


def test_on_a_phone_a_card_awaiting_approval_fits_and_approve_is_a_tap(
    tool_web: str, tabs, model_server: ModelServer, unique: str
) -> None:
    prompt = "Pay the 12 € invoice, please."
    pay_then(model_server, prompt, "Paid", ": the invoice is settled.")
    chat = tabs(tool_web, phone=True)
    answer_id = chat.tap_send(prompt)
    wait_card(chat, answer_id, "waiting_approval")
    wait_asked(chat, answer_id)
    tool = card(chat, answer_id)
    tool.locator("details").evaluate("(details) => { details.open = true; }")  # for the picture
    assert chat.page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["viewport"]["width"]
    for name in ("Approve", "Deny"):
        box = tool.get_by_role("button", name=name).bounding_box()
        assert box["height"] >= 32 and box["x"] + box["width"] <= PHONE["viewport"]["width"]
    ARTIFACTS.mkdir(exist_ok=True)
    chat.page.screenshot(path=str(ARTIFACTS / "tools-phone.png"))

    tool.get_by_role("button", name="Approve").tap()
    wait_card(chat, answer_id, "ok")
    chat.wait_status(answer_id, "done")
    assert chat.answer_text(answer_id) == "Paid: the invoice is settled."


def test_cards_show_untrusted_text_as_text_and_every_status_in_words(web: str, tabs) -> None:
    """Arguments, outputs and errors are the model's and the tools': never markup."""
    chat = tabs(web)
    shown = chat.page.evaluate("""async () => {
        const { ToolCards } = await import("/static/tools.js");
        const evil = "<img src=x onerror=window.__pwned=1><script>window.__pwned=2</script>";
        const call = (call_id, status, extra = {}) => ({
          type: "tool", step: 0, call_id, name: `t_${status}`, arguments: { q: evil },
          runs_on: "server", status, output: null, error: null, ...extra });
        const cards = new ToolCards();
        document.body.append(cards.box);
        cards.show({ status: "waiting", parts: [
          call("a", "ok", { output: evil }), call("b", "error", { error: evil }),
          call("c", "denied"), call("d", "in_doubt"), call("e", "running"),
          call("f", "waiting_approval"), call("g", "waiting_output", { runs_on: "client" }),
        ] }, () => undefined);
        const tags = [...cards.box.querySelectorAll("*")].map((node) => node.tagName.toLowerCase());
        const rows = [...cards.box.children].map((card) => [
          card.dataset.status, card.querySelector(".tool-status").textContent,
          card.querySelector(".tool-result").hidden ? null : card.querySelector(".tool-result").textContent,
          !card.querySelector(".tool-actions").hidden,
        ]);
        // This tab's decision: on its way while the answer waits; recorded once it goes on.
        const asked = [call("f", "waiting_approval")];
        const decided = [];
        for (const [status, mine] of [["waiting", "deny"], ["streaming", "deny"]]) {
          cards.show({ status, parts: asked }, () => mine);
          const card = cards.box.firstChild;
          decided.push([card.querySelector(".tool-status").textContent,
                        card.querySelector(".tool-actions").hidden,
                        card.querySelector(".deny").disabled]);
        }
        return { tags: [...new Set(tags)].sort(), rows, decided };
    }""")
    assert shown["tags"] == ["button", "details", "div", "pre", "span", "summary"]
    assert chat.page.evaluate("window.__pwned") is None
    evil = "<img src=x onerror=window.__pwned=1><script>window.__pwned=2</script>"
    assert shown["rows"] == [
        ["ok", "done", evil, False],
        ["error", "failed", f"It failed: {evil}", False],
        ["denied", "denied", "Denied: it did not run.", False],
        [
            "in_doubt",
            "may or may not have happened",
            "The server stopped while this ran, so this action may or may not have happened. "
            "It was not run again, so that it cannot happen twice: check before you ask for it "
            "again.",
            False,
        ],
        ["running", "running…", None, False],
        ["waiting_approval", "needs your approval", None, True],
        ["waiting_output", "waiting for the app", None, False],
    ]
    assert shown["decided"] == [["denying…", False, True], ["denied", True, True]]
