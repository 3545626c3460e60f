// The browser SDK's session paths in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core; no browser is ever downloaded) against the real server: two pages (alice
// opens the link to bob) load /sdk/turnpike.js and connect with `getToken`, which asks this
// process for a token (page.exposeFunction), so the test counts the calls and sets lifetimes.
//
// Input (environment):
//   BASE, REGISTRY  the server's HTTP API and registry WebSocket URL
//   CASE            "reconnect" | "reauth" | "attest" | "reload" | "disconnect"
//   JWT_SECRET      signs the HS256 tokens getToken hands out; TOKEN_TTL_SECS their lifetime
//   PROJECT         the project of those tokens
//   CONTROL         reconnect: a directory; this script creates `restart` in it when the
//                   server should restart, and waits for the test to create `restarted`;
//                   disconnect: creates `disconnect` when the test should disconnect bob
//                   through the admin API, and waits for `disconnected`; then `check`
//                   when it should read the admin API's peer list, waiting for `checked`
//   ATTEST_A, ATTEST_B  attest: `turnpike token --attest` output for alice and bob (JSON)
//   TRUSTED_KEY     attest: the issuer's public key (base64) for trustedIssuerKeys
//   FALLBACK_MS; USER_DATA_DIR; CHROMIUM
// Output: one JSON line on stdout: {"ok": true, ...} or {"ok": false, "error"}.
// Every wait is bounded; the process always exits.
import { createHmac } from "node:crypto";
import { existsSync, writeFileSync } from "node:fs";
import { chromium } from "playwright-core";
import { BASE_FLAGS, UNTHROTTLED_FLAGS } from "./chromium_flags.mjs";

const env = process.env;
const CASE = env.CASE;
const FALLBACK_MS = Number(env.FALLBACK_MS || 2000);
const TTL = Number(env.TOKEN_TTL_SECS || 3600);
const flags = [
  ...BASE_FLAGS,
  "--allow-loopback-in-peer-connection",
  // Host candidates as plain addresses of this machine (no mDNS queries on the network).
  "--disable-features=WebRtcHideLocalIpsWithMdns",
  ...UNTHROTTLED_FLAGS,
];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const b64url = (x) => Buffer.from(x).toString("base64url");

/** An HS256 registry token for `sub`, living TOKEN_TTL_SECS. */
function mint(sub) {
  const head = b64url(JSON.stringify({ typ: "JWT", alg: "HS256" }));
  const claims = b64url(JSON.stringify({ sub, project: env.PROJECT, exp: Math.floor(Date.now() / 1000) + TTL }));
  const sig = createHmac("sha256", env.JWT_SECRET).update(`${head}.${claims}`).digest("base64url");
  return `${head}.${claims}.${sig}`;
}

/** Polls `fn` in `page` until it returns a truthy value; fails after `ms`. */
async function until(page, what, ms, fn, arg) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await page.evaluate(fn, arg);
    if (v) return v;
    if (Date.now() > deadline) {
      const states = {};
      for (const [name, p] of Object.entries(allPages)) states[name] = await p.evaluate(() => window.t && window.t.state()).catch((e) => String(e));
      throw new Error(`${what} (not within ${ms} ms): ${JSON.stringify(states)}`);
    }
    await sleep(50);
  }
}

