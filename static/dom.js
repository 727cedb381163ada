/** Small DOM helpers the views share: find by id, make an element, grow its text. */

export const $ = (id) => document.getElementById(id);

/** A new `tag` element, its text set with textContent (never parsed as HTML). */
export function el(tag, text) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * Set `node`'s text to `text`. Text that only grew is appended to its text
 * node, so a reader's selection in it survives a streaming update.
 */
export function growText(node, text) {
  const shown = node.firstChild;
  if (shown?.nodeType === Node.TEXT_NODE && !shown.nextSibling) {
    if (shown.data === text) return;
    if (text.startsWith(shown.data)) return void shown.appendData(text.slice(shown.data.length));
  }
  node.textContent = text;
}
