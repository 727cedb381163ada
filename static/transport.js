/**
 * The transport: follows a session's events from a cursor, over SSE, or
 * over long-polling when SSE does not get through, and hands each event to
 * the page. The page's interface to it is `follow()` below, and nothing else.
 */
//
// EventSource first. It cannot see the server's `retry:` line or its
// `: keep-alive` comments, so a proxy that holds the body looks exactly like
// a quiet stream. The transport finds out by asking: when an answer is due
// and SSE has been quiet, one long-poll with timeout=0 (a "probe") fetches
// what is new. If the probe found events that SSE then does not deliver
// within GRACE_MS, SSE is being buffered and it long-polls instead, trying
// SSE again later.
//
// Events may come twice (a probe and SSE, a reconnect from an older id):
// the page applies each id once (conversation.js), and tells the transport
// whether an event was new.
//
// The JS client library in clients/js is to take this module's place; the
// page depends only on the names exported here.

import { backoff, eventsUrl, poll, sleep, wakeSleepers } from "./api.js";
import { idAfter } from "./conversation.js";

const EVENT_TYPES = ["start", "reasoning", "chunk", "end", "error", "reset"];
const CONNECT_TIMEOUT_MS = 6000; // SSE response headers due within this
const MAX_SSE_ERRORS = 3; // failed SSE connections in a row before polling
const QUIET_MS = 3000; // an answer due but SSE quiet this long: probe
const GRACE_MS = 1500; // SSE must deliver what a probe found within this
const IDLE_PROBE_MAX_MS = 30000; // an SSE that never delivered: probe this rarely at most
const SSE_RETRY_MS = [15000, 30000, 60000, 120000, 300000]; // from polling, try SSE again
const SSE_TRIAL_MS = 20000; // a retried SSE must catch up with polling within this
const POLL_TIMEOUT_S = 20;

/**
 * Follow session `sessionId`'s events. `hooks` are what the transport needs of the page:
 *   cursor()     the id of the last event the page applied ("0-0" for none)
 *   receive(ev)  apply one event `{id, event, data}`; true when it was new
 *   reload()     the cursor is older than the stream keeps (`reset`): reload
 *                the snapshot, which moves the cursor; returns a Promise
 *   reloading()  the Promise of a reload under way, or null
 *   dueSince()   when the page last learned an answer is due (ms), null if none is
 *   gone()       the session does not exist (404)
 *   changed()    the connection's status may have changed
 * Returns `{status(), restart(), catchUp(), close()}`: status() is "live",
 * "reconnecting", "polling" or "offline"; restart() follows afresh from the
 * page's cursor; catchUp() asks for what is new at once (the tab is back, the
 * network returned); close() stops for good.
 */
export function follow(sessionId, hooks) {
  close();
  sid = sessionId;
  page = hooks;
  net.mode = "sse";
  openSse();
  net.watcher = setInterval(watch, 1000);
  return { status, restart, catchUp, close };
}

// One follower per page: the session it follows, the page's hooks, its state.
let sid = null;
let page = null;
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
  watcher: 0, // the once-a-second watch
};

function openSse() {
  closeSse();
  const es = new EventSource(eventsUrl(sid, page.cursor()));
  Object.assign(net, {
    es, esSince: Date.now(), esErrors: 0, esLastAt: 0, esLastId: null, suspect: null,
    idleProbeDelay: QUIET_MS, idleProbeAt: Date.now() + QUIET_MS,
  });
  es.onopen = () => {
    net.esSince = 0;
    page.changed();
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
  page.receive({ id, event: type, data });
  // On trial, SSE proves itself by being caught up: it delivered what polling
  // has, or newer. A proxy holding the body cannot do that.
  if (net.mode === "poll" && id && !idAfter(page.cursor(), id)) promoteSse();
}

function onSseError(es) {
  if (es !== net.es) return;
  net.esSince ||= Date.now();
  net.esErrors++;
  // CLOSED: a non-200 answer or a wrong content type; EventSource gave up.
  if (es.readyState === EventSource.CLOSED || net.esErrors >= MAX_SSE_ERRORS) sseFailed();
  page.changed();
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
  page.changed();
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
  page.changed();
}

/** Follow afresh from the page's cursor, over the transport in use. */
function restart() {
  if (net.mode === "sse") openSse();
  else startPolling();
}

/** Once a second: is SSE answering, buffered, or failing? */
function watch() {
  const now = Date.now();
  page.changed(); // a connection that stays down gets a sentence after a while
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
  const dueSince = page.dueSince();
  if (dueSince !== null) return now - Math.max(net.esLastAt, dueSince) >= QUIET_MS;
  // Idle: an SSE that has not delivered anything yet might be held by a
  // proxy while another tab's answer streams; check it, ever more rarely.
  return !net.esLastAt && now >= net.idleProbeAt;
}

/** One long-poll with timeout=0: take what is new, and see if SSE keeps up. */
async function probe() {
  net.probing = true;
  try {
    const body = await poll(sid, page.cursor(), 0);
    if (body.reset) return void page.reload();
    let fresh = null;
    for (const ev of body.events) if (page.receive(ev)) fresh = ev.id;
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
    await page.reloading()?.catch(() => {});
    try {
      const body = await poll(sid, page.cursor(), timeoutS, signal);
      if (signal.aborted) return;
      failures = 0;
      net.pollOk = true;
      timeoutS = Math.min(timeoutS * 2, POLL_TIMEOUT_S);
      if (body.reset) await page.reload();
      else body.events.forEach(page.receive);
    } catch (err) {
      if (signal.aborted) return;
      if (err.status === 404) return void page.gone();
      failures++;
      net.pollOk = false;
      // A connection cut while we waited (a proxy's idle timeout?): wait less.
      timeoutS = Math.max(timeoutS / 2, 1);
      page.changed();
      await sleep(backoff(failures), signal);
    }
    page.changed();
  }
}

/** The tab is back or the network returned: catch up now, not at the next retry. */
function catchUp() {
  wakeSleepers();
  if (net.mode === "sse" && net.es?.readyState !== EventSource.OPEN) openSse();
  if (!net.probing) probe();
  page.changed();
}

/** The connection as the page shows it. */
function status() {
  if (!navigator.onLine) return "offline";
  if (net.mode === "poll") return net.pollOk ? "polling" : "reconnecting";
  return net.es?.readyState === EventSource.OPEN ? "live" : "reconnecting";
}

/** Stop following: no connection, no timer left. */
function close() {
  clearInterval(net.watcher);
  clearTimeout(net.retryTimer);
  stopPolling();
  closeSse();
}