// Runs in each page: connects (getToken asks the driver) and keeps what the test reads in window.t.
async function setup({ url, name, peer, options }) {
  const { connect } = await import("/sdk/turnpike.js");
  const t = { session: null, link: null, received: [], modes: [], errors: [], events: [], others: {} };
  const session = await connect({ url, getToken: () => window.driverToken(name), ...options });
  t.session = session;
  const attach = (link) => {
    if (link.peerId !== peer) {
      // A link to another peer than the test's pair: kept apart.
      const o = (t.others[link.peerId] = { link, mode: link.mode, errors: [], received: [] });
      link.on("mode", (m) => (o.mode = m));
      link.on("error", (e) => o.errors.push(`${e.code}: ${e.message}`));
      link.on("message", (m) => o.received.push(m));
      return;
    }
    t.link = link;
    link.on("message", (m) => t.received.push(m));
    link.on("mode", (m) => t.modes.push(m));
    link.on("error", (e) => t.errors.push(`${e.code}: ${e.message}`));
    link.on("close", ({ reason }) => t.events.push(`link close ${reason}`));
  };
  session.on("link", attach);
  for (const ev of ["disconnected", "reconnected", "close", "peer_joined", "peer_left"]) {
    session.on(ev, () => t.events.push(ev));
  }
  session.on("error", (e) => t.errors.push(`session ${e.code}: ${e.message}`));
  t.open = (other) => attach(session.link(other || peer));
  t.send = async (prefix, from, n) => {
    for (let i = from; i < from + n; i++) await t.link.send(`${prefix}${i}`);
  };
  t.state = () => ({
    mode: t.link && t.link.mode,
    received: t.received.length,
    last: t.received.slice(-3),
    modes: t.modes,
    errors: t.errors.slice(0, 10),
    events: t.events,
    remoteEpoch: t.link && t.link.core.remoteEpoch,
    epoch: t.link && t.link.epoch,
    stats: t.link && t.link.stats(),
    others: Object.fromEntries(Object.entries(t.others).map(([k, o]) => [k, { mode: o.mode, errors: o.errors, received: o.received.length }])),
  });
  window.t = t;
  if (options.debug) {
    setInterval(() => {
      const l = t.link;
      if (!l) return;
      console.log(JSON.stringify({ mode: l.core.mode, ice: l.pc.iceConnectionState, conn: l.pc.connectionState, sig: l.pc.signalingState, dc: l.dc.readyState, init: l.initiator, rse: l._remoteSigEpoch, re: l.core.remoteEpoch }));
    }, 1000);
    const orig = session._onSignal.bind(session);
    session._onSignal = (msg) => {
      console.log(`signal in ${msg.type} epoch ${msg.payload && msg.payload.epoch}`);
      orig(msg);
    };
  }
  return session.peerId;
}

/** `received` is exactly prefix+from .. prefix+(from+n-1), in order. */
function exactly(received, prefix, from, n) {
  const want = Array.from({ length: n }, (_, i) => `${prefix}${from + i}`);
  if (received.length !== want.length || received.some((m, i) => m !== want[i])) {
    return `want ${prefix}${from}..${prefix}${from + n - 1} (${n}), got ${received.length}: ${JSON.stringify(received.slice(0, 5))} … ${JSON.stringify(received.slice(-5))}`;
  }
  return null;
}

const tokenCalls = {};
const allPages = {};

async function main() {
  const context = await chromium.launchPersistentContext(env.USER_DATA_DIR, {
    executablePath: env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: flags,
    timeout: 30000,
  });
  try {
    const pages = {};
    const open = async (name) => {
      const page = pages[name] || (await context.newPage());
      if (!pages[name]) {
        page.on("pageerror", (e) => console.error(`${name}: page error: ${e}`));
        if (env.DEBUG) page.on("console", (m) => console.error(`${name} ${Date.now() % 100000}: ${m.text()}`));
        await page.exposeFunction("driverToken", (who) => {
          tokenCalls[who] = (tokenCalls[who] || 0) + 1;
          const attested = who === "alice" ? env.ATTEST_A : who === "bob" ? env.ATTEST_B : null;
          return attested ? JSON.parse(attested).token : mint(who);
        });
        pages[name] = page;
        allPages[name] = page;
      }
      await page.goto(`${env.BASE}/sdk/turnpike.js`, { timeout: 15000 });
      return page;
    };
    const setupOn = async (page, name, peer, options) =>
      page.evaluate(setup, { url: env.REGISTRY, name, peer, options: { fallbackAfterMs: FALLBACK_MS, debug: Boolean(env.DEBUG), ...options } });
    if (CASE === "reconnect") return await reconnect(open, setupOn);
    if (CASE === "reauth") return await reauth(open, setupOn);
    if (CASE === "attest") return await attest(open, setupOn);
    if (CASE === "reload") return await reload(open, setupOn);
    if (CASE === "disconnect") return await disconnect(open, setupOn);
    throw new Error(`unknown CASE ${CASE}`);
  } finally {
    await context.close();
  }
}

