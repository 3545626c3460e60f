// The sending half of the link core (docs/link-protocol.md §3): the unacked buffer (bounded in
// bytes, with back-pressure on `send`), fragmentation, sequence numbers, cumulative acks, the
// send cursor that path switches and retransmission timeouts rewind, renumbering when the
// peer restarts. Pure: no clock, no I/O.

import { utf8 } from "../bytes.js";
import { HEADER_BYTES, MAX_MESSAGE_BYTES, fragmentRanges } from "../frame.js";

/**
 * @typedef {object} Fragment
 * @property {number} seq
 * @property {Uint8Array} payload
 * @property {boolean} end
 * @property {boolean} binary
 * @property {number} bytes   frame bytes (header + payload)
 * @property {number} sentAt  when last sent on the relay (for RTT and RTO)
 * @property {number} sends   relay sends (an RTT sample is taken only from a single send)
 */

/** The unacked buffer and the send cursor. */
export class Sender {
  /**
   * @param {{ maxBufferedBytes: number, sendTimeoutMs: number, emit: (event: object) => void }} options
   */
  constructor({ maxBufferedBytes, sendTimeoutMs, emit }) {
    this.maxBufferedBytes = maxBufferedBytes;
    this.sendTimeoutMs = sendTimeoutMs;
    this.emit = emit;
    /** Accepted messages not fully acknowledged, oldest first. */
    this.messages = [];
    /** @type {Fragment[]} unacknowledged fragments; frags[head] has seq acked + 1 */
    this.frags = [];
    this.head = 0;
    this.nextSeq = 1;
    this.acked = 0;
    this.cursor = 1;
    this.buffered = 0;
    this.inflight = 0;
    /** Sends waiting for room: { token, bytes, binary, size, deadline }. */
    this.waiting = [];
    this.sentMessages = 0;
  }

  /** A new `send`: rejected at once when too large, else accepted or queued until it fits. */
  offer(now, token, data) {
    const binary = typeof data !== "string";
    const bytes = binary ? new Uint8Array(data) : utf8(data); // a copy: the app may reuse its buffer
    if (bytes.length > MAX_MESSAGE_BYTES) {
      this.emit({ type: "rejected", token, code: "message_too_large", message: `${bytes.length} bytes is above the 1 MiB limit` });
      return;
    }
    this.waiting.push({ token, bytes, binary, size: bytes.length, deadline: now + this.sendTimeoutMs });
    this.pump();
  }

  /** Accepts waiting sends, in order, while they fit. */
  pump() {
    while (this.waiting.length > 0) {
      const w = this.waiting[0];
      if (this.buffered > 0 && this.buffered + w.size > this.maxBufferedBytes) return;
      this.waiting.shift();
      this.accept(w);
      this.emit({ type: "accepted", token: w.token });
    }
  }

  accept({ bytes, binary, size }) {
    const message = { bytes, binary, size, lastSeq: 0 };
    for (const [offset, length] of fragmentRanges(size)) {
      const payload = bytes.subarray(offset, offset + length);
      message.lastSeq = this.nextSeq;
      this.frags.push({ seq: this.nextSeq++, payload, end: false, binary, bytes: HEADER_BYTES + length, sentAt: 0, sends: 0 });
    }
    this.frags[this.frags.length - 1].end = true;
    this.messages.push(message);
    this.buffered += size;
    this.sentMessages++;
  }

  /** Rejects sends that waited past their deadline. */
  expire(now) {
    while (this.waiting.length > 0 && this.waiting[0].deadline <= now) {
      const w = this.waiting.shift();
      this.emit({ type: "rejected", token: w.token, code: "send_timeout", message: `the send buffer stayed full for ${this.sendTimeoutMs} ms` });
    }
  }

  /** Rejects every waiting send with `code`. */
  rejectAll(code, message) {
    for (const w of this.waiting.splice(0)) this.emit({ type: "rejected", token: w.token, code, message });
  }

  /** The earliest send deadline, or null. */
  nextDeadline() {
    return this.waiting.length > 0 ? this.waiting[0].deadline : null;
  }

  /** The fragment at the cursor (the next to send), or null. */
  peek() {
    const i = this.head + (this.cursor - this.acked - 1);
    return i < this.frags.length ? this.frags[i] : null;
  }

  /** Moves the cursor past the fragment `peek` returned. */
  advance(fragment) {
    this.cursor++;
    this.inflight += fragment.bytes;
  }

  /** Whether anything is unacknowledged. */
  hasUnacked() {
    return this.head < this.frags.length;
  }

  /** Sends every unacknowledged fragment again, from the first one. */
  rewind() {
    this.cursor = this.acked + 1;
    this.inflight = 0;
  }

  /**
   * A cumulative ack. Returns `{ progress, sample }`: whether it released anything, and the
   * time the newest covered fragment was sent when it was sent once on the relay.
   */
  onAck(ack) {
    if (ack <= this.acked || ack >= this.nextSeq) return { progress: false, sample: null };
    let sample = null;
    while (this.head < this.frags.length && this.frags[this.head].seq <= ack) {
      const f = this.frags[this.head++];
      if (f.seq < this.cursor) this.inflight -= f.bytes;
      if (f.seq === ack && f.sends === 1) sample = f.sentAt;
    }
    this.acked = ack;
    if (this.cursor <= ack) {
      this.cursor = ack + 1;
      this.inflight = 0;
    }
    if (this.inflight < 0) this.inflight = 0;
    while (this.messages.length > 0 && this.messages[0].lastSeq <= ack) {
      this.buffered -= this.messages.shift().size;
    }
    if (this.head > 1024 && this.head * 2 > this.frags.length) {
      this.frags = this.frags.slice(this.head);
      this.head = 0;
    }
    this.pump();
    return { progress: true, sample };
  }

  /**
   * The peer restarted: every message not fully acknowledged is numbered again from seq 1 and
   * sent again from its first fragment.
   */
  renumber() {
    const messages = this.messages;
    this.messages = [];
    this.frags = [];
    this.head = 0;
    this.nextSeq = 1;
    this.acked = 0;
    this.cursor = 1;
    this.buffered = 0;
    this.inflight = 0;
    const sent = this.sentMessages;
    for (const m of messages) this.accept(m);
    this.sentMessages = sent;
  }

  /** The last seq sent (for CLOSE). */
  lastSeq() {
    return this.nextSeq - 1;
  }
}
