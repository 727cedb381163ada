// relay-client: follow relay's streams exactly once, over any transport (see README.md).
export { RelayClient, idempotencyKey } from "./client.js";
export { Session } from "./session.js";
export { RelayError } from "./http.js";
export { applyEvent, codePoints, idAfter, isFinal, toModel, UNFINISHED } from "./answers.js";
export { sseParser } from "./sse.js";
