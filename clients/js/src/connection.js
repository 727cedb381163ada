// The connection of one session: which transport runs, when to reconnect, when to fall back.
//
// SSE first (over fetch, or EventSource where asked), long-poll when SSE
// does not work from here. What the chat page learnt, moved here:
// - A proxy that holds the body makes SSE look like a quiet stream. Over
//   fetch we see it at once: the headers come, then not one byte, though
//   relay writes its `retry:` line first. EventSource cannot see bytes, so
//   when an answer is due and SSE has been quiet for QUIET_MS, one long-poll
//   with timeout=0 (a probe) fetches what is new; if SSE then does not
//   deliver it within GRACE_MS, it is being buffered. Either way: poll, and
//   try SSE again later (SSE_RETRY_MS); a retried SSE takes over once it
//   proves itself (a byte over fetch; an event caught up with polling over
//   EventSource, within SSE_TRIAL_MS).
// - MAX_SSE_FAILURES failed SSE connections in a row: poll as well.
// - Reconnects wait with jittered exponential backoff from the server's
//   `retry:` (or a 429/503's Retry-After); no byte for two heartbeats is a
//   dead connection (the stall watchdog). The tab coming back into view or
//   the network returning cuts every wait short.
//
// `state`: "connecting", "live", "polling", "reconnecting" or "offline".

import { idAfter } from "./answers.js";
import { retryDelay, sleep, Waker } from "./retry.js";
import { sseParser } from "./sse.js";
import { eventSource, fetchSse, pollOnce } from "./transports.js";

const MAX_SSE_FAILURES = 3;
const QUIET_MS = 3000;
const GRACE_MS = 1500;
const SSE_RETRY_MS = [15000, 30000, 60000, 120000, 300000];
const SSE_TRIAL_MS = 20000;
const POLL_TIMEOUT_S = 20;
const TICK_MS = 1000;
const DEFAULT_RETRY_MS = 1000; // until the server's `retry:` says otherwise

export class Connection {
  constructor(session, { transport = "fetch", fallback = true, heartbeatSeconds = 15 } = {}) {
    this.session = session;
    this.kind = transport; // "fetch", "eventsource" or "poll"
    this.fallback = fallback && transport !== "poll";
    this.stallMs = heartbeatSeconds * 2000;
    this.retryMs = DEFAULT_RETRY_MS;
    this.waker = new Waker();
    this.stats = { connections: 0, fallbacks: 0, promotions: 0, probes: 0 };
    this.reset();
  }

  reset() {
    this.mode = this.kind === "poll" ? "poll" : "sse";
    this.sse = null; // {controller, trial, open, lastAt, lastId} of the running SSE
    this.poll = null; // AbortController of the running poll loop
    this.pollOk = true;
    this.failures = 0; // SSE connections in a row that delivered nothing
    this.retryStep = 0;
    this.suspect = null; // {id, deadline}: a probe found events SSE had not delivered
    this.state = "connecting";
  }

  start() {
    this.reset();
    this.run();
  }

  run() {
    if (this.mode === "sse") this.startSse(false);
    else this.startPoll();
    this.ticker = setInterval(() => this.tick(), TICK_MS);
    this.listen(true);
  }

  stop() {
    this.sse?.controller.abort();
    this.poll?.abort();
    this.sse = this.poll = null;
    clearInterval(this.ticker);
    clearTimeout(this.trialTimer);
    this.listen(false);
  }

  /** Start the transport afresh from the session's cursor (a snapshot went back). */
  restart() {
    this.stop();
    this.run();
  }

  /** Resume on `online` and when a hidden tab is shown; nothing to listen to under Node. */
  listen(on) {
    if (typeof window === "undefined" || !window.addEventListener) return;
    this.onWake ||= (e) => (e.type === "offline" || document.hidden ? this.update() : this.catchUp());
    const method = on ? "addEventListener" : "removeEventListener";
    window[method]("online", this.onWake);
    window[method]("offline", this.onWake);
    document[method]("visibilitychange", this.onWake);
  }

  /** The tab is back or the network returned: reconnect and catch up now, not at the next retry. */
  catchUp() {
    this.waker.wake();
    if (!this.probing) this.probe();
    this.update();
  }

  // ---- SSE ----

  startSse(trial) {
    const controller = new AbortController();
    this.sse = { controller, trial, open: false, lastAt: 0, lastId: null, until: Date.now() + SSE_TRIAL_MS };
    this.sseLoop(this.sse);
  }

  async sseLoop(sse) {
    const { signal } = sse.controller;
    while (!signal.aborted) {
      let outcome;
      let error = null;
      this.stats.connections++;
      try {
        outcome = this.kind === "eventsource"
          ? await eventSource(this, signal, MAX_SSE_FAILURES)
          : await fetchSse(this, signal);
      } catch (err) {
        if (signal.aborted || this.session.fatal(err)) return;
        error = err;
        outcome = "failed";
      }
      this.closed();
      if (signal.aborted) return;
      this.stats[outcome] = (this.stats[outcome] || 0) + 1;
      if (outcome !== "ended") this.failures++;
      // EventSource retried by itself before it gave up: that was its last chance.
      const spent = this.kind === "eventsource" ? outcome === "failed" : this.failures >= MAX_SSE_FAILURES;
      if (sse.trial || (this.fallback && (spent || outcome === "buffered"))) return this.sseFailed(sse);
      await sleep(retryDelay(error, Math.max(this.failures, 1), this.retryMs), signal, this.waker.signal);
    }
  }

