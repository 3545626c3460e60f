#!/usr/bin/env python3
"""An independent TLS client for the integration tests (Python's ssl, which is OpenSSL: not
the rustls turnpike serves with).

Connects to HOST:PORT, verifies the server's certificate against --ca with hostname checking
for --server-name (unless --no-verify), optionally offers ALPN protocols, then:
  --mode cert     only the handshake;
  --mode binding  sends a STUN Binding request and checks the Binding success answer;
  --mode http     sends GET PATH over HTTP/1.1 and reads the status line and body.
Prints one JSON object: {"ok": true, "alpn": ..., "cert_sha256": ..., "version": ...,
"answer": ...} or {"ok": false, "error": "..."}. Always exits 0; the test judges the JSON.
Every socket operation has a timeout.
"""

import argparse
import hashlib
import json
import os
import socket
import ssl
import struct


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--server-name", default="localhost")
    p.add_argument("--ca")
    p.add_argument("--no-verify", action="store_true")
    p.add_argument("--alpn", action="append", default=[])
    p.add_argument("--mode", choices=["cert", "binding", "http"], default="cert")
    p.add_argument("--path", default="/healthz")
    p.add_argument("--tls-version", choices=["1.2", "1.3"])
    a = p.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if a.no_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=a.ca)
    if a.tls_version == "1.2":
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif a.tls_version == "1.3":
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    if a.alpn:
        ctx.set_alpn_protocols(a.alpn)

    out = {"ok": False}
    try:
        with socket.create_connection((a.host, a.port), timeout=5) as raw:
            raw.settimeout(5)
            with ctx.wrap_socket(raw, server_hostname=a.server_name) as tls:
                der = tls.getpeercert(binary_form=True)
                out.update(
                    alpn=tls.selected_alpn_protocol(),
                    cert_sha256=hashlib.sha256(der).hexdigest(),
                    version=tls.version(),
                )
                if a.mode == "binding":
                    tid = os.urandom(12)
                    tls.sendall(struct.pack("!HHI", 0x0001, 0, 0x2112A442) + tid)
                    head = read_exact(tls, 20)
                    mtype, length, cookie = struct.unpack("!HHI", head[:8])
                    read_exact(tls, length)
                    ok = mtype == 0x0101 and cookie == 0x2112A442 and head[8:20] == tid
                    out["answer"] = "binding success" if ok else "unexpected 0x%04x" % mtype
                elif a.mode == "http":
                    request = "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (
                        a.path,
                        a.server_name,
                    )
                    tls.sendall(request.encode())
                    data = b""
                    for _ in range(1000):
                        chunk = tls.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    head, _, body = data.partition(b"\r\n\r\n")
                    out["answer"] = head.split(b"\r\n")[0].decode(errors="replace")
                    out["body"] = body.decode(errors="replace")
                out["ok"] = True
    except (OSError, ssl.SSLError, ValueError) as e:
        out["error"] = "%s: %s" % (type(e).__name__, e)
    print(json.dumps(out))


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise OSError("connection closed after %d of %d bytes" % (len(data), n))
        data += chunk
    return data


if __name__ == "__main__":
    main()
