// Session: one chat followed live, as a list of messages that front ends render.
//
// Exactly once: every event carries a stream id that only grows (API.md,
// Events), so the session keeps one cursor, the id of the last event it
// applied, and applies an event only when its id is after the cursor.
// However events reach it (SSE and its reconnects, long-polls, probes, a
// snapshot reload), each is applied once and in order.
//
// - `reset` (the cursor is older than the stream keeps), an event of a
//   message the session does not know (another tab's prompt), and an `end`
//   whose counts do not match what was shown all reload the snapshot, which
//   holds the stored truth; events that come meanwhile wait, in order.
// - While a prompt is being posted, events wait too: its answer's `start`
//   may come before the 202 that names it.
// - Whole-answer mode (`setWhole(true)`): unfinished answers are not shown
//   from events; each is asked for whole (`GET ...?wait=`) and shown once
//   finished. Their events still move the cursor.
//
// `state`: the connection's ("connecting", "live", "polling",
// "reconnecting", "offline"), or "unauthorized" (the token was refused
// twice: nothing retries), "gone" (the session does not exist) or "closed".

import { applyEvent, idAfter, isFinal, needsInput, showGiven, toModel, UNFINISHED } from "./answers.js";
import { Connection } from "./connection.js";
import { RelayError } from "./http.js";
import { retryDelay, sleep } from "./retry.js";

const DEAD = ["unauthorized", "gone", "closed"];

export class Session {
  constructor(client, id, options = {}) {
    this.client = client;
    this.id = id;
    this.cursor = "0-0";
    this.messages = [];
    this.byId = new Map();
    this.state = "closed";
    this.error = null; // what made the session unauthorized or gone
    this.listeners = new Map();
    this.held = 0; // while above 0 (a reload, a post), events wait in `queued`
    this.queued = [];
    this.reloading = null;
    this.sending = 0;
    this.dueSince = 0; // when the session last learned that an answer is due
    this.whole = Boolean(options.whole);
    this.waits = new Map(); // answer id -> AbortController of its whole-answer wait
    this.given = new Map(); // call id -> what its tool part shows once relay took its input
    this.stats = { snapshots: 0, repairs: 0 };
    this.connection = new Connection(this, options);
  }

