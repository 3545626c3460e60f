// The link's I/O (docs/link-protocol.md §1, §4, §6): an RTCPeerConnection with the negotiated
// DataChannel (id 0, `turnpike.link.v1`), perfect negotiation (the lower peer id is polite),
// trickle ICE, ICE restarts when the core asks, the relay path through the session (sealed
// registry binary frames), `bufferedAmount` back-pressure, stats from getStats. Everything
// the protocol decides lives in the sans-IO core (core/link.js); this class feeds it time and
// events, and carries out what it polls.

import { compareBytes } from "./bytes.js";
import { Emitter } from "./emitter.js";
import { TurnpikeError } from "./errors.js";
import { LinkCore } from "./core/link.js";
import { SEAL_OVERHEAD } from "./seal.js";

const LABEL = "turnpike.link.v1";
const HIGH_WATER = 1048576;
const LOW_WATER = 262144;
const MAX_QUEUED_CANDIDATES = 256;
// Signaling messages waiting for the ones before them to be applied, counted as the length of
// their JSON text plus a fixed cost each (the parsed object, its closure and promise): a peer
// that floods offers or candidates is refused past this, not queued without end.
export const MAX_WAITING_SIGNAL_BYTES = 1048576;
export const WAITING_SIGNAL_OVERHEAD = 256;

function randomU32() {
  const a = new Uint32Array(1);
  do crypto.getRandomValues(a);
  while (a[0] === 0);
  return a[0];
}

