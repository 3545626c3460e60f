// The link core driven through the simulator: exactly-once in-order delivery across path
// switches, fragmentation, back-pressure, epochs, timers, malformed input.
import { test } from "node:test";
import assert from "node:assert/strict";

import { Sim } from "./sim.mjs";
import { encodeFrame, MAX_MESSAGE_BYTES } from "../src/frame.js";
import { LinkCore } from "../src/core/link.js";

function numbered(n) {
  return `message ${n} ${"x".repeat((n * 7919) % 3000)}`; // 13 to 3,012 bytes
}

function checkExactlyOnce(received, count) {
  assert.equal(received.length, count, `received ${received.length} of ${count}`);
  for (let i = 0; i < count; i++) {
    if (received[i] !== numbered(i)) assert.fail(`message ${i} out of place: ${String(received[i]).slice(0, 20)}`);
  }
}

test("2,000 numbered messages arrive exactly once, in order, while the path goes p2p -> lossy relay -> p2p", () => {
  const sim = new Sim({ a: { fallbackAfterMs: 3000 }, b: { fallbackAfterMs: 3000 }, relayLatency: 5 });
  sim.connectP2p();
  sim.runUntil(100);
  assert.equal(sim.ends.a.core.mode, "p2p");
  assert.equal(sim.ends.b.core.mode, "p2p");
  const a = sim.ends.a;
  let next = 0;
  const sendSome = (k) => {
    for (let i = 0; i < k && next < 2000; i++, next++) a.core.send(sim.now, next, numbered(next));
  };
  sendSome(600);
  sim.runUntil(sim.now + 3);
  // The path dies in the middle of the stream: frames in flight are lost.
  sim.setP2p(false);
  const atBreak = sim.ends.b.messages.length;
  for (const end of Object.values(sim.ends)) end.core.iceStateChanged(sim.now, "disconnected");
  // The relay drops every 20th blob.
  sim.dropRelay = (_, n) => n % 20 === 0;
  sendSome(700);
  sim.runUntil(sim.now + 5000);
  assert.equal(a.core.mode, "relay");
  assert.ok(sim.ends.b.messages.length > atBreak + 100, `messages crossed the relay: ${atBreak} then ${sim.ends.b.messages.length}`);
  sendSome(200);
  sim.runUntil(sim.now + 2000);
  // The path comes back: probes on the DataChannel succeed and the link returns to p2p.
  sim.setP2p(true);
  for (const end of Object.values(sim.ends)) end.core.iceStateChanged(sim.now, "connected");
  sendSome(100);
  assert.ok(sim.runUntil(sim.now + 3000, () => a.core.mode === "p2p"), "back to p2p within a probe interval");
  sendSome(400);
  sim.runUntil(sim.now + 60000, () => sim.ends.b.messages.length === 2000 && a.core.sender.buffered === 0);
  assert.equal(a.core.mode, "p2p");
  assert.deepEqual(sim.modes("a"), ["p2p", "relay", "p2p"]);
  assert.ok(sim.relayDropped > 10, `blobs were dropped: ${sim.relayDropped}`);
  checkExactlyOnce(sim.ends.b.messages, 2000);
  assert.equal(a.accepted.size, 2000);
  assert.equal(a.rejected.size, 0);
  assert.equal(a.core.snapshot().sent, 2000);
  assert.equal(sim.ends.b.core.snapshot().received, 2000);
  assert.ok(a.core.snapshot().relayBytes > 0 && a.core.snapshot().p2pBytes > 0);
});

