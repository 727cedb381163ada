// RelayChatTransport: the AI SDK's ChatTransport (`useChat`) on relay's own API.
//
// What it adds over the SDK's DefaultChatTransport on relay's /api/chat routes:
// - Streams come from the session's one cursor (session.js), over fetch-SSE
//   or long-poll, reconnecting by itself: a cut connection, a buffering
//   proxy or an expired token never reaches the app as an error.
// - `follow(chat)` keeps a Chat in step with the session: a turn started in
//   another tab (or device) shows up, its prompt and its streaming answer.
// - `stop(chatId)` cancels the answer on the server and keeps reading until
//   its end, so the client shows exactly the stored text (the chunks already
//   on their way included). `useChat`'s own `stop()` only stops reading.
// - Errors are RelayErrors: API.md's `code` and `message` (a 409 reads "An
//   answer is still being generated."), `statusCode` the HTTP status.
//
// The chat `id` is a relay session id (`POST /api/sessions`, or
// `transport.client.createSession()`).

import { RelayClient } from "./client.js";
import { RelayError } from "./http.js";
import { UiFeed } from "./ui-feed.js";

const DEAD = ["unauthorized", "gone", "closed"];
const TOOL_STATES = {
  running: "input-available",
  waiting_output: "input-available",
  waiting_approval: "approval-requested",
  ok: "output-available",
  error: "output-error",
  in_doubt: "output-error",
  denied: "output-denied",
};
const SYNC_RETRY_MS = 200; // a busy chat is looked at again this soon

/** A stored tool part as the AI SDK's UI tool part. */
function uiTool(part) {
  const ui = { type: `tool-${part.name}`, toolCallId: part.call_id, state: TOOL_STATES[part.status], input: part.arguments };
  if (part.runs_on === "server") ui.providerExecuted = true;
  if (part.approval_id) ui.approval = { id: part.approval_id };
  if (part.status === "ok") ui.output = part.output;
  if (ui.state === "output-error") ui.errorText = part.error || part.status;
  return ui;
}

/** A session message as a UIMessage: each step opens with `step-start`, then its parts in order. */
export function uiMessage(message) {
  if (message.role !== "assistant") {
    return { id: message.id, role: message.role, parts: [{ type: "text", text: message.content }] };
  }
  const parts = [];
  let step = -1;
  for (const part of message.parts) {
    if (part.step !== step) parts.push({ type: "step-start" });
    step = part.step;
    parts.push(part.type === "tool" ? uiTool(part) : { type: part.type, text: part.text, state: "done" });
  }
  // As relay's own /api/chat/{sid}/messages: every answer has a text part, even
  // an empty one (a failed answer), so that the app can regenerate it.
  if (!parts.some((part) => part.type === "text")) parts.push({ type: "text", text: "", state: "done" });
  return { id: message.id, role: "assistant", parts };
}

const textOf = (message) => (message?.parts || []).filter((p) => p.type === "text").map((p) => p.text).join("\n\n");

export class RelayChatTransport {
  /** `options`: RelayClient's (`baseUrl`, `getToken`, `transport`...), or `{client}` to share one. */
  constructor(options = {}) {
    this.options = options;
    this.client = options.client || new RelayClient(options);
    this.sessions = new Map(); // chat id -> Promise of its open Session
    this.resumeStreamIsReplay = true; // a resumed stream starts the answer from its beginning
    this.syncs = new Set();
  }

  /** The open Session of a chat: opened once, shared by every stream of it; again once it is dead. */
  session(chatId) {
    const known = this.sessions.get(chatId);
    if (!known) return this.open(chatId, known);
    const again = () => this.open(chatId, known);
    return known.then((session) => (DEAD.includes(session.state) ? again() : session), again);
  }

  /** Open the chat's session, unless another caller did since `stale` was found. */
  open(chatId, stale) {
    const current = this.sessions.get(chatId);
    if (current && current !== stale) return current;
    const opened = this.client.session(chatId, this.options).open();
    this.sessions.set(chatId, opened);
    opened.catch(() => this.sessions.get(chatId) === opened && this.sessions.delete(chatId));
    return opened;
  }

