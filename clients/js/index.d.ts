// Type declarations for turnpike-client (checked by test/types.test.mjs with tsc --noEmit).

/** An RTCIceServer as the registry's `welcome.ice_servers` carries it. */
export interface IceServer {
  urls: string | string[];
  username?: string;
  credential?: string;
}

/** Options of `connect`. */
export interface ConnectOptions {
  /** The registry's WebSocket URL, e.g. `wss://turn.example.com/v1/registry` (or `urls`). */
  url?: string;
  /**
   * The WebSocket URLs of several nodes of one registry cluster, tried in order at connect;
   * a lost connection reconnects to the next one. Takes precedence over `url`.
   */
  urls?: string[];
  /** A JWT for the registry (`sub` = peer id, `project`). */
  token?: string;
  /** Called for a token at connect and at every reconnect and reauth; preferred over `token`. */
  getToken?: () => Promise<string> | string;
  /** How long a link tries ICE before it falls back to the relay (default 10,000 ms). */
  fallbackAfterMs?: number;
  /** ICE servers; default: the registry's `welcome.ice_servers`. */
  iceServers?: IceServer[];
  /** `"relay"` to allow only TURN relay candidates. */
  iceTransportPolicy?: "all" | "relay";
  /** Ed25519 issuer keys (base64 of 32 bytes): seal only for peers whose key they attest. */
  trustedIssuerKeys?: string[];
  /** This peer's attestation, sent in `join` (from `turnpike token --attest`). */
  attestation?: string;
  /** This session's X25519 secret key (base64 of 32 bytes); default: a fresh key pair. */
  secretKey?: string;
  /** Bytes of unacknowledged messages a link holds (default 1 MiB). */
  maxBufferedBytes?: number;
  /** How long `send` waits for room before `send_timeout` (default 30,000 ms). */
  sendTimeoutMs?: number;
}

/** Error codes of the SDK (docs/link-protocol.md §7) and of the registry. */
export type ErrorCode =
  | "message_too_large"
  | "send_timeout"
  | "link_closed"
  | "protocol_error"
  | "not_attested"
  | "unknown_peer"
  | "undelivered"
  | "token_expired"
  | "connect_failed"
  | "negotiation_failed"
  | "session_closed"
  | "replaced"
  | "disconnected"
  | "over_budget"
  | "bad_message"
  | (string & {});

/** Every error the SDK reports or rejects with. */
export declare class TurnpikeError extends Error {
  constructor(code: string, message?: string);
  readonly code: ErrorCode;
}

export type Mode = "connecting" | "p2p" | "relay";
export type CloseReason = "local" | "remote_closed" | "session_closed" | "protocol_error";

export interface PeerInfo {
  peerId: string;
  publicKey: string;
}

export interface RelayUsage {
  bytesPerSec: number;
  windowSecs: number;
  threshold: number;
}

export interface LinkStats {
  mode: Mode | "closed";
  /** Messages accepted by `send`. */
  sent: number;
  /** Messages delivered. */
  received: number;
  /** Link-frame bytes sent and received on each path. */
  p2pBytes: number;
  relayBytes: number;
  rttMs: number | null;
  localCandidateType: string | null;
  remoteCandidateType: string | null;
}

export interface LinkEvents {
  open: (info: { mode: Mode }) => void;
  message: (data: string | Uint8Array) => void;
  mode: (mode: Mode | "closed") => void;
  close: (info: { reason: CloseReason }) => void;
  error: (error: TurnpikeError) => void;
}

/** A link to one peer. */
export interface Link {
  readonly peerId: string;
  readonly mode: Mode | "closed";
  on<E extends keyof LinkEvents>(event: E, handler: LinkEvents[E]): () => void;
  off<E extends keyof LinkEvents>(event: E, handler: LinkEvents[E]): void;
  once<E extends keyof LinkEvents>(event: E, handler: LinkEvents[E]): () => void;
  /** Resolves when the message is in the link's buffer; rejects with a TurnpikeError. */
  send(data: string | Uint8Array | ArrayBuffer | ArrayBufferView): Promise<void>;
  stats(): LinkStats;
  /** While on, send on the relay and do not return to p2p. */
  forceRelay(on: boolean): void;
  close(): void;
}

export interface SessionEvents {
  peer_joined: (peer: PeerInfo) => void;
  peer_left: (peer: { peerId: string }) => void;
  link: (link: Link) => void;
  error: (error: TurnpikeError) => void;
  "relay-usage": (usage: RelayUsage) => void;
  /** A signaling payload without `"link": 1` (not for the link layer). */
  signal: (signal: { type: string; from: string; payload: unknown }) => void;
  disconnected: (info: { code: number; reason: string }) => void;
  reconnected: (info: {}) => void;
  close: (info: {}) => void;
}

/** A joined registry session. */
export interface Session {
  /** The registry URL in use: `url`, or the current node of `urls`. */
  readonly url: string;
  readonly peerId: string;
  readonly project: string;
  readonly publicKey: string;
  peers(): PeerInfo[];
  link(peerId: string): Link;
  on<E extends keyof SessionEvents>(event: E, handler: SessionEvents[E]): () => void;
  off<E extends keyof SessionEvents>(event: E, handler: SessionEvents[E]): void;
  once<E extends keyof SessionEvents>(event: E, handler: SessionEvents[E]): () => void;
  close(): void;
}

/** Connects to the registry and joins; resolves on `welcome`. */
export declare function connect(options: ConnectOptions): Promise<Session>;
