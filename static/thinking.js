/**
 * The Thinking block: a reasoning model's reasoning, in a <details> above
 * its answer, open while it streams and closed once the answer starts.
 */
//
// Unless the reader chose otherwise for that answer: a click on the summary
// is their choice, kept while the answer streams and, per tab, across reloads
// (sessionStorage). The block is updated in place, so text selected in it
// stays selected while more streams in.

import { unfinished } from "./conversation.js";
import { el, growText } from "./dom.js";

const THINKING_KEY = "relay.thinking"; // the reader's open/closed choice per answer
const THINKING_KEPT = 100; // choices remembered, newest kept

let thinkingChoices = null; // message id -> open (true) or closed (false)

function thinkingChoice(id) {
  if (!thinkingChoices) {
    try {
      thinkingChoices = new Map(JSON.parse(sessionStorage.getItem(THINKING_KEY) || "[]"));
    } catch {
      thinkingChoices = new Map();
    }
  }
  return thinkingChoices.get(id);
}

function chooseThinking(id, open) {
  thinkingChoice(id); // loaded
  thinkingChoices.delete(id); // re-inserted as the newest
  thinkingChoices.set(id, open);
  const kept = [...thinkingChoices].slice(-THINKING_KEPT);
  try {
    sessionStorage.setItem(THINKING_KEY, JSON.stringify(kept));
  } catch {
    // Storage full or refused: the choice still holds until the page is left.
  }
}

/** The block for answer `id`: a <details> that `showThinking` keeps up to date. */
export function thinkingView(id) {
  const details = el("details");
  details.className = "thinking";
  const summary = el("summary");
  // A click (or Enter/Space on the summary) is the reader's choice; a
  // re-render setting `open` is not, so `toggle` would not tell them apart.
  summary.addEventListener("click", () => chooseThinking(id, !details.open));
  const text = el("div");
  text.className = "reasoning";
  details.append(summary, text);
  return details;
}

/** Bring the block up to date with `message`'s reasoning. */
export function showThinking(details, message) {
  const thinking = unfinished(message) && !message.content;
  details.dataset.state = thinking ? "thinking" : "thought";
  const open = thinkingChoice(message.id) ?? thinking;
  if (details.open !== open) details.open = open;
  const [summary, text] = details.children;
  growText(summary, thinking ? "Thinking…" : "Thought process");
  growText(text, message.reasoning);
}