  async sendMessages({ chatId, trigger, messageId, messages, abortSignal }) {
    const session = await this.session(chatId);
    const last = messages.at(-1);
    let id;
    let shown = null;
    if (trigger === "regenerate-message") {
      const named = session.byId.get(messageId)?.role === "assistant" ? messageId : undefined;
      id = (await session.regenerate(named)).message_id;
    } else if (last?.role === "assistant") {
      // Tool approvals or a client tool's output (addToolApprovalResponse, addToolOutput).
      await this.settleTools(session, last);
      id = last.id;
      shown = session.byId.get(id);
    } else {
      id = (await session.send(textOf(last))).message_id;
    }
    return this.stream(session, id, abortSignal, shown);
  }

  async settleTools(session, message) {
    const model = session.byId.get(message.id);
    for (const part of message.parts) {
      const callId = part.toolCallId;
      const status = model?.parts.find((p) => p.call_id === callId)?.status;
      if (part.state === "approval-responded" && status !== "ok") {
        await session.approve(message.id, callId, part.approval.approved, part.approval.reason);
      } else if (/^output-(available|error)$/.test(part.state) && status === "waiting_output") {
        const result = part.state === "output-error" ? { error: part.errorText } : { output: part.output };
        await session.toolOutput(message.id, callId, result);
      }
    }
  }

  /** The answer being written, from its beginning; null when none is. */
  async reconnectToStream({ chatId, abortSignal }) {
    const session = await this.session(chatId);
    const active = session.active();
    return active ? this.stream(session, active.id, abortSignal) : null;
  }

  /** Cancel the chat's answer on the server; its stream goes on to the answer's end. */
  async stop(chatId) {
    return (await this.session(chatId)).cancel();
  }

  /** The conversation as UIMessages, without the answer being written (a resume streams it). */
  async messages(chatId) {
    const session = await this.session(chatId);
    const active = session.active();
    return session.messages.filter((m) => m !== active).map(uiMessage);
  }

  /**
   * Keep `chat` (an AI SDK Chat: `id`, `messages`, `status`, `resumeStream()`)
   * in step with its session: whenever the session has an answer the chat
   * does not show and the chat is idle, its messages are set from the
   * session and a running answer is resumed. Returns the unsubscribe.
   */
  follow(chat) {
    let timer = 0;
    let off = null;
    const sync = async () => {
      clearTimeout(timer);
      if (!off) return; // not following (yet, or any more)
      const session = await this.session(chat.id);
      const shown = new Set(chat.messages.map((m) => m.id));
      if (!session.messages.some((m) => m.role === "assistant" && !shown.has(m.id))) return;
      // Busy (its own request) or showing an error: look again soon.
      if (chat.status !== "ready") return void (timer = setTimeout(run, SYNC_RETRY_MS));
      chat.messages = await this.messages(chat.id);
      if (session.active()) chat.resumeStream();
    };
    const run = () => void sync().catch(() => {}); // a session that cannot open says so in its state
    this.session(chat.id).then((session) => {
      if (off === false) return;
      off = session.on("change", run);
      run();
    }, () => {});
    this.syncs.add(run);
    return () => {
      if (off) off();
      off = false;
      clearTimeout(timer);
      this.syncs.delete(run);
    };
  }

  stream(session, id, signal, shown) {
    const feed = new UiFeed(id, shown);
    let offs = [];
    const end = () => {
      offs.forEach((off) => off());
      offs = [];
      for (const run of this.syncs) setTimeout(run, 0); // the chat may have missed a turn meanwhile
    };
    return new ReadableStream({
      start(controller) {
        const push = (changed) => {
          const message = session.byId.get(id);
          if ((changed && changed.id !== id) || !message) return;
          for (const chunk of feed.update(message)) controller.enqueue(chunk);
          if (feed.finished) {
            end();
            controller.close();
          }
        };
        const dead = (state) => {
          if (!DEAD.includes(state)) return;
          end();
          controller.error(session.error || new RelayError(`The session is ${state}.`, { code: state }));
        };
        offs = [session.on("change", push), session.on("state", dead)];
        signal?.addEventListener("abort", () => {
          if (!offs.length) return;
          end();
          controller.error(new DOMException("The stream was aborted.", "AbortError"));
        }, { once: true });
        push(null);
      },
      cancel: end,
    });
  }

  /** Close every session this transport opened (the SDK calls it when the Chat is disposed). */
  close() {
    for (const opened of this.sessions.values()) opened.then((session) => session.close(), () => {});
    this.sessions.clear();
  }
}
