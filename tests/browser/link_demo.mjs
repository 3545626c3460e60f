// The demo page (/demo, served with `[http] demo = true`) used as a person would, in headless
// Chromium (Debian's /usr/bin/chromium, driven by playwright-core; no browser is downloaded):
// two pages type a name and press Connect, alice picks bob in the peer list, they chat both
// ways, alice sends a file through the file picker, presses "Force relay" and then
// "Allow p2p". Every check reads what the page shows (the path badges, the chat log, the
// received file's link), never the SDK's objects.
//
// Input (environment):
//   BASE          the server's HTTP API, e.g. http://127.0.0.1:9641 (serves /demo)
//   FILE_BYTES    the size of the file alice sends (default 300000)
//   CONTROL       optional directory: after the steps above, this script creates `restart` in
//                 it, and the test restarts the server and creates `restarted`; both pages
//                 must say they lost the server and reconnected, and chat must still work
//   SHOTS         optional directory: a PNG of both pages after each step
//   LOCAL         optional: serve /demo and /sdk/turnpike.js from this checkout's clients/js
//                 instead of the server's built-in copies (to try page changes without a rebuild)
//   DEBUG         optional: forward the pages' console to stderr
//   USER_DATA_DIR; CHROMIUM
// Output: one JSON line on stdout: {"ok": true, steps...} or {"ok": false, "error"}.
// Every wait is bounded; the process always exits.
import { createHash, randomBytes } from "node:crypto";
import { existsSync, writeFileSync } from "node:fs";
import { chromium } from "playwright-core";
import { BASE_FLAGS, UNTHROTTLED_FLAGS } from "./chromium_flags.mjs";

const env = process.env;
const FILE_BYTES = Number(env.FILE_BYTES || 300000);
const flags = [
  ...BASE_FLAGS,
  "--allow-loopback-in-peer-connection",
  // Host candidates as plain addresses of this machine (no mDNS queries on the network).
  "--disable-features=WebRtcHideLocalIpsWithMdns",
  ...UNTHROTTLED_FLAGS,
];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until `fn()` (run here, reading the pages) is truthy; fails after `ms` with `what`. */
async function until(what, ms, fn) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await fn();
    if (last && last.ok !== false) return last;
    if (Date.now() > deadline) throw new Error(`${what} (not within ${ms} ms): ${JSON.stringify(last)}`);
    await sleep(100);
  }
}

/** What a person sees on a page: the path badges, the log lines, the peer list, the header. */
async function seen(page) {
  return page.evaluate(() => {
    const text = (id) => document.getElementById(id)?.textContent.trim() ?? null;
    return {
      me: text("me"),
      mode: text("mode"),
      hint: text("hint"),
      peers: [...document.querySelectorAll("#peers li")].map((li) => li.textContent.trim()),
      log: [...document.querySelectorAll("#log p")].map((p) => p.textContent.trim()),
      files: [...document.querySelectorAll("#log a[download]")].map((a) => ({ name: a.download, href: a.href, text: a.textContent })),
      stats: text("stats"),
    };
  });
}

let shot = 0;
async function screenshots(step, pages) {
  if (!env.SHOTS) return;
  shot++;
  for (const [name, page] of pages) {
    await page.screenshot({ path: `${env.SHOTS}/${String(shot).padStart(2, "0")}-${step}-${name}.png` });
  }
}

async function connectAs(page, name) {
  // Relay candidates only: ICE runs through turnpike's TURN on loopback, never this machine's
  // other interfaces.
  await page.goto(`${env.BASE}/demo?ice=relay`, { timeout: 15000 });
  await page.fill("#name", name);
  await page.click("#connect");
  await until(`${name} is not connected`, 15000, async () => (await seen(page)).me?.includes(name));
}

