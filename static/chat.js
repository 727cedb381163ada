/**
 * relay's chat page: render the session's snapshot, then follow its events;
 * send, stop and regenerate. This module wires the others together.
 */
//
// The modules, by role:
//   client/            the transport and the answer model: the JS client
//                        library (clients/js/src, served as it is; API.md):
//                        SSE, long-poll fallback, exactly-once events, whole
//                        answers, tokens, tool decisions
//   conversation.js    the page's state around the client's Session
//   views.js           messages on the page, updated in place; thinking.js,
//                        the Thinking block; tools.js, tool call cards
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

import { codePoints, RelayClient } from "./client/index.js";
import { retryDelay, sleep } from "./client/retry.js";
import { activeAnswer, state } from "./conversation.js";
import { bindUi, showConnection, updateChrome } from "./controls.js";
import { $ } from "./dom.js";
import { advise, clearNotice, notice, plain, showAdvice } from "./notices.js";
import { changed, flush, renderAll } from "./views.js";
import { setWithoutStreaming, storedWithoutStreaming } from "./whole.js";

const SESSION_KEY = "relay.session";
const TOKEN_KEY = "relay.accessToken"; // sessionStorage: this tab only
const SESSION_ID = /^[A-Za-z0-9_-]{8,64}$/;
// EventSource, as the page always used: its token goes as `access_token`.
// A refused or buffered stream falls back to long-polling (the client).
const SESSION_OPTIONS = { transport: "eventsource" };
const STATUS_TICK_MS = 1000; // a connection that stays down gets a sentence after a while

let client = null; // the RelayClient, once the token is known

/** Say what failed and what to do; a wait before sending again holds Send meanwhile. */
function tell(err, context, kind) {
  if (err.status === 401) return void accessRefused(err);
  return showAdvice(err, context, kind, updateChrome);
}

function connectionChanged() {
  const session = state.session;
  if (session && !state.gone) showConnection(session.state);
}

/** Open chat `sid`: its snapshot shown, then its events followed; rejects on 404 and 401. */
async function openSession(sid) {
  const session = client.session(sid, { ...SESSION_OPTIONS, whole: state.withoutStreaming });
  state.session = session;
  session.on("change", (message) => {
    if (message) return void changed(message.id);
    clearNotice("load"); // a snapshot came
    renderAll();
  });
  // A snapshot that fails more than once (a restart is routine): the user should know.
  session.on("retrying", ({ error, failures }) => {
    if (failures > 1) tell(error, { doing: "load" }, "load");
  });
  await session.open();
  session.on("state", (now) => {
    if (now === "gone") sessionGone();
    else if (now === "unauthorized") accessRefused(session.error);
    else connectionChanged();
  });
  connectionChanged();
}

// ---- actions ----

async function send(content) {
  if (!content.trim() || state.sending || activeAnswer() || state.gone) return;
  if (Date.now() < state.holdUntil) return; // the notice counts the wait down
  state.sending = true;
  clearNotice("send");
  updateChrome();
  try {
    // Posted under an Idempotency-Key, again under the same key when the answer is lost.
    await state.session.send(content, {
      onRetry: () => notice("The connection dropped while sending; trying again…", { kind: "send" }),
    });
    clearNotice("send");
    clearNotice("new"); // "this is a new one" has been read by now
    if ($("prompt").value === content) $("prompt").value = "";
  } catch (err) {
    // The text stays in the box, so "send again" is one tap away. Did it
    // land before the connection failed? The session reloads its snapshot
    // (and a chat deleted meanwhile ends it, which says so).
    if (err.code !== "session_not_found") tell(err, { length: codePoints(content) }, "send");
  } finally {
    state.sending = false;
    updateChrome();
  }
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
    await state.session.cancel(active.id);
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
    await state.session.regenerate(last.id);
  } catch (err) {
    tell(err, {}, "send");
  } finally {
    state.sending = false;
    updateChrome();
  }
}

/** A person's decision on a tool call that waits for approval (a card's Approve or Deny). */
async function decide(messageId, callId, approved) {
  if (state.deciding.has(callId)) return;
  state.deciding.set(callId, approved ? "approve" : "deny");
  changed(messageId);
  try {
    await state.session.approve(messageId, callId, approved);
    clearNotice("decide");
  } catch (err) {
    // Settled meanwhile (another tab): its events show the decision that stands.
    if (err.code !== "tool_call_settled") tell(err, { doing: "decide" }, "decide");
    state.deciding.delete(callId);
    changed(messageId);
  }
}

/** A new session, trying again (and saying so) until the server gives one. */
async function createSession() {
  for (let failures = 1; ; failures++) {
    try {
      const { session_id: sid } = await client.createSession();
      clearNotice("start");
      return sid;
    } catch (err) {
      if (err.status === 401) throw accessRefused(err);
      tell(err, { doing: "start" }, "start");
      await sleep(retryDelay(err, failures));
    }
  }
}

// ---- the session and its token ----

function remember(sid) {
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
    return given || sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return given;
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
  if (state.gone) return err;
  stopFollowing();
  notice(advise(plain(err)).text, { kind: "gone" });
  updateChrome();
  return err;
}

function stopFollowing() {
  state.gone = true;
  state.session?.close();
  $("composer").hidden = true;
  $("connection").hidden = true;
}

// ---- boot ----

async function boot() {
  const token = takeToken(); // first: the fragment leaves the address bar before anything else runs
  client = new RelayClient(token ? { token } : {});
  state.withoutStreaming = storedWithoutStreaming();
  bindUi({
    send, stop, regenerate, retry, newChat, decide,
    setWithoutStreaming: (on) => {
      setWithoutStreaming(on);
      renderAll();
    },
    shown: flush, // the client catches up by itself (and on `online`)
    online: connectionChanged,
    offline: connectionChanged,
  });
  const linked = new URLSearchParams(location.search).get("session");
  // A link names the chat the user means: if it cannot be opened, say so
  // (and keep the chat this browser remembers) rather than open another.
  if (linked !== null && !SESSION_ID.test(linked)) return void sessionGone("malformed");
  try {
    await openSession(linked || storedSession() || await createSession());
  } catch (err) {
    if (err.status === 401) return void accessRefused(err);
    if (err.code !== "session_not_found") throw err;
    if (linked) return void sessionGone("missing");
    // The chat this browser remembered is gone (deleted, another server):
    // nobody asked for it by name, so start afresh.
    await openSession(await createSession());
    notice("Your last chat no longer exists; this is a new one.", { kind: "new" });
  }
  remember(state.session.id);
  setInterval(connectionChanged, STATUS_TICK_MS);
}

if ($("composer")) boot().catch((err) => {
  if (!state.gone) throw err; // a refused token stopped the page, and said so
});
