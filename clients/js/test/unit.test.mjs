// relay-client's own tests (node:test): the parts that need no relay.
//
// Run: node --test test/unit.test.mjs (from clients/js, after `npm ci` in test/).
// The network edge is faked only to check the tool calls' requests on their
// own or to script failures (a lost answer, a 503): a small HTTP server of
// node:http that records what it was asked. Everything else is tested
// against real relay processes by tests/test_js_client.py, and tool answers
// by tests/test_client_steps.py and tests/test_client_tool_inputs.py.

import assert from "node:assert/strict";
import { createServer } from "node:http";
import { test } from "node:test";
import { readUIMessageStream } from "ai";

import { applyEvent, idAfter, RelayClient, sseParser, toModel } from "../src/index.js";
import { needsInput, showGiven } from "../src/answers.js";
import { RelayChatTransport, uiMessage } from "../src/ai-sdk.js";
import { Auth, expiresAt, retryAfterMs } from "../src/http.js";
import { backoff } from "../src/retry.js";
import { UiFeed } from "../src/ui-feed.js";

// ---- the SSE parser ----

const WIRE = "\uFEFFretry: 1500\r\n: keep-alive\n\nid: 1-0\nevent: chunk\ndata: {\"a\":\r\ndata: 1}\n\n" +
  "event: reset\ndata: {}\r\rid: 2-0\nevent: end\ndata: {}\n\n";

function parse(pieces) {
  const events = [];
  const retries = [];
  const parser = sseParser({ onEvent: (e) => events.push(e), onRetry: (ms) => retries.push(ms) });
  pieces.forEach((piece) => parser.push(piece));
  return { events, retries };
}

test("the parser gives the same events however the bytes are split", () => {
  const whole = parse([WIRE]);
  assert.deepEqual(whole.events, [
    { id: "1-0", event: "chunk", data: '{"a":\n1}' },
    { id: null, event: "reset", data: "{}" },
    { id: "2-0", event: "end", data: "{}" },
  ]);
  assert.deepEqual(whole.retries, [1500]);
  for (let cut = 1; cut < WIRE.length; cut++) {
    assert.deepEqual(parse([WIRE.slice(0, cut), WIRE.slice(cut)]), whole, `split at ${cut}`);
  }
  assert.deepEqual(parse([...WIRE]), whole, "one character at a time");
});

test("a partial event at the end of a connection is never dispatched", () => {
  assert.deepEqual(parse(["id: 1-0\nevent: chunk\ndata: {}\n"]).events, []);
});

// ---- the answer model ----

const assistant = (extra = {}) => toModel({ id: "m", role: "assistant", content: "", reasoning: "", status: "queued", ...extra });
const fold = (message, events) => events.map(([event, data]) => applyEvent(message, { event, data: { message_id: "m", ...data } }));

test("ids compare as 64-bit numbers, not strings", () => {
  assert.ok(idAfter("10-0", "9-5"));
  assert.ok(idAfter("18446744073709551615-1", "18446744073709551615-0"));
  assert.ok(!idAfter("5-5", "5-5"));
});

test("pieces make one part per run of a kind within a step", () => {
  const m = assistant();
  fold(m, [["start", { attempt: 1 }], ["reasoning", { text: "think " }], ["reasoning", { text: "more" }],
    ["chunk", { text: "Hel" }], ["chunk", { text: "lo" }], ["reasoning", { text: "again" }], ["chunk", { text: "!", step: 1 }]]);
  assert.deepEqual(m.parts.map((p) => [p.type, p.step, p.text]), [
    ["reasoning", 0, "think more"], ["text", 0, "Hello"], ["reasoning", 0, "again"], ["text", 1, "!"],
  ]);
  assert.equal(m.content, "Hello!");
  assert.equal(m.reasoning, "think moreagain");
});

test("a new attempt drops the message from its from_step on", () => {
  const m = assistant();
  fold(m, [["start", { attempt: 1 }], ["chunk", { text: "a" }], ["chunk", { text: "b", step: 1 }]]);
  fold(m, [["start", { attempt: 2, from_step: 1 }]]);
  assert.equal(m.content, "a");
  fold(m, [["start", { attempt: 3 }]]);
  assert.deepEqual([m.content, m.parts, m.attempt, m.status], ["", [], 3, "streaming"]);
});

