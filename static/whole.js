/**
 * Answers without streaming (the header's toggle, issue 7): the choice, kept
 * per browser; the client's whole-answer mode does the waiting.
 */
//
// With the toggle on, the Session (clients/js/src/session.js) asks for each
// unfinished answer whole, with `GET .../messages/{mid}?wait=`, and shows it
// once finished; its events only move the cursor. Turning it off mid-answer
// reloads the snapshot, which has the text so far, and the answer streams on.

import { state } from "./conversation.js";

const WITHOUT_STREAMING_KEY = "relay.withoutStreaming";

export function setWithoutStreaming(on) {
  state.withoutStreaming = on;
  try {
    localStorage.setItem(WITHOUT_STREAMING_KEY, on ? "1" : "0");
  } catch {
    // Storage disabled: the choice lasts until the page is closed.
  }
  state.session?.setWhole(on);
}

export function storedWithoutStreaming() {
  try {
    return localStorage.getItem(WITHOUT_STREAMING_KEY) === "1";
  } catch {
    return false;
  }
}
