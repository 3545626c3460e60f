// A typed use of the SDK's contract; `tsc --noEmit` must accept it (test/types.test.mjs).
import { connect, TurnpikeError, type Link, type LinkStats, type Mode } from "turnpike-client";

export async function chat(url: string): Promise<LinkStats> {
  const session = await connect({
    url,
    getToken: async () => "token",
    fallbackAfterMs: 5000,
    iceServers: [{ urls: "turn:turn.example.com:3478", username: "u", credential: "p" }],
    iceTransportPolicy: "relay",
    trustedIssuerKeys: ["4UYnrXoG2EDdtLrrFFVfaqtINCmmoWvjM39j4xh8G5E="],
  });
  const id: string = session.peerId;
  const keys: string[] = session.peers().map((p) => p.publicKey);
  session.on("peer_joined", ({ peerId }) => console.log(peerId, id, keys));
  session.on("relay-usage", (u) => console.log(u.bytesPerSec, u.threshold));
  session.on("link", (l: Link) => l.on("message", (m) => console.log(typeof m === "string" ? m : m.byteLength)));
  const link = session.link("bob");
  link.on("mode", (m) => console.log(m));
  link.on("close", ({ reason }) => console.log(reason));
  link.on("error", (e) => console.log(e.code));
  try {
    await link.send("text");
    await link.send(new Uint8Array([1, 2, 3]));
  } catch (e) {
    if (e instanceof TurnpikeError && e.code === "send_timeout") console.log("full");
  }
  const mode: Mode | "closed" = link.mode;
  link.forceRelay(mode === "p2p");
  const stats = link.stats();
  link.close();
  session.close();
  return stats;
}

// Several nodes of one registry cluster: the next one is used when the connection is lost.
export async function clustered(): Promise<string> {
  const session = await connect({
    urls: ["wss://turn-1.example.org/v1/registry", "wss://turn-2.example.org/v1/registry"],
    token: "token",
  });
  return session.url;
}
