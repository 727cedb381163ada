// Drive relay-client under Node against a real relay: follow a session, maybe send a prompt,
// and report what the client applied and showed.
//
// Usage: node follow.mjs '<json>'   (tests/support/js_client.py builds the JSON)
//
// {
//   "baseUrl": "http://127.0.0.1:PORT",
//   "sessionId": "...",            the session to follow (created when absent)
//   "prompt": "...",               optional: send it, and wait for its answer
//   "messageId": "...",            optional: the answer to wait for (without a prompt)
//   "transport": "fetch" | "eventsource" | "poll", "fallback": true, "heartbeatSeconds": 1,
//   "postAttempts": 4,
//   "whole": false,                answers whole (GET ?wait=), not as they stream
//   "regenerate": false,           then regenerate the answer, and wait for the new one
//   "inputs": null,                {"approved": bool, "output": any JSON}: while the answer
//                                   waits, approve (or deny) each call, give each client tool
//                                   that output, and wait for the answer again
//   "debug": false,                every 3 s, the session's state and stats on stderr
//   "token": {"secret", "audience", "sub", "ttlSeconds", "firstExpired", "alwaysExpired"}
//                                   optional: getToken() signs HS256 tokens with these
// }
//
// Prints JSON lines as it goes: {"type": "open", "sessionId"}, {"type": "state",
// "state"}, {"type": "sent", "messageId"}, {"type": "event", "id", "event"} (each
// applied), {"type": "text", "id", "text"} (every new text of an answer), then
// one {"type": "result", ...}: the answer, the log of what was applied ({"kind":
// "event", id, event, messageId, attempt, fromStep, text} and {"kind":
// "snapshot", cursor, contents: {id: content}}), the session's and connection's
// stats, the token calls, and an error ({status, code, message}) if any.
// Exits 0 whenever the client behaved as a client does (an error is a result).

import { createHmac } from "node:crypto";
import { RelayClient } from "../src/index.js";

const args = JSON.parse(process.argv[2] ?? "{}");
// Resolves once the line is out: process.exit() would drop what a full pipe still holds.
const print = (line) => new Promise((resolve) => process.stdout.write(`${JSON.stringify(line)}\n`, resolve));
const tokenCalls = [];

function sign({ secret, audience, sub = "alice" }, ttlSeconds) {
  const b64 = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const head = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub, aud: audience, iat: now, exp: now + ttlSeconds })}`;
  return `${head}.${createHmac("sha256", secret).update(head).digest("base64url")}`;
}

function getToken({ fresh }) {
  const spec = args.token;
  const expired = spec.alwaysExpired || (spec.firstExpired && tokenCalls.length === 0);
  tokenCalls.push({ fresh, expired, at: Date.now() });
  return sign(spec, expired ? -60 : spec.ttlSeconds);
}

function describe(err) {
  return err && { status: err.status ?? null, code: err.code ?? null, message: String(err.message ?? err) };
}

async function main() {
  const client = new RelayClient({
    baseUrl: args.baseUrl,
    getToken: args.token ? getToken : undefined,
    postAttempts: args.postAttempts,
  });
  const sessionId = args.sessionId ?? (await client.createSession()).session_id;
  const session = client.session(sessionId, {
    transport: args.transport ?? "fetch",
    fallback: args.fallback ?? true,
    heartbeatSeconds: args.heartbeatSeconds ?? 1,
    whole: args.whole ?? false,
  });
  const log = [];
  const states = [];
  let answerId = args.messageId ?? null;
  const adopt = session.adopt.bind(session);
  session.adopt = (snapshot) => {
    const contents = Object.fromEntries(snapshot.messages.map((m) => [m.id, m.content]));
    log.push({ kind: "snapshot", cursor: snapshot.cursor, contents });
    adopt(snapshot);
  };
  session.on("event", (ev) => {
    const { message_id: messageId, attempt = null, from_step: fromStep = null, text = null } = ev.data;
    log.push({ kind: "event", id: ev.id, event: ev.event, messageId, attempt, fromStep, text });
    print({ type: "event", id: ev.id, event: ev.event });
  });
  const shown = new Map(); // answer id -> the text last printed
  session.on("change", () => {
    for (const { id, role, content } of session.messages) {
      if (role !== "assistant" || shown.get(id) === content) continue;
      shown.set(id, content);
      print({ type: "text", id, text: content });
    }
  });
  session.on("state", (state) => {
    states.push(state);
    print({ type: "state", state });
  });
  if (args.debug) {
    const dump = () => console.error(JSON.stringify({ state: session.state, cursor: session.cursor, ...session.connection.stats }));
    setInterval(dump, 3000).unref();
  }
  const result = { type: "result", sessionId, message: null, log, states, tokenCalls, error: null };
  try {
    await session.open();
    print({ type: "open", sessionId });
    if (args.prompt != null) {
      answerId = (await session.send(args.prompt)).message_id;
      print({ type: "sent", messageId: answerId });
    }
    if (answerId) result.message = await session.answer(answerId);
    while (args.inputs && result.message?.status === "waiting") {
      result.waits = (result.waits ?? 0) + 1;
      for (const part of result.message.parts.filter((p) => p.type === "tool")) {
        if (part.status === "waiting_approval") await session.approve(answerId, part.call_id, args.inputs.approved);
        if (part.status === "waiting_output") await session.toolOutput(answerId, part.call_id, { output: args.inputs.output });
      }
      result.message = await session.answer(answerId);
    }
    if (args.regenerate) {
      result.replaced = answerId;
      answerId = (await session.regenerate()).message_id;
      print({ type: "regenerated", messageId: answerId });
      result.message = await session.answer(answerId);
      result.messageIds = session.messages.map((m) => m.id);
    }
  } catch (err) {
    result.error = describe(err);
  }
  result.state = session.state;
  result.stats = { ...session.stats, ...session.connection.stats, mode: session.connection.mode };
  session.close();
  await print(result);
}

// Nothing left to wait on, the answer still awaited: a client that stopped
// following (no connection, no timer) without saying so.
process.on("beforeExit", () => {
  console.error("the event loop emptied before the answer came");
  process.exit(3);
});

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
