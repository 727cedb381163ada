/**
 * The answer model: the page's conversation and how each event folds into
 * it, exactly once and in order. No DOM, no network.
 */
//
// Exactly once: every event carries a stream id that only grows (API.md,
// "Events"), so the page keeps one cursor, the id of the last event it
// applied, and applies an event only when its id is after the cursor.
// However events reach us (EventSource and its reconnects, long-polls,
// probes, a snapshot reload), each is applied once and in order.

export const UNFINISHED = ["queued", "streaming"];

/** The page's state: one object, read by the views, changed by chat.js. */
export const state = {
  sid: null,
  cursor: "0-0", // id of the last event applied
  messages: [], // snapshot message objects, oldest first
  byId: new Map(),
  reloading: null, // a Promise while the snapshot is being reloaded
  queued: [], // events that arrived during a reload
  sending: false,
  holdUntil: 0, // the server asked us not to send before then (Retry-After)
  gone: false, // the session no longer exists, or the link names none
  cancelling: null, // message id we asked to stop
  dueSince: 0, // when the page last learned an answer is due
  withoutStreaming: false, // the toggle: show answers whole, not as they stream
  wholeIds: new Set(), // answers whose text comes from GET ?wait, never from events
  waits: new Map(), // answer id -> AbortController of its running whole-answer wait
};

export function unfinished(message) {
  return message.role === "assistant" && UNFINISHED.includes(message.status);
}

/** The answer being written, if any (a session has at most one). */
export function activeAnswer() {
  return state.messages.find(unfinished);
}

/** True while the answer is shown whole once finished (without streaming), not as it streams. */
export function waitingWhole(message) {
  return state.waits.has(message.id) && unfinished(message);
}

/** True when stream id `a` comes after `b` (ids are `<ms>-<seq>`, 64-bit). */
export function idAfter(a, b) {
  const [am, as] = a.split("-").map(BigInt);
  const [bm, bs] = b.split("-").map(BigInt);
  return am > bm || (am === bm && as > bs);
}

/** Characters as the server counts them (`len()` of a Python str): code points. */
export function codePoints(text) {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/**
 * Fold one event into the message it names. Returns "ok", "unknown" (the
 * message is not on the page: another tab posted it) or "mismatch" (after
 * `end`, the text is not as long as the server says).
 */
export function applyEvent(byId, { event, data }) {
  const message = byId.get(data.message_id);
  if (!message) return "unknown";
  if (event === "start") {
    // A start after the first is a new attempt (a worker was lost): its text
    // starts over, so drop what was shown.
    Object.assign(message, {
      content: "", reasoning: "", status: "streaming", model: data.model, attempt: data.attempt,
      error: null,
    });
  } else if (event === "chunk") {
    message.content += data.text;
    message.status = "streaming";
  } else if (event === "reasoning") {
    message.reasoning = (message.reasoning || "") + data.text;
    message.status = "streaming";
  } else if (event === "end") {
    message.status = data.finish_reason === "cancelled" ? "cancelled" : "done";
    message.finish_reason = data.finish_reason;
    message.usage = data.usage;
    if (codePoints(message.content) !== data.text_length) return "mismatch";
    const reasoning = data.reasoning_length;
    if (reasoning !== undefined && codePoints(message.reasoning || "") !== reasoning) {
      return "mismatch";
    }
  } else if (event === "error") {
    message.status = "error";
    message.error = data.error;
  }
  return "ok";
}

/**
 * Take one event into the conversation `{cursor, byId}` unless it was seen:
 * "seen" for an id at or before the cursor, else applyEvent's outcome.
 */
export function accept(conversation, ev) {
  if (!ev.id || !idAfter(ev.id, conversation.cursor)) return "seen";
  conversation.cursor = ev.id;
  return applyEvent(conversation.byId, ev);
}

/**
 * An event of an answer shown whole: it moves the cursor and nothing else.
 * Returns true when it was new.
 */
export function passOver(conversation, ev) {
  if (!ev.id || !idAfter(ev.id, conversation.cursor)) return false;
  conversation.cursor = ev.id;
  return true;
}
