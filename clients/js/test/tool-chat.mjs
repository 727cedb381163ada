// Drive RelayChatTransport as useChat does through an answer that waits for tool inputs,
// against a real relay, and report the UI message each turn ended with.
//
// Usage: node tool-chat.mjs '{"baseUrl", "sessionId", "prompt", "output"}'
//
// Turn 1 sends the prompt. While a turn ends with tools that wait, the next
// turn sends the assistant message back as the SDK does after
// `addToolApprovalResponse` (every approval granted) and `addToolOutput`
// (every client tool's output: `output`), and reads the rest of the same
// answer. Prints one JSON line: {"turns": [{"chunks": [types], "message"}]}.

import { readUIMessageStream } from "ai";
import { RelayChatTransport } from "../src/ai-sdk.js";

const MAX_TURNS = 4;
const args = JSON.parse(process.argv[2]);
const transport = new RelayChatTransport({ baseUrl: args.baseUrl, heartbeatSeconds: 1 });

async function turn(messages, message) {
  const stream = await transport.sendMessages({ chatId: args.sessionId, trigger: "submit-message", messages });
  const chunks = [];
  const counted = stream.pipeThrough(new TransformStream({
    transform(chunk, controller) {
      chunks.push(chunk.type);
      controller.enqueue(chunk);
    },
  }));
  let last = message;
  for await (const shown of readUIMessageStream({ message, stream: counted })) last = structuredClone(shown);
  return { chunks, message: last };
}

/** The inputs useChat's app gives: true for each approval asked, `output` for each client tool. */
function giveInputs(message) {
  let given = 0;
  for (const part of message.parts) {
    if (part.state === "approval-requested") {
      Object.assign(part, { state: "approval-responded", approval: { ...part.approval, approved: true } });
      given++;
    } else if (part.type.startsWith("tool-") && part.state === "input-available" && !part.providerExecuted) {
      Object.assign(part, { state: "output-available", output: args.output });
      given++;
    }
  }
  return given;
}

const user = { id: "prompt", role: "user", parts: [{ type: "text", text: args.prompt }] };
const turns = [await turn([user])];
while (turns.length < MAX_TURNS) {
  const message = structuredClone(turns.at(-1).message);
  if (!giveInputs(message)) break;
  turns.push(await turn([user, message], message));
}
transport.close();
process.stdout.write(`${JSON.stringify({ turns })}\n`, () => process.exit(0));
