// The link core (docs/link-protocol.md §2-§4), sans-IO in the style of quinn-proto and str0m:
// inputs go in with the current time (`send`, `handleFrame`, `handleTimeout`, the state of
// the DataChannel and of ICE), outputs are polled (`pollTransmit`: frames to send on a path;
// `pollEvent`: events; `pollTimeout`: when to call `handleTimeout` next). It owns epochs,
// modes and the switch rules, probes, acknowledgement timing, relay retransmission and pacing.
// No sockets, no timers, no clock reads, no hidden randomness: the epoch and the probe nonces
// come in from the caller.

import { HEADER_BYTES, MAX_NUMBER, decodeFrame, encodeFrame } from "../frame.js";
import { Receiver } from "./receiver.js";
import { Sender } from "./sender.js";

export const DEFAULT_FALLBACK_MS = 10000;
export const DEFAULT_MAX_BUFFERED_BYTES = 1048576;
export const DEFAULT_SEND_TIMEOUT_MS = 30000;
export const PROBE_INTERVAL_MS = 1000;
export const RELAY_INFLIGHT_BYTES = 262144;
/**
 * Relay frames in flight at most: below the registry's per-peer relay queue (32 blobs by
 * default), which drops what does not fit; a burst of small frames would overflow it long
 * before 256 KiB.
 */
export const RELAY_INFLIGHT_FRAMES = 24;
export const RTO_INITIAL_MS = 1000;
export const RTO_MIN_MS = 200;
export const RTO_MAX_MS = 10000;
export const RESTART_FIRST_MS = 5000;
export const RESTART_MAX_MS = 60000;
const RETIRED_EPOCHS = 4;
const MAX_CONTROL_FRAMES = 256;

/**
 * @typedef {"connecting"|"p2p"|"relay"|"closed"} Mode
 * @typedef {"p2p"|"relay"} Path
 */

/** One end of a link, without I/O. */
export class LinkCore {
  /**
   * @param {object} o
   * @param {number} o.epoch     this end's random non-zero 32-bit epoch
   * @param {number} o.now       creation time (ms, any monotonic origin)
   * @param {number} [o.nonceSeed] a random number; probe nonces count up from it
   * @param {number} [o.fallbackAfterMs]
   * @param {number} [o.maxBufferedBytes]
   * @param {number} [o.sendTimeoutMs]
   * @param {number|null} [o.relayBytesPerSec] the registry's `limits.relay_bytes_per_sec`
   * @param {number} [o.relayOverheadBytes] bytes a relay blob adds to a link frame
   */
  constructor(o) {
    if (!(o.epoch >= 1 && o.epoch <= 0xffffffff)) throw new RangeError("epoch must be a non-zero 32-bit number");
    this.epoch = o.epoch >>> 0;
    this.remoteEpoch = 0;
    this.retired = [];
    this.fallbackAfterMs = o.fallbackAfterMs ?? DEFAULT_FALLBACK_MS;
    /** @type {Mode} */
    this.mode = "connecting";
    this.events = [];
    this.control = [];
    this.sender = new Sender({
      maxBufferedBytes: o.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES,
      sendTimeoutMs: o.sendTimeoutMs ?? DEFAULT_SEND_TIMEOUT_MS,
      emit: (e) => this.events.push(e),
    });
    this.receiver = new Receiver();
    this.nonce = Math.floor(Math.abs(o.nonceSeed ?? 0)) % 2 ** 48;
    this.probeNonce = null;
    this.probeAt = null;
    this.probeSentAt = 0;
    this.fallbackAt = o.now + this.fallbackAfterMs;
    this.restartAt = null;
    this.restartDelay = RESTART_FIRST_MS;
    this.channelOpen = false;
    this.iceConnected = false;
    this.p2pWritable = true;
    this.relayUsable = true;
    this.relayRefusal = null;
    this.forced = false;
    this.opened = false;
    this.remoteLastSeq = null;
    this.srtt = null;
    this.rttMs = null;
    this.rtoBase = RTO_INITIAL_MS;
    this.rto = RTO_INITIAL_MS;
    this.rtoAt = null;
    this.closeFrame = null;
    this.drainPath = null;
    this.overhead = o.relayOverheadBytes ?? 0;
    this.bucketRate = 0;
    this.setRelayRate(o.relayBytesPerSec ?? null, o.now);
    this.stats = { received: 0, p2pBytes: 0, relayBytes: 0, malformed: 0 };
  }

