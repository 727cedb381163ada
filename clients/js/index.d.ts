// Types of relay-client (src/index.js). The HTTP contract behind them: relay's API.md.

/** A JSON value, as relay stores tool arguments and outputs. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export type MessageStatus = "queued" | "streaming" | "waiting" | "done" | "error" | "cancelled";
export type ToolStatus =
  | "running"
  | "waiting_approval"
  | "waiting_output"
  | "ok"
  | "error"
  | "denied"
  | "in_doubt";

export interface TextPart {
  type: "text" | "reasoning";
  step: number;
  text: string;
}

export interface ToolPart {
  type: "tool";
  step: number;
  call_id: string;
  name: string;
  /** The parsed arguments; the model's text when it was not valid JSON. */
  arguments: Json;
  runs_on: "server" | "client";
  approval_id?: string | null;
  status: ToolStatus;
  output: Json;
  error: string | null;
}

export type Part = TextPart | ToolPart;

/** A message as a Session holds it: a snapshot's, folded with the events since. */
export interface Message {
  id: string;
  role: "user" | "assistant";
  status: MessageStatus;
  /** The answer's text (its text parts, concatenated); the prompt of a user message. */
  content: string;
  /** The model's reasoning (its reasoning parts, concatenated); "" when none. */
  reasoning?: string;
  /** An assistant message's parts, in order (API.md, Tools, "Stored"). */
  parts?: Part[];
  model?: string | null;
  attempt?: number;
  finish_reason?: "stop" | "length" | "content_filter" | "cancelled" | null;
  usage?: Record<string, number> | null;
  error?: { code: string; message: string } | null;
  created_at?: string;
}

export interface Snapshot {
  session_id: string;
  messages: Message[];
  active_message_id: string | null;
  cursor: string;
}

/** One of relay's events; `id` is its stream id (null for `reset`). */
export interface RelayEvent {
  id: string | null;
  event: string;
  data: { message_id?: string; [key: string]: unknown };
}

/** The 202 of a prompt post (or a regenerate). */
export interface Accepted {
  session_id: string;
  message_id: string;
  status: "queued";
  events_url: string;
  poll_url: string;
}

/** Any failure: API.md's `code` and `message`, the HTTP `status` (0: no whole answer came back). */
export class RelayError extends Error {
  name: "RelayError";
  status: number;
  /** The HTTP status, as the AI SDK's errors carry it; absent when no answer came back. */
  statusCode?: number;
  /** API.md's code (`generation_active`, `unauthorized`...), or `network_error`, `incomplete_answer`. */
  code: string;
  /** What a 429 or 503 asked to wait (Retry-After), in milliseconds. */
  retryAfterMs: number | null;
  body: unknown;
}

export type Transport = "fetch" | "eventsource" | "poll";

export interface ClientOptions {
  /** relay's origin, e.g. "https://relay.example.com"; "" (the default) for the page's own. */
  baseUrl?: string;
  /**
   * The access token (access control on): called when there is none yet,
   * when the one held expires within 5 s, and once more after a 401.
   * `fresh` is true on that retry. A second 401 in a row stops the session.
   */
  getToken?: (options: { fresh: boolean }) => string | null | Promise<string | null>;
  /** A fixed token, for scripts (no refresh). */
  token?: string;
  fetch?: typeof fetch;
  /** Posts of one prompt, under one Idempotency-Key, when answers are lost (default 4). */
  postAttempts?: number;
}

export interface SessionOptions {
  /** SSE over fetch (default; the token as a header), EventSource (the token as `access_token`), or long-poll only. */
  transport?: Transport;
  /** Fall back to long-poll when SSE does not work from here (default true). */
  fallback?: boolean;
  /** The server's HEARTBEAT_SECONDS (default 15): no byte for two of them is a dead stream. */
  heartbeatSeconds?: number;
  /** Show unfinished answers whole (GET ?wait=), not as they stream. */
  whole?: boolean;
}

export type SessionState =
  | "connecting"
  | "live"
  | "polling"
  | "reconnecting"
  | "offline"
  | "unauthorized"
  | "gone"
  | "closed";

export interface SendOptions {
  /** The key for this prompt (default: a fresh UUID); posted again under it when the answer is lost. */
  idempotencyKey?: string;
  signal?: AbortSignal;
  /** Told before each post again (a lost answer, a 502/503/504), e.g. to say "trying again…". */
  onRetry?: (err: RelayError, attempt: number) => void;
}

