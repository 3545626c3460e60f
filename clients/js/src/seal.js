// Sealing for the relay path (docs/link-protocol.md §5, docs/registry-protocol.md §5): the
// plaintext `[8-byte big-endian counter][link frame]` boxed with NaCl's crypto_box
// (tweetnacl's nacl.box) and a 24-byte nonce; the registry binary frame
// `[n][peer id][nonce][ciphertext]`; the per-sender replay table. Pure: the clock and the nonce
// come in as arguments.

import nacl from "tweetnacl";
import { concat, readU64, utf8, writeU64 } from "./bytes.js";

export const NONCE_BYTES = 24;
export const TAG_BYTES = 16;
export const COUNTER_BYTES = 8;

/** Bytes a sealed frame adds to a link frame, before the registry frame's `[n][peer id]`. */
export const SEAL_OVERHEAD = NONCE_BYTES + TAG_BYTES + COUNTER_BYTES;

/**
 * Seals `frame` for `recipientPublicKey`: returns `nonce || box(counter || frame)`.
 * @param {number} counter
 * @param {Uint8Array} frame
 * @param {Uint8Array} nonce 24 random bytes
 * @param {Uint8Array} recipientPublicKey
 * @param {Uint8Array} senderSecretKey
 */
export function seal(counter, frame, nonce, recipientPublicKey, senderSecretKey) {
  const plain = new Uint8Array(COUNTER_BYTES + frame.length);
  writeU64(plain, 0, counter);
  plain.set(frame, COUNTER_BYTES);
  const box = nacl.box(plain, nonce, recipientPublicKey, senderSecretKey);
  return concat(nonce, box);
}

/**
 * Opens `nonce || box`. Returns `{ counter, frame }`, or `{ error: "forged" }` when the box
 * does not open with these keys (or is too short, or its counter is out of range).
 */
export function open(sealed, senderPublicKey, recipientSecretKey) {
  if (sealed.length < NONCE_BYTES + TAG_BYTES + COUNTER_BYTES) return { error: "forged" };
  const nonce = sealed.subarray(0, NONCE_BYTES);
  const box = sealed.subarray(NONCE_BYTES);
  const plain = nacl.box.open(box, nonce, senderPublicKey, recipientSecretKey);
  if (!plain || plain.length < COUNTER_BYTES) return { error: "forged" };
  const counter = readU64(plain, 0);
  if (counter === null) return { error: "forged" };
  return { counter, frame: plain.subarray(COUNTER_BYTES) };
}

/**
 * The sender's counter: strictly increasing, starting at the clock in microseconds since 1970
 * (so a restarted sender continues above its previous values). One per session.
 */
export class Counter {
  constructor() {
    this.last = 0;
  }

  /** The next counter at wall-clock time `nowMs` (milliseconds since 1970). */
  next(nowMs) {
    this.last = Math.max(this.last + 1, Math.floor(nowMs * 1000));
    return this.last;
  }
}

/**
 * The highest counter accepted from each sender key, bounded: beyond `capacity` keys the one
 * used least recently is forgotten.
 */
export class ReplayTable {
  constructor(capacity = 4096) {
    this.capacity = capacity;
    /** @type {Map<string, number>} */
    this.highest = new Map();
  }

  /** Accepts `counter` from `senderKey` (a string) when it is above the highest seen. */
  accept(senderKey, counter) {
    const seen = this.highest.get(senderKey);
    if (seen !== undefined && counter <= seen) return false;
    this.highest.delete(senderKey);
    this.highest.set(senderKey, counter);
    if (this.highest.size > this.capacity) {
      this.highest.delete(this.highest.keys().next().value);
    }
    return true;
  }
}

/** The registry binary frame `[n][peer id][sealed]`; the peer id is 1 to 64 printable ASCII. */
export function encodeRelayFrame(peerId, sealed) {
  const id = utf8(peerId);
  if (id.length < 1 || id.length > 255) throw new Error("bad peer id");
  return concat(Uint8Array.of(id.length), id, sealed);
}

/** Parses a registry binary frame; `{ peerId, sealed }` or `{ error }`. */
export function decodeRelayFrame(bytes) {
  if (bytes.length < 1) return { error: "empty" };
  const n = bytes[0];
  if (n === 0 || bytes.length < 1 + n + NONCE_BYTES + TAG_BYTES) return { error: "too short" };
  let peerId = "";
  for (let i = 1; i <= n; i++) {
    const c = bytes[i];
    if (c < 0x21 || c > 0x7e) return { error: "bad peer id" };
    peerId += String.fromCharCode(c);
  }
  return { peerId, sealed: bytes.subarray(1 + n) };
}