  // ---- inputs -------------------------------------------------------------------------------

  /** An application message (`string` or bytes); answered by an `accepted` or `rejected` event with `token`. */
  send(now, token, data) {
    if (this.mode === "closed") {
      this.events.push({ type: "rejected", token, code: "link_closed", message: "the link is closed" });
      return;
    }
    this.sender.offer(now, token, data);
  }

  /** A frame that arrived on `path`. Never throws on its content. */
  handleFrame(now, path, bytes) {
    if (this.mode === "closed") return;
    this.stats[path === "p2p" ? "p2pBytes" : "relayBytes"] += bytes.length;
    const { frame, error } = decodeFrame(bytes);
    if (!frame) return this.protocolError(`malformed frame: ${error}`, false);
    // Our own frame sent back to us (the relay box key is the same both ways, so a reflected
    // blob opens): never a frame of the peer's.
    if (frame.srcEpoch === this.epoch) return;
    if (frame.dstEpoch !== 0 && frame.dstEpoch !== this.epoch) {
      // Meant for our previous incarnation: tell the sender our epoch (ACKs are never answered).
      if (frame.kind === "data" || frame.kind === "probe") {
        this.queueControl(path, { kind: "ack", srcEpoch: this.epoch, dstEpoch: frame.srcEpoch, number: 0 });
      }
      return;
    }
    if (this.retired.includes(frame.srcEpoch)) return;
    if (frame.srcEpoch !== this.remoteEpoch) this.adopt(frame.srcEpoch);
    switch (frame.kind) {
      case "data":
        this.receiver.onData(now, path, frame, this.receiveOutput());
        return this.checkRemoteClose();
      case "ack":
        return this.onAck(now, frame);
      case "probe":
        return this.queueControl(path, { kind: "probe_ack", number: frame.number });
      case "probe_ack":
        if (path === "p2p" && frame.number === this.probeNonce) this.onProbeAnswered(now);
        return;
      case "close":
        this.remoteLastSeq = frame.number;
        return this.checkRemoteClose();
    }
  }

  /** Time passed: fires whatever timers are due. */
  handleTimeout(now) {
    if (this.mode === "closed") return;
    this.sender.expire(now);
    if (this.receiver.ackDue !== null && this.receiver.ackDue <= now) this.ackNow(this.receiver.ackPath);
    if (this.fallbackAt !== null && this.fallbackAt <= now) {
      this.fallbackAt = null;
      if (this.mode === "connecting" || (this.mode === "p2p" && !this.iceConnected)) this.enterRelay(now);
    }
    if (this.probeAt !== null && this.probeAt <= now) this.sendProbe(now);
    if (this.restartAt !== null && this.restartAt <= now && this.forced) {
      // Forced onto the relay: p2p is not wanted, so no ICE restarts (forceRelay(false) resumes them).
      this.restartAt = null;
    } else if (this.restartAt !== null && this.restartAt <= now) {
      this.events.push({ type: "restart_ice" });
      this.restartDelay = Math.min(this.restartDelay * 2, RESTART_MAX_MS);
      this.restartAt = now + this.restartDelay;
    }
    if (this.rtoAt !== null && this.rtoAt <= now) {
      this.rtoAt = null;
      if (this.mode === "relay" && this.sender.hasUnacked()) {
        this.sender.rewind();
        this.rto = Math.min(this.rto * 2, RTO_MAX_MS);
      }
    }
  }

  /** The DataChannel opened: probe it. */
  channelOpened(now) {
    this.channelOpen = true;
    if (this.mode !== "p2p" && this.mode !== "closed") this.startProbing(now);
  }

