/**
 * relay's chat page: render the session's snapshot, then follow its events;
 * send, stop and regenerate. This module wires the others together.
 */
//
// The modules, by role:
//   conversation.js    the answer model: state, events folded in exactly once
//   api.js             the network edge: the HTTP API, one function a request,
//   transport.js         and following events over SSE or long-polling
//   views.js           messages on the page, updated in place; thinking.js,
//                        the Thinking block
//   markdown.js        rendering: Markdown to safe DOM (markdown-it, DOMPurify);
//   markdown_view.js     an answer as it streams (markdown_tail.js: its
//                        unfinished end; dom_patch.js: patching in place)
//   controls.js        controls and layout: composer, header, buttons, scrolling
//   notices.js         what to tell the user when something fails
//   whole.js           answers without streaming (the header's toggle)
//   dom.js             small DOM helpers
//
// Access control (API.md): a team's app opens the page with a token in the
// URL fragment (`#access_token=`), which browsers never send to a server.
// The page takes it, drops it from the address bar (a copied link or a
// bookmark does not carry it; ?session= stays) and keeps it for the tab. A
// refused token (401) stops the page with a sentence saying to open it again
// from the app.
//
// A chat link that is malformed or names no chat says so, with a button to
// start a new chat, rather than quietly opening another one.

import * as api from "./api.js";
import { accept, activeAnswer, codePoints, idAfter, passOver, state } from "./conversation.js";
import { bindUi, showConnection, updateChrome } from "./controls.js";
import { $ } from "./dom.js";
import { advise, clearNotice, notice, plain, showAdvice } from "./notices.js";
import { follow } from "./transport.js";
import { addView, changed, flush, renderAll } from "./views.js";
import {
  claimWholeAnswers, initWholeAnswers, releaseWholeAnswers, setWithoutStreaming,
  storedWithoutStreaming,
} from "./whole.js";

const SESSION_KEY = "relay.session";
const TOKEN_KEY = "relay.accessToken"; // sessionStorage: this tab only
const SESSION_ID = /^[A-Za-z0-9_-]{8,64}$/;

let transport = null; // transport.follow()'s handle, once the snapshot is shown

/** Say what failed and what to do; a wait before sending again holds Send meanwhile. */
function tell(err, context, kind) {
  return showAdvice(err, context, kind, updateChrome);
}

function connectionChanged() {
  if (transport) showConnection(transport.status());
}

// ---- applying events ----

/** Apply an event unless already seen. Returns true when it was new. */
function receive(ev) {
  if (ev.event === "reset") {
    // Our cursor is older than the retained stream: start again from a snapshot.
    reloadSnapshot();
    return false;
  }
  if (state.reloading) {
    state.queued.push(ev);
    return false;
  }
  // An answer shown whole: its events only move the cursor (SSE still proves it delivers).
  if (state.wholeIds.has(ev.data?.message_id)) return passOver(state, ev);
  const outcome = accept(state, ev);
  if (outcome === "seen") return false;
  if (outcome === "ok") {
    if (ev.event === "start") state.dueSince = Date.now();
    changed(ev.data.message_id);
  } else {
    // "unknown": a prompt from another tab; "mismatch": text went missing.
    // The snapshot has both, and `end` means the answer is stored.
    reloadSnapshot();
  }
  return true;
}

function adoptSnapshot(snapshot) {
  const behind = idAfter(state.cursor, snapshot.cursor);
  state.messages = snapshot.messages;
  state.byId = new Map(snapshot.messages.map((m) => [m.id, m]));
  state.cursor = snapshot.cursor;
  if (activeAnswer()) state.dueSince = Date.now();
  // Before rendering: without streaming, a snapshot's text so far is not shown.
  claimWholeAnswers();
  renderAll();
  // The transport goes on from its own position; a snapshot older than what
  // we had applied (never expected) would leave a gap, so start it afresh.
  if (behind) transport?.restart();
}