test("1 MiB messages are fragmented and reassembled, text and binary, on both paths", () => {
  const sim = new Sim({ a: { maxBufferedBytes: 4 * 1048576 } });
  sim.connectP2p();
  sim.runUntil(50);
  const big = new Uint8Array(MAX_MESSAGE_BYTES);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) & 0xff;
  const text = "é".repeat(MAX_MESSAGE_BYTES / 2);
  sim.ends.a.core.send(sim.now, 1, big);
  sim.ends.a.core.send(sim.now, 2, text);
  sim.runUntil(sim.now + 10);
  sim.ends.a.core.forceRelay(sim.now, true);
  sim.dropRelay = (_, n) => n % 5 === 0;
  sim.ends.a.core.send(sim.now, 3, big);
  sim.runUntil(sim.now + 60000, () => sim.ends.b.messages.length === 3);
  const [m1, m2, m3] = sim.ends.b.messages;
  assert.ok(m1 instanceof Uint8Array && m3 instanceof Uint8Array);
  assert.deepEqual(m1, big);
  assert.equal(m2, text);
  assert.deepEqual(m3, big);
  assert.equal(sim.ends.a.core.sender.lastSeq(), 3 * 65);
  // One byte more is refused at once.
  sim.ends.a.core.send(sim.now, 4, new Uint8Array(MAX_MESSAGE_BYTES + 1));
  sim.pump();
  assert.equal(sim.ends.a.rejected.get(4), "message_too_large");
});

test("back-pressure: send waits for room, then resolves; send_timeout; link_closed", () => {
  const sim = new Sim({ a: { maxBufferedBytes: 10000, sendTimeoutMs: 2000, fallbackAfterMs: 1e9 }, b: { fallbackAfterMs: 1e9 } });
  const a = sim.ends.a;
  // connecting: nothing is sent, the buffer fills.
  a.core.send(sim.now, "first", new Uint8Array(6000));
  a.core.send(sim.now, "second", new Uint8Array(6000));
  sim.pump();
  assert.ok(a.accepted.has("first"));
  assert.ok(!a.accepted.has("second") && !a.rejected.has("second"), "the second send waits");
  // The path opens before the deadline: the first is acknowledged, the second accepted.
  sim.runUntil(1000);
  sim.connectP2p();
  sim.runUntil(1500, () => a.accepted.has("second"));
  assert.ok(a.accepted.has("second"));
  assert.equal(sim.ends.b.messages.length, 1);

  // A buffer that stays full: send_timeout after sendTimeoutMs.
  sim.setP2p(false);
  a.core.send(sim.now, "third", new Uint8Array(6000));
  const start = sim.now;
  sim.runUntil(start + 5000, () => a.rejected.has("third"));
  assert.equal(a.rejected.get("third"), "send_timeout");
  assert.ok(sim.now - start >= 2000 && sim.now - start <= 2001, `rejected after ${sim.now - start} ms`);

  // A message larger than the whole buffer is accepted into an empty buffer.
  const lone = new Sim({ a: { maxBufferedBytes: 1000, fallbackAfterMs: 1e9 } });
  lone.ends.a.core.send(0, "big", new Uint8Array(5000));
  lone.ends.a.core.send(0, "next", "x");
  lone.pump();
  assert.ok(lone.ends.a.accepted.has("big"));
  assert.ok(!lone.ends.a.accepted.has("next"));
  // Closing rejects the waiting send with link_closed, and later sends too.
  lone.ends.a.core.close(0);
  lone.ends.a.core.send(0, "after", "x");
  lone.pump();
  assert.equal(lone.ends.a.rejected.get("next"), "link_closed");
  assert.equal(lone.ends.a.rejected.get("after"), "link_closed");
  assert.deepEqual(lone.ends.a.events.filter((e) => e.type === "close").map((e) => e.reason), ["local"]);
});

