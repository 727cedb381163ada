// relay's chat page: render the session's snapshot, then follow its events.
//
// Exactly once: every event carries a stream id that only grows (API.md,
// "Events"), so the page keeps one cursor, the id of the last event it
// applied, and applies an event only when its id is after the cursor.
// However events reach us (EventSource and its reconnects, long-polls,
// probes, a snapshot reload), each is applied once and in order.
//
// Transport: EventSource first. It cannot see the server's `retry:` line or
// its `: keep-alive` comments, so a proxy that holds the body looks exactly
// like a quiet stream. The page finds out by asking: when an answer is due
// and SSE has been quiet, one long-poll with timeout=0 (a "probe") fetches
// what is new. If the probe found events that SSE then does not deliver
// within GRACE_MS, SSE is being buffered and the page long-polls instead,
// trying SSE again later.
//
// Without streaming (the header's toggle, issue 7), unfinished answers are
// not shown from events at all: the page asks for each one whole with
// `GET .../messages/{mid}?wait=` and shows it once it is finished. Its events
// still move the cursor, so the stream stays in step for everything else.
//
// Sending: every prompt carries a fresh Idempotency-Key, so when the answer
// to the POST is lost the page can post it again without asking twice.
//
// Touch screens (issue 13): a phone's keyboard has no Shift at hand, so there
// Enter is a new line and the Send button sends, as in phones' messaging
// apps; with a mouse or trackpad Enter sends and Shift+Enter is a new line.
// Ctrl/Cmd+Enter sends on both. The keyboard hint shows only where it holds.
//
// Access control (API.md): a team's app opens the page with a token in the
// URL fragment (`#access_token=`), which browsers never send to a server.
// The page takes it, drops it from the address bar (a copied link or a
// bookmark does not carry it; ?session= stays), keeps it for the tab, and
// sends it as `Authorization: Bearer` on fetches and as `?access_token=` on
// EventSource, which cannot set headers. A refused token (401) stops the page
// with a sentence saying to open it again from the app.
//
// Errors reach the user as a sentence that says what to do (`advise`), never
// as a code: wait so long (Retry-After), shorten the message, check the
// connection. A chat link that is malformed or names no chat says so, with a
// button to start a new chat, rather than quietly opening another one.

const SESSION_KEY = "relay.session";
const TOKEN_KEY = "relay.accessToken"; // sessionStorage: this tab only
const WITHOUT_STREAMING_KEY = "relay.withoutStreaming";
const SESSION_ID = /^[A-Za-z0-9_-]{8,64}$/;
const EVENT_TYPES = ["start", "reasoning", "chunk", "end", "error", "reset"];
const THINKING_KEY = "relay.thinking"; // the reader's open/closed choice per answer
const THINKING_KEPT = 100; // choices remembered, newest kept

const CONNECT_TIMEOUT_MS = 6000; // SSE response headers due within this
const MAX_SSE_ERRORS = 3; // failed SSE connections in a row before polling
const QUIET_MS = 3000; // an answer due but SSE quiet this long: probe
const GRACE_MS = 1500; // SSE must deliver what a probe found within this
const IDLE_PROBE_MAX_MS = 30000; // an SSE that never delivered: probe this rarely at most
const SSE_RETRY_MS = [15000, 30000, 60000, 120000, 300000]; // from polling, try SSE again
const SSE_TRIAL_MS = 20000; // a retried SSE must catch up with polling within this
const POLL_TIMEOUT_S = 20;
// At most 25 (API.md), and under Heroku's 30 s router window.
const WHOLE_WAIT_S = 25;
// A wait that comes back unfinished sooner than this did not wait (a server
// restarting?): back off rather than ask again at once.
const WHOLE_MIN_WAIT_MS = 1000;
const POST_ATTEMPTS = 4; // posts of one prompt, under one key, when answers are lost
// Gateways answering for an upstream they lost, and 503 (API.md: "can be retried").
const RETRY_POST_STATUSES = [502, 503, 504];
const UNFINISHED = ["queued", "streaming"];
// Reconnecting this long (the badge pulses) before the page says so in words.
const TROUBLE_NOTICE_MS = 8000;
// What a Retry-After-less 429/503 waits; API.md sets the header, so rarely used.
const DEFAULT_WAIT_S = 5;
const TOUCH = matchMedia("(pointer: coarse)");
const PLACEHOLDER = {
  keyboard: "Message relay (Enter sends, Shift+Enter for a new line)",
  touch: "Message relay",
};

