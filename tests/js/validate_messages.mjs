// Check UI messages as an app checks stored ones: the SDK's safeValidateUIMessages.
//
// Usage: node validate_messages.mjs '{"messages": [...]}'
// Prints {"error": null} when they are valid, else {"error": "the SDK's message"}.

import { safeValidateUIMessages } from 'ai';

const { messages } = JSON.parse(process.argv[2] ?? '{}');
const result = await safeValidateUIMessages({ messages });
process.stdout.write(JSON.stringify({ error: result.success ? null : String(result.error?.message) }) + '\n');
