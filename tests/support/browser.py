"""Drive the chat page in headless Chromium (Debian's /usr/bin/chromium) with Playwright.

`ChatPage` wraps one tab. A script installed before the page's own records
what the page shows: every distinct text of every answer, in order, and any
Content-Security-Policy violation. Tests read those instead of sampling the
DOM on a timer, so "the text grew in several steps" is observed, not guessed.
Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WAIT_MS = 30_000
# A phone (issue 13): 375 x 740 CSS pixels, the meta viewport honoured, a
# touch screen, so that `(pointer: coarse)` matches as on a real phone.
PHONE = {"viewport": {"width": 375, "height": 740}, "is_mobile": True, "has_touch": True}

RECORDER = """
window.__seen = {};        // answer id -> distinct texts shown, in order
window.__violations = [];  // CSP violations: something tried to run or load
window.__pwned = undefined;
document.addEventListener("securitypolicyviolation",
  (e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`));
new MutationObserver(() => {
  for (const li of document.querySelectorAll("li.message.assistant")) {
    const texts = (window.__seen[li.dataset.messageId] ||= []);
    const text = li.querySelector(".body").textContent;
    if (texts[texts.length - 1] !== text) texts.push(text);
  }
}).observe(document, { subtree: true, childList: true, characterData: true });
"""


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium, closed after; skips the test when it or Playwright is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium to run browser tests")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            yield browser
        finally:
            browser.close()


class ChatPage:
    """One tab on the chat page, with helpers that wait on what it shows."""

    def __init__(self, context: Any) -> None:
        self.page = context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        # What the console shows as errors, a failed request's "Failed to load
        # resource" among them; tests that provoke failures leave it unread.
        self.console_errors: list[str] = []
        self.page.on(
            "console", lambda msg: msg.type == "error" and self.console_errors.append(msg.text)
        )
        self.page.on(
            "dialog",
            lambda dialog: (self.errors.append(f"dialog: {dialog.message}"), dialog.dismiss()),
        )
        self.page.add_init_script(RECORDER)

    def open(self, url: str, connection: str = "live") -> ChatPage:
        self.page.goto(url)
        self.wait_for("new URLSearchParams(location.search).get('session')")
        self.wait_connection(connection)
        return self

    @property
    def session_id(self) -> str:
        return self.page.evaluate("new URLSearchParams(location.search).get('session')")

    def wait_for(self, expression: str, arg: Any = None, timeout_ms: int = WAIT_MS) -> Any:
        """Wait until the JS expression (over `arg`) is truthy; return its value."""
        handle = self.page.wait_for_function(f"(arg) => {expression}", arg=arg, timeout=timeout_ms)
        return handle.json_value()

    def wait_connection(self, state: str, timeout_ms: int = WAIT_MS) -> None:
        self.wait_for(
            "document.getElementById('connection').dataset.state === arg", state, timeout_ms
        )

    def connection(self) -> str:
        return self.page.get_attribute("#connection", "data-state")

    def notice(self, timeout_ms: int = WAIT_MS) -> str:
        """The notice's sentence, once one shows."""
        return self.wait_for(
            """!document.getElementById("notice").hidden
               && document.getElementById("notice-text").textContent""",
            timeout_ms=timeout_ms,
        )

    def type_prompt(self, text: str) -> None:
        """Type as a person does: a newline in the text is Shift+Enter."""
        box = self.page.locator("#prompt")
        for index, line in enumerate(text.split("\n")):
            if index:
                box.press("Shift+Enter")
            box.press_sequentially(line)

    def send(self, text: str) -> str:
        """Type and press Enter; the id of the answer that appears for it."""
        before = self.answer_ids()
        self.type_prompt(text)
        self.page.locator("#prompt").press("Enter")
        return self.new_answer(before)

    def tap_send(self, text: str) -> str:
        """On a touch screen: put the text in the box and tap Send; the new answer's id."""
        before = self.answer_ids()
        self.page.locator("#prompt").fill(text)
        self.page.locator("#send").tap()
        return self.new_answer(before)

    def new_answer(self, before: list[str]) -> str:
        """The id of an answer that was not among `before`, once one shows."""
        return self.wait_for(
            """(() => {
                 const ids = [...document.querySelectorAll("li.message.assistant")]
                   .map((li) => li.dataset.messageId).filter((id) => !arg.includes(id));
                 return ids.length ? ids[ids.length - 1] : null;
               })()""",
            before,
        )

    def answer_ids(self) -> list[str]:
        return self.page.eval_on_selector_all(
            "li.message.assistant", "(els) => els.map((el) => el.dataset.messageId)"
        )

    def answer(self, message_id: str) -> Any:
        return self.page.locator(f'li.message[data-message-id="{message_id}"]')

    def answer_text(self, message_id: str) -> str:
        return self.answer(message_id).locator(".body").text_content()

    def wait_text_contains(self, message_id: str, needle: str, timeout_ms: int = WAIT_MS) -> None:
        self.wait_for(
            """(() => {
                 const li = document.querySelector(`li.message[data-message-id="${arg[0]}"]`);
                 return li && li.querySelector(".body").textContent.includes(arg[1]);
               })()""",
            [message_id, needle],
            timeout_ms,
        )

    def wait_status(self, message_id: str, status: str, timeout_ms: int = WAIT_MS) -> None:
        self.wait_for(
            """(() => {
                 const li = document.querySelector(`li.message[data-message-id="${arg[0]}"]`);
                 return li && li.dataset.status === arg[1];
               })()""",
            [message_id, status],
            timeout_ms,
        )

    def seen(self, message_id: str) -> list[str]:
        """Every distinct text the answer showed, in order (since this page load)."""
        return self.page.evaluate("(id) => window.__seen[id] || []", message_id)

    def violations(self) -> list[str]:
        return self.page.evaluate("window.__violations")

    def check_no_errors(self) -> None:
        assert not self.errors, "page errors:\n" + json.dumps(self.errors, indent=2)