async function main() {
  const context = await chromium.launchPersistentContext(env.USER_DATA_DIR, {
    executablePath: env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    // Pages served by LOCAL count as public ones, which Chromium keeps from loopback sockets.
    args: env.LOCAL ? flags.map((f) => (f.startsWith("--disable-features=") ? `${f},LocalNetworkAccessChecks` : f)) : flags,
    timeout: 30000,
    viewport: { width: 1100, height: 720 },
  });
  const steps = {};
  try {
    const [a, b] = [await context.newPage(), await context.newPage()];
    const pages = [["alice", a], ["bob", b]];
    for (const [name, page] of pages) {
      page.on("pageerror", (e) => console.error(`${name}: page error: ${e}`));
      if (env.DEBUG) page.on("console", (m) => console.error(`${name}: ${m.text()}`));
    }
    if (env.LOCAL) {
      const js = new URL("../../clients/js/", import.meta.url);
      await context.route("**/demo", (r) => r.fulfill({ path: new URL("demo/index.html", js).pathname, contentType: "text/html" }));
      await context.route("**/sdk/turnpike.js", (r) => r.fulfill({ path: new URL("dist/turnpike.js", js).pathname, contentType: "text/javascript" }));
    }

    // Both connect; alice picks bob in her peer list; bob's page follows the link he gets.
    await connectAs(a, "alice");
    await connectAs(b, "bob");
    await until("alice does not list bob", 10000, async () => (await seen(a)).peers.some((p) => p.includes("bob")));
    await screenshots("connected", pages);
    await a.click("#peers button:has-text('bob')");
    if (env.DEBUG) {
      for (const page of [a, b]) {
        await page.evaluate(() => setInterval(() => {
          const l = window.demo.link;
          if (!l) return;
          const c = l.core;
          console.log(JSON.stringify({ mode: c.mode, ice: l.pc.iceConnectionState, conn: l.pc.connectionState, sig: l.pc.signalingState, dc: l.dc.readyState, open: c.channelOpen, forced: c.forced, probe: c.probeNonce, restartAt: c.restartAt && Math.round(c.restartAt - performance.now()) }));
        }, 1000));
      }
    }
    const t0 = Date.now();
    const bothP2p = async () => {
      const [sa, sb] = [await seen(a), await seen(b)];
      return sa.mode === "p2p" && sb.mode === "p2p" ? { sa, sb } : { ok: false, sa, sb };
    };
    const { sa: openA, sb: openB } = await until("the pages do not both show p2p", 20000, bothP2p);
    steps.p2pAfterMs = Date.now() - t0;
    steps.hintA = openA.hint;
    await screenshots("p2p", pages);

    // Chat both ways.
    const chat = async (from, to, fromName, text) => {
      await from.fill("#text", text);
      await from.press("#text", "Enter");
      await until(`"${text}" is not shown to the other side`, 10000, async () => (await seen(to)).log.includes(`${fromName}: ${text}`));
      await until(`"${text}" is not shown to its sender`, 5000, async () => (await seen(from)).log.includes(`me: ${text}`));
    };
    await chat(a, b, "alice", "hello bob");
    await chat(b, a, "bob", "hi alice, got you");
    await screenshots("chat", pages);

    // Alice sends a file through the file picker; bob's page shows a link with the same bytes.
    const bytes = randomBytes(FILE_BYTES);
    const digest = createHash("sha256").update(bytes).digest("hex");
    await a.setInputFiles("#file", { name: "notes.bin", mimeType: "application/octet-stream", buffer: bytes });
    const file = await until("bob's page shows no received file", 30000, async () => (await seen(b)).files[0]);
    const got = await b.evaluate(async (href) => {
      const buf = new Uint8Array(await (await fetch(href)).arrayBuffer());
      const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", buf));
      return { length: buf.length, sha256: [...hash].map((x) => x.toString(16).padStart(2, "0")).join("") };
    }, file.href);
    if (got.length !== FILE_BYTES || got.sha256 !== digest) throw new Error(`the file differs: ${JSON.stringify(got)}, sent ${FILE_BYTES} bytes ${digest}`);
    steps.file = { name: file.name, text: file.text, bytes: got.length };
    await until("alice's page does not say the file was sent", 10000, async () => (await seen(a)).log.some((l) => l.startsWith("sent notes.bin")));
    await screenshots("file", pages);

    // Force relay: alice's badge says relay; chat still flows both ways; then back to p2p.
    await a.click("#force");
    await until("alice's page does not show relay", 10000, async () => (await seen(a)).mode === "relay");
    // Each tab shows how it sends: bob's still says p2p, and alice's explains that.
    const forcedB = await seen(b);
    if (forcedB.mode !== "p2p") throw new Error(`bob's page left p2p when alice forced the relay: ${JSON.stringify(forcedB)}`);
    await chat(a, b, "alice", "now through the relay");
    await chat(b, a, "bob", "still here");
    steps.forced = { a: await seen(a), b: await seen(b) };
    await screenshots("relay", pages);
    // A person takes a while before pressing again: long enough for the link's first ICE
    // restart on the relay (5 s after entering it).
    await sleep(Number(env.RELAY_HOLD_MS || 6000));
    await a.click("#force");
    await until("alice's page does not return to p2p", 20000, async () => (await seen(a)).mode === "p2p");
    await chat(a, b, "alice", "direct again");
    steps.back = { a: await seen(a), b: await seen(b) };
    await screenshots("back", pages);

    // The server restarts: both pages say so, reconnect, and the chat goes on.
    if (env.CONTROL) {
      writeFileSync(`${env.CONTROL}/restart`, "");
      for (const [name, page] of pages) {
        await until(`${name}'s page does not say it lost the server`, 10000, async () => (await seen(page)).log.includes("lost the server; reconnecting…"));
      }
      const deadline = Date.now() + 20000;
      while (!existsSync(`${env.CONTROL}/restarted`)) {
        if (Date.now() > deadline) throw new Error("the server did not restart");
        await sleep(50);
      }
      for (const [name, page] of pages) {
        await until(`${name}'s page does not say it reconnected`, 15000, async () => (await seen(page)).log.includes("reconnected to the server"));
      }
      await chat(b, a, "bob", "after the restart");
      await chat(a, b, "alice", "me too");
      steps.restarted = { a: await seen(a), b: await seen(b) };
      await screenshots("restarted", pages);
    }
    return { ok: true, ...steps };
  } finally {
    await context.close();
  }
}

const killer = setTimeout(() => {
  console.log(JSON.stringify({ ok: false, error: "timed out after 110 s" }));
  process.exit(2);
}, 110000);
main()
  .then((result) => console.log(JSON.stringify(result)))
  .catch((e) => console.log(JSON.stringify({ ok: false, error: String(e && e.stack ? e.stack : e) })))
  .finally(() => {
    clearTimeout(killer);
    process.exit(0);
  });
