/**
 * Patch the DOM to match a new render, keeping every node that can stay: a
 * reader's selection and the browser's layout of unchanged parts survive.
 */

// Attributes the page sets on rendered nodes after the fact (a Copy button's
// "copied" state): a re-render leaves them alone.
const PAGE_ATTRIBUTES = new Set(["data-copied"]);

/**
 * Make `target`'s children from index `from` on look like `source`'s
 * children, reusing every node that can stay. `source` is emptied.
 */
export function patchChildren(target, source, from) {
  const wanted = [...source.childNodes];
  wanted.forEach((want, i) => {
    const have = target.childNodes[from + i];
    if (!have) target.append(want);
    else if (!patchNode(have, want)) have.replaceWith(want);
  });
  while (target.childNodes.length > from + wanted.length) target.lastChild.remove();
}

/** Bring `have` in line with `want`; false when it cannot be (another kind of node). */
function patchNode(have, want) {
  if (have.nodeType !== want.nodeType || have.nodeName !== want.nodeName) return false;
  if (have.nodeType === Node.TEXT_NODE) {
    if (have.data === want.data) return true;
    // Grown text is appended to: a selection or caret inside it stays put.
    if (want.data.startsWith(have.data)) have.appendData(want.data.slice(have.data.length));
    else have.data = want.data;
    return true;
  }
  if (have.nodeType !== Node.ELEMENT_NODE) return false;
  patchAttributes(have, want);
  patchChildren(have, want, 0);
  return true;
}

function patchAttributes(have, want) {
  for (const { name } of [...have.attributes]) {
    if (!want.hasAttribute(name) && !PAGE_ATTRIBUTES.has(name)) have.removeAttribute(name);
  }
  for (const { name, value } of want.attributes) {
    if (have.getAttribute(name) !== value) have.setAttribute(name, value);
  }
}

// What markdown-it's escapeHtml writes, and what it stands for.
const ESCAPED = { "&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"' };
const unescape = (html) => html.replace(/&(?:amp|lt|gt|quot);/g, (entity) => ESCAPED[entity]);
const CLOSING_TAGS = /(?:<\/[a-z0-9]+>\n?)*$/;

/**
 * The commonest change while an answer streams: words added to the text that
 * ends a block. When `after` (HTML) is `before` with text and no markup added
 * to its last run of text, and `node`'s last text node holds that run, append
 * the words to it, as text: no HTML parsed, so nothing to sanitize, and
 * nothing else touched. False when the change is any other.
 */
export function growLastText(node, before, after) {
  if (!node || before === null || after.length <= before.length) return false;
  const end = before.search(CLOSING_TAGS); // the run of text ends where the closing tags start
  const closing = before.slice(end);
  if (!after.endsWith(closing) || !after.startsWith(before.slice(0, end))) return false;
  const added = after.slice(end, after.length - closing.length);
  if (/[<>]/.test(added) || added.endsWith("\n") || before[end - 1] === ">") return false;
  let last = node;
  while (last.lastChild) last = last.lastChild;
  const run = before.slice(before.lastIndexOf(">", end - 1) + 1, end);
  if (last.nodeType !== Node.TEXT_NODE || last.data !== unescape(run)) return false;
  last.appendData(unescape(added));
  return true;
}