/** Reload the snapshot once, however many callers ask meanwhile; events wait. */
function reloadSnapshot() {
  if (!state.reloading) {
    state.reloading = fetchSnapshot()
      .catch((err) => {
        if (err.status === 404) sessionGone();
        else if (err.status !== 401) throw err; // 401: accessRefused said so
      })
      .finally(() => {
        state.reloading = null;
        state.queued.splice(0).forEach(receive);
      });
  }
  return state.reloading;
}

/** GET the snapshot and show it, retrying until it answers; 404 is final. */
async function fetchSnapshot() {
  for (let failures = 0; ; failures++) {
    try {
      adoptSnapshot(await api.getSnapshot(state.sid));
      clearNotice("load");
      return;
    } catch (err) {
      if (err.status === 404 || err.status === 401) throw err;
      // One failure is routine (a restart, a flaky hop); then the user should know.
      if (failures) tell(err, { doing: "load" }, "load");
      await api.sleep(api.retryDelay(err, failures + 1));
    }
  }
}

// ---- actions ----

async function send(content) {
  if (!content.trim() || state.sending || activeAnswer() || state.gone) return;
  if (Date.now() < state.holdUntil) return; // the notice counts the wait down
  state.sending = true;
  state.dueSince = Date.now();
  clearNotice("send");
  updateChrome();
  try {
    const accepted = await api.postPrompt(state.sid, content, () =>
      notice("The connection dropped while sending; trying again…", { kind: "send" }));
    clearNotice("send");
    clearNotice("load"); // "this is a new one" has been read by now
    if ($("prompt").value === content) $("prompt").value = "";
    // Its `start` may have come first and made a snapshot reload show it.
    if (state.reloading) await state.reloading.catch(() => {});
    if (!state.byId.has(accepted.message_id)) {
      addMessage({ id: `local-${accepted.message_id}`, role: "user", content, status: "done" });
      addMessage({ id: accepted.message_id, role: "assistant", content: "", status: "queued", model: null });
    }
    state.dueSince = Date.now();
  } catch (err) {
    // The text stays in the box, so "send again" is one tap away.
    if (err.code !== "session_not_found") tell(err, { length: codePoints(content) }, "send");
    // Did it land before the connection failed? The snapshot says (and a
    // chat deleted meanwhile answers 404, which says so).
    reloadSnapshot();
  } finally {
    state.sending = false;
    updateChrome();
  }
}

function addMessage(message) {
  state.messages.push(message);
  state.byId.set(message.id, message);
  claimWholeAnswers();
  addView(message);
}

/** Send again the prompt that a failed answer answered. */
function retry(answerId) {
  const index = state.messages.findIndex((m) => m.id === answerId);
  const prompt = state.messages.slice(0, index).reverse().find((m) => m.role === "user");
  if (prompt) send(prompt.content);
}

async function stop() {
  const active = activeAnswer();
  if (!active) return;
  state.cancelling = active.id;
  changed(active.id);
  try {
    await api.cancelAnswer(state.sid, active.id);
  } catch (err) {
    state.cancelling = null;
    changed(active.id);
    tell(err, { doing: "stop" }, "stop");
  }
}

/** Ask for the last answer again: the server supersedes it and queues a new one. */
async function regenerate() {
  const last = state.messages.at(-1);
  if (!last || state.sending || activeAnswer() || state.gone) return;
  state.sending = true;
  clearNotice("send");
  updateChrome();
  try {
    await api.regenerateAnswer(state.sid, last.id);
    state.dueSince = Date.now();
    // The snapshot leaves the superseded answer out and has the new one queued;
    // its events then follow as for any answer.
    await reloadSnapshot();
  } catch (err) {
    tell(err, {}, "send");
  } finally {
    state.sending = false;
    updateChrome();
  }
}

/** A new session, trying again (and saying so) until the server gives one. */
async function createSession() {
  for (let failures = 1; ; failures++) {
    try {
      const sid = await api.createSession();
      clearNotice("start");
      return sid;
    } catch (err) {
      if (err.status === 401) throw err; // accessRefused said so
      tell(err, { doing: "start" }, "start");
      await api.sleep(api.retryDelay(err, failures));
    }
  }
}

