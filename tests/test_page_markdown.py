"""Answers as Markdown on the chat page (issue 26), in headless Chromium.

GFM renders as elements (tables, nested and task lists, strikethrough, code
with a Copy button, links with parentheses, autolinks); a streaming answer
keeps its finished blocks' nodes and the reader's selection; the renderer
agrees with itself whether it sees an answer whole or delta by delta; and
hostile input, DOMPurify's known bypass shapes among it, never becomes markup.
Also: a fresh load has no console error (the favicon is served).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.browser import PHONE, ChatPage, chromium
from tests.support.markdown_answer import markdown_answer
from tests.support.model_server import ModelServer
from tests.support.processes import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("worker")]

ARTIFACTS = ROOT / "test-artifacts"
DESKTOP = {"viewport": {"width": 960, "height": 720}}
# Tall enough for the whole answer, so the screenshots need no scrolling
# (a full-page screenshot draws the sticky header mid-page).
TALL_DESKTOP = {"viewport": {"width": 960, "height": 900}}
TALL_PHONE = {**PHONE, "viewport": {"width": PHONE["viewport"]["width"], "height": 1140}}

# The answer of the screenshots (docs/markdown-desktop.png, docs/markdown-phone.png).
GFM_PROMPT = "Which streaming transports does relay use, and how do they compare?"
GFM_ANSWER = """### Streaming transports compared

| Transport | Resumes | Through proxies |
|:--|:-:|--:|
| SSE | by `Last-Event-ID` | mostly |
| Long-poll | by cursor | always |
| ~~WebSocket~~ | not here | often |

How the page follows an answer:

1. Open the stream
   - with `EventSource`
   - or long-poll behind a buffering proxy
2. Apply each event **once**

- [x] tables and task lists
- [ ] a transport that never drops

```python
for event in stream:
    show(event)
```