// ---- event ids and the conversation model (no DOM, no network) ----

/** True when stream id `a` comes after `b` (ids are `<ms>-<seq>`, 64-bit). */
export function idAfter(a, b) {
  const [am, as] = a.split("-").map(BigInt);
  const [bm, bs] = b.split("-").map(BigInt);
  return am > bm || (am === bm && as > bs);
}

/** Characters as the server counts them (`len()` of a Python str): code points. */
function codePoints(text) {
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

// ---- what to tell the user (no DOM, no network) ----

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
 * answer (offline, server unreachable). `doing` is what failed: "send" and
 * "stop" the user does again; "start" (a new chat) and "load" (the chat's
 * snapshot) the page retries by itself. Returns `{text, waitS}`; `waitS` is
 * set when the server asked us to wait, so the page can count it down.
 */
export function advise(err, { doing = "send", online = true, length = 0 } = {}) {
  const auto = doing === "start" || doing === "load";
  const again = doing === "stop" ? "press Stop again" : "send again";
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
  const failed = { send: "Not sent", stop: "Could not stop the answer", start: "Cannot start a chat" };
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

// ---- Markdown, safely: model output never becomes HTML ----
//
// Only elements we create, only text set with textContent, only links whose
// URL parses as http(s) or mailto. A small subset: paragraphs, line breaks,
// headings, lists, quotes, fenced code, inline code, bold, italic, links.

const INLINE = new RegExp([
  /`([^`\n]+)`/.source, // 1: code
  /\*\*(\S(?:[\s\S]*?\S)?)\*\*/.source, // 2: bold
  /\*(\S(?:[^*]*?\S)?)\*/.source, // 3: italic
  /(?<!\w)_(\S(?:[^_]*?\S)?)_(?!\w)/.source, // 4: italic, not inside snake_case
  /\[([^\]\n]+)\]\(((?:[^()\s]|\([^()\s]*\))+)\)/.source, // 5, 6: link; its URL may hold (...)
].join("|"), "g");

const BLOCK_START = /^\s*(```|~~~|#{1,6}\s|>|[-*+]\s|\d+[.)]\s)/;
const LIST_ITEM = /^\s*(?:([-*+])|(\d+)[.)])\s+(.*)$/;

function el(tag, text) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  return node;
}

/** An href we are willing to follow, or null. */
export function safeHref(raw) {
  try {
    const url = new URL(raw);
    return ["http:", "https:", "mailto:"].includes(url.protocol) ? url.href : null;
  } catch {
    return null; // relative or malformed: not a link
  }
}

function link(label, raw) {
  const href = safeHref(raw);
  if (!href) return inline(label); // a javascript: or data: link shows as its label only
  const a = el("a");
  a.href = href;
  a.rel = "noopener noreferrer nofollow";
  a.target = "_blank";
  a.append(inline(label));
  return a;
}

function inline(text) {
  const out = document.createDocumentFragment();
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    if (m.index > last) out.append(text.slice(last, m.index));
    if (m[1] !== undefined) out.append(el("code", m[1]));
    else if (m[2] !== undefined) out.append(wrap("strong", m[2]));
    else if (m[3] !== undefined || m[4] !== undefined) out.append(wrap("em", m[3] ?? m[4]));
    else out.append(link(m[5], m[6]));
    last = m.index + m[0].length;
  }
  out.append(text.slice(last));
  return out;
}

function wrap(tag, text) {
  const node = el(tag);
  node.append(inline(text));
  return node;
}

function lines(parent, textLines) {
  textLines.forEach((line, i) => {
    if (i) parent.append(el("br"));
    parent.append(inline(line));
  });
  return parent;
}

