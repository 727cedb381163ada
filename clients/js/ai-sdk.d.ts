// Types of relay-client/ai-sdk (src/ai-sdk.js): the AI SDK's ChatTransport on relay.

import type { ChatTransport, UIMessage, UIMessageChunk } from "ai";
import type { ClientOptions, Message, RelayClient, Session, SessionOptions } from "./index.js";

/** What `follow` needs of a Chat (the AI SDK's AbstractChat, @ai-sdk/react's Chat). */
export interface FollowableChat<UI_MESSAGE extends UIMessage = UIMessage> {
  readonly id: string;
  messages: UI_MESSAGE[];
  readonly status: "submitted" | "streaming" | "ready" | "error";
  resumeStream(): Promise<void>;
}

export class RelayChatTransport<UI_MESSAGE extends UIMessage = UIMessage> implements ChatTransport<UI_MESSAGE> {
  /** RelayClient's options (or `client` to share one) and the sessions' options. */
  constructor(options?: (ClientOptions | { client: RelayClient }) & SessionOptions);
  readonly client: RelayClient;
  /** A resumed stream starts the answer from its beginning. */
  readonly resumeStreamIsReplay: true;
  sendMessages: ChatTransport<UI_MESSAGE>["sendMessages"];
  reconnectToStream: ChatTransport<UI_MESSAGE>["reconnectToStream"];
  /** The chat's open Session (one per chat id, shared by its streams). */
  session(chatId: string): Promise<Session>;
  /** Cancel the chat's answer on the server; its stream reads on to the answer's end (the tail is kept). */
  stop(chatId: string): Promise<unknown>;
  /** The conversation as UIMessages, without the answer being written (a resume streams it). */
  messages(chatId: string): Promise<UI_MESSAGE[]>;
  /** Keep `chat` in step with its session (turns from other tabs, a running answer); returns the unsubscribe. */
  follow(chat: FollowableChat<UI_MESSAGE>): () => void;
  /** Close every session this transport opened. */
  close(): void;
}

/** A Session message as a UIMessage: each step opens with `step-start`, then its parts. */
export function uiMessage(message: Message): UIMessage;

export type { UIMessageChunk };
