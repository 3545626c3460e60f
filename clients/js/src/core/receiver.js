// The receiving half of the link core (docs/link-protocol.md §3): the next expected seq, the
// reorder buffer (at most 256 frames ahead), reassembly of fragments (at most 1 MiB), and when
// to acknowledge (every 8 DATA frames, 20 ms after an unacknowledged one, at once after a
// duplicate or a filled gap). Pure: no clock, no I/O.

import { fromUtf8 } from "../bytes.js";
import { MAX_MESSAGE_BYTES } from "../frame.js";

export const REORDER_WINDOW = 256;
export const ACK_EVERY = 8;
export const ACK_DELAY_MS = 20;

/** Receive state for one remote epoch. */
export class Receiver {
  constructor() {
    this.reset();
  }

  /** Starts over (a new remote epoch). */
  reset() {
    this.next = 1;
    /** @type {Map<number, object>} */
    this.reorder = new Map();
    this.parts = [];
    this.partBytes = 0;
    this.partBinary = false;
    this.unacked = 0;
    this.ackDue = null;
    this.ackPath = null;
  }

  /** The cumulative ack (the last seq delivered in order). */
  get ack() {
    return this.next - 1;
  }

  /**
   * A DATA frame on `path`. Calls `out.deliver(data)` for each completed message,
   * `out.error(message, fatal)` for a protocol error, `out.ackNow(path)` when an ACK is due at once.
   */
  onData(now, path, frame, out) {
    const seq = frame.number;
    if (seq < this.next) {
      out.ackNow(path);
      return;
    }
    if (seq > this.next) {
      if (seq - this.next <= REORDER_WINDOW && !this.reorder.has(seq)) {
        this.reorder.set(seq, { ...frame, payload: frame.payload.slice() });
      }
      return;
    }
    let filledGap = false;
    if (!this.take(frame, out)) return;
    while (this.reorder.has(this.next)) {
      const f = this.reorder.get(this.next);
      this.reorder.delete(this.next);
      filledGap = true;
      if (!this.take(f, out)) return;
    }
    this.unacked++;
    this.ackPath = path;
    if (filledGap || this.unacked >= ACK_EVERY) {
      out.ackNow(path);
    } else if (this.ackDue === null) {
      this.ackDue = now + ACK_DELAY_MS;
    }
  }

  /** Appends an in-order fragment; false when the link must close. */
  take(frame, out) {
    this.next++;
    if (this.parts.length === 0) this.partBinary = frame.binary;
    this.partBytes += frame.payload.length;
    if (this.partBytes > MAX_MESSAGE_BYTES) {
      out.error(`a message above 1 MiB (${this.partBytes} bytes so far)`, true);
      return false;
    }
    this.parts.push(frame.payload.slice());
    if (!frame.end) return true;
    const bytes = new Uint8Array(this.partBytes);
    let o = 0;
    for (const p of this.parts) {
      bytes.set(p, o);
      o += p.length;
    }
    const binary = this.partBinary;
    this.parts = [];
    this.partBytes = 0;
    if (binary) {
      out.deliver(bytes);
    } else {
      const text = fromUtf8(bytes);
      if (text === null) out.error("a text message that is not valid UTF-8", false);
      else out.deliver(text);
    }
    return true;
  }

  /** The ACK was sent: nothing is pending. */
  acked() {
    this.unacked = 0;
    this.ackDue = null;
  }
}