/** Two pages with a p2p link (host candidates on this machine), alice the opener. */
async function pair(open, setupOn, extra = {}) {
  // ICE through turnpike's TURN on loopback only (relay candidates): a test never sends to
  // this machine's other interfaces.
  const options = { iceTransportPolicy: "relay", ...extra };
  const a = await open("alice");
  const b = await open("bob");
  await setupOn(a, "alice", "bob", options);
  await setupOn(b, "bob", "alice", options);
  await a.evaluate(() => window.t.open());
  return { a, b };
}

const isMode = (m) => window.t.link && window.t.link.mode === m;

// (a) The server restarts on the same port while both sides send on the relay: both sessions
// reconnect with back-off and a fresh token, and the messages sent across the outage arrive
// exactly once, in order; then the link returns to p2p.
async function reconnect(open, setupOn) {
  const { a, b } = await pair(open, setupOn);
  await until(a, "alice is not p2p", 20000, isMode, "p2p");
  await until(b, "bob is not p2p", 20000, isMode, "p2p");
  for (const p of [a, b]) await p.evaluate(() => window.t.link.forceRelay(true));
  await a.evaluate(() => window.t.send("a", 0, 20));
  await b.evaluate(() => window.t.send("b", 0, 20));
  await until(b, "bob did not get the first 20", 10000, () => window.t.received.length >= 20);
  await until(a, "alice did not get the first 20", 10000, () => window.t.received.length >= 20);
  const callsBefore = { ...tokenCalls };
  writeFileSync(`${env.CONTROL}/restart`, "");
  await until(a, "alice's session did not notice the outage", 10000, () => window.t.events.includes("disconnected"));
  // Sent while the registry is away: they wait in the link's buffer.
  await a.evaluate(() => window.t.send("a", 20, 20));
  await b.evaluate(() => window.t.send("b", 20, 20));
  const deadline = Date.now() + 20000;
  while (!existsSync(`${env.CONTROL}/restarted`)) {
    if (Date.now() > deadline) throw new Error("the server did not restart");
    await sleep(50);
  }
  await a.evaluate(() => window.t.send("a", 40, 20));
  await b.evaluate(() => window.t.send("b", 40, 20));
  await until(b, "bob did not get all 60 of alice's messages", 30000, () => window.t.received.length >= 60);
  await until(a, "alice did not get all 60 of bob's messages", 30000, () => window.t.received.length >= 60);
  // The relay is forced: what came, came through the restarted registry. Back to p2p.
  for (const p of [a, b]) await p.evaluate(() => window.t.link.forceRelay(false));
  await until(a, "alice did not return to p2p", 30000, isMode, "p2p");
  await a.evaluate(() => window.t.send("a", 60, 5));
  await until(b, "bob did not get the last 5 on p2p", 10000, () => window.t.received.length >= 65);
  await sleep(300);
  const [ra, rb] = [await a.evaluate(() => window.t.received), await b.evaluate(() => window.t.received)];
  const order = exactly(rb, "a", 0, 65) || exactly(ra, "b", 0, 60);
  if (order) throw new Error(order);
  const [sa, sb] = [await a.evaluate(() => window.t.state()), await b.evaluate(() => window.t.state())];
  return { ok: true, tokenCallsBefore: callsBefore, tokenCalls, a: sa, b: sb };
}

