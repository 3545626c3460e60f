// Replays every test vector of docs/link-protocol.md §9, read from the document itself (the
// ```json link-vectors block), not from a copy: frames, malformed frames, fragmentation,
// sealing, attestation and receiver scenarios.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import nacl from "tweetnacl";

import { fromBase64, fromHex, toHex, utf8 } from "../src/bytes.js";
import { decodeFrame, encodeFrame, fragmentRanges, HEADER_BYTES, MAX_FRAME_BYTES, MAX_FRAGMENT_PAYLOAD, MAX_MESSAGE_BYTES, MAX_NUMBER } from "../src/frame.js";
import { seal, open, decodeRelayFrame, encodeRelayFrame } from "../src/seal.js";
import { verifyAttestation, decodeIssuerKeys } from "../src/attest.js";
import { LinkCore } from "../src/core/link.js";

const doc = readFileSync(new URL("../../../docs/link-protocol.md", import.meta.url), "utf8");
const block = doc.match(/```json link-vectors\n([\s\S]*?)\n```/);
assert.ok(block, "docs/link-protocol.md has a ```json link-vectors block");
const V = JSON.parse(block[1]);

// The vectors name the number field by kind; the codec calls it `number`.
function fromVector(v) {
  const number = v.seq ?? v.ack ?? v.nonce ?? v.last_seq;
  const f = { kind: v.kind, srcEpoch: v.src_epoch, dstEpoch: v.dst_epoch, number };
  if (v.kind === "data") Object.assign(f, { end: v.end, binary: v.binary, payload: fromHex(v.payload_hex) });
  return f;
}

test("limits match the codec", () => {
  assert.deepEqual(V.limits, {
    header_bytes: HEADER_BYTES,
    max_frame_bytes: MAX_FRAME_BYTES,
    max_fragment_payload: MAX_FRAGMENT_PAYLOAD,
    max_message_bytes: MAX_MESSAGE_BYTES,
    max_number: MAX_NUMBER,
  });
});

test("frames encode to their hex and decode back", () => {
  const names = Object.keys(V.frames);
  assert.ok(names.length >= 7);
  for (const name of names) {
    const { frame, hex } = V.frames[name];
    const f = fromVector(frame);
    assert.equal(toHex(encodeFrame(f)), hex, name);
    const back = decodeFrame(fromHex(hex));
    assert.ok(back.frame, `${name}: ${back.error}`);
    const got = { ...back.frame };
    if (got.payload) got.payload = toHex(got.payload);
    const want = { ...f };
    if (want.payload) want.payload = toHex(want.payload);
    assert.deepEqual(got, want, name);
  }
});

test("malformed frames are refused", () => {
  assert.ok(V.bad.length >= 9);
  for (const [name, hex] of V.bad) {
    const r = decodeFrame(fromHex(hex));
    assert.ok(r.error && !r.frame, `${name} must be refused`);
  }
  // And the limit the vectors cannot show in a line: one byte above 16,384.
  const big = new Uint8Array(MAX_FRAME_BYTES + 1);
  big[0] = 1;
  big[5] = 1;
  big[17] = 1;
  assert.ok(decodeFrame(big).error);
  assert.ok(decodeFrame(big.subarray(0, MAX_FRAME_BYTES)).frame);
});

test("fragments split as the vectors say", () => {
  for (const { message_bytes, fragments, last_fragment_payload } of V.fragments) {
    const ranges = fragmentRanges(message_bytes);
    assert.equal(ranges.length, fragments, `${message_bytes} bytes`);
    assert.equal(ranges[ranges.length - 1][1], last_fragment_payload, `${message_bytes} bytes`);
  }
});