  /**
   * Listen to "change" (a message, or null for all), "event" (each applied),
   * "state", "retrying" (`{doing, error, failures}`: a snapshot failed and is
   * asked for again); returns the unsubscribe.
   */
  on(type, listener) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(listener);
    return () => this.listeners.get(type).delete(listener);
  }

  emit(type, value) {
    for (const listener of this.listeners.get(type) || []) listener(value);
  }

  /** Load the snapshot and start following; rejects when it cannot (404, 401). */
  async open() {
    this.setState("connecting");
    await this.reload();
    this.connection.start();
    return this;
  }

  close() {
    this.stop("closed");
  }

  stop(state, error = null) {
    if (DEAD.includes(this.state) && state !== "closed") return;
    this.connection.stop();
    for (const controller of this.waits.values()) controller.abort();
    this.waits.clear();
    this.error = error;
    this.setState(state);
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.emit("state", state);
  }

  connectionChanged(state) {
    if (!DEAD.includes(this.state)) this.setState(state);
  }

  /** True (and the session stopped) when `err` ends it: a refused token, or no such session. */
  fatal(err) {
    if (this.client.auth.state === "unauthorized") this.stop("unauthorized", err);
    else if (err?.code === "session_not_found") this.stop("gone", err);
    return DEAD.includes(this.state);
  }

  /** The answer being written now, if any. */
  active() {
    return this.messages.find((m) => m.role === "assistant" && UNFINISHED.includes(m.status));
  }

  answerDue() {
    return Boolean(this.sending || this.active());
  }

  // ---- events ----

  /** Apply an event unless it was seen. Returns true when it was new. */
  receive(ev) {
    if (ev.event === "reset") return void this.reload().catch(() => {});
    if (this.held) return void this.queued.push(ev);
    if (!ev.id || !idAfter(ev.id, this.cursor)) return false;
    this.cursor = ev.id;
    const message = this.byId.get(ev.data?.message_id);
    if (!message) {
      this.reload().catch(() => {}); // another tab's prompt: the snapshot has it
      return true;
    }
    if (this.waits.has(message.id)) return true; // shown whole: its events only move the cursor
    this.emit("event", ev);
    const applied = applyEvent(message, ev);
    showGiven(message, this.given);
    if (applied === "mismatch") {
      // `end` means stored: the snapshot has the whole answer. Not shown till
      // then: a front end (or the AI SDK's stream) would take this one as final.
      this.stats.repairs++;
      this.reload().catch(() => {});
      return true;
    }
    if (ev.event === "start") this.dueSince = Date.now();
    this.emit("change", message);
    return true;
  }

  /** While `promise` runs, events wait; then they are applied in order. */
  async holding(promise) {
    this.held++;
    try {
      return await promise;
    } finally {
      this.held--;
      if (!this.held) {
        for (const ev of this.queued.splice(0)) this.receive(ev);
        this.emit("change", null); // with what waited applied, anything may have changed
      }
    }
  }

  /** Reload the snapshot once, however many callers ask meanwhile. */
  reload() {
    this.reloading ||= this.holding(this.fetchSnapshot().finally(() => (this.reloading = null)));
    return this.reloading;
  }

  /** GET the snapshot until it answers; a refused token or a missing session is final. */
  async fetchSnapshot() {
    for (let failures = 1; ; failures++) {
      try {
        return this.adopt(await this.client.snapshot(this.id));
      } catch (err) {
        if (this.fatal(err) || (err.status >= 400 && err.status < 500 && err.status !== 429)) throw err;
        this.emit("retrying", { doing: "load", error: err, failures });
        await sleep(retryDelay(err, failures, this.connection.retryMs), this.connection.waker.signal);
      }
    }
  }

  adopt(snapshot) {
    const behind = idAfter(this.cursor, snapshot.cursor);
    this.messages = snapshot.messages.map(toModel);
    for (const message of this.messages) showGiven(message, this.given);
    this.byId = new Map(this.messages.map((m) => [m.id, m]));
    this.cursor = snapshot.cursor;
    this.stats.snapshots++;
    if (this.active()) this.dueSince = Date.now();
    this.claimWhole();
    this.emit("change", null);
    // Transports go on from their own positions; a snapshot older than what
    // was applied (never expected) would leave a gap: start them afresh.
    if (behind && !DEAD.includes(this.state)) this.connection.restart();
  }

  // ---- prompts ----

  /** Post a prompt (Idempotency-Key, retried when its answer is lost); shows it and its queued answer. */
  send(content, options) {
    return this.posting(this.client.send(this.id, content, options), (accepted) => {
      this.add({ id: `local-${accepted.message_id}`, role: "user", content, status: "done" });
    });
  }

  /** Answer the last prompt again (`mid`: the last answer, by default): the old one is superseded. */
  regenerate(mid = this.messages.findLast((m) => m.role === "assistant")?.id) {
    if (!mid) return Promise.reject(new RelayError("There is no answer to regenerate.", { code: "not_regenerable" }));
    return this.posting(this.client.regenerate(this.id, mid), () => {
      this.messages = this.messages.filter((m) => m.id !== mid);
      this.byId.delete(mid);
    });
  }

  /** Events wait while `request` runs: its answer's `start` may come before the 202 that names it. */
  async posting(request, place) {
    this.sending++;
    this.dueSince = Date.now();
    const placed = request.then((accepted) => {
      if (!this.byId.has(accepted.message_id)) {
        place(accepted);
        this.add({ id: accepted.message_id, role: "assistant", status: "queued", content: "", reasoning: "" });
        this.claimWhole();
        this.emit("change", null);
      }
      this.dueSince = Date.now();
      return accepted;
    });
    try {
      return await this.holding(placed);
    } catch (err) {
      // Did it land before the connection failed? The snapshot says.
      if (!this.fatal(err)) this.reload().catch(() => {});
      throw err;
    } finally {
      this.sending--;
    }
  }

  add(message) {
    const model = toModel(message);
    this.messages.push(model);
    this.byId.set(model.id, model);
  }

  /** Stop an answer (the active one by default); its stream ends with `cancelled`. */
  cancel(mid = this.active()?.id) {
    return mid ? this.client.cancel(this.id, mid) : Promise.resolve(null);
  }

  approve(mid, callId, approved, reason) {
    const request = this.client.approve(this.id, mid, callId, approved, reason);
    return this.give(mid, callId, request, { status: approved ? "running" : "denied" });
  }

  toolOutput(mid, callId, result) {
    const shown = "error" in result ? { status: "error", error: result.error } : { status: "ok", output: result.output };
    return this.give(mid, callId, this.client.toolOutput(this.id, mid, callId, result), shown);
  }

  /** Once relay took a tool input, its part shows it (till events say more) and the answer is due again. */
  async give(mid, callId, request, shown) {
    const reply = await request;
    this.given.set(callId, shown);
    const message = this.byId.get(mid);
    if (message?.parts) {
      showGiven(message, this.given);
      this.emit("change", message);
    }
    return reply;
  }

  /** The answer `mid` once it is final, or waiting for a tool input not given here. */
  answer(mid) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const message = this.byId.get(mid);
        if (this.held) return; // a reload or a post is under way: its outcome decides
        if (message && (isFinal(message) || needsInput(message))) {
          done();
          resolve(message);
        } else if (!message) {
          done();
          reject(new RelayError("No message with that id in this session.", { code: "message_not_found" }));
        } else if (DEAD.includes(this.state)) {
          done();
          reject(this.error || new RelayError(`The session is ${this.state}.`, { code: this.state }));
        }
      };
      const offs = [this.on("change", check), this.on("state", check)];
      const done = () => offs.forEach((off) => off());
      check();
    });
  }

  // ---- whole answers ----

  /** Show unfinished answers whole (true) or as they stream (false). */
  setWhole(on) {
    this.whole = on;
    if (on) return this.claimWhole();
    const waited = this.waits.size;
    for (const controller of this.waits.values()) controller.abort();
    this.waits.clear();
    // Their events were passed over: the snapshot has the text so far.
    if (waited) this.reload().catch(() => {});
  }

  /** True while answer `mid` is asked for whole (whole-answer mode): none of its text is shown yet. */
  waitingWhole(mid) {
    return this.waits.has(mid);
  }

  claimWhole() {
    if (!this.whole) return;
    for (const message of this.messages) {
      if (message.role === "assistant" && UNFINISHED.includes(message.status) && !this.waits.has(message.id)) {
        this.waitWhole(message.id);
      }
    }
  }

  async waitWhole(mid) {
    const controller = new AbortController();
    this.waits.set(mid, controller);
    try {
      const final = await this.client.wait(this.id, mid, { signal: controller.signal });
      this.waits.delete(mid);
      const shown = this.byId.get(mid);
      if (shown) Object.assign(shown, toModel(final));
      this.emit("change", shown || null);
    } catch (err) {
      if (controller.signal.aborted || this.fatal(err)) return;
      this.waits.delete(mid); // the server does not know it (never expected): the snapshot says what is true
      this.reload().catch(() => {});
    }
  }
}