// (b) Tokens living TOKEN_TTL_SECS with a short registry.token_warning_secs: on
// token_expiring the SDK reauths with getToken, and the connection outlives every token.
async function reauth(open, setupOn) {
  // Relay only (forced), so every message needs the registry connection.
  const { a, b } = await pair(open, setupOn);
  for (const p of [a, b]) await p.evaluate(() => window.t.link && window.t.link.forceRelay(true));
  await until(b, "bob has no link", 10000, () => Boolean(window.t.link));
  await b.evaluate(() => window.t.link.forceRelay(true));
  const started = Date.now();
  let i = 0;
  // Keep talking for three token lifetimes.
  while (Date.now() - started < 3 * TTL * 1000) {
    await a.evaluate((i) => window.t.send("a", i, 1), i);
    await b.evaluate((i) => window.t.send("b", i, 1), i);
    i++;
    await sleep(250);
  }
  await until(b, "bob did not get every message", 15000, (n) => window.t.received.length >= n, i);
  await until(a, "alice did not get every message", 15000, (n) => window.t.received.length >= n, i);
  const [ra, rb] = [await a.evaluate(() => window.t.received), await b.evaluate(() => window.t.received)];
  const order = exactly(rb, "a", 0, i) || exactly(ra, "b", 0, i);
  if (order) throw new Error(order);
  const [sa, sb] = [await a.evaluate(() => window.t.state()), await b.evaluate(() => window.t.state())];
  return { ok: true, messages: i, seconds: (Date.now() - started) / 1000, tokenCalls, a: sa, b: sb };
}

// (c) Attested peers (trustedIssuerKeys; tokens and attestations from `turnpike token
// --attest`) with no way to connect ICE: the link reaches the relay and messages flow. A third
// peer without an attestation is refused the relay (not_attested).
async function attest(open, setupOn) {
  const A = JSON.parse(env.ATTEST_A);
  const B = JSON.parse(env.ATTEST_B);
  const common = { trustedIssuerKeys: [env.TRUSTED_KEY], iceServers: [], iceTransportPolicy: "relay" };
  const a = await open("alice");
  const b = await open("bob");
  const c = await open("carol");
  await setupOn(a, "alice", "bob", { ...common, secretKey: A.secret_key, attestation: A.attestation });
  await setupOn(b, "bob", "alice", { ...common, secretKey: B.secret_key, attestation: B.attestation });
  await setupOn(c, "carol", "alice", common);
  await a.evaluate(() => window.t.open());
  await until(a, "alice's link did not reach the relay", FALLBACK_MS + 5000, isMode, "relay");
  await a.evaluate(() => window.t.send("a", 0, 10));
  await until(b, "bob got nothing", 10000, () => window.t.received.length >= 10);
  await until(b, "bob's link did not reach the relay", FALLBACK_MS + 5000, isMode, "relay");
  await b.evaluate(() => window.t.send("b", 0, 10));
  await until(a, "alice got nothing", 10000, () => window.t.received.length >= 10);
  const [ra, rb] = [await a.evaluate(() => window.t.received), await b.evaluate(() => window.t.received)];
  const order = exactly(rb, "a", 0, 10) || exactly(ra, "b", 0, 10);
  if (order) throw new Error(order);
  // Carol has no attestation: alice's link to her is refused the relay; what alice sends waits.
  await a.evaluate(async () => {
    window.t.open("carol");
    await window.t.others.carol.link.send("for carol's eyes only");
  });
  await until(a, "alice's link to carol reported no not_attested", FALLBACK_MS + 5000, () => window.t.others.carol.errors.some((e) => e.startsWith("not_attested")));
  await sleep(1000);
  const sa = await a.evaluate(() => window.t.state());
  const sb = await b.evaluate(() => window.t.state());
  const sc = await c.evaluate(() => window.t.state());
  if (sa.others.carol.mode === "relay") throw new Error(`alice's link to carol uses the relay: ${JSON.stringify(sa)}`);
  if (sc.received !== 0 || Object.keys(sc.others).length > 0) throw new Error(`carol got something: ${JSON.stringify(sc)}`);
  return { ok: true, a: sa, b: sb, c: sc };
}