test("a relay blob seals and opens as the vector says", () => {
  const s = V.seal;
  const senderSk = fromBase64(s.sender_secret_key);
  const recipientSk = fromBase64(s.recipient_secret_key);
  assert.equal(toHex(nacl.box.keyPair.fromSecretKey(senderSk).publicKey), toHex(fromBase64(s.sender_public_key)));
  const sealed = seal(s.counter, fromHex(s.frame_hex), fromHex(s.nonce_hex), fromBase64(s.recipient_public_key), senderSk);
  assert.equal(toHex(sealed), s.box_hex);
  const opened = open(fromHex(s.box_hex), fromBase64(s.sender_public_key), recipientSk);
  assert.equal(opened.counter, s.counter);
  assert.equal(toHex(opened.frame), s.frame_hex);
  // The plaintext is [counter][frame].
  const plain = nacl.box.open(fromHex(s.box_hex).subarray(24), fromHex(s.nonce_hex), fromBase64(s.sender_public_key), recipientSk);
  assert.equal(toHex(plain), s.plaintext_hex);
  assert.equal(toHex(encodeRelayFrame("bob", sealed)), s.relay_frame_to_bob_hex);
  const parsed = decodeRelayFrame(fromHex(s.relay_frame_to_bob_hex));
  assert.equal(parsed.peerId, "bob");
  assert.equal(toHex(parsed.sealed), s.box_hex);
  // Another sender key does not open it.
  const other = nacl.box.keyPair();
  assert.equal(open(fromHex(s.box_hex), other.publicKey, recipientSk).error, "forged");
});

test("attestations verify, and every refused variant gives its reason", () => {
  const a = V.attest;
  const trustedKeys = decodeIssuerKeys([a.issuer_public_key]);
  const base = { trustedKeys, peerId: a.sub, project: a.project, publicKey: a.pk, nowSecs: a.now };
  assert.deepEqual(verifyAttestation(a.attestation, base), { ok: true });
  assert.ok(a.refused.length >= 5);
  for (const r of a.refused) {
    const expected = { ...base, publicKey: r.pk ?? a.pk, peerId: r.sub ?? a.sub, nowSecs: r.now ?? a.now };
    assert.deepEqual(verifyAttestation(r.attestation, expected), { ok: false, reason: r.error }, r.why);
  }
  assert.equal(verifyAttestation(undefined, base).reason, "missing");
  assert.equal(verifyAttestation("a.b", base).reason, "malformed");
  assert.equal(verifyAttestation(a.attestation, { ...base, project: "other" }).reason, "identity_mismatch");
  const stranger = nacl.sign.keyPair().publicKey;
  assert.equal(verifyAttestation(a.attestation, { ...base, trustedKeys: [stranger] }).reason, "bad_signature");
});

test("receiver scenarios deliver, acknowledge and reply as the vectors say", () => {
  assert.ok(V.receive.length >= 6);
  for (const scenario of V.receive) {
    const core = new LinkCore({ epoch: scenario.local_epoch, now: 0, fallbackAfterMs: 1e9 });
    let now = 0;
    for (const [i, step] of scenario.steps.entries()) {
      const where = `${scenario.name}, step ${i + 1}`;
      now += 1;
      core.handleFrame(now, step.path, encodeFrame(fromVector(step.frame)));
      const delivered = [];
      const sent = [];
      for (let e; (e = core.pollEvent()); ) {
        assert.notEqual(e.type, "error", `${where}: ${e.message}`);
        if (e.type === "message") delivered.push(typeof e.data === "string" ? { text: e.data } : { hex: toHex(e.data) });
      }
      for (let t; (t = core.pollTransmit(now)); ) sent.push(t);
      assert.deepEqual(delivered, step.deliver, where);
      assert.equal(core.receiver.ack, step.ack, where);
      if (step.reply) {
        const want = toHex(encodeFrame(fromVector(step.reply)));
        assert.ok(sent.some((t) => t.path === step.path && toHex(t.frame) === want), `${where}: reply ${want} on ${step.path}`);
      }
    }
  }
});

test("text payloads are UTF-8", () => {
  assert.equal(toHex(utf8("é")), "c3a9");
});
