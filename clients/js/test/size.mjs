// The module's cost to a page: each entry bundled and minified with esbuild, then gzipped.
//
// Usage: node test/size.mjs  (from clients/js, after `npm ci` there)
// Prints one JSON object: {"<entry>": {"minified": bytes, "gzipped": bytes}}.

import { build } from "esbuild";
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const ENTRIES = { ".": "src/index.js", "./ai-sdk": "src/ai-sdk.js" };

const sizes = {};
for (const [name, entry] of Object.entries(ENTRIES)) {
  const result = await build({
    entryPoints: [`${root}/${entry}`],
    bundle: true,
    minify: true,
    format: "esm",
    write: false,
    logLevel: "silent",
  });
  const code = result.outputFiles[0].contents;
  sizes[name] = { minified: code.length, gzipped: gzipSync(code, { level: 9 }).length };
}
console.log(JSON.stringify(sizes));
