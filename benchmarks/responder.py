"""A minimal TLS responder in its own process, so it never competes for the client's GIL.

HTTP/1.1 is served by an asyncio server (no thread per connection, the least noise);
HTTP/2 by the threaded loopback server (h2 framing).

``python -m benchmarks.responder INFO_FILE`` writes the ports and the CA to INFO_FILE,
then serves until its standard input closes (or an hour passes). Loopback only.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import sys
import threading

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pinsdk._core.pins import spki_pin
from pinsdk._demo.loopback import LoopbackTLSServer

# A net for a responder its parent left behind (the parent's exit closes our stdin anyway).
# It must outlive a whole run: at 15 minutes it cut off the runs that count instructions in
# several memory layouts (about 30 minutes), in the middle of the other-clients stage.
MAX_LIFETIME = 3600.0


def pin_to_cpu(which: int) -> int | None:
    """Bind this process (and the threads it starts later) to one CPU, where the OS
    allows it and there are at least two: client and server then never trade places or
    caches. Returns the CPU, or ``None`` when nothing was pinned."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    cpu = cpus[which]
    os.sched_setaffinity(0, {cpu})
    return cpu


_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


async def _http1(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """HTTP/1.1 keep-alive responder for bodiless requests: no thread per connection."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head:
                break
            writer.write(_RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        pass
    finally:
        writer.close()


def _serve_http1(context: ssl.SSLContext, ready: threading.Event, port: list[int]) -> None:
    async def run() -> None:
        server = await asyncio.start_server(_http1, "127.0.0.1", 0, ssl=context, backlog=1024)
        for sock in server.sockets:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        port.append(server.sockets[0].getsockname()[1])
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(run())


def _server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


def main(info_file: str) -> None:
    pin_to_cpu(-1)  # the last CPU; the benchmark runs on the first (see __main__)
    root = trustme.CA(organization_name="pinsdk bench")  # P-256 keys, trustme's default
    intermediate = root.create_child_ca()
    cert = intermediate.issue_cert("127.0.0.1", "localhost")
    context = _server_context(cert)
    context.set_alpn_protocols(["http/1.1"])
    ready, port = threading.Event(), []  # type: threading.Event, list[int]
    threading.Thread(target=_serve_http1, args=(context, ready, port), daemon=True).start()
    if not ready.wait(30):
        raise RuntimeError("HTTP/1.1 responder did not start")
    h2 = LoopbackTLSServer(_server_context(cert), http2=True, body=b"ok").start()
    leaf = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes())
    info = {
        "h1": port[0],
        "h2": h2.port,
        "ca_pem": root.cert_pem.bytes().decode("ascii"),
        "pins": [spki_pin(intermediate.cert_pem.bytes()), spki_pin(root.cert_pem.bytes())],
        "leaf_der_hex": leaf.public_bytes(serialization.Encoding.DER).hex(),
    }
    tmp = info_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump(info, f)
    os.replace(tmp, info_file)
    threading.Timer(MAX_LIFETIME, lambda: os._exit(0)).start()
    sys.stdin.read()  # the parent closes our stdin when it is done
    h2.stop()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1])
