// The answer model: messages as front ends render them, folded from snapshots and events.
//
// An assistant message has `parts` in order, as API.md's "Stored" shape has
// them: `{type: "reasoning" | "text", step, text}` (one part per run of one
// kind within a step) and `{type: "tool", step, call_id, name, arguments,
// runs_on, approval_id, status, output, error}`, plus `status`, `content` and
// `reasoning` (the concatenated texts). No DOM, no network: the session folds
// events in, a front end reads the messages.

export const UNFINISHED = ["queued", "streaming"];
const FINAL = ["done", "cancelled", "error"];

/** True when stream id `a` comes after `b` (ids are `<ms>-<seq>`, 64-bit: BigInt). */
export function idAfter(a, b) {
  const [am, as] = a.split("-").map(BigInt);
  const [bm, bs] = b.split("-").map(BigInt);
  return am > bm || (am === bm && as > bs);
}

/** Characters as the server counts them (Python's `len`): code points. */
export function codePoints(text) {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/** True once an answer will change no more (`waiting` is not: it goes on after a decision). */
export function isFinal(message) {
  return FINAL.includes(message.status);
}

/** Waiting for a tool input nobody has given here: nothing more comes until someone does. */
export function needsInput(message) {
  return message.status === "waiting" && message.parts.some((p) => p.type === "tool" && p.status.startsWith("waiting"));
}

/** Tool parts still waiting for an input that was given (`given`: call id -> fields) show it. */
export function showGiven(message, given) {
  for (const part of message.parts || []) {
    if (part.type === "tool" && part.status.startsWith("waiting") && given.has(part.call_id)) {
      Object.assign(part, given.get(part.call_id));
    }
  }
}

/** A snapshot message as the model holds it: an assistant's with `parts` (made from its texts when the server sent none). */
export function toModel(message) {
  const model = { ...message };
  if (message.role !== "assistant") return model;
  if (message.parts) {
    model.parts = message.parts.map((part) => ({ ...part }));
  } else {
    model.parts = [];
    if (message.reasoning) model.parts.push({ type: "reasoning", step: 0, text: message.reasoning });
    if (message.content) model.parts.push({ type: "text", step: 0, text: message.content });
  }
  return model;
}

function texts(message) {
  const join = (type) => message.parts.filter((p) => p.type === type).map((p) => p.text).join("");
  message.content = join("text");
  message.reasoning = join("reasoning");
}

function piece(message, type, data) {
  const step = data.step ?? 0;
  const last = message.parts.at(-1);
  if (last?.type === type && last.step === step) last.text += data.text;
  else message.parts.push({ type, step, text: data.text });
  message[type === "text" ? "content" : "reasoning"] += data.text;
  message.status = "streaming";
}

function tool(message, callId) {
  return message.parts.find((p) => p.type === "tool" && p.call_id === callId);
}

function toolCall(message, data) {
  const { message_id: _, ...call } = data;
  const status = call.approval_id ? "waiting_approval" : call.runs_on === "client" ? "waiting_output" : "running";
  message.parts.push({ type: "tool", ...call, status, output: null, error: null });
}

function toolResult(message, data) {
  const part = tool(message, data.call_id);
  if (part) Object.assign(part, { status: data.status, output: data.output ?? null, error: data.error ?? null });
}

function waiting(message, data) {
  for (const wanted of data.for || []) {
    const part = tool(message, wanted.call_id);
    if (part) part.status = wanted.kind === "approval" ? "waiting_approval" : "waiting_output";
  }
  message.status = "waiting";
}

/** After `end`: is what the model holds as long as the server says it stored? */
function whole(message, data) {
  if (data.text_length !== undefined && codePoints(message.content) !== data.text_length) return false;
  if (data.reasoning_length !== undefined && codePoints(message.reasoning) !== data.reasoning_length) {
    return false;
  }
  const calls = message.parts.filter((p) => p.type === "tool").length;
  return data.tool_calls === undefined || calls === data.tool_calls;
}

/**
 * Fold one event into its assistant message. Returns "ok", or "mismatch"
 * when, after `end`, the text is not what the server stored (the caller
 * reloads the snapshot, which has the stored answer).
 */
export function applyEvent(message, { event, data }) {
  if (event === "start") {
    // A new attempt (a worker was lost) or a step that goes on: what was
    // shown of the message from `from_step` on starts over.
    const from = data.from_step ?? 0;
    message.parts = message.parts.filter((p) => p.step < from);
    texts(message);
    Object.assign(message, { status: "streaming", model: data.model, attempt: data.attempt, error: null });
  } else if (event === "chunk") {
    piece(message, "text", data);
  } else if (event === "reasoning") {
    piece(message, "reasoning", data);
  } else if (event === "tool_call") {
    toolCall(message, data);
  } else if (event === "tool_result") {
    toolResult(message, data);
  } else if (event === "waiting") {
    waiting(message, data);
  } else if (event === "end") {
    const { finish_reason, usage } = data;
    Object.assign(message, { status: finish_reason === "cancelled" ? "cancelled" : "done", finish_reason, usage });
    if (!whole(message, data)) return "mismatch";
  } else if (event === "error") {
    Object.assign(message, { status: "error", error: data.error });
  }
  return "ok";
}
