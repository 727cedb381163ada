/**
 * One answer's Markdown on the page while it streams: each delta re-renders
 * only the unfinished last block, and patches the DOM in place, so finished
 * blocks keep their nodes and a reader's selection is never reset.
 */
//
// Why it is cheap: a top-level block that another block follows is finished
// (Markdown closes every container before the next top-level block) once the
// next block's first line is whole, so its source is never parsed again.
// markdown-it's block tokens carry `map`, their source lines; the view
// remembers where the unfinished block starts and parses from there. A long
// list or table is the one block that grows large, so its finished items or
// rows settle the same way (markdown_tail.js). Link reference definitions are
// the one thing a later block can change in an earlier one: when the answer
// is final and has some, it is rendered whole once more, and the patch
// touches only what differs.
//
// Why nothing flickers: the new render is compared with the DOM node by node;
// equal nodes stay, text that only grew is appended to (appendData keeps a
// selection inside it), and only what changed is replaced.

import { growLastText, patchChildren } from "./dom_patch.js";
import { parse, renderHtml, sanitize, topLevelBlocks } from "./markdown.js";
import {
  completeTable, firstLineDone, lineOffset, looseList, openContainer, settleChildren, unsettled,
} from "./markdown_tail.js";

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
    this.container = null; // the unfinished block, when it is a long list or table
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

  /** Render the source from the unfinished block on; settle the blocks that are finished. */
  renderTail() {
    if (this.container && this.renderContainer()) return;
    this.container = null;
    const tail = this.source.slice(this.settledAt);
    const blocks = topLevelBlocks(this.parse(tail));
    const html = blocks.map((block) => renderHtml(block.tokens, this.env));
    if (html.length === 1 && html[0] === this.tailHtml) return; // the same on screen
    const open = unsettled(tail, blocks);
    const base = this.settledAt;
    const alone = html.length === 1 && this.root.childNodes.length === this.settledNodes + 1;
    if (!(alone && growLastText(this.root.lastChild, this.tailHtml, html[0]))) {
      const finishedNodes = this.patchBlocks(html, blocks.length - open);
      if (blocks.length > open) {
        this.settledAt += lineOffset(tail, blocks.at(-open).line);
        this.settledNodes += finishedNodes;
      }
    }
    this.tailHtml = html.at(-1) ?? null;
    if (open === 1) {
      const { tokens, line } = blocks.at(-1);
      this.container = openContainer(tokens, tail, line, this.root.childNodes[this.settledNodes]);
      if (this.container) this.container.at += base;
    }
  }

  /** Sanitize the blocks' HTML and patch it in; how many root children the first `finished` make. */
  patchBlocks(html, finished) {
    const fragment = document.createDocumentFragment();
    let finishedNodes = 0;
    html.forEach((blockHtml, index) => {
      const rendered = sanitize(blockHtml);
      if (index < finished) finishedNodes += rendered.childNodes.length;
      fragment.append(rendered);
    });
    patchChildren(this.root, fragment, this.settledNodes);
    return finishedNodes;
  }

  /**
   * The unfinished block is a list or a table: parse and render only its
   * unfinished items or rows, and patch them into its element. False when it
   * is not that list or table any more (it ended, or a list turned loose):
   * the caller renders from the settled point on.
   */
  renderContainer() {
    const c = this.container;
    const rest = this.source.slice(c.at);
    const text = c.head + rest;
    const [block, ...after] = topLevelBlocks(this.parse(text));
    const first = block?.tokens[0];
    if (first?.type !== c.type || first.markup !== c.markup) return false;
    // A list that turns loose shows every item's paragraphs: render it whole.
    if (c.type !== "table_open" && looseList(block.tokens) && !c.loose) return false;
    this.tailHtml = null; // the block's render is no longer the whole block's
    if (!this.patchItems(block.tokens)) return false;
    if (after.length && firstLineDone(text, after[0])) {
      // It has ended: what follows starts the unfinished tail.
      this.settledAt = c.at + lineOffset(rest, after[0].line - c.headLines);
      this.settledNodes += 1;
      return false;
    }
    // The start of what follows ("14" may yet become the next item, "14."), beside it.
    const next = document.createDocumentFragment();
    for (const { tokens } of after) next.append(sanitize(renderHtml(tokens, this.env)));
    patchChildren(this.root, next, this.settledNodes + 1);
    settleChildren(c, block.tokens, text, c.headLines);
    return true;
  }

  /** Render a list's or table's unfinished items or rows into its element; false if it has none. */
  patchItems(tokens) {
    const c = this.container;
    if (c.loose) {
      for (const t of tokens) if (t.level === 2 && t.type.startsWith("paragraph")) t.hidden = false;
    }
    const html = renderHtml(tokens, this.env);
    if (html === c.html || growLastText(c.items, c.html, html)) {
      c.html = html;
      return true;
    }
    const rendered = sanitize(html).firstElementChild;
    const items = c.type === "table_open" ? rendered?.tBodies[0] : rendered;
    if (!items) return false;
    patchChildren(c.items, items, c.settled);
    c.html = html;
    return true;
  }

  /** markdown-it's tokens for `text`, a table underway completed while the answer streams. */
  parse(text) {
    return parse(this.final ? text : completeTable(text), this.env);
  }
}
