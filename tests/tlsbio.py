"""Asyncio-style TLS in tests: an ``SSLObject`` on memory BIOs, driven over a blocking socket."""

from __future__ import annotations

import socket
import ssl


def handshake_over(
    tls: ssl.SSLObject, raw: socket.socket, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO
) -> None:
    """Run ``tls.do_handshake()`` to its end, carrying its records over ``raw`` (bounded:
    a handshake takes a few round trips). Raises what the handshake raises."""
    for _ in range(20):
        try:
            tls.do_handshake()
            return
        except ssl.SSLWantReadError:
            raw.sendall(outgoing.read())
            incoming.write(raw.recv(65536))
    raise AssertionError("the handshake did not finish in 20 round trips")
