/**
 * The page's state: the conversation is the JS client's Session (its
 * messages, folded from snapshots and events exactly once), plus what only
 * the page knows (sending, a stop asked for, a wait the server asked for).
 */
//
// The answer model itself (parts in order, statuses, the exactly-once
// cursor) lives in the client, clients/js/src/answers.js and session.js,
// served to the browser as /static/client/ (webapp/http/pages.py).

import { UNFINISHED } from "./client/index.js";

/** The page's state: one object, read by the views, changed by chat.js. */
export const state = {
  session: null, // the client's Session, once the chat is open
  sending: false,
  holdUntil: 0, // the server asked us not to send before then (Retry-After)
  gone: false, // the session no longer exists, the link names none, or access was refused
  cancelling: null, // message id we asked to stop
  withoutStreaming: false, // the toggle: show answers whole, not as they stream
  deciding: new Map(), // tool call id -> "approve" or "deny": this tab's decision on its way
  /** The messages, oldest first (the session's). */
  get messages() {
    return this.session?.messages ?? [];
  },
  get byId() {
    return this.session?.byId ?? new Map();
  },
};

export function unfinished(message) {
  return message.role === "assistant" && UNFINISHED.includes(message.status);
}

/**
 * The session's active answer, if any (at most one): being written, or
 * `waiting` for a tool decision (API.md: a new prompt gets 409, Stop ends it).
 */
export function activeAnswer() {
  return state.messages.find((m) => unfinished(m) || (m.role === "assistant" && m.status === "waiting"));
}

/** True while the answer is shown whole once finished (without streaming), not as it streams. */
export function waitingWhole(message) {
  return Boolean(state.session?.waitingWhole(message.id)) && unfinished(message);
}