  parser() {
    return sseParser({
      onEvent: (ev) => this.event(ev, true),
      onRetry: (ms) => (this.retryMs = ms || DEFAULT_RETRY_MS),
    });
  }

  opened() {
    if (this.sse) this.sse.open = true;
    this.update();
  }

  closed() {
    if (this.sse) this.sse.open = false;
    this.update();
  }

  /** A byte came over fetch-SSE: a retried SSE is not being held, so it takes over. */
  bytes() {
    if (this.sse?.trial && this.kind === "fetch") this.promote();
  }

  /** One event from any transport (its data JSON text or parsed); `viaSse` when SSE brought it. */
  event(raw, viaSse) {
    let data = raw.data;
    if (typeof data === "string") {
      try {
        data = JSON.parse(data);
      } catch {
        return; // not one of relay's events
      }
    }
    // `reset` has no id of its own (EventSource would give the previous one).
    const ev = { id: raw.event === "reset" ? null : raw.id, event: raw.event, data };
    if (viaSse && this.sse) this.sseDelivered(ev.id);
    this.session.receive(ev);
  }

  sseDelivered(id) {
    this.sse.lastAt = Date.now();
    this.failures = 0;
    if (!id) return;
    this.sse.lastId = id;
    // On trial, SSE proves itself by being caught up with what polling has.
    if (this.sse.trial && !idAfter(this.session.cursor, id)) this.promote();
  }

  /** SSE does not work from here: poll (or, after a trial, go on polling), and try SSE later. */
  sseFailed(sse) {
    sse.controller.abort();
    if (this.sse === sse) this.sse = null;
    this.suspect = null;
    if (this.mode === "sse") {
      this.mode = "poll";
      this.stats.fallbacks++;
      this.startPoll();
    }
    clearTimeout(this.trialTimer);
    const delay = SSE_RETRY_MS[Math.min(this.retryStep++, SSE_RETRY_MS.length - 1)];
    this.trialTimer = setTimeout(() => this.startSse(true), delay);
    this.update();
  }

  promote() {
    this.sse.trial = false;
    this.mode = "sse";
    this.retryStep = 0;
    this.stats.promotions++;
    this.poll?.abort();
    this.poll = null;
    this.update();
  }

  // ---- long-poll ----

  startPoll() {
    this.poll?.abort();
    this.poll = new AbortController();
    this.pollLoop(this.poll.signal);
  }

  async pollLoop(signal) {
    let failures = 0;
    let timeoutS = POLL_TIMEOUT_S;
    while (!signal.aborted) {
      try {
        await this.pollOnce(timeoutS, signal);
        failures = 0;
        this.pollOk = true;
        timeoutS = Math.min(timeoutS * 2, POLL_TIMEOUT_S);
      } catch (err) {
        if (signal.aborted || this.session.fatal(err)) return;
        // The server answered and the body was cut on the way: like an SSE
        // connection that delivered, go again soon rather than back off further.
        failures = err.code === "incomplete_answer" ? 1 : failures + 1;
        this.pollOk = false;
        // A connection cut while we waited (a proxy's idle timeout?): wait less.
        timeoutS = Math.max(Math.floor(timeoutS / 2), 1);
        this.update();
        await sleep(retryDelay(err, failures, this.retryMs), signal, this.waker.signal);
      }
      this.update();
    }
  }

  // ---- watching: is SSE answering, buffered, or failing? ----

  tick() {
    const now = Date.now();
    this.update();
    const sse = this.sse;
    if (!sse) return;
    if (sse.trial) {
      if (now > sse.until) this.sseFailed(sse);
      return;
    }
    if (!this.fallback) return; // probes are there to find a buffered SSE, to leave it
    if (this.suspect && now >= this.suspect.deadline) {
      if (!sse.lastId || idAfter(this.suspect.id, sse.lastId)) return this.sseFailed(sse);
      this.suspect = null;
    }
    const quiet = now - Math.max(sse.lastAt, this.session.dueSince) >= QUIET_MS;
    if (!this.probing && !this.suspect && this.session.answerDue() && quiet) this.probe();
  }

  pollOnce(timeoutS, signal) {
    const onEvent = (ev) => this.event(ev, false);
    return pollOnce(this.session, { timeoutS, stallMs: this.stallMs, signal, onEvent });
  }

  /** One long-poll with timeout=0: take what is new, and see whether SSE keeps up. */
  async probe() {
    if (this.mode !== "sse" || !this.sse) return;
    this.probing = true;
    this.stats.probes++;
    const before = this.session.cursor;
    try {
      await this.pollOnce(0, new AbortController().signal);
      const fresh = this.session.cursor;
      if (fresh !== before && this.sse) this.suspect = { id: fresh, deadline: Date.now() + GRACE_MS };
    } catch {
      // The transports' own failures say what is wrong.
    } finally {
      this.probing = false;
    }
  }

  update() {
    let state;
    if (typeof navigator !== "undefined" && navigator.onLine === false) state = "offline";
    else if (this.mode === "poll") state = this.pollOk ? "polling" : "reconnecting";
    else if (this.sse?.open) state = "live";
    else state = this.state === "connecting" ? "connecting" : "reconnecting";
    if (state !== this.state) {
      this.state = state;
      this.session.connectionChanged(state);
    }
  }
}
