// A Server-Sent Events parser, fed text as it arrives (the WHATWG "event
// stream interpretation", trimmed to what relay's streams need).
//
// Deliberate choices:
// - An event's `id` is the `id:` field of that event only, not the spec's
//   sticky last event id: relay gives every event its own id, except `reset`,
//   which must not count as the event before it (API.md, Events).
// - A partial event at the end of a connection is never dispatched (the spec
//   says so too): a cut stream loses the half-received event, and the reconnect
//   after the last whole one gets it again.
// - A lone CR at the end of a piece waits for the next piece, which may start
//   with the LF of a CRLF split across two reads.

const LINE_END = /\r\n|\r|\n/g;

/**
 * A parser that calls `onEvent({id, event, data})` for each complete event,
 * `onRetry(ms)` for a `retry:` line and `onComment(text)` for a comment.
 * `push(text)` feeds it; a new parser starts every connection.
 */
export function sseParser({ onEvent, onRetry, onComment }) {
  let buffer = "";
  let started = false;
  let fields = { id: null, event: "", data: [] };

  function field(line) {
    if (line === "") {
      if (fields.data.length) {
        onEvent({ id: fields.id, event: fields.event || "message", data: fields.data.join("\n") });
      }
      fields = { id: null, event: "", data: [] };
      return;
    }
    const colon = line.indexOf(":");
    if (colon === 0) return void onComment?.(line.slice(1).trimStart());
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value[0] === " ") value = value.slice(1);
    if (name === "data") fields.data.push(value);
    else if (name === "event") fields.event = value;
    else if (name === "id" && !value.includes("\0")) fields.id = value;
    else if (name === "retry" && /^\d+$/.test(value)) onRetry?.(Number(value));
  }

  return {
    push(text) {
      buffer += text;
      if (!started && buffer) {
        started = true;
        if (buffer[0] === "\uFEFF") buffer = buffer.slice(1);
      }
      let start = 0;
      LINE_END.lastIndex = 0;
      for (let m; (m = LINE_END.exec(buffer)); ) {
        if (m[0] === "\r" && m.index === buffer.length - 1) break;
        field(buffer.slice(start, m.index));
        start = LINE_END.lastIndex;
      }
      buffer = buffer.slice(start);
    },
  };
}
