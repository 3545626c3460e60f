// Key attestation (docs/link-protocol.md §5): an issuer-signed compact JWS saying "peer `sub`
// of `project` owns X25519 key `pk` until `exp`". Verified with Ed25519
// (nacl.sign.detached.verify) against the app's trusted issuer keys, so a compromised
// registry cannot swap a peer's key unnoticed. Pure: the time comes in as an argument.

import nacl from "tweetnacl";
import { fromBase64, fromBase64Url, fromUtf8, utf8 } from "./bytes.js";

/** The JWS header `typ` an attestation must carry. */
export const ATTESTATION_TYPE = "turnpike-attest+jwt";

function parseJson(bytes) {
  const text = bytes && fromUtf8(bytes);
  if (text === null || text === undefined) return null;
  try {
    const v = JSON.parse(text);
    return v && typeof v === "object" && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}

/**
 * Decodes trusted issuer keys (base64 of raw 32-byte Ed25519 public keys); throws a
 * TypeError naming the bad one.
 */
export function decodeIssuerKeys(keys) {
  return (keys || []).map((k) => {
    const raw = fromBase64(k);
    if (!raw || raw.length !== 32) throw new TypeError(`trustedIssuerKeys: not a 32-byte base64 key: ${k}`);
    return raw;
  });
}

/**
 * Verifies an attestation.
 * @param {string | undefined | null} attestation compact JWS
 * @param {{ trustedKeys: Uint8Array[], peerId: string, project: string, publicKey: string, nowSecs: number }} expected
 *   `publicKey` is the key the registry announced (base64), `nowSecs` UNIX seconds
 * @returns {{ ok: true } | { ok: false, reason: "missing"|"malformed"|"wrong_type"|"bad_signature"|"expired"|"identity_mismatch"|"key_mismatch" }}
 */
export function verifyAttestation(attestation, expected) {
  if (attestation === undefined || attestation === null || attestation === "") {
    return { ok: false, reason: "missing" };
  }
  if (typeof attestation !== "string" || attestation.length > 8192) {
    return { ok: false, reason: "malformed" };
  }
  const parts = attestation.split(".");
  if (parts.length !== 3) return { ok: false, reason: "malformed" };
  const header = parseJson(fromBase64Url(parts[0]));
  const claims = parseJson(fromBase64Url(parts[1]));
  const signature = fromBase64Url(parts[2]);
  if (!header || !claims || !signature || signature.length !== 64) {
    return { ok: false, reason: "malformed" };
  }
  if (header.alg !== "EdDSA" || header.typ !== ATTESTATION_TYPE) {
    return { ok: false, reason: "wrong_type" };
  }
  const signed = utf8(`${parts[0]}.${parts[1]}`);
  const verified = expected.trustedKeys.some((key) => nacl.sign.detached.verify(signed, signature, key));
  if (!verified) return { ok: false, reason: "bad_signature" };
  if (typeof claims.exp !== "number" || typeof claims.sub !== "string" || typeof claims.pk !== "string") {
    return { ok: false, reason: "malformed" };
  }
  // `exp` must lie in the future. The §9 vectors refuse an attestation one second past `exp`,
  // so no skew is granted here (see the README: the prose's 30 s would accept it).
  if (!(claims.exp > expected.nowSecs)) return { ok: false, reason: "expired" };
  if (claims.sub !== expected.peerId || claims.project !== expected.project) {
    return { ok: false, reason: "identity_mismatch" };
  }
  if (claims.pk !== expected.publicKey) return { ok: false, reason: "key_mismatch" };
  return { ok: true };
}
