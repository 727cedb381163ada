"""The chat page's Thinking block (issue 16), driven in headless Chromium.

A reasoning model's reasoning streams into a `<details>` above the answer:
open while it streams, closed once the answer starts, the reader's own
choice kept for that answer; a reload mid-reasoning resumes it exactly, over
SSE and over the long-poll fallback. The model is held with its gate, never
by sleeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import ChatPage, chromium
from tests.support.model_server import ModelServer
from tests.support.proxies import SseRefusingProxy
from tests.test_page import final_message, words

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("worker")]

THINKING = """(() => {
  const li = document.querySelector(`li.message[data-message-id="${arg}"]`);
  const block = li && li.querySelector("details.thinking");
  return block && {
    open: block.open,
    label: block.querySelector("summary").textContent,
    text: block.querySelector(".reasoning").textContent,
    answer: li.querySelector(".body").textContent,
  };
})()"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as browser:
        yield browser


@pytest.fixture()
def open_chat(browser) -> Iterator[Any]:
    """Open the chat page at a URL in a context of its own; checked for JS errors after."""
    made: list[tuple[Any, ChatPage]] = []

    def open_(url: str, connection: str = "live") -> ChatPage:
        context = browser.new_context(viewport={"width": 960, "height": 720})
        chat = ChatPage(context).open(url, connection)
        made.append((context, chat))
        return chat

    yield open_
    for context, chat in made:
        chat.check_no_errors()
        assert not chat.violations()
        context.close()


@pytest.fixture()
def polling_only(web: str) -> Iterator[SseRefusingProxy]:
    """A proxy that refuses every SSE request, so the page long-polls throughout."""
    proxy = SseRefusingProxy(web, refuse=10_000).start()
    yield proxy
    proxy.stop()


def thinking(chat: ChatPage, answer_id: str) -> dict[str, Any]:
    return chat.page.evaluate(f"(arg) => {THINKING}", answer_id)


def wait_thinking(chat: ChatPage, answer_id: str, condition: str) -> dict[str, Any]:
    """The Thinking block's state once `condition` (over `t`, that state) holds."""
    return chat.wait_for(
        f"(() => {{ const t = {THINKING}; return t && ({condition}) && t; }})()", answer_id
    )


def click_summary(chat: ChatPage, answer_id: str) -> None:
    chat.answer(answer_id).locator("details.thinking summary").click()


def run_thinking_answer(app, chat: ChatPage, model_server: ModelServer, prompt: str) -> None:
    """Reasoning streams open, survives a reload mid-way, and closes when the answer starts."""
    thoughts, chunks = words("t", 20), words("a", 8)
    behavior = model_server.behave(
        prompt, reasoning=thoughts, chunks=chunks, gate_after=8, delay_seconds=0.05
    )
    answer_id = chat.send(prompt)

    held = wait_thinking(chat, answer_id, "t.text.includes('t07')")
    assert held["open"] and held["label"] == "Thinking…" and held["answer"] == ""
    chat.page.reload()
    # The model is still held: the reasoning shown now came from the snapshot alone.
    reloaded = wait_thinking(chat, answer_id, "t.text.includes('t07')")
    assert reloaded == held
    assert reloaded["text"] == "".join(thoughts[:8])

    behavior.gate.set()
    chat.wait_status(answer_id, "done")
    done = thinking(chat, answer_id)
    stored = final_message(app, answer_id)
    assert done["text"] == stored.reasoning == "".join(thoughts)
    assert chat.answer_text(answer_id) == stored.content == "".join(chunks)
    assert not done["open"], "the block closes once the answer starts"
    assert done["label"] != "Thinking…"
    assert chat.page.locator("li.message.user").count() == 1


def test_thinking_streams_collapses_and_survives_a_reload(
    app, web: str, open_chat, model_server: ModelServer, unique: str
) -> None:
    chat = open_chat(web)
    run_thinking_answer(app, chat, model_server, f"think on the page {unique}")


def test_thinking_survives_a_reload_over_long_polling(
    app, open_chat, polling_only: SseRefusingProxy, model_server: ModelServer, unique: str
) -> None:
    chat = open_chat(polling_only.base_url, connection="polling")
    run_thinking_answer(app, chat, model_server, f"think while polling {unique}")
    assert chat.connection() == "polling"


def test_the_readers_choice_is_kept_for_that_answer(
    web: str, open_chat, model_server: ModelServer, unique: str
) -> None:
    prompt = f"choose to close {unique}"
    thoughts, chunks = words("c", 20), words("d", 4)
    behavior = model_server.behave(
        prompt, reasoning=thoughts, chunks=chunks, gate_after=4, delay_seconds=0.1
    )
    chat = open_chat(web)
    answer_id = chat.send(prompt)
    wait_thinking(chat, answer_id, "t.open && t.text.includes('c03')")

    click_summary(chat, answer_id)  # closed while it still thinks
    behavior.gate.set()
    # Each new piece re-renders the answer; the reader's choice holds through them.
    later = wait_thinking(chat, answer_id, "t.text.includes('c08')")
    assert not later["open"] and later["answer"] == ""
    chat.wait_status(answer_id, "done")

    click_summary(chat, answer_id)  # opened after the answer
    assert thinking(chat, answer_id)["open"]
    chat.page.reload()
    kept = wait_thinking(chat, answer_id, "t.text.includes('c19')")
    assert kept["open"], "the choice outlives a reload of the tab"
