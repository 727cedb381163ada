/**
 * Markdown to safe DOM: markdown-it parses (CommonMark plus GFM tables,
 * strikethrough, task lists and autolinks), DOMPurify sanitizes what it
 * renders, and only then do nodes reach the page. Model output is untrusted.
 */
//
// Three fences, each enough on its own for the cases we know of:
// 1. markdown-it with `html: false`: HTML in an answer is text, never markup.
// 2. Our link rule: an <a> only for http(s) or mailto URLs; any other link
//    (javascript:, data:, relative) shows as its label alone.
// 3. DOMPurify with an allow-list of the few tags and attributes markdown-it
//    emits here, and the same URL rule, over everything rendered.
// The page's Content-Security-Policy (no inline script, no eval) is the last.
//
// Vendored, pinned, unmodified: static/vendor/README.md. Neither library
// evaluates strings as code, so the CSP needs no 'unsafe-eval'
// (tests/test_static.py checks).

import MarkdownIt from "./vendor/markdown-it.js";
import DOMPurify from "./vendor/dompurify.js";

const LINK_PROTOCOLS = ["http:", "https:", "mailto:"];
const LINK_REL = "noopener noreferrer nofollow";
// Classes that our rules give: a code block's language, a table cell's
// alignment (the CSP forbids the style attribute markdown-it would use), task lists.
const CLASS_OK = /^(language-[\w+#.-]{1,40}|align-(left|center|right)|task-list-item|contains-task-list)$/;

/** An href we are willing to follow, or null. */
export function safeHref(raw) {
  try {
    const url = new URL(raw);
    return LINK_PROTOCOLS.includes(url.protocol) ? url.href : null;
  } catch {
    return null; // relative or malformed: not a link
  }
}

// ---- markdown-it and our rules ----

const md = new MarkdownIt("default", { html: false, linkify: true, breaks: true, typographer: false });
md.disable("image"); // img-src is 'self': a remote image would only be a CSP error
// Every link parses as a link, so that a refused one can show its label
// (hideUnsafeLinks) instead of its raw Markdown.
md.validateLink = () => true;
// GFM autolinks `www.` too; linkify-it takes only URLs with a scheme by default.
md.linkify.add("www.", {
  validate: (text, pos, self) => self.__schemas__["//"].validate(text, pos, self),
  normalize: (match) => {
    match.url = `http://${match.url}`;
  },
});

/** Walk every token, inline children included. */
function* allTokens(tokens) {
  for (const token of tokens) {
    yield token;
    if (token.children) yield* token.children;
  }
}

/** Headings start at <h3>: the page's own title is the <h1>. */
function shiftHeadings(state) {
  for (const token of state.tokens) {
    if (token.type === "heading_open" || token.type === "heading_close") {
      token.tag = `h${Math.min(Number(token.tag.slice(1)) + 2, 6)}`;
    }
  }
}

/** Code as written, without the newline that ends its last line (the Copy button copies this). */
function trimCode(state) {
  for (const token of state.tokens) {
    if (token.type === "fence" || token.type === "code_block") token.content = token.content.replace(/\n$/, "");
  }
}

/** A link we would not follow renders as its label: open and close tags hidden. */
function hideUnsafeLinks(state) {
  const open = [];
  for (const token of allTokens(state.tokens)) {
    if (token.type === "link_open") {
      token.hidden = !safeHref(token.attrGet("href"));
      open.push(token);
    } else if (token.type === "link_close") {
      token.hidden = open.pop()?.hidden ?? true;
    }
  }
}

/** Table alignment as a class: the page's CSP allows no style attribute. */
function alignByClass(state) {
  for (const token of state.tokens) {
    const style = (token.type === "th_open" || token.type === "td_open") && token.attrGet("style");
    if (!style) continue;
    token.attrs = token.attrs.filter(([name]) => name !== "style");
    token.attrJoin("class", `align-${style.replace("text-align:", "")}`);
  }
}

const TASK = /^\[([ xX])\](?:[ \t]+|$)/;

/**
 * GFM task lists: a list item whose text starts with `[ ]` or `[x]` gets a
 * disabled checkbox. Our own rule rather than a plugin: the one plugin on npm
 * (markdown-it-task-lists) is unmaintained and inserts raw HTML tokens.
 */
function taskLists(state) {
  const tokens = state.tokens;
  for (let i = 2; i < tokens.length; i++) {
    const inline = tokens[i];
    if (inline.type !== "inline" || tokens[i - 1].type !== "paragraph_open") continue;
    if (tokens[i - 2].type !== "list_item_open") continue;
    const first = inline.children[0];
    const found = first?.type === "text" && TASK.exec(first.content);
    if (!found) continue;
    first.content = first.content.slice(found[0].length);
    const box = new state.Token("task_checkbox", "input", 0);
    box.meta = { checked: found[1] !== " " };
    inline.children.unshift(box);
    tokens[i - 2].attrJoin("class", "task-list-item");
    const list = listOpening(tokens, i - 2);
    if (list && !(list.attrGet("class") || "").includes("contains-task-list")) {
      list.attrJoin("class", "contains-task-list");
    }
  }
}

function listOpening(tokens, itemIndex) {
  const level = tokens[itemIndex].level - 1;
  for (let i = itemIndex - 1; i >= 0; i--) if (tokens[i].level === level) return tokens[i];
  return null;
}

md.core.ruler.push("relay_headings", shiftHeadings);
md.core.ruler.push("relay_code", trimCode);
md.core.ruler.push("relay_links", hideUnsafeLinks);
md.core.ruler.push("relay_align", alignByClass);
md.core.ruler.push("relay_tasks", taskLists);
md.renderer.rules.task_checkbox = (tokens, idx) =>
  `<input type="checkbox" disabled${tokens[idx].meta.checked ? " checked" : ""}>`;

// ---- DOMPurify: an allow-list of what the rules above emit ----

const purify = DOMPurify(window);
const PURIFY_CONFIG = {
  ALLOWED_TAGS: [
    "p", "br", "hr", "h3", "h4", "h5", "h6", "strong", "em", "s", "code", "pre", "blockquote",
    "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td", "input",
  ],
  ALLOWED_ATTR: ["href", "class", "start", "type", "checked", "disabled"],
  ALLOWED_URI_REGEXP: /^(?:https?|mailto):/i,
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};

purify.addHook("uponSanitizeAttribute", (node, data) => {
  if (data.attrName === "class") {
    data.attrValue = data.attrValue.split(/\s+/).filter((name) => CLASS_OK.test(name)).join(" ");
    data.keepAttr = data.attrValue !== "";
  }
});
purify.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName === "A") {
    const href = safeHref(node.getAttribute("href") || "");
    if (!href) return void node.removeAttribute("href"); // unwrapped by tidy()
    node.setAttribute("href", href);
    node.setAttribute("rel", LINK_REL);
    node.setAttribute("target", "_blank");
  } else if (node.nodeName === "INPUT") {
    node.setAttribute("type", "checkbox");
    node.setAttribute("disabled", "");
  }
});

