"""The chat page on a phone (issue 13): 375 x 740, a touch screen, in headless Chromium.

What a person on a phone needs: the header on one line, the composer in
reach and working by touch (Enter is a new line there, Send sends), a chat
link that cannot be opened saying so, and errors that say what to do.
The streaming test also writes the phone screenshots of docs/chat-page.md to
test-artifacts/ (copied to docs/ by hand when the page's look changes).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import PHONE, ChatPage, chromium
from tests.support.model_server import ModelServer
from tests.support.processes import ROOT
from tests.test_page import assert_progressive, final_message

ARTIFACTS = ROOT / "test-artifacts"
WIDTH, HEIGHT = PHONE["viewport"]["width"], PHONE["viewport"]["height"]
HEADER_CONTROLS = ["header h1", "#connection", "label.toggle", "#new-chat"]
# The model's answer in the screenshots: Markdown, in distinct pieces; the
# prompt is this module's own, so no other test's model behaviour meets it.
SCREENSHOT_PROMPT = "How does relay keep an answer when my connection drops?"
SCREENSHOT_CHUNKS = [
    "relay writes every piece of an answer to a **Redis stream** ",
    "before it reaches you, so a dropped connection loses nothing:\n\n",
    "1. Each event has an id that only grows.\n",
    "2. The page remembers the last id it showed.\n",
    "3. Back online, it asks for what came after.\n\n",
    "Behind a proxy that holds the stream, it switches to `long-poll` ",
    "and tries SSE again later. ",
    "A reload shows the text so far at once, then the rest as it arrives.\n\n",
    "```\nGET /api/sessions/{sid}/events\nLast-Event-ID: 1718000000000-3\n```\n\n",
    "Nothing is shown twice, and nothing is skipped. ",
    "The same holds when you switch apps and come back: ",
    "the page catches up from its last id.",
]
HELD_AFTER = 7  # pieces shown in the mid-answer screenshot


# ---- fixtures ----


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as browser:
        yield browser


@pytest.fixture()
def phone(browser) -> Iterator[Any]:
    """Open pages in new phone contexts; each is checked for JS errors, all closed after."""
    made: list[tuple[Any, ChatPage]] = []

    def open_(url: str | None = None) -> ChatPage:
        context = browser.new_context(**PHONE)
        chat = ChatPage(context)
        made.append((context, chat))
        if url:
            chat.open(url)
        return chat

    yield open_
    for context, chat in made:
        chat.check_no_errors()
        context.close()


# ---- what the page looks like at 375 x 740 ----


def boxes(chat: ChatPage, selectors: list[str]) -> dict[str, dict[str, float]]:
    found = {selector: chat.page.locator(selector).bounding_box() for selector in selectors}
    missing = [selector for selector, box in found.items() if not box or not box["width"]]
    assert not missing, f"not shown: {missing}"
    return found


def assert_inside_viewport(found: dict[str, dict[str, float]]) -> None:
    for selector, box in found.items():
        assert box["x"] >= 0 and box["x"] + box["width"] <= WIDTH, f"{selector} sticks out: {box}"
        assert box["y"] >= 0 and box["y"] + box["height"] <= HEIGHT, f"{selector} off screen: {box}"


def assert_header_on_one_line(chat: ChatPage) -> None:
    """The header's controls side by side in one row, each label on one line, nothing cut off."""
    found = boxes(chat, HEADER_CONTROLS)
    assert_inside_viewport(found)
    for name, box in found.items():
        for other, other_box in found.items():
            middle = other_box["y"] + other_box["height"] / 2
            assert box["y"] <= middle <= box["y"] + box["height"], f"{other} is not beside {name}"
    lefts = [found[selector]["x"] for selector in HEADER_CONTROLS]
    assert lefts == sorted(lefts)
    # One line of text each: a label that wrapped would be two line-heights tall.
    lines = chat.page.evaluate(
        """(selectors) => selectors.map((selector) => {
             const el = document.querySelector(selector);
             const range = document.createRange();
             range.selectNodeContents(el);
             const style = getComputedStyle(el);
             const line = parseFloat(style.lineHeight) || 1.2 * parseFloat(style.fontSize);
             return Math.round(range.getBoundingClientRect().height / line);
           })""",
        ["header h1", "label.toggle", "#new-chat"],
    )
    assert lines == [1, 1, 1], f"lines of text per control: {lines}"
    assert chat.page.evaluate("document.scrollingElement.scrollWidth") <= WIDTH


