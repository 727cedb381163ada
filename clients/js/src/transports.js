// One connection of each transport: SSE over fetch, EventSource, and one long-poll.
//
// Each reads from the session's cursor at the moment it connects and hands
// every event to `conn.event(...)`, which applies it only when its id is
// after the cursor (session.js): however the connections overlap, an event
// is applied once. `conn` is the Connection (connection.js) running them.
//
// Outcomes of an SSE connection (what the Connection decides on):
// - "ended": the server closed it (SSE_MAX_SECONDS, the token's expiry);
// - "stalled": no byte for two heartbeats after some came (the network is
//   gone without telling us): reconnect;
// - "buffered": the headers came and then not one byte, though relay writes
//   its `retry:` line at once: something holds the body (a buffering proxy);
// - a thrown RelayError: refused or cut.

import { RelayError } from "./http.js";

export const EVENT_TYPES = ["start", "chunk", "reasoning", "end", "error", "reset", "tool_call", "tool_result", "waiting"];

const eventsPath = (sid, cursor) =>
  `/api/sessions/${encodeURIComponent(sid)}/events?last_event_id=${encodeURIComponent(cursor)}`;

/** An AbortController that follows `signal` too; `done()` unhooks it. */
function linked(signal) {
  const controller = new AbortController();
  const abort = () => controller.abort();
  signal.addEventListener("abort", abort, { once: true });
  controller.done = () => signal.removeEventListener("abort", abort);
  return controller;
}

/** One SSE connection over fetch (so the token goes in a header); resolves an outcome. */
export async function fetchSse(conn, signal) {
  const { session } = conn;
  const controller = linked(signal);
  let timer;
  let outcome = "stalled";
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => controller.abort(), conn.stallMs);
  };
  try {
    arm(); // the headers are due within the stall time too
    const response = await session.client.fetch(eventsPath(session.id, session.cursor), {
      signal: controller.signal,
      headers: { Accept: "text/event-stream" },
    });
    if (!/^text\/event-stream/.test(response.headers.get("Content-Type") || "")) {
      throw new RelayError("The event stream came back as something else.");
    }
    outcome = "buffered";
    conn.opened();
    arm();
    const parser = conn.parser();
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (let read; !(read = await reader.read()).done; ) {
      outcome = "stalled";
      arm();
      conn.bytes();
      parser.push(decoder.decode(read.value, { stream: true }));
    }
    return "ended";
  } catch (err) {
    // Aborted by our watchdog, not by the caller: the outcome says why.
    if (controller.signal.aborted && !signal.aborted) return outcome;
    throw err;
  } finally {
    clearTimeout(timer);
    controller.abort(); // whatever ended it, the body is not read any more
    controller.done();
  }
}

/**
 * One EventSource, which reconnects by itself: resolves when `signal`
 * aborts, rejects once it gives up (a refusal) or has failed `maxErrors`
 * times in a row. It cannot send headers: the token goes as `access_token`.
 */
export async function eventSource(conn, signal, maxErrors) {
  const { session } = conn;
  const token = await session.client.auth.token();
  let url = session.client.url(eventsPath(session.id, session.cursor));
  if (token) url += `&access_token=${encodeURIComponent(token)}`;
  return new Promise((resolve, reject) => {
    const source = new EventSource(url);
    let errors = 0;
    const end = (settle, value) => {
      source.close();
      settle(value);
    };
    source.onopen = () => conn.opened();
    const onEvent = (e) => {
      // A connection error is an "error" Event too, without data: onerror has it.
      if (e.data === undefined) return;
      errors = 0;
      conn.event({ id: e.lastEventId || null, event: e.type, data: e.data }, true);
    };
    for (const type of EVENT_TYPES) source.addEventListener(type, onEvent);
    source.onerror = (e) => {
      if (e.data !== undefined) return; // relay's own `error` event
      conn.closed();
      if (source.readyState === EventSource.CLOSED || ++errors >= maxErrors) {
        end(reject, new RelayError("The event stream failed."));
      }
    };
    signal.addEventListener("abort", () => end(resolve, "aborted"), { once: true });
  });
}

/**
 * One long-poll after the session's cursor, bounded by the stall time; its
 * events go to `onEvent`, a `reset` reloads the snapshot.
 */
export async function pollOnce(session, { timeoutS, stallMs, signal, onEvent }) {
  const controller = linked(signal);
  const timer = setTimeout(() => controller.abort(), timeoutS * 1000 + stallMs);
  const query = `after=${encodeURIComponent(session.cursor)}&timeout=${timeoutS}`;
  try {
    const body = await session.client.json("GET", `/api/sessions/${encodeURIComponent(session.id)}/poll?${query}`, {
      signal: controller.signal,
    });
    if (body.reset) return void (await session.reload());
    for (const ev of body.events) onEvent(ev);
  } catch (err) {
    if (controller.signal.aborted && !signal.aborted) throw new RelayError("The poll stalled.", { cause: err });
    throw err;
  } finally {
    clearTimeout(timer);
    controller.done();
  }
}