function toBytes(data) {
  if (typeof data === "string" || data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return null;
}

/** A link to one peer: messages in order, exactly once, over p2p or the relay. */
export class Link extends Emitter {
  constructor(session, peerId, { initiator }) {
    super();
    this.session = session;
    this.peerId = peerId;
    this.initiator = initiator;
    this.polite = compareBytes(session.peerId, peerId) < 0;
    const o = session.options;
    this.epoch = randomU32();
    this.core = new LinkCore({
      epoch: this.epoch,
      now: performance.now(),
      nonceSeed: randomU32() * 65536,
      fallbackAfterMs: o.fallbackAfterMs,
      maxBufferedBytes: o.maxBufferedBytes,
      sendTimeoutMs: o.sendTimeoutMs,
      relayBytesPerSec: session.limits?.relay_bytes_per_sec ?? null,
      relayOverheadBytes: SEAL_OVERHEAD + 1 + peerId.length,
    });
    this._pending = new Map();
    this._token = 0;
    this._timer = null;
    this._driving = false;
    this._remoteSigEpoch = 0;
    this._signalChain = Promise.resolve();
    this._waitingSignalBytes = 0;
    this._candidateTypes = { local: null, remote: null };
    this._closed = false;
    this._checkRelay();
    this._newPeerConnection();
    this._drive();
  }

  /** "connecting" | "p2p" | "relay" | "closed" */
  get mode() {
    return this.core.mode;
  }

  /**
   * Sends a message (a string, or bytes). Resolves once the message is in the link's buffer
   * (it will be delivered unless the link closes); rejects with a TurnpikeError whose `code`
   * is `message_too_large`, `send_timeout` or `link_closed`.
   */
  send(data) {
    const bytes = toBytes(data);
    if (bytes === null) return Promise.reject(new TurnpikeError("bad_message", "send takes a string or bytes"));
    return new Promise((resolve, reject) => {
      const token = ++this._token;
      this._pending.set(token, { resolve, reject });
      this.core.send(performance.now(), token, bytes);
      this._drive();
    });
  }

  /** `{ mode, sent, received, p2pBytes, relayBytes, rttMs, localCandidateType, remoteCandidateType }` */
  stats() {
    const s = this.core.snapshot();
    return {
      mode: s.mode,
      sent: s.sent,
      received: s.received,
      p2pBytes: s.p2pBytes,
      relayBytes: s.relayBytes,
      rttMs: s.rttMs,
      localCandidateType: this._candidateTypes.local,
      remoteCandidateType: this._candidateTypes.remote,
    };
  }

  /** While on, the link sends on the relay and does not return to p2p; off: the usual rules. */
  forceRelay(on) {
    this.core.forceRelay(performance.now(), Boolean(on));
    this._drive();
  }

  /** Closes the link: `CLOSE` to the peer, waiting sends rejected with `link_closed`. */
  close() {
    this._close("local");
  }

  // ---- peer connection ----------------------------------------------------------------------

  _newPeerConnection() {
    const o = this.session.options;
    const config = { iceServers: this.session._iceServers() };
    if (o.iceTransportPolicy) config.iceTransportPolicy = o.iceTransportPolicy;
    const RTC = o.RTCPeerConnection || globalThis.RTCPeerConnection;
    const pc = new RTC(config);
    const dc = pc.createDataChannel(LABEL, { negotiated: true, id: 0, ordered: true, protocol: LABEL });
    dc.binaryType = "arraybuffer";
    dc.bufferedAmountLowThreshold = LOW_WATER;
    this.pc = pc;
    this.dc = dc;
    this._makingOffer = false;
    this._ignoreOffer = false;
    this._candidates = [];
    const current = () => this.pc === pc && !this._closed;
    dc.onopen = () => current() && this._input((now) => this.core.channelOpened(now));
    dc.onclose = () => {
      if (!current()) return;
      this._input((now) => this.core.channelClosed(now));
      // A negotiated channel does not reopen: start over with a new peer connection.
      if (this.pc.connectionState !== "closed") this._replacePeerConnection();
    };
    dc.onmessage = (e) => current() && this._input((now) => this.core.handleFrame(now, "p2p", new Uint8Array(e.data)));
    dc.onbufferedamountlow = () => current() && this._input(() => this.core.setP2pWritable(true));
    pc.onicecandidate = (e) => {
      if (!current()) return;
      this._signal("webrtc_ice_candidate", { candidate: e.candidate ? e.candidate.toJSON() : null });
    };
    pc.oniceconnectionstatechange = () => {
      if (!current()) return;
      const state = pc.iceConnectionState;
      this._input((now) => this.core.iceStateChanged(now, state));
      if (state === "connected" || state === "completed") this._refreshCandidateTypes();
    };
    pc.onnegotiationneeded = async () => {
      if (!current()) return;
      // The side that did not open the link answers the opener's offer rather than racing it.
      if (!this.initiator && !pc.remoteDescription) return;
      try {
        this._makingOffer = true;
        await pc.setLocalDescription();
        if (current()) this._signal("webrtc_offer", { description: pc.localDescription.toJSON() });
      } catch (e) {
        this._localError("negotiation_failed", e);
      } finally {
        this._makingOffer = false;
      }
    };
  }

  _replacePeerConnection() {
    const old = this.pc;
    const wasOpen = this.dc?.readyState === "open";
    this._newPeerConnection();
    if (wasOpen) this._input((now) => this.core.channelClosed(now));
    try {
      old.close();
    } catch {
      // already closed
    }
  }

  _signal(type, body) {
    if (this._closed) return;
    this.session._signal(type, this.peerId, { link: 1, epoch: this.epoch, ...body });
  }

  /**
   * Applies the peer's signaling messages one after the other: every state check below must
   * see the state the previous message left. (Two answers to one offer, the peer answering
   * an offer we sent again when it joined, both passed the "have-local-offer" check while the
   * first was still being applied, and the second failed in state "stable".)
   */
  _onSignal(type, payload, size) {
    if (this._closed) return;
    const cost = size + WAITING_SIGNAL_OVERHEAD;
    if (this._waitingSignalBytes + cost > MAX_WAITING_SIGNAL_BYTES) {
      this._localError("negotiation_failed", `${type} dropped: ${MAX_WAITING_SIGNAL_BYTES} bytes of signaling already waiting`);
      return;
    }
    this._waitingSignalBytes += cost;
    this._signalChain = this._signalChain
      .then(() => this._applySignal(type, payload))
      .catch((e) => this._localError("negotiation_failed", e))
      .finally(() => (this._waitingSignalBytes -= cost));
  }

  async _applySignal(type, payload) {
    if (this._closed) return;
    const epoch = payload.epoch;
    if (!Number.isInteger(epoch) || epoch <= 0) return;
    if (this._remoteSigEpoch !== 0 && epoch !== this._remoteSigEpoch) {
      if (type === "webrtc_offer") {
        this._replacePeerConnection(); // a new incarnation: a new peer connection answers
      } else if (epoch !== this.core.remoteEpoch) {
        return; // stale: from an incarnation we left behind
      }
      // else: the incarnation the link core adopted from its frames, answering our offer.
    }
    this._remoteSigEpoch = epoch;
    const pc = this.pc;
    try {
      if (type === "webrtc_ice_candidate") {
        const c = payload.candidate;
        if (c !== null && (typeof c !== "object" || typeof c.candidate !== "string")) return;
        if (!pc.remoteDescription) {
          if (this._candidates.length < MAX_QUEUED_CANDIDATES) this._candidates.push(c);
          return;
        }
        await this._addCandidate(pc, c);
        return;
      }
      const d = payload.description;
      if (!d || typeof d.sdp !== "string" || (d.type !== "offer" && d.type !== "answer")) return;
      if (type === "webrtc_offer" && d.type !== "offer") return;
      if (type === "webrtc_answer" && d.type !== "answer") return;
      const collision = d.type === "offer" && (this._makingOffer || pc.signalingState !== "stable");
      this._ignoreOffer = !this.polite && collision;
      if (this._ignoreOffer) return;
      if (d.type === "answer" && pc.signalingState !== "have-local-offer") return;
      await pc.setRemoteDescription({ type: d.type, sdp: d.sdp });
      for (const c of this._candidates.splice(0)) await this._addCandidate(pc, c);
      if (d.type === "offer") {
        await pc.setLocalDescription();
        if (this.pc === pc) this._signal("webrtc_answer", { description: pc.localDescription.toJSON() });
      }
    } catch (e) {
      if (!this._ignoreOffer) this._localError("negotiation_failed", e);
    }
  }

  async _addCandidate(pc, c) {
    try {
      await pc.addIceCandidate(c === null ? undefined : c);
    } catch (e) {
      if (!this._ignoreOffer) this._localError("negotiation_failed", e);
    }
  }

  _restartIce() {
    if (this._closed) return;
    const pc = this.pc;
    // The side that offers restarts; a link that never got an offer starts offering itself.
    if (!this.initiator && pc.remoteDescription) return;
    this.initiator = true;
    if (pc.signalingState === "have-local-offer" && pc.localDescription) {
      // The last offer may have been lost (the peer was away): send it again.
      this._signal("webrtc_offer", { description: pc.localDescription.toJSON() });
      return;
    }
    if (pc.connectionState === "failed" || pc.connectionState === "closed") {
      this._replacePeerConnection();
      return;
    }
    pc.restartIce();
    if (!pc.remoteDescription && pc.signalingState === "stable") pc.onnegotiationneeded?.();
  }

  async _refreshCandidateTypes() {
    try {
      const stats = await this.pc.getStats();
      let pair = null;
      stats.forEach((s) => {
        if (s.type === "transport" && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
      });
      if (!pair) {
        stats.forEach((s) => {
          if (!pair && s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s;
        });
      }
      if (!pair) return;
      this._candidateTypes = {
        local: stats.get(pair.localCandidateId)?.candidateType ?? null,
        remote: stats.get(pair.remoteCandidateId)?.candidateType ?? null,
      };
    } catch {
      // the peer connection closed meanwhile
    }
  }

  // ---- from the session ---------------------------------------------------------------------

  _onRelayFrame(frame) {
    if (this._closed) return;
    this._input((now) => this.core.handleFrame(now, "relay", frame));
  }

  _registryError(err) {
    const code = err.code === "unknown_peer" || err.code === "undelivered" ? err.code : err.code;
    this.emit("error", new TurnpikeError(code, err.message));
  }

  /** The peer (re)joined or the session got a new welcome: new key, maybe a lost offer. */
  _peerChanged(joined = false) {
    if (this._closed) return;
    this._checkRelay();
    if (joined && this.core.mode !== "p2p") this._restartIce();
    this._drive();
  }

  _sessionReconnected() {
    this._peerChanged(true);
  }

  _checkRelay() {
    const verdict = this.session._relayVerdict(this.peerId);
    this.core.setRelayUsable(performance.now(), verdict.ok, verdict.ok ? null : verdict.reason);
  }

  // ---- driving the core ---------------------------------------------------------------------

  _input(fn) {
    fn(performance.now());
    this._drive();
  }

  _drive() {
    if (this._driving) return;
    this._driving = true;
    try {
      const now = performance.now();
      for (let t; (t = this.core.pollTransmit(now)); ) {
        if (t.path === "p2p") {
          if (this.dc.readyState !== "open") continue;
          try {
            this.dc.send(t.frame);
          } catch {
            continue; // closing: the core learns from onclose
          }
          if (this.dc.bufferedAmount > HIGH_WATER) this.core.setP2pWritable(false);
        } else {
          this.session._sendRelay(this.peerId, t.frame);
        }
      }
      for (let e; (e = this.core.pollEvent()); ) this._dispatch(e);
      clearTimeout(this._timer);
      this._timer = null;
      const at = this.core.pollTimeout(now);
      if (at !== null) {
        this._timer = setTimeout(() => {
          this._timer = null;
          this._input((t) => this.core.handleTimeout(t));
        }, Math.max(0, Math.ceil(at - now)));
      }
    } finally {
      this._driving = false;
    }
  }

  _dispatch(e) {
    switch (e.type) {
      case "accepted":
        this._pending.get(e.token)?.resolve();
        this._pending.delete(e.token);
        return;
      case "rejected":
        this._pending.get(e.token)?.reject(new TurnpikeError(e.code, e.message));
        this._pending.delete(e.token);
        return;
      case "open":
        this.emit("open", { mode: e.mode });
        return;
      case "mode":
        if (e.mode === "p2p") this._refreshCandidateTypes();
        if (e.mode !== "closed") this.emit("mode", e.mode);
        return;
      case "message":
        this.emit("message", e.data);
        return;
      case "error":
        this.emit("error", new TurnpikeError(e.code, e.message));
        return;
      case "restart_ice":
        queueMicrotask(() => this._restartIce());
        return;
      case "remote_epoch":
        // The peer restarted (frames from a new epoch): its old peer connection is gone,
        // unless its signaling already reached us (then the current one is the new one's).
        if (e.previous !== 0) {
          queueMicrotask(() => {
            if (this._closed || e.epoch === this._remoteSigEpoch) return;
            this._remoteSigEpoch = e.epoch;
            this.initiator = true;
            this._replacePeerConnection();
          });
        }
        return;
      case "close":
        this._teardown(e.reason);
    }
  }

  _close(reason) {
    if (this._closed) return;
    this.core.close(performance.now(), reason);
    this._drive();
  }

  _teardown(reason) {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._timer);
    const { pc, dc } = this;
    // Let the CLOSE frame leave the DataChannel before it closes.
    setTimeout(() => {
      try {
        dc.close();
        pc.close();
      } catch {
        // already closed
      }
    }, 100);
    this.session._forget(this);
    this.emit("mode", "closed");
    this.emit("close", { reason });
  }

  _localError(code, e) {
    this.emit("error", new TurnpikeError(code, String(e?.message || e)));
  }
}
