/**
 * The HTTP API as the page calls it (API.md): one function per request,
 * JSON in and out, errors as HttpError, the access token on every call.
 */
//
// With transport.js, the page's whole network edge: the JS client library in
// clients/js is to take the place of both, behind these same names. The rest
// of the page never builds a URL or calls fetch.
//
// Access control (API.md): the token goes as `Authorization: Bearer` on
// fetches and as `?access_token=` on EventSource, which cannot set headers.
// A 401 calls `access.refused(err)` before the error is thrown, so the page
// can stop and say why, whoever made the request.
//
// Sending: every prompt carries a fresh Idempotency-Key, so when the answer
// to the POST is lost the page can post it again without asking twice.

const POST_ATTEMPTS = 4; // posts of one prompt, under one key, when answers are lost
// Gateways answering for an upstream they lost, and 503 (API.md: "can be retried").
const RETRY_POST_STATUSES = [502, 503, 504];

/** The access token (null with access control off), and what a 401 does. */
export const access = { token: null, refused: () => {} };

export class HttpError extends Error {
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
    if (response.status === 401) access.refused(err);
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

const session = (sid) => `/api/sessions/${sid}`;
const message = (sid, mid) => `${session(sid)}/messages/${encodeURIComponent(mid)}`;

/** POST /api/sessions: a new session's id. */
export async function createSession() {
  return (await postJson("/api/sessions")).session_id;
}

/** GET the session's snapshot (API.md, "Snapshot"). */
export function getSnapshot(sid) {
  return getJson(session(sid));
}

/** GET one message; with `waitS`, once it is finished or after that long. */
export function getMessage(sid, mid, waitS, signal) {
  return getJson(`${message(sid, mid)}?wait=${waitS}`, { signal });
}

/** Ask the server to stop an answer. */
export function cancelAnswer(sid, mid) {
  return postJson(`${message(sid, mid)}/cancel`);
}

/** Answer the last prompt again (the last answer becomes superseded). */
export function regenerateAnswer(sid, mid) {
  return postJson(`${message(sid, mid)}/regenerate`);
}

/** Long-poll: `{events, cursor, reset}` after `after`, waiting up to `timeoutS`. */
export function poll(sid, after, timeoutS, signal) {
  const query = `after=${encodeURIComponent(after)}&timeout=${timeoutS}`;
  return getJson(`${session(sid)}/poll?${query}`, { signal });
}

/** The SSE URL from `cursor` on, with the token as a query parameter (EventSource sends no headers). */
export function eventsUrl(sid, cursor) {
  const url = `${session(sid)}/events?last_event_id=${encodeURIComponent(cursor)}`;
  return access.token ? `${url}&access_token=${encodeURIComponent(access.token)}` : url;
}

/**
 * POST a prompt under a fresh Idempotency-Key, and post it again under the
 * same key when the answer was lost: the server then replays its first 202
 * (`Idempotent-Replayed: true`) instead of queueing the prompt twice.
 * `onRetry()` runs before each post again. Resolves to the 202's body.
 */
export async function postPrompt(sid, content, onRetry = () => {}) {
  const url = `${session(sid)}/messages`;
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
      onRetry();
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

// ---- waiting between tries ----

const sleepers = new Set();

export function backoff(failures) {
  const base = Math.min(500 * 2 ** (failures - 1), 10000);
  return base / 2 + Math.random() * base / 2;
}

/** How long to wait before trying again: what the server asked for, else backoff. */
export function retryDelay(err, failures) {
  return err.retryAfterS ? err.retryAfterS * 1000 : backoff(failures);
}

/** Sleep that the tab coming back, or the network returning, cuts short. */
export function sleep(ms, signal) {
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

/** End every sleep now: the tab is back or the network returned. */
export function wakeSleepers() {
  [...sleepers].forEach((wake) => wake());
}
