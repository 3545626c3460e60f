// Two headless Chromium browsers (Debian's /usr/bin/chromium, driven by playwright-core over a
// pipe; never a downloaded browser), each started through a wrapper that runs it in a network
// namespace of tests/xdp_browser.rs (`ip netns exec NS /usr/bin/chromium`), while this script
// stays in the host's: the SDP goes from one page to the other through this script, no
// signaling server. Browser A uses only turnpike's TURN relay (iceTransportPolicy "relay");
// browser B, in the peer's namespace, only host candidates. A DataChannel (unordered,
// maxRetransmits 0: a lost datagram is a lost message, nothing hides it) carries MESSAGES
// binary messages of SIZE bytes each way, both ways at once, BURST every EVERY_MS ms.
//
// Input (environment): CHROMIUM_A, CHROMIUM_B (the wrappers), PROFILE_A, PROFILE_B (fresh
// profile directories), ICE_SERVERS (page A's iceServers, JSON), MESSAGES (1000), SIZE
// (1000), BURST (4), EVERY_MS (10), MAX_SECS (hard limit of the whole run, 90).
//
// Output: one JSON line on stdout: {"ok": true, "a": side, "b": side, "ms": {phase: ms}} where
// a side is {"sent", "received", "duplicates", "badSize", "local", "remote"} (the selected
// candidate pair's candidate types and addresses), or {"ok": false, "error", "iceErrors"}.
// Every wait is bounded; the process always exits.
import { chromium } from "playwright-core";
import { BASE_FLAGS, UNTHROTTLED_FLAGS } from "./chromium_flags.mjs";

const env = process.env;
const messages = Number(env.MESSAGES || 1000);
const size = Number(env.SIZE || 1000);
const burst = Number(env.BURST || 4);
const everyMs = Number(env.EVERY_MS || 10);
const maxSecs = Number(env.MAX_SECS || 90);
const flags = [
  ...BASE_FLAGS,
  ...UNTHROTTLED_FLAGS,
  // B's host candidate must be its address, not an mDNS name that A's namespace cannot
  // resolve: A's TURN client needs the address to ask turnpike for a permission.
  "--disable-features=WebRtcHideLocalIpsWithMdns",
];

const contexts = [];

