/**
 * The conversation on the page: one view per message, updated in place once
 * an animation frame while its answer streams: status badge, Thinking block,
 * the answer's Markdown, and what went wrong.
 */
//
// In place, never rebuilt: a reader can select text in an answer while it
// streams, and a re-render must neither flicker nor drop that selection.
// Each flush is timed as a User Timing measure, "relay:render": DevTools'
// Performance panel shows it, and bench/page_render.py collects it.

import { state, unfinished, waitingWhole } from "./conversation.js";
import { $, el, growText } from "./dom.js";
import { MarkdownView } from "./markdown_view.js";
import { answerTrouble } from "./notices.js";
import { nearBottom, scrollToEnd, updateChrome } from "./controls.js";
import { showThinking, thinkingView } from "./thinking.js";
import { ToolCards } from "./tools.js";

const RENDER_MEASURE = "relay:render";
const STATUS_LABEL = {
  queued: "waiting…", streaming: "writing…", waiting: "waiting for a decision", cancelled: "stopped",
  error: "failed",
};

let views = new Map(); // message id -> MessageView
const dirty = new Set();
let frame = 0;

/** The message changed: show it at the next animation frame. */
export function changed(messageId) {
  dirty.add(messageId);
  // Hidden tabs get no animation frames; visibilitychange flushes instead.
  if (!frame && !document.hidden) frame = requestAnimationFrame(flush);
}

/** Show every changed message now. */
export function flush() {
  frame = 0;
  const started = performance.now();
  const stick = nearBottom();
  for (const id of dirty) {
    const message = state.byId.get(id);
    if (message) views.get(id)?.update(message);
  }
  dirty.clear();
  updateChrome();
  if (stick) scrollToEnd();
  performance.measure(RENDER_MEASURE, { start: started });
  performance.clearMeasures(RENDER_MEASURE); // observers have it; keep no backlog
}

/** Show `state.messages` in order, keeping the views of messages still there. */
export function renderAll() {
  const stick = nearBottom();
  const kept = new Map();
  const items = state.messages.map((message) => {
    const view = views.get(message.id) ?? new MessageView(message);
    view.update(message);
    kept.set(message.id, view);
    return view.li;
  });
  views = kept;
  dirty.clear();
  const list = $("messages");
  if (items.length !== list.children.length || items.some((li, i) => list.children[i] !== li)) {
    list.replaceChildren(...items);
  }
  updateChrome();
  if (stick) scrollToEnd();
}

class MessageView {
  constructor(message) {
    this.role = message.role;
    this.li = el("li");
    this.li.className = `message ${message.role}`;
    this.li.dataset.messageId = message.id;
    this.li.dataset.role = message.role;
    const head = el("div");
    head.className = "head";
    this.name = el("span");
    this.badge = el("span");
    head.append(this.name);
    this.body = el("div");
    this.body.className = "body";
    this.li.append(head, this.body);
    this.markdown = message.role === "assistant" ? new MarkdownView(this.body) : null;
    this.tools = null; // the tool call cards, once the answer calls a tool
    this.thinking = null; // the Thinking block, while there is reasoning to show
    this.failure = null; // what went wrong, and its Retry button
    this.failureShown = null; // the error it shows, as JSON
  }

  update(message) {
    // Without streaming, the text so far (a snapshot's) is not shown either.
    const whole = waitingWhole(message);
    this.li.dataset.status = message.status;
    if (whole) this.li.dataset.whole = "waiting";
    else delete this.li.dataset.whole;
    growText(this.name, message.role === "user" ? "You" : message.model || "assistant");
    this.showBadge(badgeLabel(message, whole), whole ? "whole" : message.status);
    if (this.role === "user") growText(this.body, message.content);
    else this.markdown.show(whole ? "" : shownText(message), !unfinished(message));
    this.showThinking(message.reasoning && !whole ? message : null);
    this.showTools(whole ? null : message);
    this.showFailure(message.status === "error" ? message : null);
  }

  showBadge(label, kind) {
    if (!label) return void this.badge.remove();
    growText(this.badge, label);
    this.badge.className = `badge ${kind}`;
    if (!this.badge.parentNode) this.name.after(this.badge);
  }

  showThinking(message) {
    if (!message) {
      this.thinking?.remove();
      this.thinking = null;
      return;
    }
    if (!this.thinking) {
      this.thinking = thinkingView(message.id);
      (this.tools?.box ?? this.body).before(this.thinking);
    }
    showThinking(this.thinking, message);
  }

  /** The answer's tool calls as cards, between its Thinking block and its text. */
  showTools(message) {
    if (!this.tools && !message?.parts?.some((part) => part.type === "tool")) return;
    if (!this.tools) {
      this.tools = new ToolCards();
      this.body.before(this.tools.box);
    }
    this.tools.show(message ?? { parts: [] }, (callId) => state.deciding.get(callId));
  }

  showFailure(message) {
    const error = message ? JSON.stringify(message.error ?? null) : null;
    if (error === this.failureShown) return;
    this.failureShown = error;
    this.failure?.remove();
    this.failure = message ? failureView(message.error) : null;
    if (this.failure) this.body.after(this.failure);
  }
}

/**
 * An answer's text as shown: each step's text (steps are separate model
 * calls, with tool calls between them) a paragraph of its own, not run
 * together as `content` has them.
 */
function shownText(message) {
  const steps = [];
  for (const part of message.parts || []) {
    if (part.type !== "text" || !part.text) continue;
    if (steps.at(-1)?.step === part.step) steps.at(-1).text += part.text;
    else steps.push({ step: part.step, text: part.text });
  }
  if (steps.length < 2) return message.content;
  return steps.map((step) => step.text.trimEnd()).join("\n\n");
}

function badgeLabel(message, whole) {
  const stopping = message.id === state.cancelling;
  if (whole) return stopping ? "stopping…" : "waiting for the whole answer…";
  if (stopping && message.status === "streaming") return "stopping…";
  return message.finish_reason === "length" ? "cut off (length limit)" : STATUS_LABEL[message.status];
}

/** What went wrong with an answer, and a Retry button (controls.js handles its click). */
function failureView(error) {
  const box = el("div");
  box.className = "failure";
  const what = el("span", answerTrouble(error?.code));
  what.className = "advice";
  box.append(what);
  // The server's own words, for whoever reports the problem.
  if (error?.message) {
    const detail = el("span", error.message);
    detail.className = "detail";
    box.append(detail);
  }
  const retry = el("button", "Retry");
  retry.type = "button";
  retry.className = "retry";
  box.append(retry);
  return box;
}
