#!/usr/bin/env python3
"""A registry peer written with third-party Python libraries only (PyNaCl and websockets),
for the interop test (tests/registry_interop.rs). It follows docs/registry-protocol.md:

1. connects to the registry, carrying its token in the Sec-WebSocket-Protocol list as a
   browser would, and joins with a fresh X25519 key (PyNaCl);
2. waits for a relay blob from --peer, opens it with nacl.public.Box (crypto_box), checks the
   counter and prints the plaintext;
3. seals --reply for --peer the same way and sends it twice (the second is a replay the
   receiver must reject).

Every step has a time limit; it prints one JSON object per line and exits non-zero on error.
"""

import argparse
import json
import sys
import time

import nacl.encoding
import nacl.public
import nacl.utils
from websockets.sync.client import connect

TIMEOUT = 10.0


def emit(**fields):
    print(json.dumps(fields), flush=True)


def recv(ws, deadline):
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("no message in time")
    return ws.recv(timeout=left)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--peer", required=True)
    parser.add_argument("--reply", required=True)
    args = parser.parse_args()

    key = nacl.public.PrivateKey.generate()
    public = nacl.encoding.Base64Encoder.encode(bytes(key.public_key)).decode()
    deadline = time.monotonic() + TIMEOUT
    with connect(
        args.url,
        subprotocols=["turnpike.registry.v1", "turnpike.bearer." + args.token],
        open_timeout=TIMEOUT,
    ) as ws:
        assert ws.subprotocol == "turnpike.registry.v1", ws.subprotocol
        ws.send(json.dumps({"type": "join", "public_key": public}))
        welcome = json.loads(recv(ws, deadline))
        assert welcome["type"] == "welcome", welcome
        keys = {p["peer_id"]: p["public_key"] for p in welcome["peers"]}
        emit(event="joined", peer_id=welcome["peer_id"], public_key=public, peers=len(keys))

        last_counter = -1
        while True:
            message = recv(ws, deadline)
            if isinstance(message, str):
                event = json.loads(message)
                if event["type"] == "peer_joined":
                    keys[event["peer_id"]] = event["public_key"]
                continue
            length = message[0]
            sender = message[1 : 1 + length].decode()
            nonce = message[1 + length : 1 + length + 24]
            ciphertext = message[1 + length + 24 :]
            sender_key = nacl.public.PublicKey(keys[sender], nacl.encoding.Base64Encoder)
            plaintext = nacl.public.Box(key, sender_key).decrypt(ciphertext, nonce)
            counter = int.from_bytes(plaintext[:8], "big")
            assert counter > last_counter
            last_counter = counter
            emit(event="received", sender=sender, counter=counter, message=plaintext[8:].decode())
            break

        peer_key = nacl.public.PublicKey(keys[args.peer], nacl.encoding.Base64Encoder)
        counter = int(time.time() * 1_000_000)
        nonce = nacl.utils.random(24)
        sealed = nacl.public.Box(key, peer_key).encrypt(
            counter.to_bytes(8, "big") + args.reply.encode(), nonce
        )
        peer = args.peer.encode()
        frame = bytes([len(peer)]) + peer + sealed.nonce + sealed.ciphertext
        ws.send(frame)
        ws.send(frame)  # a replay: the receiver must reject it
        emit(event="sent", bytes=len(frame))
        # Stay until the Rust side has read both (it closes nothing; we leave after a moment).
        try:
            while True:
                recv(ws, time.monotonic() + 1.0)
        except TimeoutError:
            pass
    emit(event="done")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as error:  # report, never hang
        emit(event="error", error=repr(error))
        sys.exit(1)