function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} (not within ${ms} ms)`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function open(executable, profile) {
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: executable,
    headless: true,
    args: flags,
    timeout: 30000,
  });
  contexts.push(context);
  const page = await context.newPage();
  await page.setContent("<!doctype html><title>turnpike XDP pair</title>");
  await page.evaluate(install);
  return page;
}

// Runs in each page: the helpers the steps below call as window.X.
function install() {
  window.iceErrors = [];
  window.gathered = (pc, ms) =>
    new Promise((resolve, reject) => {
      if (pc.iceGatheringState === "complete") return resolve();
      const timer = setTimeout(() => reject(new Error(`ICE gathering took over ${ms} ms`)), ms);
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  window.watch = (pc) => {
    pc.onicecandidateerror = (e) =>
      window.iceErrors.push(`${e.url} ${e.errorCode} ${e.errorText}`);
  };
  // Counts the distinct messages that arrive (each starts with its 32-bit index).
  window.listen = () => {
    window.got = new Set();
    window.duplicates = 0;
    window.badSize = 0;
    window.dc.binaryType = "arraybuffer";
    window.dc.onmessage = (m) => {
      if (m.data.byteLength !== window.size) window.badSize++;
      const i = new DataView(m.data).getUint32(0);
      if (window.got.has(i)) window.duplicates++;
      window.got.add(i);
    };
  };
  // Sends `messages` messages, `burst` every `everyMs` ms, then waits until all the other
  // side's have arrived or none has for `quietMs`; returns the counts.
  window.transfer = async ({ messages, size, burst, everyMs, quietMs }) => {
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const buf = new Uint8Array(size).fill(0x5a);
    let sent = 0;
    while (sent < messages) {
      for (let j = 0; j < burst && sent < messages; j++, sent++) {
        new DataView(buf.buffer).setUint32(0, sent);
        window.dc.send(buf);
      }
      await sleep(everyMs);
    }
    let last = window.got.size;
    let quietSince = Date.now();
    while (window.got.size < messages && Date.now() - quietSince < quietMs) {
      await sleep(20);
      if (window.got.size !== last) {
        last = window.got.size;
        quietSince = Date.now();
      }
    }
    return {
      sent,
      received: window.got.size,
      duplicates: window.duplicates,
      badSize: window.badSize,
    };
  };
  // The selected candidate pair's two ends.
  window.pair = async () => {
    const stats = await window.pc.getStats();
    let pair = null;
    stats.forEach((s) => {
      if (s.type === "transport" && s.selectedCandidatePairId) {
        pair = stats.get(s.selectedCandidatePairId);
      }
    });
    if (!pair) throw new Error("no selected candidate pair in getStats()");
    const end = (id) => {
      const c = stats.get(id);
      return { type: c.candidateType, address: c.address, port: c.port, relayProtocol: c.relayProtocol };
    };
    return { local: end(pair.localCandidateId), remote: end(pair.remoteCandidateId) };
  };
}

async function main() {
  const ms = {};
  let t = Date.now();
  const lap = (phase) => {
    ms[phase] = Date.now() - t;
    t = Date.now();
  };
  const [a, b] = await Promise.all([
    open(env.CHROMIUM_A, env.PROFILE_A),
    open(env.CHROMIUM_B, env.PROFILE_B),
  ]);
  lap("launch");
  try {
    const iceServers = JSON.parse(env.ICE_SERVERS);
    const offer = await within(
      20000,
      "page A's offer",
      a.evaluate(async (iceServers) => {
        const pc = (window.pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: "relay" }));
        window.watch(pc);
        window.dc = pc.createDataChannel("xdp", { ordered: false, maxRetransmits: 0 });
        window.opened = new Promise((resolve) => (window.dc.onopen = resolve));
        await pc.setLocalDescription(await pc.createOffer());
        await window.gathered(pc, 15000);
        return { type: pc.localDescription.type, sdp: pc.localDescription.sdp };
      }, iceServers),
    );
    const answer = await within(
      20000,
      "page B's answer",
      b.evaluate(async (offer) => {
        const pc = (window.pc = new RTCPeerConnection({}));
        window.watch(pc);
        window.opened = new Promise((resolve) => {
          pc.ondatachannel = (e) => {
            window.dc = e.channel;
            if (e.channel.readyState === "open") resolve();
            else e.channel.onopen = resolve;
          };
        });
        await pc.setRemoteDescription(offer);
        await pc.setLocalDescription(await pc.createAnswer());
        await window.gathered(pc, 15000);
        return { type: pc.localDescription.type, sdp: pc.localDescription.sdp };
      }, offer),
    );
    await within(5000, "page A takes the answer", a.evaluate((d) => window.pc.setRemoteDescription(d), answer));
    lap("signal");
    await within(
      20000,
      "the DataChannel did not open",
      Promise.all([a.evaluate(() => window.opened), b.evaluate(() => window.opened)]),
    );
    lap("open");
    for (const page of [a, b]) {
      await page.evaluate((size) => {
        window.size = size;
        window.listen();
      }, size);
    }
    const arg = { messages, size, burst, everyMs, quietMs: 3000 };
    const transferLimit = Math.ceil(messages / burst) * everyMs * 4 + 20000;
    const [sideA, sideB] = await within(
      transferLimit,
      "the transfer did not end",
      Promise.all([a.evaluate((arg) => window.transfer(arg), arg), b.evaluate((arg) => window.transfer(arg), arg)]),
    );
    lap("transfer");
    Object.assign(sideA, await within(5000, "page A's stats", a.evaluate(() => window.pair())));
    Object.assign(sideB, await within(5000, "page B's stats", b.evaluate(() => window.pair())));
    return { ok: true, a: sideA, b: sideB, ms };
  } catch (e) {
    const iceErrors = await Promise.all(
      [a, b].map((p) => within(2000, "ice errors", p.evaluate(() => window.iceErrors)).catch(String)),
    );
    return { ok: false, error: String(e?.stack || e), iceErrors, ms };
  }
}

async function shutdown(result, code) {
  clearTimeout(killer);
  console.log(JSON.stringify(result));
  await Promise.race([
    Promise.allSettled(contexts.map((c) => c.close())),
    new Promise((resolve) => setTimeout(resolve, 5000)),
  ]);
  process.exit(code);
}

const killer = setTimeout(
  () => shutdown({ ok: false, error: `the run took longer than ${maxSecs} s` }, 2),
  maxSecs * 1000,
);
main().then(
  (result) => shutdown(result, 0),
  (e) => shutdown({ ok: false, error: String(e?.stack || e) }, 1),
);
