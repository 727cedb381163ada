/**
 * One answer's Markdown on the page while it streams: each delta re-renders
 * only the unfinished last block, and patches the DOM in place, so finished
 * blocks keep their nodes and a reader's selection is never reset.
 */
//
// Why it is cheap: a top-level block that another block follows is finished
// (Markdown closes every container before the next top-level block), so its
// source is never parsed again. markdown-it's block tokens carry `map`, their
// source lines; the view remembers where the last, unfinished block starts
// and parses from there. Link reference definitions are the one thing a later
// block can change in an earlier one: when the answer is final it is rendered
// whole once more, and the patch touches only what differs.
//
// Why nothing flickers: the new render is compared with the DOM node by node;
// equal nodes stay, text that only grew is appended to (appendData keeps a
// selection inside it), and only what changed is replaced.

import { parse, renderHtml, sanitize, topLevelBlocks } from "./markdown.js";

// Attributes the page sets on rendered nodes after the fact (a Copy button's
// "copied" state): a re-render leaves them alone.
const PAGE_ATTRIBUTES = new Set(["data-copied"]);

export class MarkdownView {
  /** Render into `root`, an element the view owns the children of. */
  constructor(root) {
    this.root = root;
    this.clear();
  }

  clear() {
    this.source = "";
    this.final = false;
    this.restart();
    this.root.replaceChildren();
  }

  /** Render from the top next time: nothing settled, no references known. */
  restart() {
    this.settledAt = 0; // source offset where the unfinished tail starts
    this.settledNodes = 0; // root children before it, which no re-render touches
    this.env = {}; // markdown-it's: link reference definitions seen so far
    this.tailHtml = null; // the unfinished block as last rendered
  }

  /**
   * Show `text`, the whole answer so far; `final` once no more will come.
   * Text that does not extend what is shown (a new attempt) renders afresh.
   */
  show(text, final = false) {
    const source = text.replace(/\r\n?/g, "\n"); // as markdown-it counts lines
    if (source === this.source && final === this.final) return;
    if (!source.startsWith(this.source)) this.restart();
    this.source = source;
    this.final = final;
    this.renderTail();
    // A link reference definition applies to the whole answer, blocks before
    // it too: once the answer is final, render it all again with them known.
    if (final && this.settledAt && Object.keys(this.env.references ?? {}).length) {
      this.restart();
      this.renderTail();
    }
  }

  /** Render the source from the unfinished block on; settle the blocks another now follows. */
  renderTail() {
    const tail = this.source.slice(this.settledAt);
    const blocks = topLevelBlocks(parse(this.final ? tail : completeTable(tail), this.env));
    const html = blocks.map((block) => renderHtml(block.tokens, this.env));
    if (html.length === 1 && html[0] === this.tailHtml) return; // the same on screen
    const fragment = document.createDocumentFragment();
    let finishedNodes = 0;
    html.forEach((blockHtml, index) => {
      const rendered = sanitize(blockHtml);
      if (index < html.length - 1) finishedNodes += rendered.childNodes.length;
      fragment.append(rendered);
    });
    patchChildren(this.root, fragment, this.settledNodes);
    this.tailHtml = html.at(-1) ?? null;
    if (blocks.length > 1) {
      this.settledAt += lineOffset(tail, blocks.at(-1).line);
      this.settledNodes += finishedNodes;
    }
  }
}

const TABLE_ROW = /^[ \t]*\|/;
const DELIMITER_SO_FAR = /^[ \t]*\|?[ \t:|-]*$/;
const cellsOf = (row) => row.trim().replace(/^\|/, "").replace(/\|$/, "").split("|");

/**
 * `tail` with the table it ends in made whole. While a table's header row
 * streams in, Markdown sees a paragraph of pipes until the delimiter row
 * below it is complete; completing that row shows the table it is becoming
 * instead. Only for rows written with a leading pipe, as models write them.
 */
export function completeTable(tail) {
  const lines = tail.split("\n");
  if (lines.at(-1) === "") lines.pop(); // a line has just ended
  let header = lines.length - 1;
  let delimiter = [];
  if (header > 0 && DELIMITER_SO_FAR.test(lines[header]) && TABLE_ROW.test(lines[header - 1])) {
    delimiter = cellsOf(lines[header]);
    header--;
  }
  // The header must start a table, not be a row of one already underway.
  if (!TABLE_ROW.test(lines[header] ?? "") || TABLE_ROW.test(lines[header - 1] ?? "")) return tail;
  const columns = cellsOf(lines[header]).length;
  if (columns < 2 || delimiter.length > columns) return tail;
  const cells = Array.from({ length: columns }, (_, i) => {
    const cell = (delimiter[i] ?? "").trim();
    return cell.includes("-") ? cell : `${cell}-`; // ":" alone is not a cell yet
  });
  return [...lines.slice(0, header + 1), `|${cells.join("|")}|`].join("\n");
}

/** The offset in `text` where line `line` (0-based) starts. */
function lineOffset(text, line) {
  let offset = 0;
  for (let i = 0; i < line; i++) offset = text.indexOf("\n", offset) + 1;
  return offset;
}

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
