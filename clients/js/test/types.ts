// The hand-written types (index.d.ts, ai-sdk.d.ts) as an app uses them: `tsc -p test` checks
// that they compile against the pinned `ai`, and that the transport is a ChatTransport.

import type { ChatTransport, UIMessage } from "ai";
import { RelayClient, RelayError, type Message, type SessionState } from "relay-client";
import { RelayChatTransport } from "relay-client/ai-sdk";

async function follow(baseUrl: string, sessionId: string): Promise<string> {
  const client = new RelayClient({ baseUrl, getToken: async ({ fresh }) => (fresh ? "new" : "old") });
  const session = await client.session(sessionId, { transport: "poll", heartbeatSeconds: 15 }).open();
  const off = session.on("state", (state: SessionState) => void state);
  try {
    const { message_id } = await session.send("Hello", { idempotencyKey: "k1" });
    const answer: Message = await session.answer(message_id);
    for (const part of answer.parts ?? []) {
      if (part.type === "tool" && part.status === "waiting_approval") {
        await session.approve(answer.id, part.call_id, true);
      }
    }
    return answer.content;
  } catch (err) {
    if (err instanceof RelayError && err.code === "generation_active") return err.message;
    throw err;
  } finally {
    off();
    session.close();
  }
}

const transport: ChatTransport<UIMessage> = new RelayChatTransport({ baseUrl: "https://relay.example.com" });
const shared = new RelayChatTransport<UIMessage>({ client: new RelayClient(), transport: "fetch" });
void shared.stop("chat");
void follow;
void transport;
