// Runs Chromium pages that use the browser SDK (clients/js/dist/turnpike.js) for the link
// tests (tests/link_*.rs), and lets the Rust test drive them step by step. Debian's
// /usr/bin/chromium, driven by playwright-core over a pipe; never a downloaded browser. A
// browser may be started through a wrapper executable (`ip netns exec NS /usr/bin/chromium`)
// so that it lives in a network namespace while this script does not.
//
// Input: LINK_CONFIG (environment), JSON:
//   {"browsers": [{"name", "executable", "userDataDir"}],
//    "pages": [{"name", "browser"}],
//    "sdk": "<path of dist/turnpike.js>", "harness": "<path of link_page.mjs>",
//    "maxSecs": <hard limit for the whole run>}
// Each page is http://localhost/ (a secure context), served by playwright's routing from
// memory, never from the network: "/turnpike.js" is the SDK bundle, "/harness.mjs" the in-page
// harness, which sets `window.H`.
//
// Protocol: one JSON object per line. stdout: {"ready": true} once every page has loaded the
// harness, then answers {"id", "ok": true, "value"} or {"id", "ok": false, "error"}, and page
// log lines {"log": "<page>: text"}. stdin: calls {"id", "page", "js", "arg", "timeoutMs"}:
// `js` is the source of a function `(H, arg) => value` (or a Promise of one) run in the page.
// Calls run concurrently. Every wait is bounded; the process always exits (stdin closed, a
// fatal error, or maxSecs).
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";
import { BASE_FLAGS, UNTHROTTLED_FLAGS } from "./chromium_flags.mjs";

const config = JSON.parse(process.env.LINK_CONFIG);
const flags = [
  ...BASE_FLAGS,
  ...UNTHROTTLED_FLAGS,
  // The lab's "public" addresses are private ones (10.0.0.1 in a namespace); Chromium's local
  // network access checks would refuse the page's WebSocket to them as if it were an intranet.
  "--disable-features=LocalNetworkAccessChecks",
];
const files = {
  "/": { type: "text/html", body: "<!doctype html><meta charset=utf-8><title>turnpike link test</title>" },
  "/turnpike.js": { type: "text/javascript", body: readFileSync(config.sdk) },
  "/harness.mjs": { type: "text/javascript", body: readFileSync(config.harness) },
};

function out(object) {
  process.stdout.write(JSON.stringify(object) + "\n");
}

const contexts = [];
const pages = new Map();

async function start() {
  const browsers = new Map();
  await Promise.all(
    config.browsers.map(async (b) => {
      const context = await chromium.launchPersistentContext(b.userDataDir, {
        executablePath: b.executable,
        headless: true,
        args: flags,
        timeout: 30000,
      });
      contexts.push(context);
      await context.route("http://localhost/**", (route) => {
        const file = files[new URL(route.request().url()).pathname];
        if (!file) return route.fulfill({ status: 404, body: "not found" });
        return route.fulfill({ status: 200, contentType: file.type, body: file.body });
      });
      browsers.set(b.name, context);
    }),
  );
  for (const p of config.pages) {
    const context = browsers.get(p.browser);
    if (!context) throw new Error(`page ${p.name}: no browser ${p.browser}`);
    const page = await context.newPage();
    page.on("console", (m) => out({ log: `${p.name}: ${m.type()}: ${m.text()}` }));
    page.on("pageerror", (e) => out({ log: `${p.name}: pageerror: ${e}` }));
    await page.goto("http://localhost/", { timeout: 15000 });
    await page.addScriptTag({ type: "module", url: "/harness.mjs" });
    await page.waitForFunction(() => window.H !== undefined, null, { timeout: 15000 });
    pages.set(p.name, page);
  }
  out({ ready: true });
}

async function call(request) {
  const page = pages.get(request.page);
  if (!page) throw new Error(`no page ${request.page}`);
  const ms = request.timeoutMs ?? 30000;
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the call did not end within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([
      page.evaluate(([js, arg]) => (0, eval)(`(${js})`)(window.H, arg), [request.js, request.arg ?? null]),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function shutdown(code) {
  clearTimeout(killer);
  await Promise.race([
    Promise.allSettled(contexts.map((c) => c.close())),
    new Promise((resolve) => setTimeout(resolve, 5000)),
  ]);
  process.exit(code);
}

const killer = setTimeout(() => {
  out({ fatal: `the run took longer than ${config.maxSecs} s` });
  shutdown(2);
}, (config.maxSecs ?? 150) * 1000);

start()
  .then(() => {
    const lines = createInterface({ input: process.stdin });
    lines.on("line", (line) => {
      let request;
      try {
        request = JSON.parse(line);
      } catch (e) {
        out({ fatal: `bad request line: ${e}` });
        return;
      }
      call(request).then(
        (value) => out({ id: request.id, ok: true, value: value ?? null }),
        (e) => out({ id: request.id, ok: false, error: String(e?.stack || e) }),
      );
    });
    lines.on("close", () => shutdown(0));
  })
  .catch((e) => {
    out({ fatal: String(e?.stack || e) });
    shutdown(1);
  });
