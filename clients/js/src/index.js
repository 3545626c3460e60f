// turnpike-client: the browser SDK. `connect` is the entry point; the pure parts are exported
// for tests, tools and other I/O layers.

export { connect, Session } from "./session.js";
export { Link } from "./link.js";
export { TurnpikeError } from "./errors.js";
export { LinkCore } from "./core/link.js";
export { encodeFrame, decodeFrame, MAX_MESSAGE_BYTES, MAX_FRAME_BYTES } from "./frame.js";
export { verifyAttestation } from "./attest.js";
export { Emitter } from "./emitter.js";
