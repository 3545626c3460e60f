// The SDK's one error type: every failure the app sees carries a stable `.code` (the codes of
// docs/link-protocol.md §7 and the registry's error codes); `.message` is for people.

/** An Error with a machine-readable `code`. */
export class TurnpikeError extends Error {
  /**
   * @param {string} code stable code, e.g. `send_timeout`
   * @param {string} [message] text for people
   */
  constructor(code, message) {
    super(message || code);
    this.name = "TurnpikeError";
    this.code = code;
  }
}