// ---- the session and its token ----

function remember(sid) {
  state.sid = sid;
  try {
    localStorage.setItem(SESSION_KEY, sid);
  } catch {
    // Storage disabled: the URL still carries the session.
  }
  const url = new URL(location.href);
  url.searchParams.set("session", sid);
  history.replaceState(null, "", url);
}

/** The chat this tab last used, if it kept one. */
function storedSession() {
  try {
    const stored = localStorage.getItem(SESSION_KEY);
    return SESSION_ID.test(stored || "") ? stored : null;
  } catch {
    return null;
  }
}

async function newChat() {
  const sid = await createSession();
  remember(sid);
  location.reload();
}

/** Take `#access_token=` from the URL (then drop it from the address bar), else the tab's. */
function takeToken() {
  const given = new URLSearchParams(location.hash.slice(1)).get("access_token");
  if (given) {
    const url = new URL(location.href);
    url.hash = "";
    history.replaceState(null, "", url);
    try {
      sessionStorage.setItem(TOKEN_KEY, given);
    } catch {
      // Storage disabled: the token lasts until the page is reloaded.
    }
  }
  try {
    api.access.token = given || sessionStorage.getItem(TOKEN_KEY);
  } catch {
    api.access.token = given;
  }
}

const GONE = {
  malformed: "This chat link is not valid. Check that you copied all of it, or start a new chat.",
  missing: "This chat link is not valid or the chat no longer exists.",
  deleted: "This chat no longer exists.",
};

/** The chat cannot be used (why: a GONE key): stop following it, say so, offer a new one. */
function sessionGone(why = "deleted") {
  stopFollowing();
  notice(GONE[why], { kind: "gone", action: { label: "Start a new chat", run: newChat } });
  updateChrome();
}

/** The server refused our token (expired, or none): only the app can give a fresh one. */
function accessRefused(err) {
  if (state.gone) return;
  stopFollowing();
  notice(advise(plain(err)).text, { kind: "gone" });
  updateChrome();
}

function stopFollowing() {
  state.gone = true;
  releaseWholeAnswers();
  transport?.close();
  $("composer").hidden = true;
  $("connection").hidden = true;
}

/** The tab is back or the network returned: catch up now, not at the next retry. */
function catchUp() {
  if (!state.gone) transport?.catchUp();
}

// ---- boot ----

async function boot() {
  takeToken(); // first: the fragment leaves the address bar before anything else runs
  api.access.refused = accessRefused;
  initWholeAnswers({ reload: reloadSnapshot, gone: () => sessionGone() });
  state.withoutStreaming = storedWithoutStreaming();
  bindUi({
    send, stop, regenerate, retry, newChat, setWithoutStreaming,
    shown: () => {
      flush();
      catchUp();
    },
    online: catchUp,
    offline: connectionChanged,
  });
  const linked = new URLSearchParams(location.search).get("session");
  // A link names the chat the user means: if it cannot be opened, say so
  // (and keep the chat this browser remembers) rather than open another.
  if (linked !== null && !SESSION_ID.test(linked)) return void sessionGone("malformed");
  state.sid = linked || storedSession() || await createSession();
  try {
    await fetchSnapshot();
  } catch (err) {
    if (err.status !== 404) throw err;
    if (linked) return void sessionGone("missing");
    // The chat this browser remembered is gone (deleted, another server):
    // nobody asked for it by name, so start afresh.
    state.sid = await createSession();
    await fetchSnapshot();
    notice("Your last chat no longer exists; this is a new one.", { kind: "load" });
  }
  remember(state.sid);
  transport = follow(state.sid, {
    cursor: () => state.cursor,
    receive,
    reload: reloadSnapshot,
    reloading: () => state.reloading,
    dueSince: () => (activeAnswer() || state.sending ? state.dueSince : null),
    gone: () => sessionGone(),
    changed: connectionChanged,
  });
}

if ($("composer")) boot().catch((err) => {
  if (!state.gone) throw err; // a refused token stopped the page, and said so
});
