// The in-page side of the link tests (loaded by link_pages.mjs as /harness.mjs next to the SDK
// bundle /turnpike.js): one registry session per page, every link it has recorded (messages
// with when and on which counters they arrived, modes, errors), message pumps, and bounded
// waits. The Rust test calls these through `window.H`; everything returns plain JSON.
import * as tp from "./turnpike.js";

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** What one link did, as it happened. */
class Record {
  constructor(link) {
    this.link = link;
    this.messages = [];
    this.modes = [{ mode: link.mode, t: Date.now() }];
    this.errors = [];
    this.closed = null;
    this.pump = null;
    this.sendFailures = [];
    link.on("message", (data) => {
      const s = link.stats();
      this.messages.push({
        data: typeof data === "string" ? data : { hex: hex(data) },
        t: Date.now(),
        mode: s.mode,
        relayBytes: s.relayBytes,
        p2pBytes: s.p2pBytes,
      });
    });
    link.on("mode", (mode) => this.modes.push({ mode, t: Date.now() }));
    link.on("error", (e) => this.errors.push({ code: e.code, message: e.message, t: Date.now() }));
    link.on("close", (info) => (this.closed = info.reason));
  }

  summary() {
    return {
      peerId: this.link.peerId,
      mode: this.link.mode,
      stats: this.link.stats(),
      modes: this.modes,
      errors: this.errors,
      closed: this.closed,
      received: this.messages.length,
      sendFailures: this.sendFailures,
      pumped: this.pump ? this.pump.sent : 0,
    };
  }
}

const H = {
  tp,
  session: null,
  records: new Map(),
  sessionEvents: [],

  /** Connects and joins; `options` are connect()'s. Returns the session's identity. */
  async connect(options) {
    const session = await tp.connect(options);
    H.session = session;
    for (const event of ["error", "close", "disconnected", "reconnected", "peer_joined", "peer_left"]) {
      session.on(event, (info) => H.sessionEvents.push({ event, code: info?.code ?? null, t: Date.now() }));
    }
    session.on("link", (link) => H.track(link));
    return { peerId: session.peerId, project: session.project, publicKey: session.publicKey };
  },

  track(link) {
    if (!H.records.has(link.peerId) || H.records.get(link.peerId).link !== link) {
      H.records.set(link.peerId, new Record(link));
    }
    return H.records.get(link.peerId);
  },

  /** Opens (or returns) the link to `peer`. */
  link(peer) {
    return H.track(H.session.link(peer));
  },

  record(peer) {
    const r = H.records.get(peer);
    if (!r) throw new Error(`no link to ${peer} yet`);
    return r;
  },

  /** Sends `data` (a string, or {bytes: n} for n bytes of a pattern); {ok} or {ok: false, code}. */
  async send(peer, data) {
    const r = H.link(peer);
    const message = typeof data === "string" ? data : Uint8Array.from({ length: data.bytes }, (_, i) => i % 251);
    try {
      await r.link.send(message);
      return { ok: true };
    } catch (e) {
      return { ok: false, code: e.code ?? null, message: String(e.message) };
    }
  },

  /** Sends `${prefix}${i}` every `everyMs` until stopPump; a failed send is recorded. */
  startPump(peer, prefix, everyMs) {
    const r = H.link(peer);
    const pump = { sent: 0, timer: null };
    pump.timer = setInterval(() => {
      const i = pump.sent++;
      r.link.send(`${prefix}${i}`).catch((e) => r.sendFailures.push({ i, code: e.code }));
    }, everyMs);
    r.pump = pump;
  },

  /** Stops the pump; returns how many messages it sent. */
  stopPump(peer) {
    const r = H.record(peer);
    clearInterval(r.pump.timer);
    return r.pump.sent;
  },

  /** Waits (at most `ms`) until `predicate(H)` holds; returns whether it did. */
  async waitFor(predicate, ms) {
    const deadline = Date.now() + ms;
    for (;;) {
      try {
        if (predicate(H)) return true;
      } catch {
        // not yet (a link that does not exist yet, say)
      }
      if (Date.now() >= deadline) return false;
      await sleep(20);
    }
  },

  /** Waits until the link to `peer` is in `mode`; returns the summary either way. */
  async waitMode(peer, mode, ms) {
    await H.waitFor(() => H.records.get(peer)?.link.mode === mode, ms);
    return H.records.get(peer)?.summary() ?? null;
  },

  /** Waits until `count` messages arrived from `peer`; returns the summary either way. */
  async waitReceived(peer, count, ms) {
    await H.waitFor(() => H.records.get(peer).messages.length >= count, ms);
    return H.records.get(peer)?.summary() ?? null;
  },

  /** Every message from `peer` so far: {data, t, mode, relayBytes, p2pBytes}. */
  messages(peer) {
    return H.record(peer).messages;
  },

  summary(peer) {
    return H.records.get(peer)?.summary() ?? null;
  },

  /** The session's relay drop counters and events. */
  sessionState() {
    return {
      relayDrops: H.session?.relayDrops ?? null,
      events: H.sessionEvents,
      peers: H.session?.peers() ?? [],
    };
  },
};

window.H = H;
