// The baseline of `turnpike-bench registry` (docs/performance.md): a signaling room relay on
// Node's `ws`, written the way most WebRTC tutorials write one (a Map of rooms, JSON.parse in,
// JSON.stringify out), speaking the subset of turnpike's registry protocol the bench uses:
// `join` (answered `welcome`, the room told `peer_joined`), `ping`/`pong`, and signaling
// messages forwarded with `from_peer_id`. No authentication, no limits, no queues of its own:
// the peer id and the room come from the query string (`/?peer=alice&project=demo`).
//
// Run: node relay.js PORT (0: any); it prints `listening PORT` when ready.
import { WebSocketServer } from "ws";

const port = Number(process.argv[2] || 0);
const rooms = new Map(); // project -> Map(peer id -> socket)
const wss = new WebSocketServer({ host: "127.0.0.1", port });

wss.on("listening", () => console.log(`listening ${wss.address().port}`));

wss.on("connection", (ws, req) => {
  const query = new URL(req.url, "http://relay").searchParams;
  const peer = query.get("peer");
  const project = query.get("project");
  let room = null;
  ws.on("message", (data, isBinary) => {
    if (isBinary) return;
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      ws.send('{"type":"error","code":"bad_json"}');
      return;
    }
    if (msg.type === "join") {
      room = rooms.get(project);
      if (!room) rooms.set(project, (room = new Map()));
      const peers = [...room.keys()].map((id) => ({ peer_id: id }));
      room.set(peer, ws);
      ws.send(JSON.stringify({ type: "welcome", peer_id: peer, project, peers }));
      const joined = JSON.stringify({ type: "peer_joined", peer_id: peer });
      for (const other of room.values()) if (other !== ws) other.send(joined);
      return;
    }
    if (msg.type === "ping") {
      ws.send('{"type":"pong"}');
      return;
    }
    const target = room && room.get(msg.to_peer_id);
    if (!target) {
      ws.send(JSON.stringify({ type: "error", code: "unknown_peer", to_peer_id: msg.to_peer_id }));
      return;
    }
    target.send(JSON.stringify({ type: msg.type, from_peer_id: peer, payload: msg.payload }));
  });
  ws.on("close", () => {
    if (!room || room.get(peer) !== ws) return;
    room.delete(peer);
    const left = JSON.stringify({ type: "peer_left", peer_id: peer });
    for (const other of room.values()) other.send(left);
    if (room.size === 0) rooms.delete(project);
  });
});
