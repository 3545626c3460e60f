// The registry session (docs/registry-protocol.md): one WebSocket with the subprotocols
// `turnpike.registry.v1` and `turnpike.bearer.<token>`, `join` with this session's X25519 key,
// the peer list, signaling routed to links, sealed relay frames opened (replay and forgery
// checked) and routed to links, reconnection with back-off and a fresh token from `getToken`,
// `reauth` on `token_expiring`, and ICE servers from `welcome.ice_servers` unless the app gives
// its own.

import nacl from "tweetnacl";
import { fromBase64, toBase64 } from "./bytes.js";
import { Emitter } from "./emitter.js";
import { TurnpikeError } from "./errors.js";
import { decodeIssuerKeys, verifyAttestation } from "./attest.js";
import { Counter, ReplayTable, decodeRelayFrame, encodeRelayFrame, open, seal } from "./seal.js";
import { Link } from "./link.js";

const SUBPROTOCOL = "turnpike.registry.v1";
const RECONNECT_FIRST_MS = 1000;
const RECONNECT_MAX_MS = 30000;
const CONNECT_TIMEOUT_MS = 15000;
const MAX_DEPARTED = 64;
const SIGNAL_TYPES = new Set(["webrtc_offer", "webrtc_answer", "webrtc_ice_candidate"]);

/**
 * Connects to the registry and joins. Resolves with the session once `welcome` arrived;
 * rejects with a TurnpikeError (`connect_failed`, `token_expired`, or the registry's code).
 * @param {import("../index.d.ts").ConnectOptions} options
 */
export async function connect(options) {
  const session = new Session(options);
  await session._start();
  return session;
}

/** A joined registry connection and the links it carries. */
export class Session extends Emitter {
  constructor(options) {
    super();
    const urls = options && (Array.isArray(options.urls) ? options.urls : typeof options.url === "string" ? [options.url] : null);
    if (!urls || urls.length === 0 || !urls.every((u) => typeof u === "string" && u.length > 0)) {
      throw new TypeError("connect: `url` or a non-empty `urls` array is required");
    }
    if (!options.token && typeof options.getToken !== "function") {
      throw new TypeError("connect: `token` or `getToken` is required");
    }
    this.options = { ...options };
    // The registry's nodes (a cluster): the first reachable one is used, and a lost connection
    // moves on to the next.
    this._urls = [...urls];
    this._urlIndex = 0;
    const secret = options.secretKey ? fromBase64(options.secretKey) : null;
    if (options.secretKey && (!secret || secret.length !== 32)) throw new TypeError("connect: `secretKey` must be base64 of 32 bytes");
    this.keyPair = secret ? nacl.box.keyPair.fromSecretKey(secret) : nacl.box.keyPair();
    this.publicKey = toBase64(this.keyPair.publicKey);
    this.trustedKeys = options.trustedIssuerKeys ? decodeIssuerKeys(options.trustedIssuerKeys) : null;
    /** @type {string | null} */
    this.peerId = null;
    this.project = null;
    this.limits = null;
    this.welcomeIceServers = null;
    this._peers = new Map();
    // Peers that left, so that blobs they sent just before leaving still open: the registry
    // may deliver `peer_left` ahead of them (its relay and control queues are separate).
    // Bounded; a peer that joins again is taken out.
    this._departed = new Map();
    this._links = new Map();
    this._counter = new Counter();
    this._replay = new ReplayTable();
    this._ws = null;
    this._closed = false;
    this._token = options.token || null;
    this._reconnectDelay = RECONNECT_FIRST_MS;
    this._reconnectTimer = null;
    this.relayDrops = { forged: 0, replay: 0, unknown_sender: 0, malformed: 0 };
  }

  /** The other peers of the project: `[{ peerId, publicKey }]`, sorted by peer id. */
  peers() {
    return [...this._peers.values()]
      .map((p) => ({ peerId: p.peerId, publicKey: p.publicKey }))
      .sort((a, b) => (a.peerId < b.peerId ? -1 : a.peerId > b.peerId ? 1 : 0));
  }

