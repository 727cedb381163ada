// Drive relay's /api/chat through tool calls the way useChat does, with the real AI SDK.
//
// Usage: node tool_chat.mjs '<json>'   (tests/support/ai_sdk.py builds the JSON)
//
// The chat is the SDK's own AbstractChat (what @ai-sdk/react's useChat wraps),
// over DefaultChatTransport, with `sendAutomaticallyWhen` as the AI SDK docs
// set it for tools: the answer is resubmitted once every approval has a
// response, or every client tool an output.
//
// {
//   "api": "http://127.0.0.1:PORT/api/chat",
//   "chatId": "session id",
//   "headers": {...},            optional, sent with every request
//   "messages": [...],           optional: the initial UIMessages (GET .../messages)
//   "resume": true,              optional: resumeStream() first, as useChat's `resume: true`
//                                does on load (GET .../{chatId}/stream)
//   "text": "prompt",            optional: sent first
//   "decide": {"approved": true, "reason": "ok"},
//                                optional: answers every approval request with
//                                addToolApprovalResponse, once the chat is idle
//   "outputs": {"toolName": any JSON, "other": {"errorText": "..."}},
//                                optional: a client tool's output, given with
//                                addToolOutput from onToolCall (or, for a call
//                                the initial messages hold, once idle)
//   "sendWhen": "approvals" | "toolCalls" | "either"   (default "either")
//   "rounds": 4                  at most this many rounds of decisions and outputs
//   "maxRequests": 8             a request past this many fails (a resubmit loop ends)
// }
//
// Prints one JSON object on stdout and exits 0:
// {
//   "status": the chat's last status ("ready" or "error"),
//   "error": null or {"name", "message", "statusCode", "responseBody"},
//   "messages": the chat's messages at the end,
//   "requests": [{"method", "url", "body"}]   every request the transport made,
//   "responses": [{"status", "chunkTypes"}]   and what each answered
//   "toolCalls": the toolCallIds onToolCall saw, in order
// }

import {
  AbstractChat,
  DefaultChatTransport,
  lastAssistantMessageIsCompleteWithApprovalResponses,
  lastAssistantMessageIsCompleteWithToolCalls,
} from 'ai';

const args = JSON.parse(process.argv[2] ?? '{}');
const DEADLINE_MS = 45_000;

class State {
  constructor(messages) {
    this.messages = messages;
    this.status = 'ready';
    this.error = undefined;
  }
  pushMessage = message => {
    this.messages = this.messages.concat(message);
  };
  popMessage = () => {
    this.messages = this.messages.slice(0, -1);
  };
  replaceMessage = (index, message) => {
    this.messages = [...this.messages.slice(0, index), message, ...this.messages.slice(index + 1)];
  };
  snapshot = value => structuredClone(value);
}

class Chat extends AbstractChat {
  constructor({ messages, ...init }) {
    super({ ...init, state: new State(messages ?? []) });
  }
}

function describe(error) {
  return error == null
    ? null
    : {
        name: error?.name ?? 'Error',
        message: String(error?.message ?? error),
        statusCode: error?.statusCode ?? null,
        responseBody: error?.responseBody ?? null,
      };
}

// Every request and what it answered; a response's chunk types are read from a copy of its body.
const requests = [];
const responses = [];
let inFlight = 0;

async function recordingFetch(url, init) {
  if (requests.length >= (args.maxRequests ?? 8)) {
    throw new Error(`more than ${args.maxRequests ?? 8} requests`);
  }
  inFlight++;
  requests.push({ method: init?.method ?? 'GET', url: String(url), body: init?.body ? JSON.parse(init.body) : null });
  const entry = { status: null, chunkTypes: [] };
  responses.push(entry);
  try {
    const response = await fetch(url, init);
    entry.status = response.status;
    if (!response.body) {
      inFlight--;
      return response;
    }
    const [mine, theirs] = response.body.tee();
    void new Response(mine)
      .text()
      .then(text => {
        for (const line of text.split('\n')) {
          if (line.startsWith('data: ') && line !== 'data: [DONE]') {
            entry.chunkTypes.push(JSON.parse(line.slice(6)).type);
          }
        }
      })
      .catch(() => {})
      .finally(() => inFlight--);
    return new Response(theirs, { status: response.status, headers: response.headers });
  } catch (error) {
    inFlight--;
    throw error;
  }
}

const sendWhen = {
  approvals: lastAssistantMessageIsCompleteWithApprovalResponses,
  toolCalls: lastAssistantMessageIsCompleteWithToolCalls,
  either: options =>
    lastAssistantMessageIsCompleteWithApprovalResponses(options) ||
    lastAssistantMessageIsCompleteWithToolCalls(options),
}[args.sendWhen ?? 'either'];

const outputs = args.outputs ?? {};
const toolCalls = [];
let chat;

function giveOutput(toolName, toolCallId) {
  const output = outputs[toolName];
  if (output != null && typeof output === 'object' && 'errorText' in output) {
    return chat.addToolOutput({ tool: toolName, toolCallId, state: 'output-error', errorText: output.errorText });
  }
  return chat.addToolOutput({ tool: toolName, toolCallId, output });
}

chat = new Chat({
  id: args.chatId,
  messages: args.messages,
  transport: new DefaultChatTransport({ api: args.api, headers: args.headers ?? {}, fetch: recordingFetch }),
  sendAutomaticallyWhen: sendWhen,
  onToolCall: ({ toolCall }) => {
    toolCalls.push(toolCall.toolCallId);
    if (toolCall.toolName in outputs) {
      void giveOutput(toolCall.toolName, toolCall.toolCallId); // not awaited, as the SDK asks
    }
  },
});

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

// Idle: no request in flight and the chat ready (or failed), twice in a row.
async function idle() {
  const deadline = Date.now() + DEADLINE_MS;
  let quiet = 0;
  while (quiet < 2) {
    if (Date.now() > deadline) throw new Error(`not idle after ${DEADLINE_MS} ms: ${chat.status}`);
    await sleep(25);
    const done = inFlight === 0 && (chat.status === 'ready' || chat.status === 'error');
    quiet = done ? quiet + 1 : 0;
  }
}

function lastStepTools() {
  const last = chat.messages.at(-1);
  if (last?.role !== 'assistant') return [];
  const start = last.parts.findLastIndex(part => part.type === 'step-start');
  return last.parts.slice(start + 1).filter(part => part.type.startsWith('tool-'));
}

async function main() {
  if (args.resume) {
    await chat.resumeStream();
  }
  if (args.text != null) {
    await chat.sendMessage({ text: args.text });
  }
  await idle();
  for (let round = 0; round < (args.rounds ?? 4) && chat.status !== 'error'; round++) {
    const asked = lastStepTools().filter(part => part.state === 'approval-requested');
    const open = lastStepTools().filter(
      part => part.state === 'input-available' && !part.providerExecuted && part.type.slice(5) in outputs,
    );
    if ((asked.length === 0 || args.decide == null) && open.length === 0) break;
    for (const part of open) await giveOutput(part.type.slice(5), part.toolCallId);
    if (args.decide != null) {
      for (const part of asked) {
        await chat.addToolApprovalResponse({ id: part.approval.id, ...args.decide });
      }
    }
    await idle();
  }
  return {
    status: chat.status,
    error: describe(chat.error),
    messages: chat.messages,
    requests,
    responses,
    toolCalls,
  };
}

// Exit at once: a chat that would go on resubmitting must not keep node alive.
main().then(
  result => {
    process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(0));
  },
  error => {
    process.stderr.write(`${error?.stack ?? error}\n`, () => process.exit(1));
  },
);
