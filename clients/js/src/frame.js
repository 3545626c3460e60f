// The link frame codec (docs/link-protocol.md §2): an 18-byte big-endian header
// (kind, flags, src_epoch, dst_epoch, number) and, for DATA only, a payload. Pure: bytes in,
// objects out; a malformed frame is refused with a reason, never an exception.

import { readU64, writeU64 } from "./bytes.js";

/** Frame sizes and limits of the protocol. */
export const HEADER_BYTES = 18;
export const MAX_FRAME_BYTES = 16384;
export const MAX_FRAGMENT_PAYLOAD = MAX_FRAME_BYTES - HEADER_BYTES; // 16,366
export const MAX_MESSAGE_BYTES = 1048576;
export const MAX_NUMBER = Number.MAX_SAFE_INTEGER; // 2^53 - 1

const KINDS = ["", "data", "ack", "probe", "probe_ack", "close"];
const KIND_CODES = { data: 1, ack: 2, probe: 3, probe_ack: 4, close: 5 };
const FLAG_END = 1;
const FLAG_BINARY = 2;

/**
 * @typedef {object} Frame
 * @property {"data"|"ack"|"probe"|"probe_ack"|"close"} kind
 * @property {number} srcEpoch
 * @property {number} dstEpoch
 * @property {number} number  DATA: seq; ACK: cumulative ack; PROBE/PROBE_ACK: nonce; CLOSE: last seq
 * @property {boolean} [end]      DATA only
 * @property {boolean} [binary]   DATA only
 * @property {Uint8Array} [payload] DATA only
 */

/** Encodes a frame; throws on a value the protocol cannot carry (a bug in the caller). */
export function encodeFrame(frame) {
  const code = KIND_CODES[frame.kind];
  if (!code) throw new Error(`unknown frame kind ${frame.kind}`);
  const payload = frame.kind === "data" ? frame.payload || new Uint8Array(0) : new Uint8Array(0);
  if (HEADER_BYTES + payload.length > MAX_FRAME_BYTES) throw new Error("frame too large");
  if (!(frame.number >= 0 && frame.number <= MAX_NUMBER)) throw new Error("number out of range");
  const out = new Uint8Array(HEADER_BYTES + payload.length);
  out[0] = code;
  out[1] = frame.kind === "data" ? (frame.end ? FLAG_END : 0) | (frame.binary ? FLAG_BINARY : 0) : 0;
  const view = new DataView(out.buffer);
  view.setUint32(2, frame.srcEpoch >>> 0);
  view.setUint32(6, frame.dstEpoch >>> 0);
  writeU64(out, 10, frame.number);
  out.set(payload, HEADER_BYTES);
  return out;
}

/**
 * Decodes a frame. Returns `{ frame }`, or `{ error }` with the reason it is malformed.
 * The payload is a view into `bytes` (copy it to keep it past the caller's buffer).
 * @param {Uint8Array} bytes
 * @returns {{frame: Frame, error?: undefined} | {error: string, frame?: undefined}}
 */
export function decodeFrame(bytes) {
  if (!(bytes instanceof Uint8Array)) return { error: "not bytes" };
  if (bytes.length < HEADER_BYTES) return { error: "shorter than the 18-byte header" };
  if (bytes.length > MAX_FRAME_BYTES) return { error: "longer than 16,384 bytes" };
  const kind = KINDS[bytes[0]];
  if (!kind) return { error: `unknown kind ${bytes[0]}` };
  const flags = bytes[1];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const srcEpoch = view.getUint32(2);
  const dstEpoch = view.getUint32(6);
  if (srcEpoch === 0) return { error: "src_epoch 0" };
  if (kind !== "data" && flags !== 0) return { error: `flags on ${kind}` };
  if (kind === "data" && (flags & ~(FLAG_END | FLAG_BINARY)) !== 0) {
    return { error: "unknown flag bits" };
  }
  if (kind !== "data" && bytes.length > HEADER_BYTES) return { error: `payload on ${kind}` };
  const number = readU64(bytes, 10);
  if (number === null) return { error: "number above 2^53 - 1" };
  if (kind === "data" && number === 0) return { error: "DATA seq 0" };
  const frame = { kind, srcEpoch, dstEpoch, number };
  if (kind === "data") {
    frame.end = (flags & FLAG_END) !== 0;
    frame.binary = (flags & FLAG_BINARY) !== 0;
    frame.payload = bytes.subarray(HEADER_BYTES);
  }
  return { frame };
}

/**
 * How a message of `size` bytes splits into fragments: `[offset, length]` pairs (an empty
 * message is one empty fragment).
 */
export function fragmentRanges(size) {
  if (size === 0) return [[0, 0]];
  const out = [];
  for (let o = 0; o < size; o += MAX_FRAGMENT_PAYLOAD) {
    out.push([o, Math.min(MAX_FRAGMENT_PAYLOAD, size - o)]);
  }
  return out;
}