  /** The link to `peerId` (the same object for the same peer id while it is open). */
  link(peerId) {
    if (typeof peerId !== "string" || peerId.length === 0) throw new TypeError("link: a peer id is required");
    if (this._closed) throw new TurnpikeError("session_closed", "the session is closed");
    if (peerId === this.peerId) throw new TypeError("link: a link to oneself");
    let link = this._links.get(peerId);
    if (!link) {
      link = new Link(this, peerId, { initiator: true });
      this._links.set(peerId, link);
    }
    return link;
  }

  /** Closes every link (`session_closed`) and the registry connection. */
  close() {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._reconnectTimer);
    for (const link of [...this._links.values()]) link._close("session_closed");
    this._ws?.close(1000);
    this._ws = null;
  }

  // ---- used by links -----------------------------------------------------------------------

  /** The ICE servers links use: the app's, else the registry's `welcome.ice_servers`. */
  _iceServers() {
    return this.options.iceServers ?? this.welcomeIceServers ?? [];
  }

  _signal(type, toPeerId, payload) {
    return this._sendJson({ type, to_peer_id: toPeerId, payload });
  }

  /** Seals a link frame for `peerId` and sends it; false when it cannot (unknown peer, no connection). */
  _sendRelay(peerId, frame) {
    const peer = this._peers.get(peerId);
    if (!peer || !this._ws || this._ws.readyState !== 1) return false;
    const counter = this._counter.next(Date.now());
    const sealed = seal(counter, frame, nacl.randomBytes(24), peer.key, this.keyPair.secretKey);
    this._ws.send(encodeRelayFrame(peerId, sealed));
    return true;
  }

  /** Whether frames may be sealed for `peerId`: `{ ok }` or `{ ok: false, reason }` (§5). */
  _relayVerdict(peerId) {
    if (!this.trustedKeys) return { ok: true };
    const peer = this._peers.get(peerId);
    if (!peer) return { ok: false, reason: "missing" };
    return verifyAttestation(peer.attestation, {
      trustedKeys: this.trustedKeys,
      peerId,
      project: this.project,
      publicKey: peer.publicKey,
      nowSecs: Math.floor(Date.now() / 1000),
    });
  }

  _forget(link) {
    if (this._links.get(link.peerId) === link) this._links.delete(link.peerId);
  }

  // ---- connection --------------------------------------------------------------------------

  async _freshToken() {
    if (typeof this.options.getToken === "function") {
      const token = await this.options.getToken();
      if (typeof token !== "string" || token.length === 0) throw new TurnpikeError("token_expired", "getToken gave no token");
      this._token = token;
    }
    return this._token;
  }

  async _start() {
    let token;
    try {
      token = await this._freshToken();
    } catch (e) {
      throw e instanceof TurnpikeError ? e : new TurnpikeError("token_expired", `getToken failed: ${e?.message || e}`);
    }
    // Each URL in turn until one welcomes us; a refusal of the join itself is final.
    for (let i = 0; ; i++) {
      try {
        await this._open(token);
        return;
      } catch (e) {
        if (e?.code !== "connect_failed" || i + 1 >= this._urls.length) throw e;
        this._urlIndex = (this._urlIndex + 1) % this._urls.length;
      }
    }
  }

  /** The registry URL in use (the current node of `urls`). */
  get url() {
    return this._urls[this._urlIndex];
  }

  /** Opens the WebSocket and joins; resolves on `welcome`. */
  _open(token) {
    const WS = this.options.WebSocket || globalThis.WebSocket;
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (err) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(err);
      };
      const timer = setTimeout(() => {
        fail(new TurnpikeError("connect_failed", `no welcome within ${CONNECT_TIMEOUT_MS} ms`));
        ws.close();
      }, CONNECT_TIMEOUT_MS);
      let ws;
      try {
        ws = new WS(this.url, [SUBPROTOCOL, `turnpike.bearer.${token}`]);
      } catch (e) {
        fail(new TurnpikeError("connect_failed", String(e?.message || e)));
        return;
      }
      ws.binaryType = "arraybuffer";
      this._ws = ws;
      ws.onopen = () => {
        const join = { type: "join", public_key: this.publicKey };
        if (this.options.attestation) join.attestation = this.options.attestation;
        ws.send(JSON.stringify(join));
      };
      ws.onmessage = (e) => {
        if (this._ws !== ws) return;
        if (typeof e.data === "string") {
          let msg;
          try {
            msg = JSON.parse(e.data);
          } catch {
            return;
          }
          if (!msg || typeof msg !== "object") return;
          if (!settled && msg.type === "welcome") {
            settled = true;
            clearTimeout(timer);
            this._reconnectDelay = RECONNECT_FIRST_MS;
            this._onMessage(msg);
            resolve();
            return;
          }
          if (!settled && msg.type === "error" && msg.ref === "join") {
            fail(new TurnpikeError(msg.code || "connect_failed", msg.message));
            ws.close(1000);
            return;
          }
          this._onMessage(msg, e.data.length);
        } else {
          this._onBinary(new Uint8Array(e.data));
        }
      };
      ws.onclose = (e) => {
        if (this._ws !== ws) return;
        this._ws = null;
        if (!settled) {
          fail(new TurnpikeError(e.code === 4003 ? "token_expired" : "connect_failed", `the registry closed the connection (${e.code}${e.reason ? " " + e.reason : ""})`));
          return;
        }
        this._onDisconnect(e.code, e.reason);
      };
    });
  }

  _onDisconnect(code, reason) {
    if (this._closed) return;
    if (code === 4001) {
      // Another connection took our peer id: reconnecting would replace it in turn.
      this.emit("error", new TurnpikeError("replaced", "another connection joined with this peer id"));
      this._giveUp();
      return;
    }
    if (code === 4006) {
      // An operator disconnected this peer (admin API): coming back would defeat that.
      this.emit("error", new TurnpikeError("disconnected", `an operator disconnected this peer${reason ? " (" + reason + ")" : ""}`));
      this._giveUp();
      return;
    }
    if (code === 4007) {
      // The server's memory budget for this peer ran out (it read too slowly): say so, then
      // reconnect like after any lost connection (what was queued for it is gone).
      this.emit("error", new TurnpikeError("over_budget", `the registry closed the connection: more was queued for this peer than its memory budget${reason ? " (" + reason + ")" : ""}`));
    }
    if (code === 4003 && typeof this.options.getToken !== "function") {
      this.emit("error", new TurnpikeError("token_expired", "the token expired and no getToken was given"));
      this._giveUp();
      return;
    }
    this.emit("disconnected", { code, reason });
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    // The next node first: the one we lost is probably the one that went away.
    this._urlIndex = (this._urlIndex + 1) % this._urls.length;
    const delay = this._reconnectDelay;
    this._reconnectDelay = Math.min(this._reconnectDelay * 2, RECONNECT_MAX_MS);
    this._reconnectTimer = setTimeout(async () => {
      if (this._closed) return;
      let token;
      try {
        token = await this._freshToken();
      } catch (e) {
        this.emit("error", new TurnpikeError("token_expired", `getToken failed: ${e?.message || e}`));
        this._scheduleReconnect();
        return;
      }
      try {
        await this._open(token);
        this.emit("reconnected", {});
        for (const link of this._links.values()) link._sessionReconnected();
      } catch (e) {
        if (this._closed) return;
        if (e.code === "token_expired" && typeof this.options.getToken !== "function") {
          this.emit("error", e);
          this._giveUp();
          return;
        }
        this._scheduleReconnect();
      }
    }, delay);
  }

  _giveUp() {
    this._closed = true;
    for (const link of [...this._links.values()]) link._close("session_closed");
    this.emit("close", {});
  }

  async _reauth() {
    try {
      const token = await this._freshToken();
      if (typeof this.options.getToken !== "function") throw new Error("no getToken");
      this._sendJson({ type: "reauth", token });
    } catch (e) {
      this.emit("error", new TurnpikeError("token_expired", `the token expires and no fresh one came: ${e?.message || e}`));
    }
  }

  _sendJson(message) {
    if (!this._ws || this._ws.readyState !== 1) return false;
    this._ws.send(JSON.stringify(message));
    return true;
  }

  _addPeer(p) {
    if (typeof p?.peer_id !== "string" || typeof p.public_key !== "string") return;
    const key = fromBase64(p.public_key);
    if (!key || key.length !== 32) return;
    this._peers.set(p.peer_id, { peerId: p.peer_id, publicKey: p.public_key, key, attestation: p.attestation });
    this._departed.delete(p.peer_id);
  }

  /** A registry message; `size` is the length of its JSON text. */
  _onMessage(msg, size = 0) {
    switch (msg.type) {
      case "welcome": {
        this.peerId = msg.peer_id;
        this.project = msg.project;
        this.limits = msg.limits || null;
        if (Array.isArray(msg.ice_servers)) this.welcomeIceServers = msg.ice_servers;
        this._peers.clear();
        for (const p of msg.peers || []) this._addPeer(p);
        for (const link of this._links.values()) link._peerChanged();
        return;
      }
      case "peer_joined": {
        this._addPeer(msg);
        const peer = this._peers.get(msg.peer_id);
        if (peer) this.emit("peer_joined", { peerId: peer.peerId, publicKey: peer.publicKey });
        this._links.get(msg.peer_id)?._peerChanged(true);
        return;
      }
      case "peer_left":
        const left = this._peers.get(msg.peer_id);
        if (left) {
          this._peers.delete(msg.peer_id);
          this._departed.delete(msg.peer_id);
          this._departed.set(msg.peer_id, left);
          if (this._departed.size > MAX_DEPARTED) this._departed.delete(this._departed.keys().next().value);
          this.emit("peer_left", { peerId: msg.peer_id });
        }
        return;
      case "error": {
        const err = new TurnpikeError(msg.code || "error", msg.message);
        err.ref = msg.ref ?? null;
        if (msg.id !== undefined) err.id = msg.id;
        if (msg.to_peer_id !== undefined) err.toPeerId = msg.to_peer_id;
        if (msg.ref === "reauth") {
          const e = new TurnpikeError("token_expired", `reauth refused: ${msg.code}`);
          e.cause = err;
          this.emit("error", e);
          return;
        }
        const link = typeof msg.to_peer_id === "string" ? this._links.get(msg.to_peer_id) : null;
        if (link) link._registryError(err);
        else this.emit("error", err);
        return;
      }
      case "token_expiring":
        this._reauth();
        return;
      case "reauthed":
        if (Array.isArray(msg.ice_servers)) this.welcomeIceServers = msg.ice_servers;
        return;
      case "relay_usage":
        this.emit("relay-usage", { bytesPerSec: msg.bytes_per_sec, windowSecs: msg.window_secs, threshold: msg.threshold });
        return;
      default:
        if (SIGNAL_TYPES.has(msg.type) && typeof msg.from_peer_id === "string") this._onSignal(msg, size);
    }
  }

  _onSignal(msg, size) {
    const payload = msg.payload;
    if (!payload || typeof payload !== "object" || payload.link !== 1) {
      this.emit("signal", { type: msg.type, from: msg.from_peer_id, payload });
      return;
    }
    this._incoming(msg.from_peer_id)?._onSignal(msg.type, payload, size);
  }

  /** The link for a peer that reached us first (the `link` event), or the existing one. */
  _incoming(peerId) {
    if (this._closed || peerId === this.peerId) return null;
    let link = this._links.get(peerId);
    if (!link) {
      link = new Link(this, peerId, { initiator: false });
      this._links.set(peerId, link);
      this.emit("link", link);
    }
    return link;
  }

  _onBinary(bytes) {
    const parsed = decodeRelayFrame(bytes);
    if (parsed.error) return void this.relayDrops.malformed++;
    const peer = this._peers.get(parsed.peerId) ?? this._departed.get(parsed.peerId);
    if (!peer) return void this.relayDrops.unknown_sender++;
    const opened = open(parsed.sealed, peer.key, this.keyPair.secretKey);
    if (opened.error) return void this.relayDrops.forged++;
    if (!this._replay.accept(peer.publicKey, opened.counter)) return void this.relayDrops.replay++;
    this._incoming(parsed.peerId)?._onRelayFrame(opened.frame);
  }
}
