// Builds dist/turnpike.js: ONE self-contained ES module (src/ with tweetnacl inlined) that the
// server serves at /sdk/turnpike.js. `node scripts/bundle.mjs [OUT]` writes OUT (default
// dist/turnpike.js); test/bundle.test.mjs rebuilds to a temporary file and fails when the
// committed bundle differs.
import { build } from "esbuild";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const out = process.argv[2] || `${root}dist/turnpike.js`;

const cryptoShim = {
  name: "crypto-shim",
  setup(b) {
    b.onResolve({ filter: /^crypto$/ }, () => ({ path: "crypto", namespace: "crypto-shim" }));
    b.onLoad({ filter: /.*/, namespace: "crypto-shim" }, () => ({
      loader: "js",
      contents: `module.exports = { randomBytes(n) {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) globalThis.crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  return out;
} };`,
    }));
  },
};

await build({
  entryPoints: [`${root}src/index.js`],
  outfile: out,
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2020",
  legalComments: "inline",
  charset: "utf8",
  logLevel: "warning",
  // tweetnacl takes `self.crypto` in browsers and falls back to `require("crypto")`
  // elsewhere: that require is answered by a shim over the standard crypto.getRandomValues,
  // so the one module has no import and runs wherever Web Crypto exists.
  plugins: [cryptoShim],
  banner: {
    js: "// turnpike-client: generated from clients/js/src by `npm run bundle` in clients/js (do not edit).\n// Includes tweetnacl (public domain, https://tweetnacl.js.org).",
  },
});