// ---- tokens to DOM ----

/** Parse Markdown (or the unfinished tail of an answer) into block tokens. */
export function parse(source, env) {
  return md.parse(source, env);
}

/**
 * Split block tokens into top-level blocks: `{line, tokens}`, `line` being
 * the block's first source line. A block that another follows is finished:
 * Markdown closes every container before the next top-level block starts.
 */
export function topLevelBlocks(tokens) {
  const blocks = [];
  for (const token of tokens) {
    if (token.level === 0 && token.nesting >= 0) blocks.push({ line: token.map[0], tokens: [] });
    blocks.at(-1)?.tokens.push(token);
  }
  return blocks;
}

/** Render tokens to HTML: markdown-it's, with our rules; not yet sanitized. */
export function renderHtml(tokens, env) {
  return md.renderer.render(tokens, md.options, env);
}

/**
 * HTML -> a DocumentFragment of this document holding only what the
 * allow-list lets through, tidied, code blocks given their Copy button.
 * DOMPurify returns nodes, never a string parsed again (no mXSS by re-parsing).
 */
export function sanitize(html) {
  const fragment = purify.sanitize(html, PURIFY_CONFIG);
  tidy(fragment);
  decorate(fragment);
  return fragment;
}

/** Markdown source -> a DocumentFragment of safe elements and text. */
export function renderMarkdown(source) {
  const env = {};
  return sanitize(renderHtml(parse(source, env), env));
}

const BLOCK = new Set([
  "P", "UL", "OL", "LI", "PRE", "BLOCKQUOTE", "TABLE", "THEAD", "TBODY", "TR", "TH", "TD",
  "H3", "H4", "H5", "H6", "HR", "DIV", "BR",
]);
const breaks = (node) => !node || BLOCK.has(node.nodeName);

/**
 * Drop the newlines markdown-it writes between tags, so that an answer's
 * text is its words (a <br> or a block already breaks the line); keep code
 * as written. Unwrap any <a> left without an href.
 */
function tidy(parent) {
  for (const node of [...parent.childNodes]) {
    if (node.nodeType === Node.TEXT_NODE) {
      let text = node.data;
      if (breaks(node.previousSibling)) text = text.replace(/^\n+/, "");
      if (breaks(node.nextSibling)) text = text.replace(/\n+$/, "");
      if (!text) node.remove();
      else if (text !== node.data) node.data = text;
    } else if (node.nodeName === "A" && !node.hasAttribute("href")) {
      tidy(node);
      node.replaceWith(...node.childNodes);
    } else if (node.nodeName !== "PRE") {
      tidy(node);
    }
  }
}

/**
 * A code block: its <pre> in a box with the language's name and a Copy
 * button. Both labels are CSS content (chat.css), so that the answer's text
 * and a copied selection hold only the answer.
 */
function decorate(fragment) {
  for (const pre of fragment.querySelectorAll("pre")) {
    const box = document.createElement("div");
    box.className = "code-block";
    const language = /(?:^|\s)language-(\S+)/.exec(pre.firstElementChild?.className || "");
    if (language) box.dataset.lang = language[1];
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "copy";
    copy.setAttribute("aria-label", "Copy code");
    pre.replaceWith(box);
    box.append(copy, pre);
  }
}