  /** The DataChannel closed (or was replaced): leave p2p at once. */
  channelClosed(now) {
    this.channelOpen = false;
    this.probeNonce = null;
    this.probeAt = null;
    if (this.mode === "p2p" || this.mode === "connecting") this.enterRelay(now);
  }

  /** The RTCPeerConnection's `iceConnectionState`. */
  iceStateChanged(now, state) {
    const was = this.iceConnected;
    this.iceConnected = state === "connected" || state === "completed";
    if (this.mode === "closed") return;
    if (state === "failed" && this.mode !== "relay") {
      this.enterRelay(now);
    } else if (state === "disconnected" && this.mode === "p2p" && was) {
      this.events.push({ type: "restart_ice" });
      this.fallbackAt = now + this.fallbackAfterMs;
    } else if (this.iceConnected && this.mode === "p2p") {
      this.fallbackAt = null;
    }
  }

  /** Whether the DataChannel takes more data (false while `bufferedAmount` is above 1 MiB). */
  setP2pWritable(writable) {
    this.p2pWritable = writable;
  }

  /**
   * Whether the relay path may be used (false when the peer's key is not attested: `reason`
   * says why). A refused relay reports `not_attested` when the link would have used it.
   */
  setRelayUsable(now, usable, reason = null) {
    this.relayUsable = usable;
    this.relayRefusal = usable ? null : reason;
    if (!usable && this.mode === "relay") this.setMode("connecting");
  }

  /** The registry's relay rate for this peer (bytes per second); blobs go out at 90 % of it. */
  setRelayRate(bytesPerSec, now) {
    if (!bytesPerSec || !(bytesPerSec > 0)) {
      this.bucketRate = 0;
      return;
    }
    this.bucketRate = (0.9 * bytesPerSec) / 1000; // bytes per ms
    this.bucketCap = 0.9 * bytesPerSec; // one second of burst
    this.bucket = this.bucketCap;
    this.bucketAt = now;
  }

  /** While on, the link sends on the relay and does not return to p2p; off: the usual rules. */
  forceRelay(now, on) {
    this.forced = on;
    if (this.mode === "closed") return;
    if (on) {
      this.probeNonce = null;
      this.probeAt = null;
      if (this.mode !== "relay") this.enterRelay(now);
    } else if (this.channelOpen && this.mode !== "p2p") {
      this.startProbing(now);
    } else if (this.mode === "relay") {
      this.scheduleRestart(now);
    }
  }

  /** Closes this end: `CLOSE` on the current path, waiting sends rejected, event `close`. */
  close(now, reason = "local") {
    if (this.mode === "closed") return;
    if (this.mode === "p2p" || this.mode === "relay") {
      // Best effort: what was accepted but never sent goes out once, then CLOSE.
      this.drainPath = this.mode;
      this.closeFrame = encodeFrame({ kind: "close", srcEpoch: this.epoch, dstEpoch: this.remoteEpoch, number: this.sender.lastSeq() });
    }
    this.finish(reason);
  }

  // ---- outputs ------------------------------------------------------------------------------

  /** The next frame to send: `{ path, frame }` (frame bytes), or null. */
  pollTransmit(now) {
    if (this.control.length > 0) {
      const { path, frame } = this.control.shift();
      return { path, frame };
    }
    if (this.mode === "closed") return this.pollDrain();
    if (this.mode === "p2p") {
      if (!this.p2pWritable) return null;
      const f = this.sender.peek();
      if (!f) return null;
      this.sender.advance(f);
      return this.dataFrame("p2p", f);
    }
    if (this.mode === "relay") {
      const f = this.sender.peek();
      if (!f) return null;
      if (this.sender.inflight > 0 && this.sender.inflight + f.bytes > RELAY_INFLIGHT_BYTES) return null;
      if (this.sender.cursor - this.sender.acked - 1 >= RELAY_INFLIGHT_FRAMES) return null;
      if (this.bucketRate > 0) {
        this.refill(now);
        if (this.bucket < f.bytes + this.overhead) return null;
        this.bucket -= f.bytes + this.overhead;
      }
      this.sender.advance(f);
      f.sends++;
      f.sentAt = now;
      if (this.rtoAt === null) this.rtoAt = now + this.rto;
      return this.dataFrame("relay", f);
    }
    return null;
  }

