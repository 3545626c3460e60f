// The turnpike browser SDK in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core; no browser is ever downloaded): two pages of one project load the SDK from
// the server's /sdk/turnpike.js, connect to its registry, and open a link.
//
// Input (environment):
//   BASE         the server's HTTP API, e.g. http://127.0.0.1:9641 (pages load /sdk/turnpike.js there)
//   REGISTRY     the registry's WebSocket URL
//   TOKEN_A, TOKEN_B   registry tokens for the two peers (A = "alice" opens the link to "bob")
//   CASE         "p2p" | "fallback" | "switch"
//   ICE_SERVERS  optional JSON iceServers given to connect() (else the welcome's ice_servers)
//   FALLBACK_MS  fallbackAfterMs; MESSAGES (per direction); USER_DATA_DIR; CHROMIUM
// Output: one JSON line on stdout: {"ok": true, ...figures} or {"ok": false, "error"}.
// Every wait is bounded; the process always exits.
import { chromium } from "playwright-core";
import { BASE_FLAGS, UNTHROTTLED_FLAGS } from "./chromium_flags.mjs";

const env = process.env;
const CASE = env.CASE;
const MESSAGES = Number(env.MESSAGES || 1000);
const FALLBACK_MS = Number(env.FALLBACK_MS || 10000);
const flags = [
  ...BASE_FLAGS,
  "--allow-loopback-in-peer-connection",
  ...UNTHROTTLED_FLAGS,
];