test("epochs: a restarted peer gets every unacknowledged message again, renumbered", () => {
  const sim = new Sim({ a: { fallbackAfterMs: 1e9 }, b: { fallbackAfterMs: 1e9 } });
  sim.connectP2p();
  sim.runUntil(50);
  for (let i = 0; i < 5; i++) sim.ends.a.core.send(sim.now, i, numbered(i));
  sim.runUntil(sim.now + 100);
  assert.equal(sim.ends.b.messages.length, 5);
  // b restarts; the channel to the old b is gone and a's next messages are never acked by it.
  sim.setP2p(false);
  for (let i = 5; i < 10; i++) sim.ends.a.core.send(sim.now, i, numbered(i));
  sim.runUntil(sim.now + 100);
  const b2 = sim.restart("b", { epoch: 0x0c0c0c0c, fallbackAfterMs: 1e9 });
  sim.setP2p(true);
  sim.connectP2p();
  // a's channel closes and reopens under the new peer connection: it probes, b2 answers with its epoch.
  sim.ends.a.core.channelClosed(sim.now);
  sim.ends.a.core.channelOpened(sim.now);
  sim.runUntil(sim.now + 5000, () => b2.messages.length === 5);
  assert.deepEqual(b2.messages, [5, 6, 7, 8, 9].map(numbered));
  assert.equal(sim.ends.a.core.remoteEpoch, 0x0c0c0c0c);
  assert.ok(sim.ends.a.core.retired.includes(0x0b0b0b0b));
  // A frame from the retired incarnation is dropped.
  const stale = encodeFrame({ kind: "data", srcEpoch: 0x0b0b0b0b, dstEpoch: 0x0a0a0a0a, number: 6, end: true, binary: false, payload: new Uint8Array([0x7a]) });
  const before = sim.ends.a.messages.length;
  sim.ends.a.core.handleFrame(sim.now, "p2p", stale);
  sim.pump();
  assert.equal(sim.ends.a.messages.length, before);
});

test("timers: fallback to relay at fallbackAfterMs (default 10 s), ICE restarts at 5 s doubling to 60 s", () => {
  const core = new LinkCore({ epoch: 7, now: 0 });
  const restarts = [];
  let now = 0;
  const modes = [];
  for (let guard = 0; guard < 100 && now < 300000; guard++) {
    const t = core.pollTimeout(now);
    assert.ok(t !== null);
    now = t;
    core.handleTimeout(now);
    for (let e; (e = core.pollEvent()); ) {
      if (e.type === "mode") modes.push([now, e.mode]);
      if (e.type === "restart_ice") restarts.push(now);
    }
  }
  assert.deepEqual(modes, [[10000, "relay"]]);
  assert.deepEqual(restarts.slice(0, 7), [15000, 25000, 45000, 85000, 145000, 205000, 265000]);

  // ICE failed: relay at once; disconnected while p2p: restartIce at once, relay when the
  // fallback timer fires without ICE back.
  const c2 = new LinkCore({ epoch: 8, now: 0, fallbackAfterMs: 2000 });
  c2.iceStateChanged(0, "failed");
  assert.equal(c2.mode, "relay");
  const c3 = new LinkCore({ epoch: 9, now: 0, fallbackAfterMs: 2000 });
  c3.iceStateChanged(0, "connected");
  c3.channelOpened(0);
  const probe = c3.pollTransmit(0);
  assert.equal(probe.path, "p2p");
  assert.equal(probe.frame[0], 3);
  c3.handleFrame(5, "p2p", encodeFrame({ kind: "probe_ack", srcEpoch: 77, dstEpoch: 9, number: Number(new DataView(probe.frame.buffer).getBigUint64(10)) }));
  assert.equal(c3.mode, "p2p");
  while (c3.pollEvent());
  c3.iceStateChanged(100, "disconnected");
  assert.equal(c3.pollEvent().type, "restart_ice");
  c3.handleTimeout(2099);
  assert.equal(c3.mode, "p2p");
  c3.handleTimeout(2100);
  assert.equal(c3.mode, "relay");
});

test("forceRelay keeps the link on the relay; off returns to p2p through a probe", () => {
  const sim = new Sim();
  sim.connectP2p();
  sim.runUntil(50);
  const a = sim.ends.a;
  a.core.forceRelay(sim.now, true);
  assert.equal(a.core.mode, "relay");
  sim.runUntil(sim.now + 5000);
  assert.equal(a.core.mode, "relay", "no probe takes it back while forced");
  a.core.forceRelay(sim.now, false);
  sim.runUntil(sim.now + 100);
  assert.equal(a.core.mode, "p2p");
});