  pollDrain() {
    if (!this.drainPath) return null;
    const f = this.sender.peek();
    if (f) {
      this.sender.advance(f);
      return this.dataFrame(this.drainPath, f);
    }
    const path = this.drainPath;
    const frame = this.closeFrame;
    this.drainPath = null;
    this.closeFrame = null;
    this.stats[path === "p2p" ? "p2pBytes" : "relayBytes"] += frame.length;
    return { path, frame };
  }

  /** The next event, or null. */
  pollEvent() {
    return this.events.length > 0 ? this.events.shift() : null;
  }

  /** When `handleTimeout` is due next (same clock as `now`), or null. */
  pollTimeout(now) {
    if (this.mode === "closed") return null;
    let t = null;
    const min = (x) => {
      if (x !== null && (t === null || x < t)) t = x;
    };
    min(this.sender.nextDeadline());
    min(this.receiver.ackDue);
    min(this.fallbackAt);
    min(this.probeAt);
    min(this.restartAt);
    if (this.mode === "relay") {
      min(this.rtoAt);
      const f = this.sender.peek();
      if (f && this.bucketRate > 0 && this.sender.inflight + f.bytes <= RELAY_INFLIGHT_BYTES) {
        this.refill(now);
        const missing = f.bytes + this.overhead - this.bucket;
        if (missing > 0) min(now + Math.ceil(missing / this.bucketRate));
      }
    }
    return t;
  }

  /** Counters for `link.stats()`. */
  snapshot() {
    return {
      mode: this.mode,
      sent: this.sender.sentMessages,
      received: this.stats.received,
      p2pBytes: this.stats.p2pBytes,
      relayBytes: this.stats.relayBytes,
      rttMs: this.rttMs,
      malformed: this.stats.malformed,
      buffered: this.sender.buffered,
    };
  }

  // ---- internals ----------------------------------------------------------------------------

  receiveOutput() {
    return {
      deliver: (data) => {
        this.stats.received++;
        this.events.push({ type: "message", data });
      },
      error: (message, fatal) => {
        this.protocolError(message, fatal);
      },
      ackNow: (path) => this.ackNow(path),
    };
  }

  adopt(epoch) {
    const previous = this.remoteEpoch;
    this.remoteEpoch = epoch;
    this.receiver.reset();
    this.remoteLastSeq = null;
    if (previous !== 0) {
      this.retired.push(previous);
      if (this.retired.length > RETIRED_EPOCHS) this.retired.shift();
      this.sender.renumber();
      this.rtoAt = null;
    }
    this.events.push({ type: "remote_epoch", epoch, previous });
  }

  onAck(now, frame) {
    const { progress, sample } = this.sender.onAck(frame.number);
    if (!progress) return;
    if (sample !== null) this.rttSample(now - sample);
    // Progress ends a timeout back-off (as QUIC's PTO does): without it, go-back-N resends,
    // which give no RTT sample (Karn), would keep the doubled RTO after a single loss.
    this.rto = this.rtoBase;
    this.rtoAt = this.mode === "relay" && this.sender.inflight > 0 ? now + this.rto : null;
  }

  rttSample(ms) {
    this.srtt = this.srtt === null ? ms : (7 * this.srtt + ms) / 8;
    this.rttMs = Math.round(this.srtt);
    this.rtoBase = Math.min(Math.max(2 * this.srtt, RTO_MIN_MS), RTO_MAX_MS);
    this.rto = this.rtoBase;
  }

  ackNow(path) {
    this.receiver.acked();
    if (path) this.queueControl(path, { kind: "ack", number: this.receiver.ack });
    this.checkRemoteClose();
  }

  checkRemoteClose() {
    if (this.remoteLastSeq !== null && this.receiver.ack >= this.remoteLastSeq && this.mode !== "closed") {
      this.finish("remote_closed");
    }
  }

  startProbing(now) {
    if (this.forced) return;
    this.sendProbe(now);
  }

