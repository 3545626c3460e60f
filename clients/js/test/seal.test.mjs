// Sealing with the per-sender counter, replay rejection, forged blobs, the relay frame, and the
// event emitter.
import { test } from "node:test";
import assert from "node:assert/strict";
import nacl from "tweetnacl";

import { Counter, ReplayTable, decodeRelayFrame, encodeRelayFrame, open, seal } from "../src/seal.js";
import { Emitter } from "../src/emitter.js";

test("a counter starts at the clock in microseconds and strictly increases", () => {
  const c = new Counter();
  assert.equal(c.next(1764000000000), 1764000000000000);
  assert.equal(c.next(1764000000000), 1764000000000001); // same millisecond: still higher
  assert.equal(c.next(1763999999000), 1764000000000002); // the clock went back: still higher
  assert.equal(c.next(1764000000005), 1764000000005000);
});

test("a replayed blob opens but is rejected; a forged one does not open", () => {
  const alice = nacl.box.keyPair();
  const bob = nacl.box.keyPair();
  const counter = new Counter();
  const table = new ReplayTable(2);
  const frame = new Uint8Array([1, 2, 3]);
  const blobs = [0, 1, 2].map((i) => seal(counter.next(1000 + i), frame, nacl.randomBytes(24), bob.publicKey, alice.secretKey));
  const accept = (blob) => {
    const o = open(blob, alice.publicKey, bob.secretKey);
    return o.error || (table.accept("alice", o.counter) ? "ok" : "replay");
  };
  assert.equal(accept(blobs[0]), "ok");
  assert.equal(accept(blobs[2]), "ok");
  assert.equal(accept(blobs[2]), "replay");
  assert.equal(accept(blobs[1]), "replay"); // lower than the highest accepted
  const tampered = blobs[0].slice();
  tampered[tampered.length - 1] ^= 1;
  assert.equal(accept(tampered), "forged");
  // Sealed by someone else with bob's key as recipient: does not open as alice's.
  const mallory = nacl.box.keyPair();
  const fake = seal(counter.next(5000), frame, nacl.randomBytes(24), bob.publicKey, mallory.secretKey);
  assert.equal(accept(fake), "forged");
  assert.equal(open(new Uint8Array(10), alice.publicKey, bob.secretKey).error, "forged");
  // The table is bounded: the least recently used sender is forgotten.
  table.accept("carol", 1);
  table.accept("dave", 1);
  assert.equal(table.highest.size, 2);
  assert.ok(!table.highest.has("alice"));
});

test("relay frames: [n][peer id][sealed]; malformed ones are refused", () => {
  const sealed = new Uint8Array(40);
  const f = encodeRelayFrame("bob", sealed);
  assert.deepEqual(decodeRelayFrame(f), { peerId: "bob", sealed });
  assert.ok(decodeRelayFrame(new Uint8Array(0)).error);
  assert.ok(decodeRelayFrame(new Uint8Array([0, 1, 2])).error);
  assert.ok(decodeRelayFrame(new Uint8Array([3, 0x62, 0x20, 0x62, ...sealed])).error); // a space
  assert.ok(decodeRelayFrame(new Uint8Array([3, 0x62, 0x6f, 0x62, 1, 2])).error); // too short
});

test("the emitter calls handlers in order, survives a throwing one, and removes handlers", () => {
  const e = new Emitter();
  const calls = [];
  const off = e.on("x", (v) => calls.push(["a", v]));
  e.on("x", () => {
    throw new Error("handler bug");
  });
  e.on("x", (v) => calls.push(["c", v]));
  e.once("x", (v) => calls.push(["once", v]));
  const reported = [];
  const saved = globalThis.reportError;
  globalThis.reportError = (err) => reported.push(err.message);
  try {
    e.emit("x", 1);
    off();
    e.emit("x", 2);
  } finally {
    globalThis.reportError = saved;
  }
  assert.deepEqual(calls, [["a", 1], ["c", 1], ["once", 1], ["c", 2]]);
  assert.deepEqual(reported, ["handler bug", "handler bug"]);
});
