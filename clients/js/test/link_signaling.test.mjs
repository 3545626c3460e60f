// The link's signaling I/O against a peer connection that behaves as Chromium's does where it
// matters here: every description and candidate operation waits in one queue, and its state
// check runs when its turn comes, not when it was called.
import { test } from "node:test";
import assert from "node:assert/strict";

import { Link, MAX_WAITING_SIGNAL_BYTES, WAITING_SIGNAL_OVERHEAD } from "../src/link.js";

class QueuedPeerConnection {
  constructor() {
    this.signalingState = "stable";
    this.connectionState = "new";
    this.iceConnectionState = "new";
    this.localDescription = null;
    this.remoteDescription = null;
    this.candidates = [];
    this._operations = Promise.resolve();
    // Chromium asks for negotiation after the first data channel is created.
    setTimeout(() => this.onnegotiationneeded?.(), 0);
  }

  createDataChannel() {
    return { readyState: "connecting", bufferedAmount: 0, send() {}, close() {} };
  }

  _queue(operation) {
    // Each operation takes a few milliseconds, as applying SDP does.
    const done = this._operations.then(() => new Promise((r) => setTimeout(r, 3))).then(operation);
    this._operations = done.catch(() => {});
    return done;
  }

  setLocalDescription() {
    return this._queue(() => {
      const type = this.signalingState === "have-remote-offer" ? "answer" : "offer";
      this.localDescription = { type, sdp: `v=0 ${type}`, toJSON: () => ({ type, sdp: `v=0 ${type}` }) };
      this.signalingState = type === "offer" ? "have-local-offer" : "stable";
    });
  }

  setRemoteDescription(d) {
    return this._queue(() => {
      if (d.type === "answer" && this.signalingState !== "have-local-offer") {
        throw new Error(`Failed to set remote answer sdp: Called in wrong state: ${this.signalingState}`);
      }
      this.remoteDescription = d;
      this.signalingState = d.type === "offer" ? "have-remote-offer" : "stable";
    });
  }

  addIceCandidate(c) {
    return this._queue(() => {
      if (!this.remoteDescription) throw new Error("The remote description was null");
      this.candidates.push(c);
    });
  }

  restartIce() {}
  close() {
    this.connectionState = "closed";
  }
  async getStats() {
    return new Map();
  }
}

function fakeSession() {
  return {
    peerId: "browser",
    limits: null,
    signals: [],
    options: { fallbackAfterMs: 10000, maxBufferedBytes: 1 << 20, sendTimeoutMs: 30000, RTCPeerConnection: QueuedPeerConnection },
    _relayVerdict: () => ({ ok: false, reason: "no key yet" }),
    _iceServers: () => [],
    _signal(type, to, body) {
      this.signals.push({ type, to, body });
    },
    _sendRelay() {},
    _forget() {},
  };
}

async function until(what, check) {
  for (let i = 0; i < 1000; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.fail(`timed out waiting for ${what}`);
}

// Waits until the peer connection has had nothing queued for a while.
async function settled(link) {
  for (let i = 0, ops = null; i < 100 && ops !== link.pc._operations; i++) {
    ops = link.pc._operations;
    await ops;
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function offeringLink() {
  const session = fakeSession();
  const link = new Link(session, "rust", { initiator: true });
  const errors = [];
  link.on("error", (e) => errors.push(e));
  await until("the offer", () => session.signals.some((s) => s.type === "webrtc_offer"));
  return { session, link, errors };
}

// As the session hands a registry message to its link: with the length of its JSON text.
function deliver(link, type, payload) {
  const size = JSON.stringify({ type, from_peer_id: "rust", payload }).length;
  link._onSignal(type, payload, size);
  return size;
}

const answer = (epoch) => ({ link: 1, epoch, description: { type: "answer", sdp: "v=0 answer" } });
const candidate = (epoch, n) => ({ link: 1, epoch, candidate: { candidate: `candidate:${n} 1 udp 1 127.0.0.1 ${9000 + n} typ host` } });

test("two answers to one offer arriving back to back: the first applies, the second is dropped without an error", async () => {
  const { link, errors } = await offeringLink();
  // As when the peer answered our offer and then the copy we sent again when it joined.
  deliver(link, "webrtc_answer", answer(7));
  deliver(link, "webrtc_answer", answer(7));
  await settled(link);
  assert.equal(link.pc.signalingState, "stable");
  assert.deepEqual(errors.map((e) => e.message), []);
  link.close();
});

test("candidates that arrive with the answer are added after it, all of them, in order", async () => {
  const { link, errors } = await offeringLink();
  deliver(link, "webrtc_ice_candidate", candidate(7, 1));
  deliver(link, "webrtc_answer", answer(7));
  deliver(link, "webrtc_ice_candidate", candidate(7, 2));
  deliver(link, "webrtc_ice_candidate", candidate(7, 3));
  await settled(link);
  assert.deepEqual(
    link.pc.candidates.map((c) => c.candidate.split(" ")[0]),
    ["candidate:1", "candidate:2", "candidate:3"],
  );
  assert.deepEqual(errors.map((e) => e.message), []);
  link.close();
});

test("a flood of signaling messages is bounded in bytes: past the budget, each is refused with an error", async () => {
  const { link, errors } = await offeringLink();
  let waiting = deliver(link, "webrtc_answer", answer(7)) + WAITING_SIGNAL_OVERHEAD;
  // Candidates carrying 16 KB of padding each, as a hostile peer may send.
  let accepted = 0;
  for (let n = 0; n < 100; n++) {
    const cost = deliver(link, "webrtc_ice_candidate", { ...candidate(7, n), pad: "x".repeat(16000) }) + WAITING_SIGNAL_OVERHEAD;
    if (waiting + cost <= MAX_WAITING_SIGNAL_BYTES) {
      waiting += cost;
      accepted++;
    }
  }
  assert.ok(accepted > 50 && accepted < 100, `${accepted} accepted`);
  assert.equal(errors.length, 100 - accepted);
  assert.ok(errors.every((e) => e.code === "negotiation_failed" && /bytes of signaling already waiting/.test(e.message)));
  await settled(link);
  assert.equal(link.pc.candidates.length, accepted);
  // Once applied, the budget is free again.
  deliver(link, "webrtc_ice_candidate", candidate(7, 1000));
  await settled(link);
  assert.equal(link.pc.candidates.length, accepted + 1);
  assert.equal(errors.length, 100 - accepted);
  link.close();
});