test("end checks the text and reasoning lengths in code points, and the tool calls", () => {
  const m = assistant();
  fold(m, [["start", {}], ["chunk", { text: "é😀" }]]);
  assert.deepEqual(fold(m, [["end", { finish_reason: "stop", text_length: 2, reasoning_length: 0 }]]), ["ok"]);
  assert.equal(m.status, "done");
  const short = assistant();
  fold(short, [["start", {}], ["chunk", { text: "ab" }]]);
  assert.deepEqual(fold(short, [["end", { finish_reason: "cancelled", text_length: 3 }]]), ["mismatch"]);
  assert.equal(short.status, "cancelled");
  const tools = assistant();
  assert.deepEqual(fold(tools, [["start", {}], ["end", { finish_reason: "stop", text_length: 0, tool_calls: 1 }]]), ["ok", "mismatch"]);
});

test("tool calls, their results and waits show as tool parts with a status", () => {
  const m = assistant();
  fold(m, [
    ["start", {}],
    ["tool_call", { call_id: "c1", name: "search", arguments: { q: "x" }, runs_on: "server", approval_id: null }],
    ["tool_call", { call_id: "c2", name: "delete", arguments: {}, runs_on: "server", approval_id: "a2" }],
    ["tool_call", { call_id: "c3", name: "pick", arguments: {}, runs_on: "client", approval_id: null }],
    ["tool_result", { call_id: "c1", status: "ok", output: { hits: 1 } }],
    ["waiting", { for: [{ call_id: "c2", kind: "approval" }, { call_id: "c3", kind: "output" }] }],
  ]);
  assert.deepEqual(m.parts.map((p) => [p.call_id, p.status]), [["c1", "ok"], ["c2", "waiting_approval"], ["c3", "waiting_output"]]);
  assert.deepEqual(m.parts[0].output, { hits: 1 });
  assert.equal(m.status, "waiting");
});

test("a tool input given shows in its part, and the answer no longer needs one", () => {
  const m = assistant();
  fold(m, [
    ["start", {}],
    ["tool_call", { call_id: "c1", name: "pay", arguments: {}, runs_on: "server", approval_id: "a1" }],
    ["waiting", { for: [{ call_id: "c1", kind: "approval" }] }],
  ]);
  assert.ok(needsInput(m));
  showGiven(m, new Map([["c1", { status: "running" }]]));
  assert.deepEqual([m.status, m.parts[0].status, needsInput(m)], ["waiting", "running", false]);
});

test("a snapshot's answer without parts gets them from its texts", () => {
  const m = toModel({ id: "m", role: "assistant", content: "answer", reasoning: "why", status: "done" });
  assert.deepEqual(m.parts, [{ type: "reasoning", step: 0, text: "why" }, { type: "text", step: 0, text: "answer" }]);
});

// ---- the AI SDK feed: checked by the SDK's own reader ----

/** Feed `states` of one answer through a UiFeed, and read the chunks as useChat does. */
async function readFeed(states, shown) {
  const feed = new UiFeed("m", shown);
  const chunks = states.flatMap((state) => feed.update(state));
  const stream = new ReadableStream({
    start(controller) {
      chunks.forEach((chunk) => controller.enqueue(chunk));
      controller.close();
    },
  });
  let last;
  for await (const message of readUIMessageStream({ stream })) last = message;
  return { chunks, message: last, feed };
}

const state = (status, parts, extra = {}) => ({ status, parts, ...extra });
const text = (t, step = 0) => ({ type: "text", step, text: t });

test("growing text is deltas, and the SDK ends with exactly the model's parts", async () => {
  const { chunks, message } = await readFeed([
    state("queued", []),
    state("streaming", [{ type: "reasoning", step: 0, text: "hm" }]),
    state("streaming", [{ type: "reasoning", step: 0, text: "hm" }, text("Hel")]),
    state("done", [{ type: "reasoning", step: 0, text: "hm" }, text("Hello")], { finish_reason: "length" }),
  ]);
  assert.deepEqual(chunks.map((c) => c.type), [
    "start", "start-step", "reasoning-start", "reasoning-delta", "reasoning-end", "text-start", "text-delta",
    "text-delta", "text-end", "finish-step", "finish",
  ]);
  assert.equal(chunks.at(-1).finishReason, "length");
  assert.deepEqual(message.parts.filter((p) => p.type !== "step-start").map((p) => [p.type, p.text]), [["reasoning", "hm"], ["text", "Hello"]]);
});

