// relay-client as a page with no build step imports it: the module's own files, as they are.
//
// Query: relay (relay's URL), sid, prompt, transport ("fetch", "eventsource" or "poll").
// Sends the prompt, follows its answer, and leaves what it saw in window.relayTest.

import { RelayClient } from "../src/index.js";

const query = new URLSearchParams(location.search);
const client = new RelayClient({ baseUrl: query.get("relay") });
const session = client.session(query.get("sid"), { transport: query.get("transport"), heartbeatSeconds: 1 });
const seen = (window.relayTest = { states: [], texts: [], done: null, error: null });

session.on("state", (state) => seen.states.push(state));
session.on("change", () => {
  const text = session.active()?.content;
  if (text && text !== seen.texts.at(-1)) seen.texts.push(text);
});

try {
  await session.open();
  const { message_id: id } = await session.send(query.get("prompt"));
  const answer = await session.answer(id);
  const { connection } = session;
  seen.done = { id, content: answer.content, stats: { ...session.stats, ...connection.stats, mode: connection.mode } };
} catch (err) {
  seen.error = `${err.code}: ${err.message}`;
}
