// Two RTCPeerConnections in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core; no browser is ever downloaded), forced through TURN relays
// (iceTransportPolicy "relay"), open a DataChannel and echo MESSAGES messages back.
//
// Input (environment): ICE_URL (one turn:/turns: URI), ICE_USERNAME, ICE_CREDENTIAL,
// CHROMIUM (default /usr/bin/chromium), USER_DATA_DIR (a fresh profile directory), MESSAGES
// (default 200). HOME decides which NSS database Chromium trusts (the test puts its CA there).
//
// Output: one JSON line on stdout, {"ok": true, "received", "inOrder", "local", "remote"} or
// {"ok": false, "error", "iceErrors"}. Every wait is bounded; the process always exits.
import { chromium } from "playwright-core";
import { BASE_FLAGS } from "./chromium_flags.mjs";

const env = process.env;
const messages = Number(env.MESSAGES || 200);
const flags = [
  ...BASE_FLAGS,
  "--allow-loopback-in-peer-connection",
];

async function main() {
  const context = await chromium.launchPersistentContext(env.USER_DATA_DIR, {
    executablePath: env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: flags,
    timeout: 30000,
  });
  try {
    const page = await context.newPage();
    await page.setContent("<!doctype html><title>turnpike relay test</title>");
    const iceServers = [
      { urls: env.ICE_URL, username: env.ICE_USERNAME, credential: env.ICE_CREDENTIAL },
    ];
    return await page.evaluate(run, { iceServers, messages });
  } finally {
    await context.close();
  }
}

// Runs in the page.
async function run({ iceServers, messages }) {
  const iceErrors = [];
  const config = { iceServers, iceTransportPolicy: "relay" };
  const a = new RTCPeerConnection(config);
  const b = new RTCPeerConnection(config);
  for (const [from, to] of [[a, b], [b, a]]) {
    from.onicecandidate = (e) => e.candidate && to.addIceCandidate(e.candidate);
    from.onicecandidateerror = (e) => iceErrors.push(`${e.url} ${e.errorCode} ${e.errorText}`);
  }
  const within = (ms, what, promise) =>
    Promise.race([
      promise,
      new Promise((_, reject) => setTimeout(() => reject(new Error(`${what} (${ms} ms)`)), ms)),
    ]);
  try {
    b.ondatachannel = (e) => {
      const channel = e.channel;
      channel.onmessage = (m) => channel.send(m.data);
    };
    const dc = a.createDataChannel("echo", { ordered: true });
    const opened = new Promise((resolve) => (dc.onopen = resolve));
    const offer = await a.createOffer();
    await a.setLocalDescription(offer);
    await b.setRemoteDescription(offer);
    const answer = await b.createAnswer();
    await b.setLocalDescription(answer);
    await a.setRemoteDescription(answer);
    await within(30000, "the DataChannel did not open", opened);

    const received = [];
    const all = new Promise((resolve) => {
      dc.onmessage = (m) => {
        received.push(m.data);
        if (received.length === messages) resolve();
      };
    });
    for (let i = 0; i < messages; i++) dc.send(`message ${i}`);
    await within(30000, `only ${received.length} of ${messages} echoes came back`, all);
    const inOrder = received.every((m, i) => m === `message ${i}`);

    const stats = await a.getStats();
    let pair = null;
    stats.forEach((s) => {
      if (s.type === "transport" && s.selectedCandidatePairId) {
        pair = stats.get(s.selectedCandidatePairId);
      }
    });
    if (!pair) throw new Error("no selected candidate pair in getStats()");
    const local = stats.get(pair.localCandidateId);
    const remote = stats.get(pair.remoteCandidateId);
    return {
      ok: true,
      received: received.length,
      inOrder,
      local: {
        type: local.candidateType,
        relayProtocol: local.relayProtocol,
        address: local.address,
        port: local.port,
        url: local.url,
      },
      remote: { type: remote.candidateType, address: remote.address, port: remote.port },
    };
  } catch (e) {
    return { ok: false, error: String(e), iceErrors };
  } finally {
    a.close();
    b.close();
  }
}

const killer = setTimeout(() => {
  console.log(JSON.stringify({ ok: false, error: "timed out after 90 s" }));
  process.exit(2);
}, 90000);
main()
  .then((result) => console.log(JSON.stringify(result)))
  .catch((e) => console.log(JSON.stringify({ ok: false, error: String(e) })))
  .finally(() => {
    clearTimeout(killer);
    process.exit(0);
  });