test("text the model no longer has resets the step, and the SDK shows only the new attempt", async () => {
  const { chunks, message } = await readFeed([
    state("streaming", [text("lost attempt")]),
    state("streaming", []),
    state("streaming", [text("new")]),
    state("done", [text("new answer")]),
  ]);
  assert.ok(chunks.some((c) => c.type === "reset-step"));
  assert.deepEqual(message.parts.filter((p) => p.type === "text").map((p) => p.text), ["new answer"]);
});

test("a cancelled answer ends with abort, a failed one with an error naming its code", async () => {
  const feed = new UiFeed("m");
  assert.deepEqual(feed.update(state("cancelled", [text("so far")])).map((c) => c.type).slice(-2), ["text-end", "abort"]);
  assert.deepEqual(feed.update(state("cancelled", [text("so far and more")])), []);
  const failed = new UiFeed("m").update(state("error", [], { error: { code: "upstream_error", message: "The model failed." } }));
  assert.deepEqual(failed.at(-1), { type: "error", errorText: "upstream_error: The model failed." });
});

test("tool parts map to the SDK's tool chunks and states", async () => {
  const call = { type: "tool", step: 0, call_id: "c1", name: "search", arguments: { q: "x" }, runs_on: "server", approval_id: null };
  const ask = { type: "tool", step: 0, call_id: "c2", name: "drop", arguments: {}, runs_on: "server", approval_id: "a2" };
  const { message } = await readFeed([
    state("streaming", [{ ...call, status: "running" }]),
    state("waiting", [{ ...call, status: "ok", output: 42 }, { ...ask, status: "waiting_approval" }]),
  ]);
  const tools = message.parts.filter((p) => p.type.startsWith("tool-"));
  assert.deepEqual(tools.map((p) => [p.type, p.state]), [["tool-search", "output-available"], ["tool-drop", "approval-requested"]]);
  assert.equal(tools[0].output, 42);
  assert.equal(tools[1].approval.id, "a2");
});

test("an answer waiting only for inputs given already goes on: its stream does not end", async () => {
  const ask = { type: "tool", step: 0, call_id: "c2", name: "drop", arguments: {}, runs_on: "server", approval_id: "a2" };
  const feed = new UiFeed("m", state("waiting", [{ ...ask, status: "waiting_approval" }]));
  assert.deepEqual(feed.update(state("waiting", [{ ...ask, status: "running" }])).map((c) => c.type), ["start"]);
  assert.equal(feed.finished, false);
  const rest = feed.update(state("done", [{ ...ask, status: "ok", output: 1 }, text("Dropped.", 1)]));
  assert.equal(rest.at(-1).type, "finish");
});

test("a stored message becomes a UIMessage with its steps and tool states", () => {
  const message = toModel({
    id: "m", role: "assistant", status: "done", content: "", reasoning: "",
    parts: [text("a"), { type: "tool", step: 0, call_id: "c", name: "f", arguments: {}, runs_on: "client", status: "denied" }, text("b", 1)],
  });
  assert.deepEqual(uiMessage(message).parts.map((p) => p.state ? `${p.type}:${p.state}` : p.type), [
    "step-start", "text:done", "tool-f:output-denied", "step-start", "text:done",
  ]);
});

// ---- tokens and retries ----

const jwt = (claims) => `h.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.s`;

test("a token is asked for again when it expires soon, once for concurrent requests", async () => {
  let calls = 0;
  const auth = new Auth({ getToken: () => jwt({ exp: Math.floor(Date.now() / 1000) + (++calls === 1 ? 2 : 600) }) });
  await Promise.all([auth.token(), auth.token()]);
  assert.equal(calls, 1);
  await auth.token(); // the first expires within 5 s: a fresh one
  await auth.token();
  assert.equal(calls, 2);
  assert.equal(expiresAt("not-a-jwt"), Infinity);
});

