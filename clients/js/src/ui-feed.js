// One answer as the AI SDK's UI message chunks (API.md, AI SDK front ends and its mapping).
//
// Deliberate choice: the chunks are not mapped from events one by one, as
// the server's /api/chat stream does, but from the answer model each time it
// changes: the feed keeps what the client shows (its parts and their texts)
// and sends what moves it to what the model now holds. So whatever changed
// the model (events, a snapshot reload after a reset or a mismatch, a
// whole-answer fetch, a new attempt) the client ends with exactly the stored
// parts. Text that grew is a delta; text the model no longer has (a new
// attempt, `from_step`) is a `reset-step` (ai >= 7.0.70), which drops the
// current step, and the step is sent again.

import { isFinal, needsInput } from "./answers.js";

const FINISH_REASONS = { stop: "stop", length: "length", content_filter: "content-filter" };

/** "code: message", as relay's own chat stream writes an answer's error. */
export function errorText(error) {
  const code = error?.code || "error";
  return error?.message ? `${code}: ${error.message}` : code;
}

function grows(shown, part) {
  if (shown.type !== part.type || shown.step !== part.step) return false;
  return part.type === "tool" ? shown.call_id === part.call_id : part.text.startsWith(shown.text);
}

/** The chunks that say a tool call's status (nothing for running or waiting for output). */
function toolStatus(part) {
  const toolCallId = part.call_id;
  const providerExecuted = part.runs_on === "server" || undefined;
  switch (part.status) {
    case "waiting_approval":
      return [{ type: "tool-approval-request", approvalId: part.approval_id, toolCallId }];
    case "ok":
      return [{ type: "tool-output-available", toolCallId, output: part.output, providerExecuted }];
    case "denied":
      return [{ type: "tool-output-denied", toolCallId }];
    case "error":
    case "in_doubt":
      return [{ type: "tool-output-error", toolCallId, errorText: part.error || part.status, providerExecuted }];
  }
  return [];
}

function toolCall(part) {
  const call = { toolCallId: part.call_id, toolName: part.name, providerExecuted: part.runs_on === "server" || undefined };
  const input = typeof part.arguments === "string"
    ? { type: "tool-input-error", ...call, input: part.arguments, errorText: "The arguments are not valid JSON." }
    : { type: "tool-input-available", ...call, input: part.arguments };
  return [{ type: "tool-input-start", ...call }, input, ...toolStatus(part)];
}

export class UiFeed {
  /** `shown`: the message the client shows already (a continuation after tool decisions), or none. */
  constructor(messageId, shown = null) {
    this.messageId = messageId;
    this.started = false;
    this.finished = false;
    this.parts = (shown?.parts || []).map((part) => ({ ...part, id: null }));
    this.step = Math.max(-1, ...this.parts.map((part) => part.step));
    this.open = null; // the text or reasoning part still open
    this.count = 0;
  }

  /** The chunks that bring the client from what it shows to `message` (empty once finished). */
  update(message) {
    if (this.finished) return [];
    const out = [];
    if (!this.started) out.push({ type: "start", messageId: this.messageId });
    this.started = true;
    const parts = message.parts || [];
    let same = 0;
    while (same < this.parts.length && same < parts.length && grows(this.parts[same], parts[same])) same++;
    if (same < this.parts.length) this.resetStep(out);
    parts.forEach((part, i) => (i < this.parts.length ? this.grow(out, this.parts[i], part) : this.add(out, part)));
    this.end(out, message);
    return out;
  }

  /** Drop the current step, as the model did (a new attempt): the client keeps earlier steps. */
  resetStep(out) {
    out.push({ type: "reset-step" });
    this.parts = this.parts.filter((part) => part.step < this.step);
    this.open = null; // reset-step forgets the open parts too
  }

  grow(out, shown, part) {
    if (part.type === "tool") {
      if (part.status !== shown.status) out.push(...toolStatus(part));
      shown.status = part.status;
      return;
    }
    if (part.text.length === shown.text.length) return;
    if (shown !== this.open) this.openPart(out, shown); // a part closed before (a continuation)
    out.push({ type: `${part.type}-delta`, id: shown.id, delta: part.text.slice(shown.text.length) });
    shown.text = part.text;
  }

  add(out, part) {
    if (part.step > this.step) {
      this.close(out);
      if (this.step >= 0) out.push({ type: "finish-step" });
      out.push({ type: "start-step" });
      this.step = part.step;
    }
    const shown = { ...part, text: part.type === "tool" ? undefined : "" };
    this.parts.push(shown);
    if (part.type === "tool") {
      this.close(out);
      out.push(...toolCall(part));
    } else {
      this.openPart(out, shown);
      this.grow(out, shown, part);
    }
  }

  openPart(out, shown) {
    this.close(out);
    shown.id = `${shown.type}-${++this.count}`;
    out.push({ type: `${shown.type}-start`, id: shown.id });
    this.open = shown;
  }

  close(out) {
    if (this.open) out.push({ type: `${this.open.type}-end`, id: this.open.id });
    this.open = null;
  }

  /** A final answer ends the stream; so does one waiting for tool inputs (the rest is a new request). */
  end(out, message) {
    const { status } = message;
    if (!isFinal(message) && !needsInput(message)) return; // its inputs given: it goes on
    this.close(out);
    this.finished = true;
    if (status === "cancelled") return void out.push({ type: "abort" });
    if (status === "error") return void out.push({ type: "error", errorText: errorText(message.error) });
    if (this.step >= 0) out.push({ type: "finish-step" });
    const finishReason = status === "waiting" ? "tool-calls" : FINISH_REASONS[message.finish_reason || "stop"] || "other";
    out.push({ type: "finish", finishReason });
  }
}
