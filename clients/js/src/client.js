// RelayClient: relay's HTTP API (API.md) as calls, and the sessions that follow its events.
//
// Deliberate choices:
// - `send` posts a prompt under an Idempotency-Key and posts it again under
//   the same key when the answer was lost (no answer, a cut body, 502, 503,
//   504; after a lost answer, a 409 too: it may be our own first post), up to
//   `postAttempts` times: the server replays its first 202 instead of
//   queueing the prompt twice (API.md, Retried posts).
// - `wait` is the whole-answer mode: `GET .../messages/{mid}?wait=` until the
//   answer is no longer queued or streaming.

import { authorizedFetch, Auth, RelayError } from "./http.js";
import { UNFINISHED } from "./answers.js";
import { retryDelay, backoff, sleep } from "./retry.js";
import { Session } from "./session.js";

const POST_ATTEMPTS = 4;
// Gateways answering for an upstream they lost, and 503 (API.md: "can be retried").
const LOST_STATUSES = [0, 502, 503, 504];
const WHOLE_WAIT_S = 25; // at most 25 (API.md), under Heroku's 30 s router window
// A wait that came back unfinished sooner than this did not wait: back off.
const WHOLE_MIN_WAIT_MS = 1000;

/** A fresh Idempotency-Key. randomUUID needs a secure context (https or localhost). */
export function idempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const part = (id) => encodeURIComponent(id);

export class RelayClient {
  /**
   * `baseUrl`: relay's origin ("" for the page's own); `getToken()` (or a
   * fixed `token`) when access control is on; `fetch` to use another;
   * `transport`, `fallback` and `heartbeatSeconds` for the sessions it opens.
   */
  constructor(options = {}) {
    this.options = options;
    this.baseUrl = (options.baseUrl || "").replace(/\/$/, "");
    this.auth = new Auth(options);
    this.fetchFn = options.fetch || ((...args) => globalThis.fetch(...args));
    this.postAttempts = options.postAttempts || POST_ATTEMPTS;
  }

  url(path) {
    return this.baseUrl + path;
  }

  /** fetch `path` with the token; the Response of a success, else a RelayError. */
  fetch(path, init) {
    return authorizedFetch(this.fetchFn, this.auth, this.url(path), init);
  }

  /** A JSON request; its parsed answer (null for 204). A body cut short is a lost answer. */
  async json(method, path, { body, headers, signal } = {}) {
    const init = { method, signal, headers: { ...headers } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await this.fetch(path, init);
    if (response.status === 204) return null;
    try {
      return await response.json();
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new RelayError("The answer was cut short.", { code: "incomplete_answer", cause: err });
    }
  }

  createSession() {
    return this.json("POST", "/api/sessions");
  }

  snapshot(sid, signal) {
    return this.json("GET", `/api/sessions/${part(sid)}`, { signal });
  }

  deleteSession(sid) {
    return this.json("DELETE", `/api/sessions/${part(sid)}`);
  }

  /** Access control on only: `{sessions, next}`, newest first; `before` is a previous page's `next`. */
  listSessions({ before } = {}) {
    return this.json("GET", `/api/sessions${before ? `?before=${part(before)}` : ""}`);
  }

  /**
   * Post a prompt; the 202's body (`message_id` is the answer that will
   * stream). `onRetry(err, attempt)` is told before each post again.
   */
  async send(sid, content, { idempotencyKey: key = idempotencyKey(), signal, onRetry } = {}) {
    const path = `/api/sessions/${part(sid)}/messages`;
    const headers = { "Idempotency-Key": key };
    let lost = false;
    for (let attempt = 1; ; attempt++) {
      try {
        const accepted = await this.json("POST", path, { body: { content }, headers, signal });
        if (typeof accepted?.message_id !== "string") {
          throw new RelayError("The answer was cut short.", { code: "incomplete_answer" });
        }
        return accepted;
      } catch (err) {
        const again = LOST_STATUSES.includes(err.status) || (lost && err.status === 409);
        if (signal?.aborted || !again || attempt >= this.postAttempts) throw err;
        lost = true;
        onRetry?.(err, attempt);
        await sleep(retryDelay(err, attempt), signal);
      }
    }
  }

  /** Stop an answer: its stream ends with `finish_reason: "cancelled"`. Not a disconnect. */
  cancel(sid, mid) {
    return this.json("POST", `/api/sessions/${part(sid)}/messages/${part(mid)}/cancel`);
  }

  /** Answer the last prompt again; `mid` is the session's last, final answer. */
  regenerate(sid, mid) {
    return this.json("POST", `/api/sessions/${part(sid)}/messages/${part(mid)}/regenerate`);
  }

  /** A person's decision on a tool call that waits for approval (API.md, Tools). */
  approve(sid, mid, callId, approved, reason) {
    const body = reason === undefined ? { approved } : { approved, reason };
    return this.json("POST", `${this.toolPath(sid, mid, callId)}/approval`, { body });
  }

  /** A client tool's result: `{output}` or `{error}`. */
  toolOutput(sid, mid, callId, result) {
    return this.json("POST", `${this.toolPath(sid, mid, callId)}/output`, { body: result });
  }

  toolPath(sid, mid, callId) {
    return `/api/sessions/${part(sid)}/messages/${part(mid)}/tools/${part(callId)}`;
  }

  /**
   * Whole-answer mode: the message once it is no longer queued or streaming
   * (done, cancelled, error, or waiting for a tool decision). Network and
   * 5xx failures are retried; other HTTP errors are thrown.
   */
  async wait(sid, mid, { signal, waitSeconds = WHOLE_WAIT_S } = {}) {
    const path = `/api/sessions/${part(sid)}/messages/${part(mid)}?wait=${waitSeconds}`;
    let failures = 0;
    for (;;) {
      const asked = Date.now();
      try {
        const message = await this.json("GET", path, { signal });
        if (!UNFINISHED.includes(message.status)) return message;
        failures = Date.now() - asked < WHOLE_MIN_WAIT_MS ? failures + 1 : 0;
      } catch (err) {
        if (signal?.aborted || (err.status && err.status < 500)) throw err;
        failures++;
      }
      if (failures) await sleep(backoff(failures), signal);
      if (signal?.aborted) throw new RelayError("Aborted.", { code: "aborted" });
    }
  }

  /** A Session that follows `sid`'s events (call `open()`); options override the client's. */
  session(sid, options = {}) {
    return new Session(this, sid, { ...this.options, ...options });
  }
}
