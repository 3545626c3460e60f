// A simulated pair of link cores for the tests: a virtual clock, a p2p path (reliable and
// ordered while up) and a relay path (datagrams, in order, lossy on demand), both with latency.
// Everything is deterministic: the loss pattern is a function the test gives.
import { LinkCore } from "../src/core/link.js";

export class Sim {
  constructor({ a = {}, b = {}, p2pLatency = 5, relayLatency = 20 } = {}) {
    this.now = 0;
    this.p2pLatency = p2pLatency;
    this.relayLatency = relayLatency;
    this.p2pUp = true;
    this.dropRelay = () => false;
    this.inflight = [];
    this.ends = {
      a: this.makeEnd("a", { epoch: 0x0a0a0a0a, ...a }),
      b: this.makeEnd("b", { epoch: 0x0b0b0b0b, ...b }),
    };
    this.relayFrames = 0;
    this.relayDropped = 0;
  }

  makeEnd(name, options) {
    return {
      name,
      core: new LinkCore({ now: this.now, nonceSeed: name === "a" ? 1000 : 2000, ...options }),
      messages: [],
      events: [],
      accepted: new Set(),
      rejected: new Map(),
    };
  }

  /** Replaces `name`'s core with a new incarnation (a reloaded page). */
  restart(name, options) {
    const end = this.makeEnd(name, options);
    this.ends[name] = end;
    this.inflight = this.inflight.filter((d) => d.to !== name);
    return end;
  }

  other(name) {
    return name === "a" ? "b" : "a";
  }

  /** Drains every output of both cores. */
  pump() {
    for (const end of Object.values(this.ends)) {
      const core = end.core;
      for (let t; (t = core.pollTransmit(this.now)); ) {
        if (t.path === "p2p") {
          if (this.p2pUp) this.inflight.push({ at: this.now + this.p2pLatency, to: this.other(end.name), path: "p2p", frame: t.frame });
        } else {
          this.relayFrames++;
          if (this.dropRelay(t.frame, this.relayFrames)) this.relayDropped++;
          else this.inflight.push({ at: this.now + this.relayLatency, to: this.other(end.name), path: "relay", frame: t.frame });
        }
      }
      for (let e; (e = core.pollEvent()); ) {
        end.events.push({ at: this.now, ...e });
        if (e.type === "message") end.messages.push(e.data);
        if (e.type === "accepted") end.accepted.add(e.token);
        if (e.type === "rejected") end.rejected.set(e.token, e.code);
      }
    }
  }

  /** Takes the p2p path down (frames in flight on it are lost) or up. */
  setP2p(up) {
    this.p2pUp = up;
    if (!up) this.inflight = this.inflight.filter((d) => d.path !== "p2p");
  }

  /** Runs the virtual clock to `until` (ms), delivering frames and firing timers. */
  runUntil(until, stop = () => false) {
    for (let guard = 0; guard < 10_000_000; guard++) {
      this.pump();
      if (stop()) return true;
      let next = until;
      for (const d of this.inflight) next = Math.min(next, d.at);
      for (const end of Object.values(this.ends)) {
        const t = end.core.pollTimeout(this.now);
        if (t !== null) next = Math.min(next, Math.max(t, this.now));
      }
      if (next > until) break;
      this.now = Math.max(this.now, next);
      const due = this.inflight.filter((d) => d.at <= this.now);
      this.inflight = this.inflight.filter((d) => d.at > this.now);
      for (const d of due) this.ends[d.to].core.handleFrame(this.now, d.path, d.frame);
      for (const end of Object.values(this.ends)) end.core.handleTimeout(this.now);
      if (this.now >= until && due.length === 0) {
        this.pump();
        break;
      }
    }
    return stop();
  }

  /** Both ends' DataChannel opens and ICE connects. */
  connectP2p() {
    for (const end of Object.values(this.ends)) {
      end.core.iceStateChanged(this.now, "connected");
      end.core.channelOpened(this.now);
    }
  }

  modes(name) {
    return this.ends[name].events.filter((e) => e.type === "mode").map((e) => e.mode);
  }
}