def assert_composer_usable(chat: ChatPage, *buttons: str) -> None:
    """The box and its buttons on screen, big enough for a finger, and not covered by anything."""
    found = boxes(chat, ["#prompt", *buttons])
    assert_inside_viewport(found)
    assert found["#prompt"]["width"] >= WIDTH / 2
    for button in buttons:
        assert found[button]["height"] >= 44 and found[button]["width"] >= 44, button
    covered = chat.page.evaluate(
        """(selectors) => selectors.filter((selector) => {
             const box = document.querySelector(selector).getBoundingClientRect();
             const top = document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2);
             return !top?.closest(selector);
           })""",
        ["#prompt", *buttons],
    )
    assert covered == []


def screenshot(chat: ChatPage, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    chat.page.screenshot(path=str(path))
    assert path.stat().st_size > 0


# ---- tests ----


@pytest.mark.browser
def test_phone_header_fits_enter_is_a_new_line_and_an_answer_streams(
    app, web: str, worker, phone, model_server: ModelServer
) -> None:
    behavior = model_server.behave(
        SCREENSHOT_PROMPT, chunks=SCREENSHOT_CHUNKS, delay_seconds=0.03, gate_after=HELD_AFTER
    )
    chat = phone(web)
    assert chat.page.evaluate("matchMedia('(pointer: coarse)').matches")
    assert_header_on_one_line(chat)
    # The longest connection label still fits (on a phone the badge is its dot).
    chat.page.evaluate("""() => {
        const badge = document.getElementById("connection");
        badge.dataset.state = "reconnecting";
        badge.textContent = "reconnecting…";
    }""")
    assert_header_on_one_line(chat)
    assert_composer_usable(chat, "#send")

    # No keyboard hint on a touch screen, and Enter is a new line there.
    box = chat.page.locator("#prompt")
    placeholder = box.get_attribute("placeholder")
    assert placeholder == "Message relay"
    box.tap()
    box.press_sequentially("first line")
    box.press("Enter")
    box.press_sequentially("second line")
    assert box.input_value() == "first line\nsecond line"
    assert chat.answer_ids() == []

    # Send is a tap; the answer streams in, with Stop in reach meanwhile.
    answer_id = chat.tap_send(SCREENSHOT_PROMPT)
    chat.wait_text_contains(answer_id, "Back online")
    chat.wait_connection("live")
    # Send cannot be used meanwhile: on a phone Stop takes its place.
    assert chat.page.locator("#send").is_disabled() and chat.page.locator("#send").is_hidden()
    assert_composer_usable(chat, "#stop")
    assert_header_on_one_line(chat)
    screenshot(chat, "phone-mid-answer.png")
    behavior.gate.set()
    chat.wait_status(answer_id, "done")

    stored = final_message(app, answer_id).content
    text = chat.answer_text(answer_id)
    assert stored == "".join(SCREENSHOT_CHUNKS)
    assert text == chat.page.evaluate(
        """(source) => {
             return import("/static/markdown.js").then(({ renderMarkdown }) => {
               const box = document.createElement("div");
               box.append(renderMarkdown(source));
               return box.textContent;
             });
           }""",
        stored,
    )
    assert_progressive(chat.seen(answer_id), text, at_least=3)
    # The answer is taller than the screen; the composer stays pinned and works.
    assert chat.page.evaluate("document.scrollingElement.scrollHeight") > HEIGHT
    assert_composer_usable(chat, "#send")
    assert chat.page.locator("#notice").is_hidden()
    screenshot(chat, "phone-finished.png")
    box.tap()
    box.press_sequentially("thanks")
    assert box.input_value() == "thanks"
    assert chat.page.locator("#send").is_enabled()


@pytest.mark.browser
def test_phone_chat_link_that_opens_no_chat_says_so(
    web: str, worker, phone, client, unique: str
) -> None:
    chat = phone()
    page = chat.page
    created: list[str] = []
    page.on(
        "request",
        lambda r: r.method == "POST" and r.url.endswith("/api/sessions") and created.append(r.url),
    )

    # Malformed (cut short when copied): said at once, nothing created, nothing forgotten.
    page.goto(f"{web}/?session=abc")
    assert chat.notice() == (
        "This chat link is not valid. Check that you copied all of it, or start a new chat."
    )
    assert page.locator("#composer").is_hidden()
    assert page.locator("#empty").is_hidden()
    assert page.get_by_role("button", name="Start a new chat").is_visible()
    assert created == []
    assert page.evaluate("localStorage.getItem('relay.session')") is None
    assert chat.session_id == "abc"

    # Well formed, but no such chat (deleted, or from another server).
    missing = f"gone-{unique}"
    assert client.get(f"/api/sessions/{missing}").status_code == 404
    page.goto(f"{web}/?session={missing}")
    assert chat.notice() == "This chat link is not valid or the chat no longer exists."
    assert page.locator("#composer").is_hidden()
    assert created == []
    assert chat.session_id == missing

    # The button starts a new chat that works.
    page.get_by_role("button", name="Start a new chat").tap()
    chat.wait_for("new URLSearchParams(location.search).get('session') !== arg", missing)
    chat.wait_connection("live")
    assert len(created) == 1
    assert page.locator("#notice").is_hidden()
    assert_composer_usable(chat, "#send")
    assert page.evaluate("localStorage.getItem('relay.session')") == chat.session_id

    # No link, and the chat this browser remembered is gone: a new one, quietly explained.
    page.evaluate("(sid) => localStorage.setItem('relay.session', sid)", missing)
    page.goto(web)
    chat.wait_connection("live")
    assert chat.notice() == "Your last chat no longer exists; this is a new one."
    assert chat.session_id not in (missing, None)
    assert page.locator("#composer").is_visible()


@pytest.mark.browser
def test_phone_too_long_a_message_says_to_shorten_it(web: str, worker, phone) -> None:
    chat = phone(web)
    too_long = "x" * 16_001  # MAX_PROMPT_CHARS is 16000 by default
    chat.page.locator("#prompt").fill(too_long)
    chat.page.locator("#send").tap()
    assert (
        chat.notice() == "Your message is too long (16,001 characters). Shorten it and send again."
    )
    assert chat.page.locator("#prompt").input_value() == too_long  # kept, to be shortened
    assert chat.answer_ids() == []
    assert_composer_usable(chat, "#send")


@pytest.mark.browser
def test_phone_rate_limit_says_how_long_to_wait(
    private_stack, phone, model_server: ModelServer, unique: str
) -> None:
    stack = private_stack(RATE_LIMIT="1/hour")
    web = stack.web()
    stack.worker()
    chat = phone(web)
    # One prompt an hour: the second is refused, or the third if an hour
    # began between the first two.
    refused = None
    for attempt in range(3):
        prompt = f"rate limited {attempt} {unique}"
        model_server.behave(prompt, chunks=["fine."], delay_seconds=0)
        before = chat.answer_ids()
        chat.page.locator("#prompt").fill(prompt)
        chat.page.locator("#send").tap()
        outcome = chat.wait_for(
            """!document.getElementById("notice").hidden
               || document.querySelectorAll("li.message.assistant").length > arg""",
            len(before),
        )
        assert outcome
        if chat.page.locator("#notice").is_visible():
            refused = prompt
            break
        chat.wait_status(chat.new_answer(before), "done")
    assert refused, "no prompt was refused"

    sentence = chat.notice()
    assert re.fullmatch(
        r"You are sending messages too quickly\. Wait \d+ (seconds?|minutes) and send again\.",
        sentence,
    ), sentence
    assert chat.page.locator("#send").is_disabled()  # until the wait is over
    assert chat.page.locator("#prompt").input_value() == refused


@pytest.mark.browser
def test_phone_offline_says_to_check_the_connection_and_catches_up(
    app, web: str, worker, phone, model_server: ModelServer, unique: str
) -> None:
    chat = phone(web)
    context = chat.page.context
    context.set_offline(True)
    assert chat.notice() == (
        "You are offline. Check your connection; the chat catches up when it is back."
    )
    assert chat.connection() == "offline"

    # A message sent while offline stays in the box, with what to do.
    prompt = f"sent from a tunnel {unique}"
    model_server.behave(prompt, chunks=["out ", "of ", "the ", "tunnel"], delay_seconds=0.01)
    chat.page.locator("#prompt").fill(prompt)
    chat.page.locator("#send").tap()
    chat.wait_for(
        """document.getElementById("notice-text").textContent === arg""",
        "You are offline. Check your connection and send again.",
    )
    assert chat.page.locator("#prompt").input_value() == prompt

    context.set_offline(False)
    chat.wait_for(
        "['live', 'polling'].includes(document.getElementById('connection').dataset.state)"
    )
    answer_id = chat.tap_send(prompt)
    chat.wait_status(answer_id, "done")
    assert chat.answer_text(answer_id) == final_message(app, answer_id).content
    assert chat.page.locator("#notice").is_hidden()


@pytest.mark.browser
def test_error_sentences_say_what_to_do(web: str, worker, phone) -> None:
    """Every API.md error code the page meets, as a sentence; never the code itself."""
    chat = phone(web)
    cases = [
        # (error, context, sentence, wait)
        (
            {"status": 429, "code": "rate_limited", "retryAfterS": 20},
            {},
            "You are sending messages too quickly. Wait 20 seconds and send again.",
            20,
        ),
        (
            {"status": 429, "code": "rate_limited", "retryAfterS": 1},
            {"doing": "start"},
            "Too many new chats from here. We'll try again in 1 second.",
            1,
        ),
        (
            {"status": 429, "code": "rate_limited", "retryAfterS": 150},
            {},
            "You are sending messages too quickly. Wait 3 minutes and send again.",
            150,
        ),
        (
            {"status": 429, "code": "too_many_streams", "retryAfterS": 5},
            {},
            "The server is busy. Wait 5 seconds and send again.",
            5,
        ),
        (
            {"status": 503, "code": "unavailable", "retryAfterS": 1},
            {"doing": "stop"},
            "The service is having trouble right now. Wait 1 second and press Stop again.",
            1,
        ),
        (
            {"status": 413, "code": "prompt_too_large"},
            {"length": 17000},
            "Your message is too long (17,000 characters). Shorten it and send again.",
            None,
        ),
        (
            {"status": 409, "code": "generation_active"},
            {},
            "An answer is still being written. Wait for it to finish, or press Stop, then send again.",
            None,
        ),
        ({}, {}, "Cannot reach the server. Check your connection and send again.", None),
        (
            {},
            {"online": False, "doing": "load"},
            "You are offline. Check your connection; we'll keep trying.",
            None,
        ),
        (
            {"status": 500, "code": "internal_error"},
            {},
            "Something went wrong on the server. Wait a moment and send again.",
            None,
        ),
        (
            {"status": 400, "code": "invalid_prompt", "message": "The prompt must be text."},
            {},
            "Not sent: The prompt must be text.",
            None,
        ),
    ]
    answers = chat.page.evaluate(
        """async (cases) => {
        const { advise, answerTrouble } = await import("/static/notices.js");
        return {
          advice: cases.map(([err, context]) => advise(err, context)),
          answers: ["upstream_error", "upstream_timeout", "worker_lost", undefined]
            .map(answerTrouble),
        };
    }""",
        [[err, context] for err, context, _, _ in cases],
    )
    for (err, _, sentence, wait), advice in zip(cases, answers["advice"], strict=True):
        assert advice["text"] == sentence, err
        assert advice.get("waitS") == wait, err
        assert "_" not in advice["text"], f"a raw code leaked: {advice['text']}"
    assert answers["answers"] == [
        "The model could not answer. Press Retry to ask again.",
        "The model took too long to answer. Press Retry to ask again.",
        "The answer was cut off on our side. Press Retry to ask again.",
        "The answer failed. Press Retry to ask again.",
    ]
