/**
 * Two helps for an answer's unfinished end while it streams: a table whose
 * header is still arriving shows as a table, and a long list or table is
 * re-rendered from its unfinished items or rows only.
 */

/** True when the first line of `block` (in `text`) has ended: what it is can no longer change. */
export function firstLineDone(text, block) {
  return text.indexOf("\n", lineOffset(text, block.line)) >= 0;
}

/**
 * How many blocks at the end of `tail` may still change: the last; and the
 * one before it too while the last one's first line is unfinished, because
 * that line may yet join it ("2" becomes "2.", the next item of a list).
 */
export function unsettled(tail, blocks) {
  const last = blocks.at(-1);
  if (!last) return 0;
  return firstLineDone(tail, last) ? 1 : Math.min(2, blocks.length);
}

/** The offset in `text` where line `line` (0-based) starts. */
export function lineOffset(text, line) {
  let offset = 0;
  for (let i = 0; i < line; i++) offset = text.indexOf("\n", offset) + 1;
  return offset;
}

// ---- a table underway ----

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
  const indent = /^[ \t]*/.exec(lines[header])[0];
  return [...lines.slice(0, header + 1), `${indent}|${cells.join("|")}|`].join("\n");
}

// ---- long lists and tables: their finished items and rows stay as they are ----
//
// A list's item, a table's row, is finished once another follows whose first
// line is whole, as top-level blocks are (markdown_view.js). A table's rows
// parse on their own under its header and delimiter rows (`head`); a list's
// items parse on their own as a list, whose paragraphs show or hide as the
// whole list's do (a loose list's items wrap their text in <p>; a tight one's
// do not). A list that turns loose renders whole again, once.

const CONTAINERS = ["bullet_list_open", "ordered_list_open", "table_open"];

/** True when a top-level list's items show their paragraphs (markdown-it hides a tight list's). */
export function looseList(tokens) {
  return tokens.some((t) => t.type === "paragraph_open" && t.level === 2 && !t.hidden);
}

/** The items of a list, or the body rows of a table, each with its first line. */
function childrenOf(tokens) {
  if (tokens[0].type === "table_open") {
    return tokens.filter((t) => t.type === "tr_open").slice(1).map((t) => ({ line: t.map[0] }));
  }
  return tokens.filter((t) => t.type === "list_item_open" && t.level === 1).map((t) => ({ line: t.map[0] }));
}

/**
 * The state of the unfinished block (`tokens`, parsed from `text`, its first
 * line `line`, rendered as `node`) if it is a list or table that has finished
 * items or rows, else null. Its `at` is an offset in `text`.
 */
export function openContainer(tokens, text, line, node) {
  const first = tokens[0];
  if (!node || !CONTAINERS.includes(first.type)) return null;
  const table = first.type === "table_open";
  const headLines = table ? 2 : 0; // a table's header and delimiter rows
  const container = {
    type: first.type,
    markup: first.markup,
    head: text.slice(lineOffset(text, line), lineOffset(text, line + headLines)),
    headLines,
    loose: looseList(tokens),
    items: table ? node.tBodies[0] : node, // the element whose children are the items or rows
    settled: 0, // its children that stay
    at: lineOffset(text, line + headLines), // where the unfinished items or rows start
    html: null, // the unfinished part as last rendered
  };
  if (!container.items) return null;
  settleChildren(container, tokens, text, line + headLines);
  return container.settled ? container : null;
}

/**
 * After a render of `text`, whose line `restLine` is where the container's
 * unfinished items or rows started: settle those now finished.
 */
export function settleChildren(container, tokens, text, restLine) {
  const children = childrenOf(tokens);
  const settle = children.length - unsettled(text, children);
  if (settle <= 0) return;
  container.settled += settle;
  container.at += lineOffset(text, children[settle].line) - lineOffset(text, restLine);
  container.html = null;
}
