// Drive relay's /api/chat routes the way useChat does, with the real AI SDK.
//
// Usage: node chat_client.mjs '<json>'   (tests/support/ai_sdk.py builds the JSON)
//
// {
//   "api": "http://127.0.0.1:PORT/api/chat",   the transport's `api`
//   "chatId": "session id",
//   "action": "send" | "reconnect",
//   "headers": {"Authorization": "Bearer ..."},  optional, sent with every request
//   "reconnectApi": "url",        optional: prepareReconnectToStreamRequest's `api`
//   "trigger": "submit-message" | "regenerate-message",   send only (default submit)
//   "text": "prompt",             send/submit: the new user message's one text part
//   "messages": [...],            optional: the UIMessages to send instead
//   "messageId": "id",            optional: the body's messageId
//   "abortAfterChars": 10         optional: abort the request once the answer's
//                                 text has this many characters (a cut connection)
// }
//
// Prints one JSON object on stdout and exits 0 whenever the SDK behaved as an
// SDK does (a thrown HTTP error is a result, not a crash):
// {
//   "status": "finished" | "no-stream" (reconnect got 204) | "aborted" | "error",
//   "message": the last UIMessage readUIMessageStream produced, or null,
//   "chunkTypes": the `type` of every UI message chunk the transport parsed,
//   "error": null or {"name", "message", "statusCode", "responseBody"}
// }

import { DefaultChatTransport, readUIMessageStream } from 'ai';

const args = JSON.parse(process.argv[2] ?? '{}');

function describe(error) {
  return {
    name: error?.name ?? 'Error',
    message: String(error?.message ?? error),
    statusCode: error?.statusCode ?? null,
    responseBody: error?.responseBody ?? null,
  };
}

function textOf(message) {
  return (message?.parts ?? [])
    .filter(part => part.type === 'text')
    .map(part => part.text)
    .join('');
}

function userMessage(text) {
  return {
    id: `user-${Date.now()}`,
    role: 'user',
    parts: [{ type: 'text', text }],
  };
}

async function openStream(transport, abortSignal) {
  if (args.action === 'reconnect') {
    return transport.reconnectToStream({ chatId: args.chatId, abortSignal });
  }
  if (args.action !== 'send') {
    throw new Error(`unknown action ${args.action}`);
  }
  return transport.sendMessages({
    chatId: args.chatId,
    trigger: args.trigger ?? 'submit-message',
    messageId: args.messageId,
    messages: args.messages ?? (args.text != null ? [userMessage(args.text)] : []),
    abortSignal,
  });
}

async function main() {
  const transport = new DefaultChatTransport({
    api: args.api,
    headers: args.headers ?? {},
    prepareReconnectToStreamRequest: args.reconnectApi
      ? ({ headers }) => ({ api: args.reconnectApi, headers })
      : undefined,
  });
  const abort = new AbortController();
  const result = { status: 'finished', message: null, chunkTypes: [], error: null };

  let chunks;
  try {
    chunks = await openStream(transport, abort.signal);
  } catch (error) {
    return { ...result, status: 'error', error: describe(error) };
  }
  if (chunks == null) {
    return { ...result, status: 'no-stream' };
  }

  // Record each chunk's type on the way through, as the chat sees them.
  const recorded = chunks.pipeThrough(
    new TransformStream({
      transform(chunk, controller) {
        result.chunkTypes.push(chunk.type);
        controller.enqueue(chunk);
      },
    }),
  );
  try {
    for await (const message of readUIMessageStream({
      stream: recorded,
      terminateOnError: true,
    })) {
      result.message = message;
      if (args.abortAfterChars != null && textOf(message).length >= args.abortAfterChars) {
        result.status = 'aborted';
        abort.abort();
        break;
      }
    }
  } catch (error) {
    if (result.status !== 'aborted') {
      result.status = 'error';
      result.error = describe(error);
    }
  }
  return result;
}

main().then(
  result => {
    process.stdout.write(JSON.stringify(result) + '\n');
  },
  error => {
    process.stderr.write(`${error?.stack ?? error}\n`);
    process.exitCode = 1;
  },
);