export class RelayClient {
  constructor(options?: ClientOptions & SessionOptions);
  createSession(): Promise<{ session_id: string }>;
  snapshot(sessionId: string, signal?: AbortSignal): Promise<Snapshot>;
  deleteSession(sessionId: string): Promise<null>;
  /** Access control on only: the caller's sessions, newest first. */
  listSessions(options?: { before?: string }): Promise<{
    sessions: { session_id: string; title: string; created_at: string; updated_at: string }[];
    next: string | null;
  }>;
  /** Post a prompt under an Idempotency-Key, posted again under it when the answer was lost. */
  send(sessionId: string, content: string, options?: SendOptions): Promise<Accepted>;
  /** Stop the answer on the server (its stream ends with `cancelled`); not a disconnect. */
  cancel(sessionId: string, messageId: string): Promise<unknown>;
  regenerate(sessionId: string, messageId: string): Promise<Accepted>;
  approve(sessionId: string, messageId: string, callId: string, approved: boolean, reason?: string): Promise<unknown>;
  toolOutput(
    sessionId: string,
    messageId: string,
    callId: string,
    result: { output: Json } | { error: string },
  ): Promise<unknown>;
  /** Whole-answer mode: the message once it is no longer queued or streaming. */
  wait(sessionId: string, messageId: string, options?: { signal?: AbortSignal; waitSeconds?: number }): Promise<Message>;
  /** A Session following `sessionId` (call `open()`). */
  session(sessionId: string, options?: SessionOptions): Session;
}

export class Session {
  readonly id: string;
  /** The id of the last event applied. */
  readonly cursor: string;
  /** The conversation, oldest first. */
  readonly messages: Message[];
  readonly byId: Map<string, Message>;
  readonly state: SessionState;
  /** What made the session unauthorized or gone. */
  readonly error: RelayError | null;
  /** Load the snapshot and start following; rejects on 401 (twice) or 404. */
  open(): Promise<this>;
  close(): void;
  /** "change": a message changed (null: any may have); "event": one was applied; "state". */
  on(type: "change", listener: (message: Message | null) => void): () => void;
  on(type: "event", listener: (event: RelayEvent) => void): () => void;
  on(type: "state", listener: (state: SessionState) => void): () => void;
  /** A snapshot failed (a restart, a flaky hop) and is asked for again; `failures` so far. */
  on(
    type: "retrying",
    listener: (trouble: { doing: "load"; error: RelayError; failures: number }) => void,
  ): () => void;
  /** The answer being written now, if any. */
  active(): Message | undefined;
  send(content: string, options?: SendOptions): Promise<Accepted>;
  /** Stop an answer (the active one by default). */
  cancel(messageId?: string): Promise<unknown>;
  /** Answer the last prompt again (the last answer by default). */
  regenerate(messageId?: string): Promise<Accepted>;
  /** A decision on a call that waits for one; once relay took it, its part shows it. */
  approve(messageId: string, callId: string, approved: boolean, reason?: string): Promise<unknown>;
  /** A client tool's result; once relay took it, its part shows it. */
  toolOutput(messageId: string, callId: string, result: { output: Json } | { error: string }): Promise<unknown>;
  /** The answer once final, or waiting for a tool input not given yet. */
  answer(messageId: string): Promise<Message>;
  setWhole(on: boolean): void;
  /** True while the answer is asked for whole (whole-answer mode): none of its text is shown yet. */
  waitingWhole(messageId: string): boolean;
}

export function idempotencyKey(): string;
/** True when stream id `a` comes after `b`. */
export function idAfter(a: string, b: string): boolean;
/** Characters as relay counts them: code points. */
export function codePoints(text: string): number;
export function isFinal(message: Message): boolean;
/** A snapshot message as a Session holds it (parts made from its texts when it has none). */
export function toModel(message: Message): Message;
/** Fold one event into its message: "ok", or "mismatch" when an `end`'s counts disagree. */
export function applyEvent(message: Message, event: RelayEvent): "ok" | "mismatch";
export const UNFINISHED: readonly MessageStatus[];
/** An incremental SSE parser (push text as it arrives). */
export function sseParser(handlers: {
  onEvent: (event: { id: string | null; event: string; data: string }) => void;
  onRetry?: (ms: number) => void;
  onComment?: (text: string) => void;
}): { push(text: string): void };
