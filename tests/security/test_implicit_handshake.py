"""A read or write before ``do_handshake()`` cannot skip the pin check.

OpenSSL completes a pending handshake inside ``SSL_read``/``SSL_write``. Found by the red-team
pass: with a static ``PinPolicy`` (whose TLS objects add nothing to reads and writes), a client
that wrapped with ``do_handshake_on_connect=False`` and called ``sendall``, or wrote to a
``wrap_bio`` object before ``do_handshake()``, completed the handshake unchecked and sent the
request to an impostor.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable

import pytest
import trustme

import pinsdk
from pinsdk import DomainPins, PinPolicy
from pinsdk._demo.loopback import LoopbackTLSServer

from .test_pool_recheck import Swappable

REQUEST = b"GET /secret HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def _socket_write_first(context: ssl.SSLContext, port: int) -> bytes:
    with context.wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=10),
        server_hostname="127.0.0.1",
        do_handshake_on_connect=False,
    ) as tls:
        tls.sendall(REQUEST)
        return tls.recv(65536)


def _bio_first(context: ssl.SSLContext, port: int, first: str) -> bytes:
    """Drive a wrap_bio object by write() (the request) or read() alone, never
    do_handshake(); read-first sends the request once the read completed the handshake."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    pending_request = True
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        for _ in range(20):  # bounded: a handshake takes a few round trips
            try:
                if first == "write" and pending_request:
                    tls.write(REQUEST)
                    pending_request = False
                    raw.sendall(outgoing.read())
                data: bytes = tls.read(65536)
                return data
            except ssl.SSLWantReadError:
                if pending_request and first == "read" and tls.version() is not None:
                    tls.write(REQUEST)  # the read completed the handshake: ask now
                    pending_request = False
                raw.sendall(outgoing.read())
                incoming.write(raw.recv(65536))
    raise AssertionError("no answer")


ATTEMPTS: dict[str, Callable[[ssl.SSLContext, int], bytes]] = {
    "socket-write": _socket_write_first,
    "bio-write": lambda context, port: _bio_first(context, port, "write"),
    "bio-read": lambda context, port: _bio_first(context, port, "read"),
}


@pytest.mark.parametrize("attempt", sorted(ATTEMPTS))
@pytest.mark.parametrize("source", ["static", "dynamic"])
def test_no_request_reaches_an_impostor_without_do_handshake(
    device_trust: Callable[[], ssl.SSLContext],
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    pins: dict[str, str],
    attempt: str,
    source: str,
) -> None:
    policy = PinPolicy([DomainPins("127.0.0.1", [pins["leaf"], pins["root"]])])
    pin_source = policy if source == "static" else Swappable(policy)
    context = pinsdk.pinned_ssl_context(pin_source, verify=device_trust())
    impostor = serve(rogue_cert, http2=False)
    with pytest.raises(pinsdk.PinCertVerificationError):
        ATTEMPTS[attempt](context, impostor.port)
    assert impostor.wait_idle()
    assert impostor.requests == []
    assert impostor.received == b""


@pytest.mark.parametrize("attempt", sorted(ATTEMPTS))
def test_the_pinned_server_still_answers_a_write_or_read_first(
    device_trust: Callable[[], ssl.SSLContext],
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    pins: dict[str, str],
    attempt: str,
) -> None:
    policy = PinPolicy([DomainPins("127.0.0.1", [pins["leaf"], pins["root"]])])
    context = pinsdk.pinned_ssl_context(policy, verify=device_trust())
    server = serve(api_cert, http2=False)
    assert ATTEMPTS[attempt](context, server.port).startswith(b"HTTP/1.1 200")
    assert server.wait_idle()