test("Retry-After is seconds or a date; backoff is jittered and capped", () => {
  assert.equal(retryAfterMs("3"), 3000);
  assert.ok(Math.abs(retryAfterMs(new Date(Date.now() + 10000).toUTCString()) - 10000) < 1500);
  for (let failures = 1; failures < 20; failures++) {
    const ms = backoff(failures, 1000);
    assert.ok(ms >= Math.min(1000 * 2 ** (failures - 1), 30000) / 2 && ms <= 30000);
  }
});

// ---- calls against a scripted server ----

/** An HTTP server answering with `script(request, body)` -> [status, json, headers]; records requests. */
async function scripted(script) {
  const requests = [];
  const server = createServer((req, res) => {
    let raw = "";
    req.on("data", (d) => (raw += d));
    req.on("end", () => {
      const body = raw ? JSON.parse(raw) : null;
      requests.push({ method: req.method, url: req.url, headers: req.headers, body });
      const [status, json, headers = {}] = script(req, body, requests.length);
      if (status === 0) return void req.socket.destroy(); // the answer is lost
      res.writeHead(status, { "Content-Type": "application/json", ...headers }).end(JSON.stringify(json));
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const client = new RelayClient({ baseUrl: `http://127.0.0.1:${server.address().port}` });
  return { client, requests, close: () => server.close() };
}

test("tool decisions and outputs go to API.md's endpoints", async () => {
  const { client, requests, close } = await scripted(() => [202, { status: "accepted" }]);
  try {
    await client.approve("s1", "m1", "c/1", false, "no");
    await client.toolOutput("s1", "m1", "c2", { output: { ok: true } });
    assert.deepEqual(requests.map((r) => [r.method, r.url, r.body]), [
      ["POST", "/api/sessions/s1/messages/m1/tools/c%2F1/approval", { approved: false, reason: "no" }],
      ["POST", "/api/sessions/s1/messages/m1/tools/c2/output", { output: { ok: true } }],
    ]);
  } finally {
    close();
  }
});

test("a prompt whose answer was lost is posted again under the same key; a 409 then too", async () => {
  const answers = [[0], [503, { error: { code: "unavailable", message: "busy" } }, { "Retry-After": "0" }],
    [409, { error: { code: "generation_active", message: "An answer is still being generated." } }],
    [202, { message_id: "m1" }]];
  const { client, requests, close } = await scripted((req, body, n) => answers[n - 1]);
  try {
    assert.equal((await client.send("s1", "hi")).message_id, "m1");
    const keys = new Set(requests.map((r) => r.headers["idempotency-key"]));
    assert.equal(requests.length, 4);
    assert.equal(keys.size, 1);
  } finally {
    close();
  }
});

test("errors carry API.md's code and message, and the status as statusCode", async () => {
  const { client, close } = await scripted(() => [409, { error: { code: "generation_active", message: "An answer is still being generated." } }]);
  try {
    await assert.rejects(client.send("s1", "hi"), (err) => {
      assert.deepEqual([err.name, err.code, err.message, err.statusCode], ["RelayError", "generation_active", "An answer is still being generated.", 409]);
      return true;
    });
  } finally {
    close();
  }
});

test("the transport posts the decisions a Chat made, for the calls that wait for them", async () => {
  const posted = [];
  const model = { parts: [{ call_id: "c1", status: "waiting_approval" }, { call_id: "c2", status: "waiting_output" }, { call_id: "c3", status: "ok" }] };
  const session = {
    byId: new Map([["m1", model]]),
    approve: (...args) => posted.push(["approve", ...args]),
    toolOutput: (...args) => posted.push(["output", ...args]),
  };
  await new RelayChatTransport().settleTools(session, {
    id: "m1",
    parts: [
      { type: "tool-a", toolCallId: "c1", state: "approval-responded", approval: { id: "a1", approved: true } },
      { type: "tool-b", toolCallId: "c2", state: "output-error", errorText: "no camera" },
      { type: "tool-c", toolCallId: "c3", state: "output-available", output: 1 },
    ],
  });
  assert.deepEqual(posted, [["approve", "m1", "c1", true, undefined], ["output", "m1", "c2", { error: "no camera" }]]);
});

test("a snapshot that fails is asked for again, and each failure is told as `retrying`", async () => {
  const snapshot = { session_id: "s1", messages: [], active_message_id: null, cursor: "0-0" };
  const { client, close } = await scripted((req, body, n) => {
    if (req.url.includes("/poll")) return [200, { events: [], cursor: "0-0", reset: false }];
    return n === 1 ? [503, { error: { code: "unavailable" } }, { "Retry-After": "0" }] : [200, snapshot];
  });
  const session = client.session("s1", { transport: "poll" });
  const told = [];
  session.on("retrying", ({ doing, error, failures }) => told.push([doing, error.code, failures]));
  try {
    await session.open();
    assert.deepEqual(told, [["load", "unavailable", 1]]);
    assert.equal(session.stats.snapshots, 1);
  } finally {
    session.close();
    close();
  }
});

test("whole-answer mode says which answers it is waiting for", async () => {
  const answer = { id: "m1", role: "assistant", status: "streaming", content: "so far" };
  const snapshot = { session_id: "s1", messages: [answer], active_message_id: "m1", cursor: "0-0" };
  const { client, close } = await scripted((req) =>
    req.url.includes("wait=") ? [200, { ...answer, status: "done", content: "whole" }] : [200, snapshot]);
  const session = client.session("s1", { transport: "poll", whole: true });
  try {
    await session.reload();  // not opened: nothing follows the stream
    assert.equal(session.waitingWhole("m1"), true);
    const shown = await new Promise((resolve) => session.on("change", (m) => m?.status === "done" && resolve(m)));
    assert.deepEqual([shown.content, session.waitingWhole("m1")], ["whole", false]);
  } finally {
    close();
  }
});

// ---- an end whose counts disagree: the stored answer, never the short one ----

/** A relay that leaves out one chunk of its stream; its snapshot, after the end, is whole. */
async function leaky() {
  let snapshots = 0;
  const answer = (status, content) => ({ id: "m", role: "assistant", status, content, reasoning: "" });
  const server = createServer((req, res) => {
    if (req.url.includes("/events")) {
      res.writeHead(200, { "Content-Type": "text/event-stream" });
      const event = (id, type, data) => `id: ${id}\nevent: ${type}\ndata: ${JSON.stringify({ message_id: "m", ...data })}\n\n`;
      // Chunk "b" (3-0) is missing: the end says 3 characters were stored.
      res.write(`retry: 100\n\n${event("1-0", "start", { attempt: 1 })}${event("2-0", "chunk", { text: "a" })}`);
      res.write(event("4-0", "end", { finish_reason: "stop", text_length: 3, reasoning_length: 0 }));
      return; // held open, as relay holds a stream
    }
    const first = snapshots++ === 0;
    const body = first
      ? { session_id: "s", messages: [answer("streaming", "")], active_message_id: "m", cursor: "0-0" }
      : { session_id: "s", messages: [answer("done", "abc")], active_message_id: null, cursor: "4-0" };
    res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify(body));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { baseUrl: `http://127.0.0.1:${server.address().port}`, close: () => server.closeAllConnections() || server.close() };
}

test("an end whose text length disagrees reloads the snapshot: the session ends with the stored text", async () => {
  const relay = await leaky();
  const session = new RelayClient({ baseUrl: relay.baseUrl }).session("s");
  try {
    await session.open();
    const answer = await session.answer("m");
    assert.deepEqual([answer.content, answer.status, session.stats.repairs], ["abc", "done", 1]);
  } finally {
    session.close();
    relay.close();
  }
});

test("the AI SDK is never shown the short text as final", async () => {
  const relay = await leaky();
  const transport = new RelayChatTransport({ baseUrl: relay.baseUrl });
  try {
    const stream = await transport.reconnectToStream({ chatId: "s" });
    let last;
    for await (const message of readUIMessageStream({ stream })) last = message;
    assert.deepEqual(last.parts.filter((p) => p.type === "text").map((p) => p.text), ["abc"]);
  } finally {
    transport.close();
    relay.close();
  }
});
