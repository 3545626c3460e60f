// `urls`: several nodes of one registry cluster. A fake WebSocket stands for the nodes: the
// session connects to the first that welcomes it, and after losing it reconnects to the next.
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../src/index.js";

function fakeNodes(dead) {
  const opened = [];
  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      opened.push(url);
      FakeWebSocket.last = this;
      setTimeout(() => {
        if (dead.has(url)) this.onclose?.({ code: 1006, reason: "" });
        else this.onopen?.();
      }, 1);
    }
    send(text) {
      const message = JSON.parse(text);
      if (message.type !== "join") return;
      const welcome = { type: "welcome", peer_id: "me", project: "p", peers: [], limits: {} };
      setTimeout(() => this.onmessage?.({ data: JSON.stringify(welcome) }), 1);
    }
    close() {}
  }
  return { FakeWebSocket, opened };
}

test("connect tries the urls in order and reconnects to the next node", async () => {
  const urls = ["ws://a/v1/registry", "ws://b/v1/registry", "ws://c/v1/registry"];
  const dead = new Set([urls[0]]);
  const { FakeWebSocket, opened } = fakeNodes(dead);
  const session = await connect({ urls, token: "t", WebSocket: FakeWebSocket });
  assert.deepEqual(opened, [urls[0], urls[1]]);
  assert.equal(session.url, urls[1]);
  // Node b goes away: the session moves on to c.
  const reconnected = new Promise((resolve) => session.on("reconnected", resolve));
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error("no reconnection within 5 s")), 5000);
  });
  try {
    dead.add(urls[1]);
    FakeWebSocket.last.onclose({ code: 1006, reason: "" });
    await Promise.race([reconnected, late]);
    assert.equal(session.url, urls[2]);
    assert.deepEqual(opened, [urls[0], urls[1], urls[2]]);
  } finally {
    clearTimeout(timer);
    session.close();
  }
});

test("connect needs url or a non-empty urls", () => {
  return assert.rejects(connect({ urls: [], token: "t" }), TypeError);
});