More in [Rust (programming language)](https://en.wikipedia.org/wiki/Rust_(programming_language)) \
and https://html.spec.whatwg.org/multipage/server-sent-events.html."""
CODE = "for event in stream:\n    show(event)"

# What an answer's body may hold: the tags and attributes static/markdown.js
# lets through, and the code block's box and Copy button it makes itself.
ALLOWED_HTML = """(root) => {
  const tags = new Set(["P", "BR", "HR", "H3", "H4", "H5", "H6", "STRONG", "EM", "S", "CODE",
    "PRE", "BLOCKQUOTE", "UL", "OL", "LI", "A", "TABLE", "THEAD", "TBODY", "TR", "TH", "TD",
    "INPUT", "DIV", "BUTTON"]);
  const attributes = new Set(["href", "class", "start", "type", "checked", "disabled", "rel",
    "target", "aria-label", "data-lang", "data-copied"]);
  const bad = [];
  for (const el of root.querySelectorAll("*")) {
    if (el.namespaceURI !== "http://www.w3.org/1999/xhtml") bad.push(`namespace of ${el.tagName}`);
    if (!tags.has(el.tagName)) bad.push(el.tagName);
    for (const { name } of el.attributes) if (!attributes.has(name)) bad.push(`${el.tagName}@${name}`);
    if (el.tagName === "A" && !/^(https?|mailto):/.test(el.href)) bad.push(`href ${el.href}`);
    if (el.tagName === "INPUT" && (el.type !== "checkbox" || !el.disabled)) bad.push("input");
  }
  return bad;
}"""

MARK = "window.__pwned='{}'"
# DOMPurify's known bypass shapes (mXSS through namespace confusion and parser
# differentials), from its advisories and the research that found them, with
# classic event-handler and scheme tricks.
BYPASSES = {
    "namespace confusion, DOMPurify 2.0.0": '<svg></p><style><a id="</style><img src=1 onerror={}>">',
    "mglyph in math, 2.0.17": '<math><mtext><table><mglyph><style><!--</style><img title="--&gt;'
    '&lt;/mglyph&gt;&lt;img&Tab;src=1&Tab;onerror={}&gt;">',
    "nested forms, 2.0.17": "<form><math><mtext></form><form><mglyph><style></math><img src onerror={}>",
    "math textarea": '<math><mi><mglyph><svg><mtext><textarea><path id="</textarea><img onerror={} src=1>">',
    "noscript": '<noscript><p title="</noscript><img src=x onerror={}>">',
    "style in svg": "<svg><style><img src=x onerror={}></style></svg>",
    "xmp": '<xmp><p title="</xmp><img src=x onerror={}>">',
    "CDATA in svg": "<svg><![CDATA[><img src=x onerror={}>]]></svg>",
    "template": "<template><img src=x onerror={}></template>",
    "iframe srcdoc": '<iframe srcdoc="<script>{}</script>"></iframe>',
    "details ontoggle": "<details open ontoggle={}>x</details>",
    "svg animate": "<svg><animate onbegin={} attributeName=x dur=1s>",
    "svg xlink:href": '<svg><a xlink:href="javascript:{}"><text x="20" y="20">x</text></a></svg>',
    "entity in scheme": '<a href="&#106;avascript:{}">x</a>',
    "tab in scheme": '<a href="jav&#x09;ascript:{}">x</a>',
    "object data": '<object data="data:text/html,<script>{}</script>"></object>',
    "script": "<script>{}</script>",
    "style attribute": '<p style="background:url(javascript:{})">x</p>',
    "DOM clobbering": '<form id="attributes"><input name="nodeName"></form><img name="getElementById">',
}
# Markdown's own ways to make a link, a code class or a cell out of hostile text.
MARKDOWN_VECTORS = {
    "javascript link": "[x](javascript:{})",
    "upper-case scheme": "[x](JAVASCRIPT:{})",
    "entity in a link": "[x](&#106;avascript:{})",
    "data link": "[x](data:text/html;base64,PHNjcmlwdD4=)",
    "autolink": "<javascript:{}>",
    "image": "![x](javascript:{})",
    "reference": "[x][r]\n\n[r]: javascript:{}",
    "fence info": '```"><img src=x onerror={}>\ncode\n```',
    "inline code": "`<svg onload={}>`",
    "table cell": "| <img src=x onerror={}> | b |\n|--|--|\n| c | d |",
    "quote in a URL": '[x](https://example.com/"onmouseover="{})',
    "quote in an autolink": 'https://example.com/"onmouseover="{}',
}


def payloads(shapes: dict[str, str]) -> dict[str, str]:
    return {name: shape.format(MARK.format(name)) for name, shape in shapes.items()}


# ---- fixtures ----


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as browser:
        yield browser


@pytest.fixture()
def open_chat(browser) -> Iterator[Any]:
    """Open the chat page in a context of its own; no JS error and no CSP violation after."""
    made: list[tuple[Any, ChatPage]] = []

    def open_(url: str, device: dict[str, Any] = DESKTOP) -> ChatPage:
        context = browser.new_context(**device)
        chat = ChatPage(context).open(url)
        made.append((context, chat))
        return chat

    yield open_
    for context, chat in made:
        chat.check_no_errors()
        assert chat.violations() == []
        context.close()


def body(chat: ChatPage, answer_id: str) -> Any:
    return chat.answer(answer_id).locator(".body")


def screenshot(chat: ChatPage, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    chat.page.screenshot(path=str(ARTIFACTS / name))
    assert (ARTIFACTS / name).stat().st_size > 0


# ---- GFM as elements ----


def test_gfm_renders_as_elements_on_desktop_and_phone(
    app, web: str, open_chat, model_server: ModelServer
) -> None:
    chunks = [GFM_ANSWER[i : i + 24] for i in range(0, len(GFM_ANSWER), 24)]
    model_server.behave(GFM_PROMPT, chunks=chunks, delay_seconds=0.01)
    chat = open_chat(web, TALL_DESKTOP)
    answer_id = chat.send(GFM_PROMPT)
    chat.wait_status(answer_id, "done")
    answer = body(chat, answer_id)

    assert answer.locator("table th").all_text_contents() == [
        "Transport",
        "Resumes",
        "Through proxies",
    ]
    assert answer.locator("table th").evaluate_all("(els) => els.map((e) => e.className)") == [
        "align-left",
        "align-center",
        "align-right",
    ]
    assert answer.locator("table tbody tr").count() == 3
    assert answer.locator("td code").all_text_contents() == ["Last-Event-ID"]
    assert answer.locator("td s").text_content() == "WebSocket"
    nested = answer.locator("ol > li > ul > li")
    assert nested.all_text_contents() == [
        "with EventSource",
        "or long-poll behind a buffering proxy",
    ]
    tasks = answer.locator("ul.contains-task-list > li.task-list-item")
    assert tasks.all_text_contents() == ["tables and task lists", "a transport that never drops"]
    boxes = tasks.locator("input[type=checkbox]")
    assert boxes.evaluate_all("(els) => els.map((e) => [e.checked, e.disabled])") == [
        [True, True],
        [False, True],
    ]
    assert (
        answer.locator(".code-block[data-lang=python] pre code.language-python").text_content()
        == CODE
    )
    link = answer.get_by_role("link", name="Rust (programming language)")
    assert link.get_attribute("href") == "https://en.wikipedia.org/wiki/Rust_(programming_language)"
    assert link.get_attribute("rel") == "noopener noreferrer nofollow"
    assert link.get_attribute("target") == "_blank"
    autolink = answer.get_by_role(
        "link", name="https://html.spec.whatwg.org/multipage/server-sent-events.html"
    )
    assert (
        autolink.get_attribute("href")
        == "https://html.spec.whatwg.org/multipage/server-sent-events.html"
    )
    text = chat.answer_text(answer_id)
    for syntax in ("|--", "- [x]", "~~", "```", "]("):
        assert syntax not in text, f"{syntax!r} shows as text"
    assert chat.page.evaluate(ALLOWED_HTML, answer.element_handle()) == []
    screenshot(chat, "markdown-desktop.png")

    # The same chat on a phone: the table scrolls inside the answer, never the page.
    phone = open_chat(f"{web}/?session={chat.session_id}", TALL_PHONE)
    phone.wait_status(answer_id, "done")
    assert phone.answer_text(answer_id) == text
    width = PHONE["viewport"]["width"]
    assert phone.page.evaluate("document.scrollingElement.scrollWidth") <= width
    table = body(phone, answer_id).locator("table")
    assert table.evaluate("(t) => t.getBoundingClientRect().right") <= width
    # Cells wrap between words, never inside one: each word is on one line.
    lines = table.evaluate(
        """(table) => ["Transport", "WebSocket"].map((word) => {
             const texts = document.createTreeWalker(table, NodeFilter.SHOW_TEXT);
             while (texts.nextNode() && texts.currentNode.data !== word);
             const range = document.createRange();
             range.selectNodeContents(texts.currentNode);
             return range.getClientRects().length;
           })"""
    )
    assert lines == [1, 1]
    screenshot(phone, "markdown-phone.png")


def test_copy_puts_the_code_on_the_clipboard(
    web: str, open_chat, model_server: ModelServer, unique: str
) -> None:
    prompt = f"copy me {unique}"
    model_server.behave(prompt, chunks=["Run:\n\n```sh\n", "make test\nmake bench\n", "```\n"])
    chat = open_chat(web)
    chat.page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=web)
    answer_id = chat.send(prompt)
    chat.wait_status(answer_id, "done")
    copy = chat.answer(answer_id).get_by_role("button", name="Copy code")
    copy.click()
    chat.wait_for(
        "document.querySelector('.code-block .copy').dataset.copied === 'copied'", timeout_ms=5000
    )
    assert chat.page.evaluate("navigator.clipboard.readText()") == "make test\nmake bench"
    # The button's label is CSS, so the answer's text is only the answer.
    assert chat.answer_text(answer_id) == "Run:make test\nmake bench"


# ---- streaming ----


def test_streaming_keeps_finished_blocks_and_the_readers_selection(
    app, web: str, open_chat, model_server: ModelServer, unique: str
) -> None:
    prompt = f"stream a table {unique}"
    chunks = [
        "The first paragraph is finished ",
        "before the rest arrives.\n\n",
        "| Fruit | Count |\n",
        "|:--|--:|\n",
        "| apples | 3 |\n",
        "| pears ",
        "| 5 |\n\n",
        "The last paragraph ",
        "grows word ",
        "by word.",
    ]
    behavior = model_server.behave(prompt, chunks=chunks, delay_seconds=0.02, gate_after=6)
    chat = open_chat(web)
    answer_id = chat.send(prompt)
    chat.wait_text_contains(answer_id, "pears")

    # Held mid-row: the unfinished table already renders as a table.
    answer = body(chat, answer_id)
    assert answer.locator("table tbody tr").evaluate_all(
        "(rows) => rows.map((r) => [...r.cells].map((c) => c.textContent))"
    ) == [["apples", "3"], ["pears", ""]]
    # The reader selects words in the finished paragraph; the page keeps the nodes.
    selected = chat.page.evaluate(
        """(id) => {
          const body = document.querySelector(`li.message[data-message-id="${id}"] .body`);
          const [p, table] = body.children;
          window.__kept = { p, table, text: p.firstChild };
          const range = document.createRange();
          range.setStart(p.firstChild, 4);
          range.setEnd(p.firstChild, 26);
          getSelection().removeAllRanges();
          getSelection().addRange(range);
          return getSelection().toString();
        }""",
        answer_id,
    )
    assert selected == "first paragraph is fin"
    behavior.gate.set()
    chat.wait_status(answer_id, "done")

    kept = chat.page.evaluate(
        """(id) => {
          const body = document.querySelector(`li.message[data-message-id="${id}"] .body`);
          return {
            sameParagraph: body.children[0] === window.__kept.p && window.__kept.text.isConnected,
            sameTable: body.children[1] === window.__kept.table,
            selection: getSelection().toString(),
            rows: [...window.__kept.table.tBodies[0].rows].map((r) => r.cells[1].textContent),
            last: body.children[2].textContent,
          };
        }""",
        answer_id,
    )
    assert kept == {
        "sameParagraph": True,
        "sameTable": True,
        "selection": "first paragraph is fin",
        "rows": ["3", "5"],
        "last": "The last paragraph grows word by word.",
    }
    # What the answer showed only ever grew: nothing blinked out and came back.
    seen = chat.seen(answer_id)
    assert len(seen) >= 4 and all(seen[-1].startswith(text) for text in seen), seen


# Shapes where the end of an answer can change how its last blocks read: a
# list that turns loose, "10)" after "9)", items holding code and tables, a
# bullet that starts another list, a long table, then task lists.
TRICKY = (
    "Intro paragraph.\n\n"
    + "".join(f"{n}. tight item {n}\n" for n in range(1, 5))
    + "\n5. now loose\n\n6. still loose\n   with a lazy second line\n\n"
    + "".join(
        f"{n}) **Step {n}** text\n{' ' * (len(str(n)) + 2)}- sub a\n{' ' * (len(str(n)) + 2)}- sub b\n\n"
        for n in range(1, 13)
    )
    + 'Between: a < b && c > "d" & e, `x<y> && z`.\n\n- first\n\n  ```js\n  let x = 1;\n  ```\n\n- second\n\n'
    + "  | a | b |\n  |---|---|\n  | 1 | 2 |\n\n- third\n* other list\n* again\n\n"
    + "| k | v |\n|:--|--:|\n"
    + "".join(f"| key {n} | **{n}** |\n" for n in range(1, 16))
    + "\nAfter the table.\n\n- [ ] task one\n- [x] task two\n\nEnd."
)


def pieces(text: str | list[str], size: int) -> list[str]:
    """`text` (or a list of deltas) in pieces of `size` characters (or deltas)."""
    return ["".join(text[i : i + size]) for i in range(0, len(text), size)]


STREAMS = {
    # A model's deltas, and as the page takes them: a few at a time, once a frame.
    "long answer, delta by delta": lambda: markdown_answer(2000),
    "long answer, 3 deltas at a time": lambda: pieces(markdown_answer(2000), 3),
    "tricky shapes, character by character": lambda: pieces(TRICKY, 1),
    "tricky shapes, 7 characters at a time": lambda: pieces(TRICKY, 7),
    "tricky shapes, 24 characters at a time": lambda: pieces(TRICKY, 24),
    "tricky shapes, 61 characters at a time": lambda: pieces(TRICKY, 61),
    # Several blocks in one delta: a block settles and a long list or table opens at once.
    "tricky shapes, 150 characters at a time": lambda: pieces(TRICKY, 150),
    "GFM answer, 24 characters at a time": lambda: pieces(GFM_ANSWER, 24),
}


@pytest.mark.parametrize("name", list(STREAMS))
def test_streaming_renders_as_the_whole_text_so_far_does(web: str, open_chat, name: str) -> None:
    """At every step, the streaming view shows what a render of the text so far
    shows (a table underway completed): rendering only the unfinished block, or
    a long list's or table's unfinished items, loses nothing."""
    deltas = STREAMS[name]()
    chat = open_chat(web)
    differences = chat.page.evaluate(
        """async (deltas) => {
          const { renderMarkdown } = await import("/static/markdown.js");
          const { MarkdownView } = await import("/static/markdown_view.js");
          const { completeTable } = await import("/static/markdown_tail.js");
          const view = new MarkdownView(document.createElement("div"));
          const whole = document.createElement("div");
          const differences = [];
          let text = "";
          for (const delta of deltas) {
            text += delta;
            view.show(text, false);
            whole.replaceChildren(renderMarkdown(completeTable(text)));
            if (view.root.innerHTML !== whole.innerHTML) differences.push(text.slice(-40));
          }
          view.show(text, true);
          whole.replaceChildren(renderMarkdown(text));
          if (view.root.innerHTML !== whole.innerHTML) differences.push("final");
          return differences.slice(0, 5);
        }""",
        deltas,
    )
    assert differences == []


def test_the_view_settles_references_new_attempts_and_line_endings(web: str, open_chat) -> None:
    chat = open_chat(web)
    result = chat.page.evaluate(
        """async () => {
          const { MarkdownView } = await import("/static/markdown_view.js");
          const view = new MarkdownView(document.createElement("div"));
          const out = {};
          // A reference defined after its use: a link once the answer is final.
          view.show("See [the spec][s].\\n\\nMore text.\\n\\n", false);
          out.before = view.root.querySelectorAll("a").length;
          view.show("See [the spec][s].\\n\\nMore text.\\n\\n[s]: https://example.com/spec", true);
          out.after = view.root.querySelector("a")?.href;
          // A new attempt: text that does not extend what is shown starts over.
          view.show("Second attempt", false);
          out.attempt = view.root.innerHTML;
          // Windows line endings count as one line break, as markdown-it counts them.
          view.show("a\\r\\n\\r\\n- b\\r\\n- c", true);
          out.crlf = view.root.innerHTML;
          return out;
        }"""
    )
    assert result == {
        "before": 0,
        "after": "https://example.com/spec",
        "attempt": "<p>Second attempt</p>",
        "crlf": "<p>a</p><ul><li>b</li><li>c</li></ul>",
    }


def test_a_selection_inside_growing_text_survives(web: str, open_chat) -> None:
    chat = open_chat(web)
    result = chat.page.evaluate(
        """async () => {
          const { MarkdownView } = await import("/static/markdown_view.js");
          const box = document.createElement("div");
          document.body.append(box);
          const view = new MarkdownView(box);
          view.show("Hello wor", false);
          const text = box.querySelector("p").firstChild;
          const range = document.createRange();
          range.setStart(text, 0);
          range.setEnd(text, 5);
          getSelection().removeAllRanges();
          getSelection().addRange(range);
          view.show("Hello world, and **more**", false);
          const out = [getSelection().toString(), getSelection().anchorNode === text, box.innerHTML];
          box.remove();
          return out;
        }"""
    )
    assert result == [
        "Hello",
        True,
        "<p>Hello world, and <strong>more</strong></p>",
    ]


# ---- hostile input ----


def test_bypass_shapes_in_an_answer_stay_text(
    web: str, open_chat, model_server: ModelServer, unique: str
) -> None:
    prompt = f"bypass shapes {unique}"
    text = "\n\n".join([*payloads(BYPASSES).values(), *payloads(MARKDOWN_VECTORS).values()])
    # Cut mid-tag, so that every delta shows an unfinished piece of markup.
    chunks = [text[i : i + 7] for i in range(0, len(text), 7)]
    model_server.behave(prompt, chunks=chunks, delay_seconds=0.002)
    chat = open_chat(web)
    answer_id = chat.send(prompt)
    chat.wait_status(answer_id, "done")
    answer = body(chat, answer_id)
    assert chat.page.evaluate(ALLOWED_HTML, answer.element_handle()) == []
    shown = chat.answer_text(answer_id)
    assert "<svg></p><style>" in shown and "<noscript>" in shown and "<script>" in shown
    assert chat.page.evaluate("window.__pwned") is None


def test_markdown_and_the_sanitizer_each_stop_every_shape(web: str, open_chat) -> None:
    """markdown-it (raw HTML off) turns every shape into text; DOMPurify, given the
    raw HTML as if markdown-it had let it through, keeps none of it either."""
    chat = open_chat(web)
    result = chat.page.evaluate(
        f"""async ([shapes, vectors]) => {{
          const {{ renderMarkdown, sanitize }} = await import("/static/markdown.js");
          const allowed = {ALLOWED_HTML};
          const out = {{ markdown: {{}}, sanitizer: {{}}, unsanitized: 0 }};
          const box = document.createElement("div");
          document.body.append(box);
          for (const [name, source] of Object.entries({{ ...shapes, ...vectors }})) {{
            box.replaceChildren(renderMarkdown(source));
            const bad = allowed(box);
            if (bad.length) out.markdown[name] = bad;
          }}
          for (const [name, html] of Object.entries(shapes)) {{
            box.replaceChildren(sanitize(html));
            const bad = allowed(box);
            if (bad.length) out.sanitizer[name] = bad;
            // The check can fail: the same HTML, unsanitized, parsed inert.
            const raw = document.createElement("template");
            raw.innerHTML = html;
            if (allowed(raw.content).length) out.unsanitized++;
          }}
          await new Promise((done) => requestAnimationFrame(() => setTimeout(done, 50)));
          box.remove();
          return out;
        }}""",
        [payloads(BYPASSES), payloads(MARKDOWN_VECTORS)],
    )
    assert result["markdown"] == {}
    assert result["sanitizer"] == {}
    assert result["unsanitized"] == len(BYPASSES)
    assert chat.page.evaluate("window.__pwned") is None
    # Parsing raw hostile HTML, even in an inert document (DOMPurify's, a
    # template's), makes Chromium report the inline styles and handlers the
    # CSP refuses; nothing ran. An answer never gets here: markdown-it escapes
    # its HTML first (the test above has no violation).
    blocked = chat.page.evaluate("window.__violations.splice(0)")
    assert {entry.split()[0] for entry in blocked} <= {
        "script-src-attr",
        "style-src-attr",
        "style-src-elem",
    }


# ---- a fresh load ----


def test_a_fresh_load_logs_no_console_error_and_has_a_favicon(
    browser, web: str, client: httpx.Client
) -> None:
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.content == (ROOT / "static" / "favicon.svg").read_bytes()
    context = browser.new_context(**DESKTOP)
    try:
        chat = ChatPage(context)
        failed: list[str] = []
        chat.page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.status} {r.url}"))
        chat.open(web)
        assert chat.page.locator("link[rel=icon]").get_attribute("href") == "/static/favicon.svg"
        # A browser asks any origin for /favicon.ico, for a JSON answer opened in a tab too.
        chat.page.goto(f"{web}/healthz")
        chat.open(web)
        assert chat.console_errors == [] and failed == []
        chat.check_no_errors()
    finally:
        context.close()