// (d) bob reloads his page mid-link: alice's link goes on with bob's new incarnation (a new
// epoch), what alice sent meanwhile reaches the new bob once, and messages flow both ways.
async function reload(open, setupOn) {
  const { a, b } = await pair(open, setupOn);
  await until(a, "alice is not p2p", 20000, isMode, "p2p");
  await until(b, "bob is not p2p", 20000, isMode, "p2p");
  await a.evaluate(() => window.t.send("a", 0, 10));
  await b.evaluate(() => window.t.send("b", 0, 10));
  await until(b, "bob did not get the first 10", 10000, () => window.t.received.length >= 10);
  await until(a, "alice did not get the first 10", 10000, () => window.t.received.length >= 10);
  await sleep(300); // acknowledged
  const before = await a.evaluate(() => {
    window.t.firstLink = window.t.link;
    return { remote: window.t.link.core.remoteEpoch };
  });
  await b.reload({ timeout: 15000 });
  // While bob's page is away alice keeps sending.
  await a.evaluate(() => window.t.send("a", 10, 10));
  await setupOn(b, "bob", "alice", {});
  await a.evaluate(() => window.t.send("a", 20, 10));
  await until(b, "the new bob got no link", 20000, () => Boolean(window.t.link));
  await until(b, "the new bob did not get alice's 20", 20000, () => window.t.received.length >= 20);
  await b.evaluate(() => window.t.send("b", 100, 10));
  await until(a, "alice did not get the new bob's 10", 20000, () => window.t.received.length >= 20);
  await until(a, "alice did not return to p2p", 30000, isMode, "p2p");
  await until(b, "the new bob is not p2p", 30000, isMode, "p2p");
  await a.evaluate(() => window.t.send("a", 30, 5));
  await b.evaluate(() => window.t.send("b", 110, 5));
  await until(b, "the new bob did not get the last 5", 10000, () => window.t.received.length >= 25);
  await until(a, "alice did not get the last 5", 10000, () => window.t.received.length >= 25);
  await sleep(300);
  const ra = await a.evaluate(() => window.t.received);
  const rb = await b.evaluate(() => window.t.received);
  const order =
    exactly(rb, "a", 10, 25) ||
    exactly(ra.slice(0, 10), "b", 0, 10) ||
    exactly(ra.slice(10, 20), "b", 100, 10) ||
    exactly(ra.slice(20), "b", 110, 5);
  if (order) throw new Error(order);
  const after = await a.evaluate(() => ({ remote: window.t.link.core.remoteEpoch, same: window.t.link === window.t.firstLink }));
  if (after.remote === before.remote) throw new Error(`alice still knows bob's old epoch ${before.remote}`);
  if (!after.same) throw new Error("alice's page got a new link object for bob");
  const [sa, sb] = [await a.evaluate(() => window.t.state()), await b.evaluate(() => window.t.state())];
  if (sa.events.some((e) => e.startsWith("link close"))) throw new Error(`alice's link closed: ${JSON.stringify(sa)}`);
  return { ok: true, oldEpoch: before.remote, newEpoch: after.remote, a: sa, b: sb };
}

// (e) An operator disconnects bob through the admin API (close code 4006): bob's session
// reports an `error` with code `disconnected`, then `close`, and does not come back although it
// reconnects after any other close; alice sees bob leave.
async function disconnect(open, setupOn) {
  const { a, b } = await pair(open, setupOn);
  await until(b, "bob has no link", 10000, () => Boolean(window.t.link));
  writeFileSync(`${env.CONTROL}/disconnect`, "");
  const deadline = Date.now() + 10000;
  while (!existsSync(`${env.CONTROL}/disconnected`)) {
    if (Date.now() > deadline) throw new Error("the test did not disconnect bob");
    await sleep(50);
  }
  await until(b, "bob's session reported no disconnected error", 10000, () => window.t.errors.some((e) => e.startsWith("session disconnected: ")));
  await until(b, "bob's session did not close", 5000, () => window.t.events.includes("close"));
  await until(a, "alice did not see bob leave", 10000, () => window.t.events.includes("peer_left"));
  // Longer than the SDK's first reconnect delays: a session that reconnected would be back.
  await sleep(3000);
  // The test reads the admin API's peer list now, while alice is still connected.
  writeFileSync(`${env.CONTROL}/check`, "");
  const checkDeadline = Date.now() + 10000;
  while (!existsSync(`${env.CONTROL}/checked`)) {
    if (Date.now() > checkDeadline) throw new Error("the test did not read the peer list");
    await sleep(50);
  }
  const [sa, sb] = [await a.evaluate(() => window.t.state()), await b.evaluate(() => window.t.state())];
  return { ok: true, a: sa, b: sb };
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
