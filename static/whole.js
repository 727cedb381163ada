/**
 * Answers without streaming (the header's toggle, issue 7): each unfinished
 * answer is asked for whole, with `GET .../messages/{mid}?wait=`, and shown
 * once it is finished; its events only move the cursor.
 */
//
// The events of an answer shown whole still move the cursor
// (conversation.passOver), so the stream stays in step for everything else.
// Turning the toggle off mid-answer reloads the snapshot, which has the text
// so far, and the answer streams on from its cursor.

import { backoff, getMessage, sleep } from "./api.js";
import { UNFINISHED, state, unfinished } from "./conversation.js";
import { changed } from "./views.js";

const WITHOUT_STREAMING_KEY = "relay.withoutStreaming";
// At most 25 (API.md), and under Heroku's 30 s router window.
const WHOLE_WAIT_S = 25;
// A wait that comes back unfinished sooner than this did not wait (a server
// restarting?): back off rather than ask again at once.
const WHOLE_MIN_WAIT_MS = 1000;

/** What a wait needs of the page: `reload()` the snapshot; the session is `gone()`. */
const page = { reload: () => {}, gone: () => {} };

export function initWholeAnswers(hooks) {
  Object.assign(page, hooks);
}

/** Without streaming, every unfinished answer waits to be shown whole. */
export function claimWholeAnswers() {
  if (!state.withoutStreaming) return;
  for (const message of state.messages) {
    if (unfinished(message) && !state.waits.has(message.id)) waitForWhole(message.id);
  }
}

function waitForWhole(id) {
  const controller = new AbortController();
  state.wholeIds.add(id);
  state.waits.set(id, controller);
  changed(id);
  wholeLoop(id, controller.signal);
}

/** GET the answer with ?wait= until it is finished, then show it. */
async function wholeLoop(id, signal) {
  let failures = 0;
  while (!signal.aborted) {
    const asked = Date.now();
    try {
      const message = await getMessage(state.sid, id, WHOLE_WAIT_S, signal);
      if (signal.aborted) return;
      if (!UNFINISHED.includes(message.status)) return void showWhole(message);
      // Still being written: the wait ran out, so ask again, at once unless
      // the server answered without waiting.
      failures = Date.now() - asked < WHOLE_MIN_WAIT_MS ? failures + 1 : 0;
    } catch (err) {
      if (signal.aborted) return;
      if (err.body?.error?.code === "session_not_found") return void page.gone();
      if (err.status === 404) return void wholeLost(id);
      failures++;
    }
    if (failures) await sleep(backoff(failures), signal);
  }
}

function showWhole(final) {
  state.waits.delete(final.id);
  const shown = state.byId.get(final.id);
  if (!shown) return;
  Object.assign(shown, final);
  changed(final.id);
}

/** The server does not know the answer (never expected): let the snapshot say what is true. */
function wholeLost(id) {
  state.waits.delete(id);
  state.wholeIds.delete(id);
  page.reload();
}

/** Stop every whole-answer wait; true when some answer was still being waited for. */
export function releaseWholeAnswers() {
  const waiting = [...state.waits.keys()];
  for (const id of waiting) {
    state.waits.get(id).abort();
    state.waits.delete(id);
    state.wholeIds.delete(id);
  }
  return waiting.length > 0;
}

export function setWithoutStreaming(on) {
  state.withoutStreaming = on;
  try {
    localStorage.setItem(WITHOUT_STREAMING_KEY, on ? "1" : "0");
  } catch {
    // Storage disabled: the choice lasts until the page is closed.
  }
  if (on) claimWholeAnswers();
  // Its events were passed over: the snapshot has the text so far, and the
  // stream goes on from the snapshot's cursor.
  else if (releaseWholeAnswers()) page.reload();
}

export function storedWithoutStreaming() {
  try {
    return localStorage.getItem(WITHOUT_STREAMING_KEY) === "1";
  } catch {
    return false;
  }
}