test("malformed frames are protocol errors and the link carries on; an oversized message closes it", () => {
  const core = new LinkCore({ epoch: 10, now: 0 });
  const errors = () => {
    const out = [];
    for (let e; (e = core.pollEvent()); ) if (e.type === "error") out.push(e.code);
    return out;
  };
  core.handleFrame(1, "relay", new Uint8Array([9, 0, 0]));
  core.handleFrame(1, "p2p", new Uint8Array(20).fill(0xff));
  assert.deepEqual(errors(), ["protocol_error", "protocol_error"]);
  // Invalid UTF-8 in a text message.
  core.handleFrame(2, "p2p", encodeFrame({ kind: "data", srcEpoch: 1, dstEpoch: 10, number: 1, end: true, binary: false, payload: new Uint8Array([0xff, 0xfe]) }));
  assert.deepEqual(errors(), ["protocol_error"]);
  // Still works.
  core.handleFrame(3, "p2p", encodeFrame({ kind: "data", srcEpoch: 1, dstEpoch: 10, number: 2, end: true, binary: false, payload: new Uint8Array([0x61]) }));
  assert.equal(core.pollEvent().data, "a");
  assert.equal(core.mode, "connecting");
  // 65 fragments of 16,366 bytes without END: above 1 MiB, the link closes.
  const payload = new Uint8Array(16366);
  for (let seq = 3; seq < 3 + 66 && core.mode !== "closed"; seq++) {
    core.handleFrame(4, "p2p", encodeFrame({ kind: "data", srcEpoch: 1, dstEpoch: 10, number: seq, end: false, binary: true, payload }));
  }
  assert.equal(core.mode, "closed");
  const events = [];
  for (let e; (e = core.pollEvent()); ) events.push(e);
  assert.deepEqual(events.filter((e) => e.type === "close").map((e) => e.reason), ["protocol_error"]);
});

test("relay: retransmission after the RTO, and pacing to 90 % of the registry's rate", () => {
  const rate = 200000; // bytes per second
  const sim = new Sim({ a: { relayBytesPerSec: rate, fallbackAfterMs: 10 }, b: { fallbackAfterMs: 10 } });
  sim.setP2p(false);
  const blob = new Uint8Array(16000);
  for (let i = 0; i < 60; i++) sim.ends.a.core.send(sim.now, i, blob);
  sim.dropRelay = (_, n) => n === 3; // one early loss: recovered only by the RTO
  sim.runUntil(3000);
  const sentBytes = sim.ends.a.core.snapshot().relayBytes;
  // One second of burst plus three seconds at 90 %.
  assert.ok(sentBytes <= 0.9 * rate * 4 + 20000, `sent ${sentBytes} bytes in 3 s at ${rate} B/s`);
  assert.ok(sentBytes >= 0.9 * rate * 2.5, `paced too slowly: ${sentBytes}`);
  sim.runUntil(60000, () => sim.ends.b.messages.length === 60);
  assert.equal(sim.ends.b.messages.length, 60);
});

test("close: CLOSE on the current path; the peer closes once everything is delivered", () => {
  const sim = new Sim();
  sim.connectP2p();
  sim.runUntil(50);
  for (let i = 0; i < 3; i++) sim.ends.a.core.send(sim.now, i, numbered(i));
  sim.ends.a.core.close(sim.now);
  sim.runUntil(sim.now + 1000);
  assert.equal(sim.ends.b.messages.length, 3);
  assert.equal(sim.ends.b.core.mode, "closed");
  assert.deepEqual(sim.ends.b.events.filter((e) => e.type === "close").map((e) => e.reason), ["remote_closed"]);
});

test("relay: at most 24 frames in flight (below the registry's 32-blob queue)", () => {
  const sim = new Sim({ a: { fallbackAfterMs: 10 }, b: { fallbackAfterMs: 10 } });
  sim.setP2p(false);
  for (let i = 0; i < 200; i++) sim.ends.a.core.send(sim.now, i, numbered(i));
  let most = 0;
  const original = sim.pump.bind(sim);
  sim.pump = () => {
    original();
    const s = sim.ends.a.core.sender;
    most = Math.max(most, s.cursor - s.acked - 1);
  };
  sim.runUntil(20000, () => sim.ends.b.messages.length === 200);
  checkExactlyOnce(sim.ends.b.messages, 200);
  assert.equal(most, 24);
});