/** Markdown source -> a DocumentFragment built only from safe elements and text. */
export function renderMarkdown(source) {
  const out = document.createDocumentFragment();
  const src = source.replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < src.length) {
    const line = src[i];
    const fence = line.match(/^\s*(```|~~~)/);
    if (fence) {
      // An unclosed fence (the answer is still streaming) runs to the end.
      const body = [];
      for (i++; i < src.length && !src[i].trimStart().startsWith(fence[1]); i++) body.push(src[i]);
      i++;
      const pre = el("pre");
      pre.append(el("code", body.join("\n")));
      out.append(pre);
    } else if (!line.trim()) {
      i++;
    } else if (/^#{1,6}\s/.test(line)) {
      const level = line.match(/^#+/)[0].length;
      out.append(wrap(`h${Math.min(level + 2, 6)}`, line.replace(/^#+\s+/, "")));
      i++;
    } else if (line.startsWith(">")) {
      const quoted = [];
      for (; i < src.length && src[i].startsWith(">"); i++) quoted.push(src[i].replace(/^>\s?/, ""));
      const quote = el("blockquote");
      quote.append(renderMarkdown(quoted.join("\n")));
      out.append(quote);
    } else if (LIST_ITEM.test(line)) {
      const ordered = LIST_ITEM.exec(line)[2] !== undefined;
      const list = el(ordered ? "ol" : "ul");
      for (let m; i < src.length && (m = LIST_ITEM.exec(src[i])) && (m[2] !== undefined) === ordered; i++) {
        list.append(wrap("li", m[3]));
      }
      out.append(list);
    } else {
      const para = [];
      for (; i < src.length && src[i].trim() && (!para.length || !BLOCK_START.test(src[i])); i++) {
        para.push(src[i]);
      }
      out.append(lines(el("p"), para));
    }
  }
  return out;
}

// ---- page state ----

const state = {
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

const net = {
  mode: "sse", // "sse" or "poll"
  es: null, // the EventSource: the transport, or on trial while polling
  esSince: 0, // when it was created or last failed, 0 once open
  esErrors: 0,
  esLastAt: 0, // when it last delivered an event
  esLastId: null, // the id of the last event it delivered
  trialUntil: 0, // while polling: the retried SSE must prove itself by then
  retryStep: 0,
  retryTimer: null,
  suspect: null, // {id, deadline}: a probe found events SSE had not delivered
  probing: false,
  idleProbeAt: 0,
  idleProbeDelay: QUIET_MS,
  poll: null, // AbortController of the running poll loop
  pollOk: true,
  troubleSince: 0, // when the connection was last seen going from working to not
};

const sleepers = new Set();

function unfinished(message) {
  return message.role === "assistant" && UNFINISHED.includes(message.status);
}

function activeAnswer() {
  return state.messages.find(unfinished);
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
  if (state.wholeIds.has(ev.data?.message_id)) return passOver(ev);
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

/**
 * An event of an answer shown whole: it moves the cursor and nothing else.
 * Returns true when it was new, so SSE still proves it delivers.
 */
function passOver(ev) {
  if (!ev.id || !idAfter(ev.id, state.cursor)) return false;
  state.cursor = ev.id;
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
  // Transports go on from their own positions; a snapshot older than what we
  // had applied (never expected) would leave a gap, so start them afresh.
  if (behind) restartTransport();
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
      adoptSnapshot(await getJson(`/api/sessions/${state.sid}`));
      clearNotice("load");
      return;
    } catch (err) {
      if (err.status === 404 || err.status === 401) throw err;
      // One failure is routine (a restart, a flaky hop); then the user should know.
      if (failures) showAdvice(err, { doing: "load" }, "load");
      await sleep(retryDelay(err, failures + 1));
    }
  }
}

// ---- the access token ----

const access = { token: null };

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
    access.token = given || sessionStorage.getItem(TOKEN_KEY);
  } catch {
    access.token = given;
  }
}

/** `url` with the token as a query parameter, for EventSource (it cannot send headers). */
function withToken(url) {
  if (!access.token) return url;
  return `${url}${url.includes("?") ? "&" : "?"}access_token=${encodeURIComponent(access.token)}`;
}

// ---- network helpers ----

class HttpError extends Error {
  constructor(status, body, retryAfter) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code ?? null;
    this.body = body;
    this.retryAfterS = retryAfterSeconds(retryAfter);
  }
}

/** A Retry-After header (seconds, or an HTTP date) in seconds, or null. */
function retryAfterSeconds(header) {
  if (!header) return null;
  if (/^\s*\d+\s*$/.test(header)) return Number(header);
  const at = Date.parse(header);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

async function getJson(url, options = {}) {
  const headers = { ...options.headers };
  if (access.token) headers.Authorization = `Bearer ${access.token}`;
  const response = await fetch(url, { cache: "no-store", ...options, headers });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const err = new HttpError(response.status, body, response.headers.get("Retry-After"));
    if (response.status === 401) accessRefused(err);
    throw err;
  }
  return body;
}

function postJson(url, payload, headers = {}) {
  return getJson(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    body: JSON.stringify(payload ?? {}),
  });
}

function backoff(failures) {
  const base = Math.min(500 * 2 ** (failures - 1), 10000);
  return base / 2 + Math.random() * base / 2;
}

/** How long to wait before trying again: what the server asked for, else backoff. */
function retryDelay(err, failures) {
  return err.retryAfterS ? err.retryAfterS * 1000 : backoff(failures);
}

/** Sleep that the tab coming back, or the network returning, cuts short. */
function sleep(ms, signal) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      sleepers.delete(done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    sleepers.add(done);
    signal?.addEventListener("abort", done, { once: true });
  });
}

function wakeSleepers() {
  [...sleepers].forEach((wake) => wake());
}

function pollUrl(timeoutS) {
  return `/api/sessions/${state.sid}/poll?after=${encodeURIComponent(state.cursor)}&timeout=${timeoutS}`;
}

// ---- transport: SSE ----

function openSse() {
  closeSse();
  const cursor = encodeURIComponent(state.cursor);
  const es = new EventSource(withToken(`/api/sessions/${state.sid}/events?last_event_id=${cursor}`));
  Object.assign(net, {
    es, esSince: Date.now(), esErrors: 0, esLastAt: 0, esLastId: null, suspect: null,
    idleProbeDelay: QUIET_MS, idleProbeAt: Date.now() + QUIET_MS,
  });
  es.onopen = () => {
    net.esSince = 0;
    showConnection();
  };
  es.onerror = () => onSseError(es);
  for (const type of EVENT_TYPES) es.addEventListener(type, (e) => onSseEvent(es, type, e));
}

function closeSse() {
  net.es?.close();
  net.es = null;
  net.suspect = null;
}

function onSseEvent(es, type, message) {
  if (es !== net.es) return;
  let data;
  try {
    data = JSON.parse(message.data);
  } catch {
    return;
  }
  Object.assign(net, { esErrors: 0, esLastAt: Date.now() });
  // `reset` has no id of its own: lastEventId would be the previous event's.
  const id = type === "reset" ? null : message.lastEventId;
  if (id) net.esLastId = id;
  receive({ id, event: type, data });
  // On trial, SSE proves itself by being caught up: it delivered what polling
  // has, or newer. A proxy holding the body cannot do that.
  if (net.mode === "poll" && id && !idAfter(state.cursor, id)) promoteSse();
}

function onSseError(es) {
  if (es !== net.es) return;
  net.esSince ||= Date.now();
  net.esErrors++;
  // CLOSED: a non-200 answer or a wrong content type; EventSource gave up.
  if (es.readyState === EventSource.CLOSED || net.esErrors >= MAX_SSE_ERRORS) sseFailed();
  showConnection();
}

/** SSE does not work from here: poll (or, if this was a trial, go on polling). */
function sseFailed() {
  closeSse();
  net.trialUntil = 0;
  if (net.mode === "sse") {
    net.mode = "poll";
    startPolling();
  }
  scheduleSseTrial();
  showConnection();
}

function scheduleSseTrial() {
  clearTimeout(net.retryTimer);
  const delay = SSE_RETRY_MS[Math.min(net.retryStep++, SSE_RETRY_MS.length - 1)];
  net.retryTimer = setTimeout(() => {
    // Poll on meanwhile: the trial replaces polling only once it has caught up.
    openSse();
    net.trialUntil = Date.now() + SSE_TRIAL_MS;
  }, delay);
}

/** A retried SSE keeps up with polling: use it again. */
function promoteSse() {
  net.mode = "sse";
  net.trialUntil = 0;
  net.retryStep = 0;
  stopPolling();
  showConnection();
}

function restartTransport() {
  if (net.mode === "sse") openSse();
  else startPolling();
}

/** Once a second: is SSE answering, buffered, or failing? */
function watch() {
  const now = Date.now();
  showConnection(); // a connection that stays down gets a sentence after a while
  if (!net.es) return;
  if (net.mode === "poll") {
    if (net.trialUntil && now > net.trialUntil) sseFailed();
    return;
  }
  if (net.esSince && now - net.esSince > CONNECT_TIMEOUT_MS) return sseFailed();
  if (net.suspect && now >= net.suspect.deadline) {
    if (!net.esLastId || idAfter(net.suspect.id, net.esLastId)) return sseFailed();
    net.suspect = null;
  }
  if (!net.probing && !net.suspect && probeDue(now)) probe();
}

function probeDue(now) {
  if (activeAnswer() || state.sending) {
    return now - Math.max(net.esLastAt, state.dueSince) >= QUIET_MS;
  }
  // Idle: an SSE that has not delivered anything yet might be held by a
  // proxy while another tab's answer streams; check it, ever more rarely.
  return !net.esLastAt && now >= net.idleProbeAt;
}

/** One long-poll with timeout=0: take what is new, and see if SSE keeps up. */
async function probe() {
  net.probing = true;
  try {
    const body = await getJson(pollUrl(0));
    if (body.reset) return void reloadSnapshot();
    let fresh = null;
    for (const ev of body.events) if (receive(ev)) fresh = ev.id;
    if (fresh && net.mode === "sse" && net.es) net.suspect = { id: fresh, deadline: Date.now() + GRACE_MS };
  } catch {
    // The transport's own error handling reports trouble.
  } finally {
    net.probing = false;
    net.idleProbeDelay = Math.min(net.idleProbeDelay * 2, IDLE_PROBE_MAX_MS);
    net.idleProbeAt = Date.now() + net.idleProbeDelay;
  }
}

// ---- transport: long-poll ----

function startPolling() {
  stopPolling();
  const controller = new AbortController();
  net.poll = controller;
  pollLoop(controller.signal);
}

function stopPolling() {
  net.poll?.abort();
  net.poll = null;
}

async function pollLoop(signal) {
  let failures = 0;
  let timeoutS = POLL_TIMEOUT_S;
  while (!signal.aborted) {
    if (state.reloading) await state.reloading.catch(() => {});
    try {
      const body = await getJson(pollUrl(timeoutS), { signal });
      if (signal.aborted) return;
      failures = 0;
      net.pollOk = true;
      timeoutS = Math.min(timeoutS * 2, POLL_TIMEOUT_S);
      if (body.reset) await reloadSnapshot();
      else body.events.forEach(receive);
    } catch (err) {
      if (signal.aborted) return;
      if (err.status === 404) return void sessionGone();
      failures++;
      net.pollOk = false;
      // A connection cut while we waited (a proxy's idle timeout?): wait less.
      timeoutS = Math.max(timeoutS / 2, 1);
      showConnection();
      await sleep(backoff(failures), signal);
    }
    showConnection();
  }
}

/** The tab is back or the network returned: catch up now, not at the next retry. */
function catchUp() {
  if (state.gone) return;
  wakeSleepers();
  if (net.mode === "sse" && net.es?.readyState !== EventSource.OPEN) openSse();
  if (!net.probing) probe();
  showConnection();
}

// ---- answers without streaming ----

/** Without streaming, every unfinished answer waits to be shown whole. */
function claimWholeAnswers() {
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
  const url = `/api/sessions/${state.sid}/messages/${encodeURIComponent(id)}?wait=${WHOLE_WAIT_S}`;
  let failures = 0;
  while (!signal.aborted) {
    const asked = Date.now();
    try {
      const message = await getJson(url, { signal });
      if (signal.aborted) return;
      if (!UNFINISHED.includes(message.status)) return void showWhole(message);
      // Still being written: the wait ran out, so ask again, at once unless
      // the server answered without waiting.
      failures = Date.now() - asked < WHOLE_MIN_WAIT_MS ? failures + 1 : 0;
    } catch (err) {
      if (signal.aborted) return;
      if (err.body?.error?.code === "session_not_found") return void sessionGone();
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
  reloadSnapshot();
}

/** Stop every whole-answer wait; true when some answer was still being waited for. */
function releaseWholeAnswers() {
  const waiting = [...state.waits.keys()];
  for (const id of waiting) {
    state.waits.get(id).abort();
    state.waits.delete(id);
    state.wholeIds.delete(id);
  }
  return waiting.length > 0;
}

function setWithoutStreaming(on) {
  state.withoutStreaming = on;
  try {
    localStorage.setItem(WITHOUT_STREAMING_KEY, on ? "1" : "0");
  } catch {
    // Storage disabled: the choice lasts until the page is closed.
  }
  if (on) claimWholeAnswers();
  // Its events were passed over: the snapshot has the text so far, and the
  // stream goes on from the snapshot's cursor.
  else if (releaseWholeAnswers()) reloadSnapshot();
}

function storedWithoutStreaming() {
  try {
    return localStorage.getItem(WITHOUT_STREAMING_KEY) === "1";
  } catch {
    return false;
  }
}

// ---- rendering ----

const $ = (id) => document.getElementById(id);
const views = new Map(); // message id -> <li>
const dirty = new Set();
let frame = 0;

function changed(messageId) {
  dirty.add(messageId);
  // Hidden tabs get no animation frames; visibilitychange flushes instead.
  if (!frame && !document.hidden) frame = requestAnimationFrame(flush);
}

function flush() {
  frame = 0;
  const stick = nearBottom();
  for (const id of dirty) {
    const message = state.byId.get(id);
    if (message) views.get(id)?.replaceWith(messageView(message));
  }
  dirty.clear();
  updateChrome();
  if (stick) scrollToEnd();
}

function renderAll() {
  const stick = nearBottom();
  views.clear();
  dirty.clear();
  $("messages").replaceChildren(...state.messages.map(messageView));
  updateChrome();
  if (stick) scrollToEnd();
}

const STATUS_LABEL = {
  queued: "waiting…", streaming: "writing…", cancelled: "stopped", error: "failed",
};

function messageView(message) {
  const li = el("li");
  li.className = `message ${message.role}`;
  li.dataset.messageId = message.id;
  li.dataset.role = message.role;
  li.dataset.status = message.status;
  const head = el("div");
  head.className = "head";
  head.append(el("span", message.role === "user" ? "You" : message.model || "assistant"));
  // Without streaming, the text so far (a snapshot's) is not shown either.
  const whole = state.waits.has(message.id) && unfinished(message);
  if (whole) li.dataset.whole = "waiting";
  const label = badgeLabel(message, whole);
  if (label) {
    const badge = el("span", label);
    badge.className = `badge ${whole ? "whole" : message.status}`;
    head.append(badge);
  }
  const body = el("div");
  body.className = "body";
  if (message.role === "user") body.textContent = message.content;
  else if (!whole) body.append(renderMarkdown(message.content));
  li.append(head);
  if (message.reasoning && !whole) li.append(thinkingView(message));
  li.append(body);
  if (message.status === "error") li.append(errorView(message));
  views.set(message.id, li);
  return li;
}

// ---- the Thinking block: a reasoning model's reasoning, above its answer ----
//
// Open while the reasoning streams, closed once the answer starts, unless
// the reader chose otherwise for that answer: the choice is kept across
// re-renders (every flush builds the message anew) and, per tab, reloads.

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

function thinkingView(message) {
  const thinking = unfinished(message) && !message.content;
  const details = el("details");
  details.className = "thinking";
  details.dataset.state = thinking ? "thinking" : "thought";
  details.open = thinkingChoice(message.id) ?? thinking;
  const summary = el("summary", thinking ? "Thinking…" : "Thought process");
  // A click (or Enter/Space on the summary) is the reader's choice; a
  // re-render setting `open` is not, so `toggle` would not tell them apart.
  summary.addEventListener("click", () => chooseThinking(message.id, !details.open));
  const text = el("div", message.reasoning);
  text.className = "reasoning";
  details.append(summary, text);
  return details;
}

function badgeLabel(message, whole) {
  const stopping = message.id === state.cancelling;
  if (whole) return stopping ? "stopping…" : "waiting for the whole answer…";
  if (stopping && message.status === "streaming") return "stopping…";
  return message.finish_reason === "length" ? "cut off (length limit)" : STATUS_LABEL[message.status];
}

function errorView(message) {
  const box = el("div");
  box.className = "failure";
  const what = el("span", answerTrouble(message.error?.code));
  what.className = "advice";
  box.append(what);
  // The server's own words, for whoever reports the problem.
  if (message.error?.message) {
    const detail = el("span", message.error.message);
    detail.className = "detail";
    box.append(detail);
  }
  const retry = el("button", "Retry");
  retry.type = "button";
  retry.addEventListener("click", () => {
    const index = state.messages.indexOf(message);
    const prompt = state.messages.slice(0, index).reverse().find((m) => m.role === "user");
    if (prompt) send(prompt.content);
  });
  box.append(retry);
  return box;
}

function updateChrome() {
  const active = activeAnswer();
  $("empty").hidden = state.messages.length > 0 || state.gone;
  $("send").disabled = state.sending || Boolean(active) || Date.now() < state.holdUntil;
  $("stop").hidden = !active;
  $("stop").disabled = Boolean(active && state.cancelling === active.id);
  const model = [...state.messages].reverse().find((m) => m.model)?.model;
  $("model").hidden = !model;
  $("model").textContent = model || "";
  placeRegenerate(active);
}

let regenerateButton = null;

/** One Regenerate button, on the last answer once it is final, and only while nothing runs. */
function placeRegenerate(active) {
  const last = state.messages.at(-1);
  const final = last?.role === "assistant" && ["done", "cancelled"].includes(last.status);
  const view = final && !active && !state.gone && !state.sending ? views.get(last.id) : null;
  if (!view) return void regenerateButton?.remove();
  if (!regenerateButton) {
    regenerateButton = el("button", "Regenerate");
    regenerateButton.type = "button";
    regenerateButton.className = "regenerate";
    regenerateButton.addEventListener("click", regenerate);
  }
  if (regenerateButton.parentNode !== view) view.append(regenerateButton);
}

const CONNECTION_LABEL = {
  live: "live", reconnecting: "reconnecting…", polling: "polling", offline: "offline",
};

function showConnection() {
  if (state.gone) return;
  let now;
  if (!navigator.onLine) now = "offline";
  else if (net.mode === "poll") now = net.pollOk ? "polling" : "reconnecting";
  else now = net.es?.readyState === EventSource.OPEN ? "live" : "reconnecting";
  const badge = $("connection");
  if (badge.dataset.state !== now || badge.textContent !== CONNECTION_LABEL[now]) {
    badge.dataset.state = now;
    badge.textContent = CONNECTION_LABEL[now];
  }
  connectionNotice(now);
}

/**
 * Say in words when the connection is down: at once when the device is
 * offline, after TROUBLE_NOTICE_MS of reconnecting (a blip is not worth a
 * sentence). The badge alone is easy to miss, and on a phone it is a dot.
 */
function connectionNotice(now) {
  const working = now === "live" || now === "polling";
  if (working) net.troubleSince = 0;
  else net.troubleSince ||= Date.now();
  if (now === "offline") {
    notice("You are offline. Check your connection; the chat catches up when it is back.", {
      kind: "connection", weak: true,
    });
  } else if (!working && Date.now() - net.troubleSince >= TROUBLE_NOTICE_MS) {
    notice("Lost the connection to the server. Check your connection; we keep trying.", {
      kind: "connection", weak: true,
    });
  } else {
    clearNotice("connection");
  }
}

function nearBottom() {
  const page = document.scrollingElement;
  return page.scrollHeight - page.scrollTop - page.clientHeight < 80;
}

function scrollToEnd() {
  document.scrollingElement.scrollTop = document.scrollingElement.scrollHeight;
}

// ---- notices: one at a time, each a sentence the user can act on ----

const shown = { kind: null, ticker: 0 }; // the notice on screen, and its countdown

/**
 * Show `text` (or hide the notice when it is empty). `kind` names who owns
 * it, so that only its owner clears it; a `weak` notice (the connection's)
 * does not push another one aside. While the chat is gone its notice stays,
 * save for a new chat's own trouble. `action`: {label, run} for a button.
 */
function notice(text, { kind = null, weak = false, action = null } = {}) {
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
function clearNotice(kind) {
  if (shown.kind === kind) notice("");
}

/**
 * Tell the user what went wrong and what to do (`advise`). When the server
 * asked us to wait, count the wait down in the sentence, and clear it once
 * the wait is over. Returns the advice.
 */
function showAdvice(err, context, kind) {
  const online = navigator.onLine;
  const advice = advise(err, { online, ...context });
  notice(advice.text, { kind });
  if (advice.waitS) {
    const until = Date.now() + advice.waitS * 1000;
    if (kind === "send") {
      state.holdUntil = until;
      setTimeout(updateChrome, until - Date.now() + 50); // even if another notice replaced this one
    }
    shown.ticker = setInterval(() => {
      const left = (until - Date.now()) / 1000;
      if (left > 0) {
        $("notice-text").textContent = advise({ ...plain(err), retryAfterS: left }, { online, ...context }).text;
        return;
      }
      clearNotice(kind);
      updateChrome();
    }, 1000);
  }
  return advice;
}

/** The fields `advise` reads, off an error of any kind. */
function plain(err) {
  return { status: err.status, code: err.code, message: err.message, retryAfterS: err.retryAfterS };
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
    const accepted = await postPrompt(content);
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
    if (err.code !== "session_not_found") showAdvice(err, { length: codePoints(content) }, "send");
    // Did it land before the connection failed? The snapshot says (and a
    // chat deleted meanwhile answers 404, which says so).
    reloadSnapshot();
  } finally {
    state.sending = false;
    updateChrome();
  }
}

/**
 * POST a prompt under a fresh Idempotency-Key, and post it again under the
 * same key when the answer was lost: the server then replays its first 202
 * (`Idempotent-Replayed: true`) instead of queueing the prompt twice.
 */
async function postPrompt(content) {
  const url = `/api/sessions/${state.sid}/messages`;
  const headers = { "Idempotency-Key": idempotencyKey() };
  let lost = false;
  for (let attempt = 1; ; attempt++) {
    try {
      const accepted = await postJson(url, { content }, headers);
      // A 202 whose body was cut short is a lost answer too.
      if (typeof accepted?.message_id !== "string") throw new Error("the answer was cut short");
      return accepted;
    } catch (err) {
      // After a lost answer, a 409 may be our own first post still being
      // stored: once it is, the key replays it.
      const again = answerLost(err) || (lost && err.status === 409);
      if (!again || attempt >= POST_ATTEMPTS) throw err;
      lost = true;
      notice("The connection dropped while sending; trying again…", { kind: "send" });
      await sleep(retryDelay(err, attempt)); // a 503's Retry-After, else backoff
    }
  }
}

/** True when the post may have reached the server but its answer did not reach us. */
function answerLost(err) {
  return !(err instanceof HttpError) || RETRY_POST_STATUSES.includes(err.status);
}

/** A fresh key per prompt. randomUUID needs a secure context (https or localhost). */
function idempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function addMessage(message) {
  state.messages.push(message);
  state.byId.set(message.id, message);
  claimWholeAnswers();
  const stick = nearBottom();
  $("messages").append(messageView(message));
  updateChrome();
  if (stick) scrollToEnd();
}

async function stop() {
  const active = activeAnswer();
  if (!active) return;
  state.cancelling = active.id;
  changed(active.id);
  try {
    await postJson(`/api/sessions/${state.sid}/messages/${active.id}/cancel`);
  } catch (err) {
    state.cancelling = null;
    changed(active.id);
    showAdvice(err, { doing: "stop" }, "stop");
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
    await postJson(`/api/sessions/${state.sid}/messages/${encodeURIComponent(last.id)}/regenerate`);
    state.dueSince = Date.now();
    // The snapshot leaves the superseded answer out and has the new one queued;
    // its events then follow as for any answer.
    await reloadSnapshot();
  } catch (err) {
    showAdvice(err, {}, "send");
  } finally {
    state.sending = false;
    updateChrome();
  }
}

async function createSession() {
  for (let failures = 1; ; failures++) {
    try {
      const sid = (await postJson("/api/sessions")).session_id;
      clearNotice("start");
      return sid;
    } catch (err) {
      if (err.status === 401) throw err; // accessRefused said so
      showAdvice(err, { doing: "start" }, "start");
      await sleep(retryDelay(err, failures));
    }
  }
}

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
  stopPolling();
  closeSse();
  clearTimeout(net.retryTimer);
  $("composer").hidden = true;
  $("connection").hidden = true;
}

/** Enter sends with a mouse or trackpad; on a touch screen it is a new line. */
function enterSends(e) {
  if (e.key !== "Enter" || e.isComposing) return false; // an IME is composing
  return e.ctrlKey || e.metaKey || (!e.shiftKey && !TOUCH.matches);
}

function showInputMode() {
  $("prompt").placeholder = TOUCH.matches ? PLACEHOLDER.touch : PLACEHOLDER.keyboard;
}

function bindUi() {
  const prompt = $("prompt");
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    send(prompt.value);
  });
  prompt.addEventListener("keydown", (e) => {
    if (enterSends(e)) {
      e.preventDefault();
      send(prompt.value);
    }
  });
  showInputMode();
  // A tablet that gains or loses a trackpad, a laptop whose screen is touched.
  TOUCH.addEventListener("change", showInputMode);
  $("stop").addEventListener("click", stop);
  const toggle = $("whole-answers");
  toggle.checked = state.withoutStreaming = storedWithoutStreaming();
  toggle.addEventListener("change", () => setWithoutStreaming(toggle.checked));
  $("new-chat").addEventListener("click", newChat);
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) return;
    flush();
    catchUp();
  });
  addEventListener("online", catchUp);
  addEventListener("offline", showConnection);
}

async function boot() {
  takeToken(); // first: the fragment leaves the address bar before anything else runs
  bindUi();
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
  openSse();
  setInterval(watch, 1000);
}

if ($("composer")) boot().catch((err) => {
  if (!state.gone) throw err; // a refused token stopped the page, and said so
});
