/**
 * Tool call cards: each call an answer makes, with its name, its arguments
 * (collapsed), its live status and its result; Approve and Deny while the
 * answer waits for a person's decision.
 */
//
// The cards are built from the answer model's tool parts (clients/js/src/
// answers.js: `{type: "tool", call_id, name, arguments, status, output,
// error}`), so a reload, a second tab and a phone show the same thing: the
// snapshot and the events carry every status. Updated in place: an open
// Arguments block stays open while the answer streams on. Every text goes
// in with textContent, never as HTML: arguments and outputs are the model's
// and the tools', and untrusted.

import { el, growText } from "./dom.js";

const STATUS_LABEL = {
  running: "running…",
  waiting_approval: "needs your approval",
  waiting_output: "waiting for the app",
  ok: "done",
  error: "failed",
  denied: "denied",
  in_doubt: "may or may not have happened",
};
const DECIDING_LABEL = { approve: "approving…", deny: "denying…" }; // posted, not yet recorded
const DECIDED_LABEL = { approve: "approved", deny: "denied" }; // recorded, the answer goes on
const RESULT = {
  denied: () => "Denied: it did not run.",
  error: (part) => `It failed: ${part.error || "no reason given"}`,
  in_doubt: () =>
    "The server stopped while this ran, so this action may or may not have happened. " +
    "It was not run again, so that it cannot happen twice: check before you ask for it again.",
  ok: (part) => (typeof part.output === "string" ? part.output : JSON.stringify(part.output, null, 2)),
};

/** The cards of one answer, in a box the message view places above its text. */
export class ToolCards {
  constructor() {
    this.box = el("div");
    this.box.className = "tools";
    this.box.hidden = true;
    this.cards = new Map(); // call id -> card elements
  }

  /**
   * Show `message`'s tool parts. `deciding(callId)` is this tab's decision
   * on its way ("approve" or "deny"), if any.
   */
  show(message, deciding) {
    const parts = (message.parts || []).filter((part) => part.type === "tool");
    const ids = new Set(parts.map((part) => part.call_id));
    for (const [id, card] of this.cards) {
      if (ids.has(id)) continue;
      card.root.remove(); // a new attempt dropped it
      this.cards.delete(id);
    }
    parts.forEach((part, index) => {
      const card = this.cards.get(part.call_id) ?? this.add(part);
      const there = this.box.children[index];
      if (there !== card.root) this.box.insertBefore(card.root, there ?? null);
      update(card, part, message.status === "waiting", deciding(part.call_id));
    });
    this.box.hidden = parts.length === 0;
  }

  add(part) {
    const root = el("div");
    root.className = "tool-card";
    root.dataset.callId = part.call_id;
    const head = el("div");
    head.className = "tool-head";
    const name = el("span", part.name);
    name.className = "tool-name";
    const status = el("span");
    status.className = "tool-status";
    head.append(name, status);
    const args = el("details");
    args.className = "tool-arguments";
    const code = el("pre");
    args.append(el("summary", "Arguments"), code);
    const result = el("div");
    result.className = "tool-result";
    const actions = el("div");
    actions.className = "tool-actions";
    actions.append(decision("approve", "Approve"), decision("deny", "Deny"));
    root.append(head, args, result, actions);
    const card = { root, status, code, result, actions };
    this.cards.set(part.call_id, card);
    return card;
  }
}

function decision(kind, text) {
  const button = el("button", text);
  button.type = "button";
  button.className = kind;
  button.dataset.decision = kind;
  return button;
}

function update(card, part, answerWaits, deciding) {
  card.root.dataset.status = part.status;
  card.root.dataset.runsOn = part.runs_on || "server";
  // Only a waiting answer takes a decision: a call sent again as the answer
  // goes on (API.md, `from_step`) shows as asked until its result comes.
  const asks = part.status === "waiting_approval" && answerWaits;
  growText(card.status, label(part, answerWaits, deciding));
  const args = typeof part.arguments === "string" ? part.arguments : JSON.stringify(part.arguments, null, 2);
  growText(card.code, args ?? "");
  const result = RESULT[part.status]?.(part) ?? "";
  growText(card.result, result);
  card.result.hidden = !result;
  card.actions.hidden = !asks;
  for (const button of card.actions.children) button.disabled = Boolean(deciding);
}

function label(part, answerWaits, deciding) {
  if (part.status !== "waiting_approval") return STATUS_LABEL[part.status] || part.status;
  if (answerWaits) return deciding ? DECIDING_LABEL[deciding] : STATUS_LABEL.waiting_approval;
  return deciding ? DECIDED_LABEL[deciding] : "asks for approval";
}
