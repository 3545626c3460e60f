#!/usr/bin/env python3
"""Joins the registry over wss:// (TLS, the port shared with TURN) with the `websockets`
package, carrying the token as a browser would (Sec-WebSocket-Protocol), and prints the
welcome as one JSON line. The server's certificate is the test's self-signed one: not verified.
Usage: registry_wss.py URL TOKEN PUBLIC_KEY"""

import json
import ssl
import sys

from websockets.sync.client import connect


def main():
    url, token, public_key = sys.argv[1:4]
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with connect(
        url,
        ssl=context,
        subprotocols=["turnpike.registry.v1", "turnpike.bearer." + token],
        open_timeout=10,
    ) as ws:
        ws.send(json.dumps({"type": "join", "public_key": public_key}))
        print(ws.recv(timeout=10), flush=True)


if __name__ == "__main__":
    main()
