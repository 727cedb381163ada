/**
 * What to tell the user, and the one notice line that says it: every
 * failure becomes a sentence that says what to do, never an error code.
 */
//
// Errors reach the user as a sentence that says what to do (`advise`): wait
// so long (Retry-After), shorten the message, check the connection. One
// notice shows at a time; its `kind` names who owns it, so that only its
// owner clears it.

import { state } from "./conversation.js";
import { $ } from "./dom.js";

// What a Retry-After-less 429/503 waits; API.md sets the header, so rarely used.
const DEFAULT_WAIT_S = 5;

/** "20 seconds", "1 second", "3 minutes": a wait in words. */
function duration(seconds) {
  const s = Math.max(1, Math.ceil(seconds));
  if (s < 90) return `${s} second${s === 1 ? "" : "s"}`;
  return `${Math.ceil(s / 60)} minutes`;
}

/**
 * A failed request as a sentence saying what to do about it. `err` has the
 * HTTP `status`, API.md's error `code`, the server's `message` and the
 * `retryAfterS` it asked for; no `status` means the request never got an
 * answer (offline, server unreachable). `doing` is what failed: "send",
 * "stop" and "decide" (a tool card's Approve or Deny) the user does again;
 * "start" (a new chat) and "load" (the chat's snapshot) the page retries by
 * itself. Returns `{text, waitS}`; `waitS` is
 * set when the server asked us to wait, so the page can count it down.
 */
export function advise(err, { doing = "send", online = true, length = 0 } = {}) {
  const auto = doing === "start" || doing === "load";
  const again = { stop: "press Stop again", decide: "press Approve or Deny again" }[doing] || "send again";
  const waitFor = (cause, seconds) => ({
    text: `${cause} ${auto ? `We'll try again in ${duration(seconds)}.` : `Wait ${duration(seconds)} and ${again}.`}`,
    waitS: seconds,
  });
  const wait = err.retryAfterS ?? DEFAULT_WAIT_S;
  if (!err.status) {
    const cause = online ? "Cannot reach the server." : "You are offline.";
    return { text: `${cause} Check your connection${auto ? "; we'll keep trying." : ` and ${again}.`}` };
  }
  switch (err.code) {
    case "rate_limited":
      return waitFor(doing === "start" ? "Too many new chats from here." : "You are sending messages too quickly.", wait);
    case "too_many_streams":
      return waitFor("The server is busy.", wait);
    case "unavailable":
      return waitFor("The service is having trouble right now.", wait);
    case "prompt_too_large": {
      const size = length ? ` (${length.toLocaleString("en")} characters)` : "";
      return { text: `Your message is too long${size}. Shorten it and send again.` };
    }
    case "generation_active":
      return { text: "An answer is still being written. Wait for it to finish, or press Stop, then send again." };
    case "empty_prompt":
      return { text: "Type a message first." };
    case "unauthorized":
      return { text: "Your access to this chat has expired. Open the chat from your app again." };
  }
  if (err.status >= 500) {
    const cause = "Something went wrong on the server.";
    return { text: `${cause} ${auto ? "We'll keep trying." : `Wait a moment and ${again}.`}` };
  }
  const failed = {
    send: "Not sent", stop: "Could not stop the answer", start: "Cannot start a chat",
    decide: "Your decision was not recorded",
  };
  return { text: `${failed[doing] || "Failed"}: ${err.message || `HTTP ${err.status}`}` };
}

const ANSWER_TROUBLE = {
  upstream_error: "The model could not answer.",
  upstream_timeout: "The model took too long to answer.",
  worker_lost: "The answer was cut off on our side.",
};

/** An answer's `error` event (or a stored failure) as a sentence with what to do. */
export function answerTrouble(code) {
  return `${ANSWER_TROUBLE[code] || "The answer failed."} Press Retry to ask again.`;
}

// ---- the notice: one at a time, each a sentence the user can act on ----

const shown = { kind: null, ticker: 0 }; // the notice on screen, and its countdown

/**
 * Show `text` (or hide the notice when it is empty). `kind` names who owns
 * it, so that only its owner clears it; a `weak` notice (the connection's)
 * does not push another one aside. While the chat is gone its notice stays,
 * save for a new chat's own trouble. `action`: {label, run} for a button.
 */
export function notice(text, { kind = null, weak = false, action = null } = {}) {
  if (state.gone && kind !== "gone" && kind !== "start") return;
  if (weak && shown.kind && shown.kind !== kind) return;
  clearInterval(shown.ticker);
  shown.kind = text ? kind : null;
  shown.ticker = 0;
  $("notice-text").textContent = text || "";
  $("notice").hidden = !text;
  $("notice").dataset.kind = kind || "";
  const button = $("notice-action");
  button.hidden = !action;
  button.textContent = action?.label || "";
  button.onclick = action?.run || null;
}

/** Hide the notice if `kind` owns it. */
export function clearNotice(kind) {
  if (shown.kind === kind) notice("");
}

/**
 * Tell the user what went wrong and what to do (`advise`). When the server
 * asked us to wait, count the wait down in the sentence, and clear it once
 * the wait is over; a wait before sending again holds Send, and `refresh`
 * (the page's controls) runs when it ends. Returns the advice.
 */
export function showAdvice(err, context, kind, refresh = () => {}) {
  const online = navigator.onLine;
  const advice = advise(plain(err), { online, ...context });
  notice(advice.text, { kind });
  if (advice.waitS) {
    const until = Date.now() + advice.waitS * 1000;
    if (kind === "send") {
      state.holdUntil = until;
      setTimeout(refresh, until - Date.now() + 50); // even if another notice replaced this one
    }
    shown.ticker = setInterval(() => {
      const left = (until - Date.now()) / 1000;
      if (left > 0) {
        $("notice-text").textContent = advise({ ...plain(err), retryAfterS: left }, { online, ...context }).text;
        return;
      }
      clearNotice(kind);
      refresh();
    }, 1000);
  }
  return advice;
}

/** The fields `advise` reads, off an error of any kind (the client's RelayError has `retryAfterMs`). */
export function plain(err) {
  const retryAfterS = err.retryAfterS ?? (err.retryAfterMs == null ? null : err.retryAfterMs / 1000);
  return { status: err.status, code: err.code, message: err.message, retryAfterS };
}