  sendProbe(now) {
    if (!this.channelOpen || this.forced || this.mode === "p2p" || this.mode === "closed") {
      this.probeAt = null;
      return;
    }
    this.nonce = (this.nonce + 1) % 2 ** 48;
    this.probeNonce = this.nonce;
    this.probeSentAt = now;
    this.queueControl("p2p", { kind: "probe", number: this.probeNonce });
    this.probeAt = now + PROBE_INTERVAL_MS;
  }

  onProbeAnswered(now) {
    if (this.forced || this.mode === "closed") return;
    this.rttSample(now - this.probeSentAt);
    this.probeNonce = null;
    this.probeAt = null;
    this.fallbackAt = null;
    this.restartAt = null;
    this.restartDelay = RESTART_FIRST_MS;
    this.rtoAt = null;
    this.sender.rewind();
    this.setMode("p2p");
  }

  enterRelay(now) {
    if (this.mode === "relay" || this.mode === "closed") return;
    if (!this.relayUsable) {
      if (this.mode === "p2p") this.setMode("connecting");
      this.events.push({ type: "error", code: "not_attested", message: `the relay path is refused: ${this.relayRefusal || "missing"}` });
      this.scheduleRestart(now);
      return;
    }
    this.fallbackAt = null;
    this.sender.rewind();
    this.rto = this.rtoBase;
    this.rtoAt = null;
    this.setMode("relay");
    this.scheduleRestart(now);
    if (this.channelOpen && !this.forced) this.probeAt = now + PROBE_INTERVAL_MS;
  }

  scheduleRestart(now) {
    if (this.restartAt === null) {
      this.restartDelay = RESTART_FIRST_MS;
      this.restartAt = now + RESTART_FIRST_MS;
    }
  }

  setMode(mode) {
    if (this.mode === mode) return;
    this.mode = mode;
    this.events.push({ type: "mode", mode });
    if (!this.opened && (mode === "p2p" || mode === "relay")) {
      this.opened = true;
      this.events.push({ type: "open", mode });
    }
  }

  finish(reason) {
    this.sender.rejectAll("link_closed", "the link closed before the message was accepted");
    this.probeAt = null;
    this.fallbackAt = null;
    this.restartAt = null;
    this.rtoAt = null;
    this.setMode("closed");
    this.events.push({ type: "close", reason });
  }

  protocolError(message, fatal) {
    this.stats.malformed++;
    this.events.push({ type: "error", code: "protocol_error", message });
    if (fatal) this.finish("protocol_error");
  }

  queueControl(path, f) {
    const full = { srcEpoch: this.epoch, dstEpoch: this.remoteEpoch, ...f };
    const frame = encodeFrame(full);
    if (f.kind === "ack") {
      // One pending ACK per path and destination epoch: a newer cumulative ack replaces it.
      const i = this.control.findIndex((c) => c.ack && c.path === path && c.dstEpoch === full.dstEpoch);
      if (i >= 0) this.control.splice(i, 1);
    }
    if (this.control.length >= MAX_CONTROL_FRAMES) this.control.shift();
    this.control.push({ path, frame, ack: f.kind === "ack", dstEpoch: full.dstEpoch });
    this.stats[path === "p2p" ? "p2pBytes" : "relayBytes"] += frame.length;
    if (path === "relay" && this.bucketRate > 0) this.bucket -= frame.length + this.overhead;
  }

  dataFrame(path, f) {
    const frame = encodeFrame({
      kind: "data",
      srcEpoch: this.epoch,
      dstEpoch: this.remoteEpoch,
      number: f.seq,
      end: f.end,
      binary: f.binary,
      payload: f.payload,
    });
    this.stats[path === "p2p" ? "p2pBytes" : "relayBytes"] += frame.length;
    return { path, frame };
  }

  refill(now) {
    if (now > this.bucketAt) {
      this.bucket = Math.min(this.bucketCap, this.bucket + (now - this.bucketAt) * this.bucketRate);
      this.bucketAt = now;
    }
  }
}

export { HEADER_BYTES, MAX_NUMBER };
