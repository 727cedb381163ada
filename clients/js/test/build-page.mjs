// Bundle the test page (test/page/react.jsx, React and the AI SDK) with esbuild: no build step
// of the page's own, so the test makes one. Usage: node test/build-page.mjs OUT_DIR
// Writes OUT_DIR/react.html and OUT_DIR/react.js.

import { build } from "esbuild";
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
const out = process.argv[2];

// `relay-client/...` is this package: its own source, as an app importing it from npm gets it.
const thisPackage = {
  name: "relay-client",
  setup(b) {
    b.onResolve({ filter: /^relay-client(\/ai-sdk)?$/ }, (args) => ({
      path: `${here}../src/${args.path.endsWith("/ai-sdk") ? "ai-sdk" : "index"}.js`,
    }));
  },
};

await build({
  entryPoints: [`${here}page/react.jsx`],
  bundle: true,
  format: "esm",
  jsx: "automatic",
  outfile: `${out}/react.js`,
  nodePaths: [`${here}node_modules`],
  define: { "process.env.NODE_ENV": '"production"' },
  plugins: [thisPackage],
  logLevel: "error",
});
writeFileSync(
  `${out}/react.html`,
  '<!doctype html><meta charset="utf-8"><title>relay + useChat</title><div id="root"></div><script type="module" src="react.js"></script>\n',
);