/** Polls `fn` in `page` until it returns a truthy value; fails after `ms`. */
async function until(page, what, ms, fn, arg) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await page.evaluate(fn, arg);
    if (v) return v;
    if (Date.now() > deadline) {
      const state = await page.evaluate(() => window.t && window.t.state());
      throw new Error(`${what} (not within ${ms} ms): ${JSON.stringify(state)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

// Runs in each page: connects and keeps what the test reads in window.t.
async function setup({ url, token, iceServers, fallbackAfterMs, peer, opens }) {
  const { connect } = await import("/sdk/turnpike.js");
  const options = { url, token, fallbackAfterMs, iceTransportPolicy: "relay" };
  if (iceServers) options.iceServers = iceServers;
  const session = await connect(options);
  const t = { session, link: null, received: [], arrivals: [], modes: [], errors: [] };
  const attach = (link) => {
    t.link = link;
    link.on("message", (m) => {
      t.received.push(m);
      t.arrivals.push(Date.now());
    });
    link.on("mode", (m) => t.modes.push([m, Date.now()]));
    link.on("error", (e) => t.errors.push(`${e.code}: ${e.message}`));
  };
  session.on("link", attach);
  session.on("error", (e) => t.errors.push(`session ${e.code}: ${e.message}`));
  t.open = () => {
    attach(session.link(peer));
    t.createdAt = Date.now();
  };
  t.state = () => ({
    mode: t.link && t.link.mode,
    received: t.received.length,
    modes: t.modes,
    errors: t.errors.slice(0, 10),
    stats: t.link && t.link.stats(),
    welcomeIce: session.welcomeIceServers,
    knownPeers: session._peers.size,
  });
  // Sends `n` numbered messages from `from`, awaiting each send (back-pressure); `onIndex`
  // lets the test switch paths in the middle: [[index, "on"|"off"]].
  t.sendNumbered = async (prefix, from, n, switches = [], size = 0) => {
    const pad = "x".repeat(size);
    const marks = {};
    for (let i = from; i < from + n; i++) {
      for (const [at, what] of switches) {
        if (at === i) {
          t.link.forceRelay(what === "on");
          marks[what] = { index: i, at: Date.now() };
        }
      }
      await t.link.send(`${prefix}${i}${pad}`);
    }
    return marks;
  };
  window.t = t;
  return session.peerId;
}

function inOrder(received, prefix, n) {
  if (received.length !== n) return `received ${received.length} of ${n}`;
  for (let i = 0; i < n; i++) {
    if (!received[i].startsWith(`${prefix}${i}`) || /\d/.test(received[i].charAt(`${prefix}${i}`.length))) return `message ${i} is ${received[i].slice(0, 24)}`;
  }
  return null;
}

async function main() {
  const context = await chromium.launchPersistentContext(env.USER_DATA_DIR, {
    executablePath: env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: flags,
    timeout: 30000,
  });
  try {
    const [a, b] = [await context.newPage(), await context.newPage()];
    for (const page of [a, b]) {
      page.on("pageerror", (e) => console.error(`page error: ${e}`));
      await page.goto(`${env.BASE}/sdk/turnpike.js`, { timeout: 15000 });
    }
    const iceServers = env.ICE_SERVERS ? JSON.parse(env.ICE_SERVERS) : null;
    const common = { url: env.REGISTRY, iceServers, fallbackAfterMs: FALLBACK_MS };
    await a.evaluate(setup, { ...common, token: env.TOKEN_A, peer: "bob" });
    await b.evaluate(setup, { ...common, token: env.TOKEN_B, peer: "alice" });
    await a.evaluate(() => window.t.open());
    if (CASE === "p2p") return await p2p(a, b);
    if (CASE === "fallback") return await fallback(a, b);
    if (CASE === "switch") return await pathSwitch(a, b);
    throw new Error(`unknown CASE ${CASE}`);
  } finally {
    await context.close();
  }
}

// (1) ICE through turnpike's TURN (relay candidates only): p2p, both ways in order.
async function p2p(a, b) {
  await until(a, "alice's link is not p2p", 30000, () => window.t.link.mode === "p2p");
  await until(b, "bob's link is not p2p", 30000, () => window.t.link && window.t.link.mode === "p2p");
  const started = Date.now();
  await Promise.all([
    a.evaluate((n) => window.t.sendNumbered("a", 0, n), MESSAGES),
    b.evaluate((n) => window.t.sendNumbered("b", 0, n), MESSAGES),
  ]);
  await until(b, "bob did not get every message", 30000, (n) => window.t.received.length >= n, MESSAGES);
  await until(a, "alice did not get every message", 30000, (n) => window.t.received.length >= n, MESSAGES);
  const ms = Date.now() - started;
  const ra = await a.evaluate(() => window.t.received);
  const rb = await b.evaluate(() => window.t.received);
  const order = inOrder(rb, "a", MESSAGES) || inOrder(ra, "b", MESSAGES);
  if (order) throw new Error(order);
  await new Promise((r) => setTimeout(r, 300));
  const sa = await a.evaluate(() => window.t.state());
  const sb = await b.evaluate(() => window.t.state());
  return { ok: true, ms, a: sa, b: sb };
}

// (2) The ICE servers are unreachable: relay within fallbackAfterMs + 2 s, messages flow.
async function fallback(a, b) {
  const created = await a.evaluate(() => window.t.createdAt);
  await until(a, "alice's link did not fall back to the relay", FALLBACK_MS + 2000, () => window.t.link.mode === "relay");
  const relayAt = await a.evaluate(() => window.t.modes.find(([m]) => m === "relay")[1]);
  // The first message, sent as soon as the link is on the relay.
  await a.evaluate(() => window.t.sendNumbered("a", 0, 1));
  await until(b, "bob got nothing over the relay", 10000, () => window.t.received.length >= 1);
  const firstAt = await b.evaluate(() => window.t.arrivals[0]);
  // Relay throughput: MESSAGES messages of 1 KiB.
  const started = Date.now();
  await a.evaluate((n) => window.t.sendNumbered("a", 1, n, [], 1024), MESSAGES);
  await until(b, "bob did not get every relayed message", 120000, (n) => window.t.received.length >= n + 1, MESSAGES);
  const seconds = (Date.now() - started) / 1000;
  const rb = await b.evaluate(() => window.t.received);
  const order = inOrder(rb, "a", MESSAGES + 1);
  if (order) throw new Error(order);
  const sa = await a.evaluate(() => window.t.state());
  const sb = await b.evaluate(() => window.t.state());
  if (sa.mode !== "relay") throw new Error(`alice left the relay: ${JSON.stringify(sa)}`);
  const bytes = rb.slice(1).reduce((n, m) => n + m.length, 0);
  return {
    ok: true,
    fallbackMs: relayAt - created,
    failureToFirstRelayedMs: firstAt - relayAt,
    relayMessagesPerSec: Math.round(MESSAGES / seconds),
    relayKBPerSec: Math.round(bytes / 1024 / seconds),
    a: sa,
    b: sb,
  };
}

// (3) 2,000 numbered messages while alice goes p2p -> relay (forced) -> p2p.
async function pathSwitch(a, b) {
  const n = MESSAGES;
  await until(a, "alice's link is not p2p", 30000, () => window.t.link.mode === "p2p");
  await until(b, "bob's link is not p2p", 30000, () => window.t.link && window.t.link.mode === "p2p");
  // On a loaded machine ICE can take longer than the fallback timer, so a link may have gone
  // relay -> p2p before the switch starts: the switch is what follows the last mode seen now.
  const switchFrom = await a.evaluate(() => window.t.modes.length - 1);
  const on = Math.floor(n / 4);
  const off = Math.floor((3 * n) / 5);
  const marks = await a.evaluate(([n, on, off]) => window.t.sendNumbered("m", 0, n, [[on, "on"], [off, "off"]]), [n, on, off]);
  await until(b, "bob did not get every message", 60000, (n) => window.t.received.length >= n, n);
  await new Promise((r) => setTimeout(r, 500));
  const rb = await b.evaluate(() => window.t.received);
  const order = inOrder(rb, "m", n);
  if (order) throw new Error(order);
  const arrivals = await b.evaluate(() => window.t.arrivals);
  const sa = await a.evaluate(() => window.t.state());
  const sb = await b.evaluate(() => window.t.state());
  const modes = sa.modes.slice(switchFrom).map(([m]) => m);
  return {
    ok: true,
    modes,
    modesBeforeSwitch: sa.modes.slice(0, switchFrom).map(([m]) => m),
    forcedToFirstRelayedMs: arrivals[marks.on.index] - marks.on.at,
    a: sa,
    b: sb,
  };
}

const killer = setTimeout(() => {
  console.log(JSON.stringify({ ok: false, error: "timed out after 170 s" }));
  process.exit(2);
}, 170000);
main()
  .then((result) => console.log(JSON.stringify(result)))
  .catch((e) => console.log(JSON.stringify({ ok: false, error: String(e && e.stack ? e.stack : e) })))
  .finally(() => {
    clearTimeout(killer);
    process.exit(0);
  });
