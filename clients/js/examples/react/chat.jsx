// A plain React chat on relay: the AI SDK's useChat on RelayChatTransport (no Next.js).
//
// <RelayChat relayUrl="https://relay.example.com" sessionId={sid} getToken={...} />
// `sessionId` is a relay session (`await new RelayClient({baseUrl}).createSession()`);
// `getToken` is needed only when relay's access control is on. The tests run
// this file in Chromium (tests/test_js_chat_transport.py).

import { Chat, useChat } from "@ai-sdk/react";
import { useEffect, useMemo, useState } from "react";
import { RelayChatTransport } from "relay-client/ai-sdk";

function Part({ part }) {
  if (part.type === "text") return <p>{part.text}</p>;
  if (part.type === "reasoning") return <details><summary>Reasoning</summary>{part.text}</details>;
  if (part.type.startsWith("tool-")) return <p className="tool">{part.type.slice(5)}: {part.state}</p>;
  return null;
}

export function RelayChat({ relayUrl, sessionId, getToken, follow = true }) {
  const transport = useMemo(() => new RelayChatTransport({ baseUrl: relayUrl, getToken }), [relayUrl, getToken]);
  const chat = useMemo(() => new Chat({ id: sessionId, transport }), [sessionId, transport]);
  const { messages, sendMessage, regenerate, status, error, clearError } = useChat({ chat });
  // Turns sent from another tab or device show up, and an answer being
  // written resumes on load; off, this tab shows only its own turns.
  useEffect(() => (follow ? transport.follow(chat) : undefined), [follow, transport, chat]);
  useEffect(() => () => transport.close(), [transport]);
  const [input, setInput] = useState("");
  const busy = status === "submitted" || status === "streaming";

  function send(event) {
    event.preventDefault();
    if (!input.trim()) return;
    if (error) clearError();
    sendMessage({ text: input });
    setInput("");
  }

  return (
    <main data-status={status}>
      <ol className="messages">
        {messages.map((message) => (
          <li key={message.id} data-id={message.id} data-role={message.role}>
            {message.parts.map((part, i) => <Part key={i} part={part} />)}
          </li>
        ))}
      </ol>
      {/* A RelayError: API.md's message ("An answer is still being generated."), its code in error.code. */}
      {error && <p role="alert">{error.message}</p>}
      <form onSubmit={send}>
        <input name="prompt" value={input} onChange={(e) => setInput(e.target.value)} />
        <button type="submit" disabled={busy}>Send</button>
        {/* Stops the answer on the server and keeps reading to its end: the text shown is the stored one. */}
        {busy && <button type="button" onClick={() => transport.stop(sessionId)}>Stop</button>}
        {!busy && messages.at(-1)?.role === "assistant" && <button type="button" onClick={() => regenerate()}>Regenerate</button>}
      </form>
    </main>
  );
}
