"""The chat page (templates/, static/, webapp/http/pages.py), driven in headless Chromium.

Each test types into the real page, served by gunicorn, answered by the real
worker from the fake model server, and compares what the page shows with
the answer stored in SQL. Answers are made of distinct numbered words, so a
repeated or missing piece changes the text. Answers are held mid-way with the
model server's gate, never by sleeping.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.browser import ChatPage, chromium
from tests.support.model_server import ModelServer
from tests.support.processes import ROOT, wait_for
from tests.support.proxies import (
    AnswerLosingProxy,
    BufferingProxy,
    CuttingProxy,
    SseRefusingProxy,
)
from tests.support.sql import stored_message

ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOT = ARTIFACTS / "chat-mid-answer.png"


def words(prefix: str, count: int) -> list[str]:
    """Chunks "p00 p01 ... pNN": every piece distinct, no Markdown in them."""
    return [f"{prefix}{i:02d} " for i in range(count - 1)] + [f"{prefix}{count - 1:02d}"]


def final_message(app, message_id: str):
    """The stored answer once its generation has finished."""
    from webapp.storage.models import FINAL_STATUSES

    return wait_for(
        lambda: (m := stored_message(app, message_id)) and m.status in FINAL_STATUSES and m,
        timeout=30,
        what="answer stored",
    )


def as_shown(text: str) -> str:
    """An answer's text as the page shows it: Markdown drops a paragraph's trailing spaces."""
    return text.rstrip()


def assert_prefixes(seen: list[str], final: str) -> None:
    """Everything the page showed was a prefix of the final answer: no piece
    was ever shown twice or out of order, even if a later reload repaired it."""
    assert seen and seen[-1] == as_shown(final)
    for text in seen:
        assert final.startswith(text), f"the page showed {text!r}, not a prefix of the answer"


def assert_progressive(seen: list[str], final: str, at_least: int) -> None:
    """The page showed `at_least` distinct partial texts, each a prefix of the final one."""
    partial = [text for text in seen if text and text != final]
    assert len(partial) >= at_least, f"only {len(partial)} intermediate texts: {partial!r}"
    assert_prefixes(seen, final)


def assert_only_whole(seen: list[str], final: str) -> None:
    """Without streaming: the answer showed nothing, then the final text; never a part of it."""
    assert seen and seen[-1] == as_shown(final)
    assert set(seen) <= {"", as_shown(final)}, f"the page showed partial text: {seen!r}"


def snapshot_messages(client: httpx.Client, session_id: str) -> list[tuple[str, str, str]]:
    messages = client.get(f"/api/sessions/{session_id}").json()["messages"]
    return [(m["role"], m["status"], m["content"]) for m in messages]


def streamed_text(client: httpx.Client, session_id: str, message_id: str) -> str:
    """The answer's text so far, as the API's snapshot has it."""
    messages = client.get(f"/api/sessions/{session_id}").json()["messages"]
    return next((m["content"] for m in messages if m["id"] == message_id), "")


def waiting_whole(chat: ChatPage, message_id: str) -> None:
    """Wait until the answer shows the without-streaming waiting state."""
    chat.wait_for(
        """document.querySelector(`li.message[data-message-id="${arg}"]`)
                     ?.dataset.whole === "waiting" """,
        message_id,
    )


# ---- fixtures ----


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as browser:
        yield browser


@pytest.fixture()
def contexts(browser) -> Iterator[Any]:
    """Make browser contexts (separate storage, like separate browsers); all closed after."""
    made: list[Any] = []

    def make() -> Any:
        context = browser.new_context(viewport={"width": 960, "height": 720})
        made.append(context)
        return context

    yield make
    for context in made:
        context.close()


@pytest.fixture()
def open_chat(contexts, worker) -> Iterator[Any]:
    """Open the chat page at a URL in a new context; each page is checked for JS errors."""
    pages: list[ChatPage] = []

    def open_(url: str, context: Any = None, connection: str = "live") -> ChatPage:
        chat = ChatPage(context or contexts()).open(url, connection)
        pages.append(chat)
        return chat

    yield open_
    for chat in pages:
        chat.check_no_errors()


@pytest.fixture()
def buffering_proxy(web: str) -> Iterator[BufferingProxy]:
    proxy = BufferingProxy(web).start()
    yield proxy
    proxy.stop()


@pytest.fixture()
def refusing_proxy(web: str) -> Iterator[SseRefusingProxy]:
    proxy = SseRefusingProxy(web, refuse=1).start()
    yield proxy
    proxy.stop()


@pytest.fixture()
def losing_proxy(web: str) -> Iterator[AnswerLosingProxy]:
    # Chromium itself resends a POST whose answer was empty when it went out
    # on an idle pooled connection (up to twice, with the same headers), so
    # losing three answers makes sure the page's own retry is needed.
    proxy = AnswerLosingProxy(web, lose=3).start()
    yield proxy
    proxy.stop()


@pytest.fixture()
def cutting_proxy(web: str) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(web, cut_after_seconds=1.0).start()
    yield proxy
    proxy.stop()


# ---- the page itself ----


def test_page_forbids_inline_script_and_leaks_no_session(client: httpx.Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "object-src 'none'" in csp
    assert "unsafe-eval" not in csp  # the vendored libraries evaluate no strings (test_static.py)
    assert response.headers["referrer-policy"] == "no-referrer"
    assert '<script type="module" src="/static/chat.js">' in response.text
    assert client.get("/static/chat.js").status_code == 200
    assert client.get("/static/chat.css").status_code == 200


@pytest.mark.browser
def test_answer_appears_progressively_and_ends_as_stored(
    app, web: str, open_chat, model_server: ModelServer, unique: str
) -> None:
    prompt = f"stream to the page {unique}\nsecond line"
    chunks = words("w", 24)
    behavior = model_server.behave(prompt, chunks=chunks, delay_seconds=0.03, gate_after=8)
    chat = open_chat(web)

    # With a mouse and keyboard the box says how to send; Shift+Enter is a new line, not a send.
    placeholder = chat.page.locator("#prompt").get_attribute("placeholder")
    assert "Shift+Enter" in placeholder
    chat.type_prompt(prompt)
    assert chat.page.locator("#prompt").input_value() == prompt
    assert chat.answer_ids() == []
    chat.page.locator("#prompt").press("Enter")
    answer_id = chat.wait_for("document.querySelector('li.message.assistant')?.dataset.messageId")

    chat.wait_text_contains(answer_id, "w07")
    assert chat.page.locator("#stop").is_visible()
    assert chat.page.locator("#send").is_disabled()
    assert chat.page.locator("#model").text_content() == "test-model"
    behavior.gate.set()
    chat.wait_status(answer_id, "done")

    stored = final_message(app, answer_id)
    text = chat.answer_text(answer_id)
    assert text == stored.content == "".join(chunks)
    assert_progressive(chat.seen(answer_id), text, at_least=3)
    assert chat.page.locator("li.message.user .body").text_content() == prompt
    assert not chat.page.locator("#stop").is_visible()
    assert chat.connection() == "live"


@pytest.mark.browser
def test_session_lives_in_the_url_and_storage_and_new_chat_starts_another(
    web: str, contexts, open_chat, unique: str
) -> None:
    context = contexts()
    chat = open_chat(web, context)
    session_id = chat.session_id
    answer_id = chat.send(f"remember me {unique}")
    chat.wait_status(answer_id, "done")

    again = open_chat(web, context)  # no ?session=: localStorage has it
    assert again.session_id == session_id
    again.wait_status(answer_id, "done")

    again.page.get_by_role("button", name="New chat").click()
    again.wait_for("new URLSearchParams(location.search).get('session') !== arg", session_id)
    again.wait_connection("live")
    assert again.page.locator("li.message").count() == 0
    assert again.page.evaluate("localStorage.getItem('relay.session')") == again.session_id


@pytest.mark.browser
def test_markdown_renders_and_a_screenshot_is_taken_mid_answer(
    app, web: str, open_chat, model_server: ModelServer, unique: str
) -> None:
    first = f"show me markdown {unique}"
    model_server.behave(
        first,
        chunks=[
            "## Streaming that survives\n\n",
            "Answers are **stored** before `end` is sent, ",
            "so a reload *never* loses text.\n\n",
            "- SSE first\n",
            "- long-poll behind proxies\n",
            "- snapshot on reload\n\n",
            "```python\n",
            "for event in stream:\n",
            "    show(event)\n",
            "```\n\n",
            "See [the spec](https://html.spec.whatwg.org/#server-sent-events).",
        ],
        delay_seconds=0.01,
    )
    second = f"and keep going {unique}"
    behavior = model_server.behave(
        second,
        chunks=[
            "Reloading this page now would show these words at once, ",
            "then the rest ",
            "as it arrives, ",
            "each piece exactly once. ",
            "The end.",
        ],
        delay_seconds=0.01,
        gate_after=3,
    )
    chat = open_chat(web)

    answer_id = chat.send(first)
    chat.wait_status(answer_id, "done")
    body = chat.answer(answer_id).locator(".body")
    assert body.locator("h4").text_content() == "Streaming that survives"
    assert body.locator("strong").text_content() == "stored"
    assert body.locator("em").text_content() == "never"
    assert body.locator("p code").text_content() == "end"
    assert body.locator("ul li").all_text_contents() == [
        "SSE first",
        "long-poll behind proxies",
        "snapshot on reload",
    ]
    assert body.locator("pre code").text_content() == "for event in stream:\n    show(event)"
    link = body.locator("a")
    assert link.get_attribute("href") == "https://html.spec.whatwg.org/#server-sent-events"
    assert "noopener" in link.get_attribute("rel")

    live_id = chat.send(second)
    chat.wait_text_contains(live_id, "as it arrives")
    ARTIFACTS.mkdir(exist_ok=True)
    chat.page.screenshot(path=str(SCREENSHOT))
    behavior.gate.set()
    chat.wait_status(live_id, "done")
    assert SCREENSHOT.stat().st_size > 0
    assert chat.answer_text(live_id) == final_message(app, live_id).content


@pytest.mark.browser
def test_reload_mid_answer_shows_the_whole_answer_once(
    app, web: str, open_chat, model_server: ModelServer, unique: str
) -> None:
    prompt = f"reload me {unique}"
    chunks = words("r", 30)
    behavior = model_server.behave(prompt, chunks=chunks, delay_seconds=0.01, gate_after=12)
    chat = open_chat(web)
    session_id = chat.session_id
    answer_id = chat.send(prompt)
    chat.wait_text_contains(answer_id, "r11")

    chat.page.reload()
    # The model is still held: what shows now came from the snapshot alone.
    chat.wait_text_contains(answer_id, "r11")
    assert chat.answer_text(answer_id) == as_shown("".join(chunks[:12]))
    assert chat.session_id == session_id
    behavior.gate.set()
    chat.wait_status(answer_id, "done")

    assert chat.answer_text(answer_id) == final_message(app, answer_id).content == "".join(chunks)
    assert_prefixes(chat.seen(answer_id), "".join(chunks))
    assert chat.page.locator("li.message.user").count() == 1


@pytest.mark.browser
def test_two_tabs_on_one_session_end_with_identical_text(
    app, web: str, contexts, open_chat, model_server: ModelServer, unique: str
) -> None:
    prompt = f"two tabs {unique}"
    chunks = words("t", 20)
    # No delay: `start` and the first pieces reach the other tab together, so
    # they arrive while it reloads the snapshot to learn of the new message,
    # and the snapshot already holds them.
    behavior = model_server.behave(prompt, chunks=chunks, delay_seconds=0, gate_after=5)
    first = open_chat(web)
    # Another browser (its own storage) opening the URL: the URL carries the session.
    second = open_chat(first.page.url)
    assert second.session_id == first.session_id

    answer_id = first.send(prompt)
    second.wait_text_contains(answer_id, "t04")  # the other tab follows live ...
    assert second.answer_text(answer_id) == as_shown("".join(chunks[:5]))  # ... each piece once
    assert second.page.locator("li.message.user .body").text_content() == prompt
    behavior.gate.set()
    first.wait_status(answer_id, "done")
    second.wait_status(answer_id, "done")

    stored = final_message(app, answer_id).content
    assert first.answer_text(answer_id) == second.answer_text(answer_id) == stored
    assert stored == "".join(chunks)
    assert_prefixes(first.seen(answer_id), stored)
    assert_prefixes(second.seen(answer_id), stored)


@pytest.mark.browser
def test_buffering_proxy_makes_the_page_long_poll_and_still_stream(
    app, open_chat, buffering_proxy: BufferingProxy, model_server: ModelServer, unique: str
) -> None:
    prompt = f"through a buffering proxy {unique}"
    chunks = words("b", 24)
    behavior = model_server.behave(prompt, chunks=chunks, delay_seconds=0.1, gate_after=3)
    chat = open_chat(buffering_proxy.base_url)  # SSE headers pass, so it looks live at first
    answer_id = chat.send(prompt)

    # The answer is held after 3 pieces; SSE shows none of it; the page notices.
    chat.wait_connection("polling")
    assert buffering_proxy.held_streams >= 1
    chat.wait_text_contains(answer_id, "b02")
    held_text = chat.answer_text(answer_id)
    behavior.gate.set()
    chat.wait_status(answer_id, "done")

    text = chat.answer_text(answer_id)
    assert text == final_message(app, answer_id).content == "".join(chunks)
    after_gate = [t for t in chat.seen(answer_id) if len(t) > len(held_text)]
    assert_progressive(after_gate, text, at_least=3)
    assert chat.connection() == "polling"


@pytest.mark.browser
def test_connection_cutting_proxy_still_gives_the_whole_answer_once(
    app, open_chat, cutting_proxy: CuttingProxy, model_server: ModelServer, unique: str
) -> None:
    prompt = f"through a cutting proxy {unique}"
    chunks = words("c", 50)
    model_server.behave(prompt, chunks=chunks, delay_seconds=0.08)
    chat = open_chat(cutting_proxy.base_url)
    answer_id = chat.send(prompt)
    chat.wait_status(answer_id, "done", timeout_ms=60_000)

    assert chat.answer_text(answer_id) == final_message(app, answer_id).content == "".join(chunks)
    assert_prefixes(chat.seen(answer_id), "".join(chunks))
    assert cutting_proxy.cuts >= 2


@pytest.mark.browser
@pytest.mark.slow
def test_refused_sse_means_polling_then_sse_again_later(
    app, open_chat, refusing_proxy: SseRefusingProxy, model_server: ModelServer, unique: str
) -> None:
    prompt = f"refused sse {unique}"
    chunks = words("p", 30)
    model_server.behave(prompt, chunks=chunks, delay_seconds=0.03)
    # A 503 closes the EventSource for good: the page long-polls at once ...
    chat = open_chat(refusing_proxy.base_url, connection="polling")
    # ... and tries SSE again later (the proxy lets the second one through).
    wait_for(lambda: refusing_proxy.sse_requests >= 2, timeout=60, what="SSE tried again")
    answer_id = chat.send(prompt)
    chat.wait_connection("live")  # it kept up with polling, so it is used again
    chat.wait_status(answer_id, "done")
    text = chat.answer_text(answer_id)
    assert text == final_message(app, answer_id).content == "".join(chunks)
    assert_prefixes(chat.seen(answer_id), text)


@pytest.mark.browser
def test_model_output_runs_no_script(
    app, web: str, open_chat, model_server: ModelServer, unique: str
) -> None:
    prompt = f"<img src=x onerror=\"window.__pwned='prompt'\"> {unique}"
    model_server.behave(
        prompt,
        chunks=[
            "Text <script>window.__pwned = 'script'</script> then ",
            "<img src=x onerror=\"window.__pwned='img'\"> and ",
            "[click me](javascript:window.__pwned='link') and ",
            "[data](data:text/html,<script>window.__pwned='data'</script>) and ",
            "[fine](https://example.com/ok)\n\n",
            "<iframe src=\"javascript:window.__pwned='iframe'\"></iframe>\n\n",
            "**<svg onload=\"window.__pwned='svg'\">**",
        ],
        delay_seconds=0.01,
    )
    chat = open_chat(web)
    answer_id = chat.send(prompt)
    chat.wait_status(answer_id, "done")

    messages = chat.page.locator("#messages")
    for tag in ("script", "img", "iframe", "svg", "object", "embed"):
        assert messages.locator(tag).count() == 0, f"a <{tag}> element was created"
    hrefs = messages.locator("a").evaluate_all("(els) => els.map((a) => a.href)")
    assert hrefs == ["https://example.com/ok"]
    text = chat.answer_text(answer_id)
    assert "<script>window.__pwned = 'script'</script>" in text
    assert "click me" in text and "<img src=x" in text
    assert "<img src=x" in chat.page.locator("li.message.user .body").text_content()
    assert chat.page.evaluate("window.__pwned") is None
    assert chat.violations() == []


@pytest.mark.browser
def test_stop_cancels_the_answer_and_shows_it_stopped(
    app, web: str, open_chat, model_server: ModelServer, unique: str
) -> None:
    prompt = f"stop me {unique}"
    model_server.behave(prompt, chunks=words("s", 400), delay_seconds=0.05)
    chat = open_chat(web)
    answer_id = chat.send(prompt)
    chat.wait_text_contains(answer_id, "s03")
    chat.page.locator("#stop").click()
    chat.wait_status(answer_id, "cancelled")

    stored = final_message(app, answer_id)
    assert (stored.status, stored.finish_reason) == ("cancelled", "cancelled")
    assert chat.answer_text(answer_id) == as_shown(stored.content)
    assert "s399" not in stored.content
    assert chat.answer(answer_id).locator(".badge").text_content() == "stopped"
    assert not chat.page.locator("#stop").is_visible()
    assert chat.page.locator("#send").is_enabled()


@pytest.mark.browser
def test_error_is_shown_on_the_answer_and_retry_asks_again(
    app, web: str, open_chat, model_server: ModelServer, unique: str
) -> None:
    prompt = f"fail once {unique}"
    chunks = words("e", 6)
    # 400 is not worth retrying for the worker: the first answer fails for good.
    model_server.behave(prompt, chunks=chunks, fail_status=400, fail_times=1)
    chat = open_chat(web)
    failed_id = chat.send(prompt)
    chat.wait_status(failed_id, "error")
    failed = chat.answer(failed_id)
    # A sentence that says what to do, then the server's own words.
    assert failed.locator(".failure .advice").text_content() == (
        "The model could not answer. Press Retry to ask again."
    )
    assert "HTTP 400" in failed.locator(".failure .detail").text_content()
    assert final_message(app, failed_id).status == "error"

    failed.get_by_role("button", name="Retry").click()
    retry_id = chat.wait_for("""(() => {
        const ids = [...document.querySelectorAll("li.message.assistant")]
          .map((li) => li.dataset.messageId);
        return ids.length === 2 && ids[1];
    })()""")
    chat.wait_status(retry_id, "done")
    assert chat.answer_text(retry_id) == final_message(app, retry_id).content == "".join(chunks)
    assert chat.page.locator("li.message.user .body").all_text_contents() == [prompt, prompt]


@pytest.mark.browser
@pytest.mark.slow
def test_worker_lost_mid_answer_page_shows_only_the_second_attempt(
    private_stack, contexts, model_server: ModelServer, unique: str
) -> None:
    stack = private_stack(JOB_LEASE_SECONDS="1.5")
    web = stack.web()
    first_worker = stack.worker()
    prompt = f"lose the worker {unique}"
    chunks = words("k", 20)
    behavior = model_server.behave(prompt, chunks=chunks, delay_seconds=0.005, gate_after=5)
    chat = ChatPage(contexts()).open(web)
    answer_id = chat.send(prompt)
    chat.wait_text_contains(answer_id, "k04")

    first_worker.kill()
    behavior.gate.set()
    stack.worker()  # takes the job over as attempt 2, which starts the answer afresh
    chat.wait_status(answer_id, "done")

    text = chat.answer_text(answer_id)
    assert text == final_message(stack.app, answer_id).content == "".join(chunks)
    # Attempt 1's text is a prefix of the answer too: had the page kept it when
    # attempt 2 started, it would have shown "k00 ... k04 k00 ...".
    assert_prefixes(chat.seen(answer_id), text)
    chat.check_no_errors()


@pytest.mark.browser
def test_hidden_tab_catches_up_when_shown(
    app, web: str, open_chat, model_server: ModelServer, unique: str
) -> None:
    prompt = f"hide the tab {unique}"
    chunks = words("h", 20)
    behavior = model_server.behave(prompt, chunks=chunks, delay_seconds=0.01, gate_after=5)
    chat = open_chat(web)
    answer_id = chat.send(prompt)
    chat.wait_text_contains(answer_id, "h04")

    # Headless tabs are always visible; make the page believe it was hidden.
    chat.page.evaluate(
        """(hidden) => {
        const values = [["hidden", hidden], ["visibilityState", hidden ? "hidden" : "visible"]];
        for (const [name, value] of values)
          Object.defineProperty(document, name, { configurable: true, get: () => value });
        document.dispatchEvent(new Event("visibilitychange"));
    }""",
        True,
    )
    behavior.gate.set()
    stored = final_message(app, answer_id).content
    assert chat.answer_text(answer_id) != stored  # a hidden tab does not render ...
    chat.page.evaluate("""() => {
        delete document.hidden; delete document.visibilityState;
        document.dispatchEvent(new Event("visibilitychange"));
    }""")
    chat.wait_status(answer_id, "done")  # ... and shows everything once it is back
    assert chat.answer_text(answer_id) == stored == "".join(chunks)
    assert_prefixes(chat.seen(answer_id), stored)


# ---- without streaming (issue 7) ----


@pytest.mark.browser
def test_without_streaming_shows_only_the_whole_answer_and_the_choice_survives_a_reload(
    app, web: str, client: httpx.Client, open_chat, model_server: ModelServer, unique: str
) -> None:
    prompt = f"whole answers only {unique}"
    chunks = words("n", 24)
    behavior = model_server.behave(prompt, chunks=chunks, delay_seconds=0.01, gate_after=8)
    chat = open_chat(web)
    waits: list[str] = []
    chat.page.on("request", lambda request: "?wait=" in request.url and waits.append(request.url))
    chat.page.get_by_label("Without streaming").check()
    assert chat.page.evaluate("localStorage.getItem('relay.withoutStreaming')") == "1"
    # Another browser on the same session: its own storage, so it streams as usual.
    watcher = open_chat(chat.page.url)

    answer_id = chat.send(prompt)
    watcher.wait_text_contains(answer_id, "n07")  # eight pieces are in the stream ...
    waiting_whole(chat, answer_id)  # ... and none is shown here
    badge = chat.answer(answer_id).locator(".badge")
    assert badge.text_content() == "waiting for the whole answer…"
    assert chat.answer_text(answer_id) == ""
    assert chat.page.locator("#stop").is_visible()
    assert chat.page.locator("#send").is_disabled()

    # The choice survives a reload, and the snapshot's text so far stays hidden.
    chat.page.reload()
    chat.wait_connection("live")
    assert chat.page.locator("#whole-answers").is_checked()
    waiting_whole(chat, answer_id)
    assert streamed_text(client, chat.session_id, answer_id) == "".join(chunks[:8])
    assert chat.answer_text(answer_id) == ""
    behavior.gate.set()
    chat.wait_status(answer_id, "done")

    stored = final_message(app, answer_id).content
    assert stored == "".join(chunks)
    assert chat.answer_text(answer_id) == stored
    assert_only_whole(chat.seen(answer_id), stored)
    assert any(f"/messages/{answer_id}?wait=25" in url for url in waits)
    assert chat.answer(answer_id).locator(".badge").count() == 0
    # The other tab followed the answer piece by piece.
    watcher.wait_status(answer_id, "done")
    assert_progressive(watcher.seen(answer_id), stored, at_least=3)


@pytest.mark.browser
def test_without_streaming_stop_still_cancels_and_shows_what_was_stored(
    app, web: str, client: httpx.Client, open_chat, model_server: ModelServer, unique: str
) -> None:
    prompt = f"stop me whole {unique}"
    model_server.behave(prompt, chunks=words("q", 400), delay_seconds=0.05)
    chat = open_chat(web)
    chat.page.get_by_label("Without streaming").check()
    answer_id = chat.send(prompt)
    wait_for(
        lambda: "q03" in streamed_text(client, chat.session_id, answer_id),
        timeout=30,
        what="the answer to be under way",
    )
    waiting_whole(chat, answer_id)
    chat.page.locator("#stop").click()
    chat.wait_status(answer_id, "cancelled")

    stored = final_message(app, answer_id)
    assert (stored.status, stored.finish_reason) == ("cancelled", "cancelled")
    assert "q03" in stored.content and "q399" not in stored.content
    assert chat.answer_text(answer_id) == as_shown(stored.content)
    assert_only_whole(chat.seen(answer_id), stored.content)
    assert chat.answer(answer_id).locator(".badge").text_content() == "stopped"
    assert chat.page.locator("#send").is_enabled()


@pytest.mark.browser
def test_turning_streaming_back_on_mid_answer_streams_the_rest(
    app, web: str, client: httpx.Client, open_chat, model_server: ModelServer, unique: str
) -> None:
    prompt = f"change my mind {unique}"
    chunks = words("m", 20)
    behavior = model_server.behave(prompt, chunks=chunks, delay_seconds=0.01, gate_after=6)
    chat = open_chat(web)
    toggle = chat.page.get_by_label("Without streaming")
    toggle.check()
    answer_id = chat.send(prompt)
    wait_for(
        lambda: "m05" in streamed_text(client, chat.session_id, answer_id),
        timeout=30,
        what="six pieces in the stream",
    )
    waiting_whole(chat, answer_id)

    toggle.uncheck()  # the text so far appears at once, and the rest streams
    chat.wait_text_contains(answer_id, "m05")
    assert chat.answer_text(answer_id) == as_shown("".join(chunks[:6]))
    assert chat.page.evaluate("localStorage.getItem('relay.withoutStreaming')") == "0"
    behavior.gate.set()
    chat.wait_status(answer_id, "done")
    stored = final_message(app, answer_id).content
    assert chat.answer_text(answer_id) == stored == "".join(chunks)
    assert_prefixes(chat.seen(answer_id), stored)


# ---- sending exactly once ----


@pytest.mark.browser
def test_a_lost_answer_to_a_post_is_posted_again_and_asks_once(
    app,
    client: httpx.Client,
    open_chat,
    losing_proxy: AnswerLosingProxy,
    model_server: ModelServer,
    unique: str,
) -> None:
    prompt = f"lost on the way back {unique}"
    chunks = words("l", 10)
    model_server.behave(prompt, chunks=chunks, delay_seconds=0.01)
    chat = open_chat(losing_proxy.base_url)
    keys: list[str | None] = []
    chat.page.on(
        "request",
        lambda request: (
            request.method == "POST"
            and request.url.endswith("/messages")
            and keys.append(request.headers.get("idempotency-key"))
        ),
    )

    answer_id = chat.send(prompt)
    chat.wait_status(answer_id, "done")
    chat.wait_for("!document.getElementById('send').disabled")  # the post has an answer
    # The proxy took the prompt upstream three times and lost each answer;
    # the page posted again, always under the same key.
    assert (losing_proxy.lost, losing_proxy.prompt_posts) == (3, 4)
    assert len(keys) >= 2 and len(set(keys)) == 1
    assert re.fullmatch(r"[0-9a-f-]{36}", keys[0] or "")
    assert snapshot_messages(client, chat.session_id) == [
        ("user", "done", prompt),
        ("assistant", "done", "".join(chunks)),
    ]
    assert len(model_server.calls_for(prompt)) == 1
    assert chat.page.locator("li.message.user").count() == 1
    assert chat.answer_ids() == [answer_id]
    assert chat.answer_text(answer_id) == final_message(app, answer_id).content
    chat.wait_for("document.getElementById('notice').hidden")

    # The next prompt gets a key of its own.
    second = f"and another {unique}"
    second_id = chat.send(second)
    chat.wait_status(second_id, "done")
    assert len(set(keys)) == 2
    assert [m[0] for m in snapshot_messages(client, chat.session_id)] == ["user", "assistant"] * 2


# ---- the page's modules, run in the browser ----


@pytest.mark.browser
def test_markdown_renderer_builds_only_safe_elements(web: str, open_chat) -> None:
    chat = open_chat(web)
    cases = {
        "plain": "<p>plain</p>",
        "a\nb\n\nc": "<p>a<br>b</p><p>c</p>",
        "**b** *i* _i_ snake_case_name `c*o*de`": "<p><strong>b</strong> <em>i</em> <em>i</em> snake_case_name <code>c*o*de</code></p>",
        "1. one\n2. two": "<ol><li>one</li><li>two</li></ol>",
        "> quoted": "<blockquote><p>quoted</p></blockquote>",
        "```\n<b>x</b>": '<div class="code-block"><button type="button" class="copy" '
        'aria-label="Copy code"></button><pre><code>&lt;b&gt;x&lt;/b&gt;</code></pre></div>',  # unclosed while streaming
        "[x](javascript:alert(1))": "<p>x</p>",
        "[x](JaVaScRiPt:alert(1))": "<p>x</p>",
        "[x](/relative)": "<p>x</p>",
        "[m](mailto:a@b.example)": '<p><a href="mailto:a@b.example" rel="noopener noreferrer nofollow" '
        'target="_blank">m</a></p>',
        "<b onmouseover=x>hi</b>": "<p>&lt;b onmouseover=x&gt;hi&lt;/b&gt;</p>",
    }
    rendered = chat.page.evaluate(
        """async (cases) => {
        const { renderMarkdown } = await import("/static/markdown.js");
        const out = {};
        for (const source of cases) {
          const box = document.createElement("div");
          box.append(renderMarkdown(source));
          out[source] = box.innerHTML;
        }
        return out;
    }""",
        list(cases),
    )
    assert rendered == cases


@pytest.mark.browser
def test_events_fold_into_messages(web: str, open_chat) -> None:
    """The page's answer model is the client's (served as /static/client/): a higher
    `attempt` drops the text so far; `end` checks `text_length` in code points."""
    chat = open_chat(web)
    result = chat.page.evaluate("""async () => {
        const { applyEvent, idAfter, toModel } = await import("/static/client/index.js");
        const m = toModel({ id: "m1", role: "assistant", content: "", status: "queued" });
        const fold = (event, data) => applyEvent(m, { event, data: { message_id: "m1", ...data } });
        const log = [];
        fold("start", { model: "x", attempt: 1 });
        fold("chunk", { text: "half an ans" });
        log.push(m.content);
        fold("start", { model: "x", attempt: 2 });
        log.push(m.content);
        fold("chunk", { text: "whole ✓ 😀" });
        log.push(fold("end", { finish_reason: "stop", text_length: 9 }), m.status);
        log.push(fold("end", { finish_reason: "stop", text_length: 10 }));
        log.push(idAfter("1700000000000-10", "1700000000000-9"),
                 idAfter("18446744073709551615-0", "18446744073709551614-99"));
        return log;
    }""")
    assert result == ["half an ans", "", "ok", "done", "mismatch", True, True]


@pytest.mark.browser
def test_each_event_is_applied_once_whichever_way_it_comes(web: str, open_chat) -> None:
    """SSE, a probe, an EventSource reconnect from its own older id: overlapping deliveries
    into the client's Session, as the page holds its conversation."""
    chat = open_chat(web)
    result = chat.page.evaluate("""async () => {
        const { Session, toModel } = await import("/static/client/index.js");
        const m = toModel({ id: "m1", role: "assistant", content: "", status: "queued" });
        const session = new Session({ auth: { state: "ok" } }, "s1");
        Object.assign(session, { cursor: "100-0", messages: [m], byId: new Map([["m1", m]]) });
        const ev = (id, event, data) => ({ id, event, data: { message_id: "m1", ...data } });
        const start = ev("100-1", "start", { model: "x", attempt: 1 });
        const c = (id, text) => ev(id, "chunk", { text });
        const sse = [start, c("100-2", "a"), c("100-3", "b")];
        const probe = [c("100-3", "b"), c("101-0", "c"), c("101-1", "d")];
        const reconnect = [c("100-3", "b"), c("101-0", "c"), c("101-1", "d"), c("102-0", "e")];
        const noId = { event: "chunk", data: { message_id: "m1", text: "no id" } };
        const stale = [c("100-0", "z"), c("99-9", "y"), noId];
        const outcomes = [...sse, ...probe, ...reconnect, ...stale]
          .map((e) => session.receive(e));
        return { text: m.content, cursor: session.cursor, outcomes };
    }""")
    assert result["text"] == "abcde"
    assert result["cursor"] == "102-0"
    assert result["outcomes"] == (
        [True] * 3 + [False, True, True] + [False] * 3 + [True] + [False] * 3
    )
