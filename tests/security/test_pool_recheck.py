"""A policy change reaches kept-alive connections: real TLS on loopback, asyncio and trio.

A connection in httpcore's pool passed the pin check of the policy in force when it was
opened. Once the pin source's policy changes (a signed update denying a stolen key), the
connection is checked again before its next write or read; if the new policy refuses its
verified chain, no further byte is sent on it.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
import threading
from collections.abc import Callable

import httpx
import pytest
import trustme

import pinsdk
from pinsdk import DomainPins, PinPolicy, _tls
from pinsdk._demo.loopback import LoopbackTLSServer, Reply

from ..conftest import TOKEN
from ..signing import ed25519_key, payload

pytestmark = pytest.mark.anyio

BACKUP = "sha256/" + base64.b64encode(hashlib.sha256(b"backup").digest()).decode()


class Swappable:
    """A pin source test double: the policy in force, swapped by one assignment."""

    def __init__(self, policy: PinPolicy) -> None:
        self.current = policy


def policy(pins: dict[str, str], version: int, *, deny: tuple[str, ...] = ()) -> PinPolicy:
    return PinPolicy(
        [DomainPins("127.0.0.1", [pins["intermediate"], BACKUP])], deny=deny, version=version
    )


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
async def test_deny_stops_a_kept_alive_connection(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    http2: bool,
) -> None:
    """After an update denies the server's key, the pooled connection sends nothing more."""
    server = serve(api_cert, http2=http2)
    source = Swappable(policy(pins, 1))
    async with pinsdk.AsyncClient(pins=source, verify=device_trust(), http2=http2) as client:
        for _ in range(2):  # the second request proves the connection is kept alive
            ok = await client.post(server.url(), headers={"Authorization": TOKEN}, content=b"a")
            assert ok.status_code == 200
        assert ok.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
        assert server.connections == 1
        before = len(server.received)
        source.current = policy(pins, 2, deny=(pins["leaf"],))  # the leaf key was stolen
        with pytest.raises(pinsdk.PinValidationError) as info:
            await client.post(server.url(), headers={"Authorization": TOKEN}, content=b"b")
        assert info.value.stage == "send"
        assert info.value.denied_pins == (pins["leaf"],)
        assert "version 2" in str(info.value)
        # Every later request is refused too: on a new connection, at its handshake.
        with pytest.raises(pinsdk.PinValidationError) as again:
            await client.post(server.url(), headers={"Authorization": TOKEN}, content=b"c")
        assert again.value.stage == "handshake"
    assert server.wait_idle()
    assert len(server.requests) == 2
    assert len(server.received) == before  # not one byte after the deny
    assert server.connections == 2
    assert client.stats()["pin_failures_enforced"] == 2


async def test_signed_update_denying_a_stolen_key_reaches_the_pool(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    """The issue's reproduction, with DynamicPins: after apply_document() accepts a document
    that denies the server's key, the kept-alive connection serves nothing more."""
    signer = ed25519_key()
    entry = {"host": "127.0.0.1", "pins": [pins["intermediate"], BACKUP]}
    server = serve(api_cert)
    dynamic = pinsdk.DynamicPins(
        "https://localhost/pins.json",
        [signer.public_key()],
        bootstrap=pinsdk.sign_envelope(payload(1, [entry]), signer),
        auto_refresh=False,
        verify=device_trust(),
        self_heal_interval=None,  # no refresh from the (absent) update server
    )
    async with pinsdk.AsyncClient(pins=dynamic, verify=device_trust(), http2=True) as client:
        for _ in range(2):  # the second one proves the connection is kept alive
            ok = await client.get(server.url(), headers={"Authorization": TOKEN})
            assert ok.status_code == 200
        assert server.connections == 1
        before = len(server.received)
        deny = pinsdk.sign_envelope(payload(2, [entry], deny=[pins["leaf"]]), signer)
        assert (await dynamic.apply_document(deny)).status is pinsdk.UpdateStatus.UPDATED
        for _ in range(3):
            with pytest.raises(pinsdk.PinValidationError) as info:
                await client.get(server.url(), headers={"Authorization": TOKEN})
            assert info.value.denied_pins == (pins["leaf"],)
    assert server.wait_idle()
    assert len(server.requests) == 2
    assert len(server.received) == before


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
async def test_a_change_that_still_accepts_the_key_keeps_the_connection(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    http2: bool,
) -> None:
    server = serve(api_cert, http2=http2)
    source = Swappable(policy(pins, 1))
    async with pinsdk.AsyncClient(pins=source, verify=device_trust(), http2=http2) as client:
        assert (await client.get(server.url())).status_code == 200
        for version in (2, 3):  # new policy objects, each still accepting the key
            source.current = policy(pins, version, deny=(BACKUP,))
            assert (await client.get(server.url())).status_code == 200
    assert server.connections == 1
    assert len(server.requests) == 3


async def test_a_response_in_flight_is_cut_when_the_key_is_denied(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    """A streamed response is not read any further from a connection the policy refuses."""
    release = threading.Event()

    def stream(request: dict[str, str]) -> Reply:
        def chunks() -> object:
            yield b"first chunk\n"
            release.wait(10)
            yield b"after the deny\n"

        return 200, [("Content-Type", "text/plain")], chunks()  # type: ignore[return-value]

    server = serve(api_cert, http2=False, handler=stream)
    source = Swappable(policy(pins, 1))
    client = pinsdk.AsyncClient(pins=source, verify=device_trust())
    async with client, client.stream("GET", server.url()) as response:
        chunks = response.aiter_raw()
        assert await chunks.__anext__() == b"first chunk\n"
        source.current = policy(pins, 2, deny=(pins["leaf"],))
        release.set()
        with pytest.raises(pinsdk.PinValidationError) as info:
            async for _ in chunks:
                pass
    assert info.value.stage == "receive"
    assert server.wait_idle()


def test_sync_client_on_a_pinned_context_is_rechecked_too(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    """The blocking twin (``httpx.Client(verify=pinned_ssl_context(...))``)."""
    server = serve(api_cert, http2=False)
    source = Swappable(policy(pins, 1))
    ctx = pinsdk.pinned_ssl_context(source, verify=device_trust())
    with httpx.Client(verify=ctx) as client:
        assert client.get(server.url()).status_code == 200
        source.current = policy(pins, 2, deny=(BACKUP,))  # still accepts the key
        assert client.get(server.url()).status_code == 200
        before = len(server.received)
        source.current = policy(pins, 3, deny=(pins["intermediate"],))
        with pytest.raises(pinsdk.PinValidationError) as info:
            client.get(server.url(), headers={"Authorization": TOKEN})
        assert info.value.stage == "send"
    assert server.wait_idle()
    assert server.connections == 1
    assert len(server.requests) == 2
    assert len(server.received) == before


def test_raw_tls_object_refuses_every_later_write(
    ca: trustme.CA, api_cert: trustme.LeafCert, pins: dict[str, str]
) -> None:
    """On the TLS object itself, for any library: refused once, refused for good, even if a
    later policy would accept the key again; sendall and send go through the check. Outside
    httpx the refusal is the TLS layer's own certificate error."""
    server = LoopbackTLSServer(_server_context(api_cert), http2=False).start()
    try:
        source = Swappable(policy(pins, 1))
        client_ctx = ssl.create_default_context()
        ca.configure_trust(client_ctx)
        ctx = pinsdk.pinned_ssl_context(source, verify=client_ctx)
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert tls.recv(4096).startswith(b"HTTP/1.1 200")
            source.current = policy(pins, 2, deny=(pins["root"],))
            for send in (tls.sendall, tls.send, tls.write):
                with pytest.raises(pinsdk.PinCertVerificationError):
                    send(b"GET /after-deny HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            source.current = policy(pins, 3)  # the deny is withdrawn: still refused
            with pytest.raises(pinsdk.PinCertVerificationError):
                tls.sendall(b"GET /after-undo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            with pytest.raises(pinsdk.PinCertVerificationError):
                tls.recv(4096)
    finally:
        server.stop()
    assert [r[":path"] for r in server.requests] == ["/"]


async def test_failing_pin_source_refuses_the_pooled_connection(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    class Breakable:
        def __init__(self) -> None:
            self.policy: PinPolicy | None = policy(pins, 1)

        @property
        def current(self) -> PinPolicy:
            if self.policy is None:
                raise RuntimeError("store unavailable")
            return self.policy

    server = serve(api_cert, http2=False)
    source = Breakable()
    async with pinsdk.AsyncClient(pins=source, verify=device_trust()) as client:
        assert (await client.get(server.url())).status_code == 200
        before = len(server.received)
        source.policy = None
        with pytest.raises(pinsdk.PinCheckUnavailableError, match="store unavailable"):
            await client.get(server.url())
    assert server.wait_idle()
    assert len(server.received) == before


def test_static_policy_installs_no_per_write_check(pins: dict[str, str]) -> None:
    """A PinPolicy never changes: its TLS objects never consult the pin source on a read or
    write (until the check, a read or write runs the handshake and its check first; after
    it, an object tests a flag and a socket is the plain pinned class)."""
    static = pinsdk.pinned_ssl_context(policy(pins, 1))
    assert not issubclass(static.sslobject_class, _tls._Recheck)
    assert static.sslobject_class.read is _tls.PinnedSSLObject.read
    assert static.sslobject_class.write is _tls.PinnedSSLObject.write
    checked_socket = static.sslsocket_class._checked  # type: ignore[attr-defined]
    assert checked_socket.send is ssl.SSLSocket.send
    assert checked_socket.read is ssl.SSLSocket.read
    dynamic = pinsdk.pinned_ssl_context(Swappable(policy(pins, 1)))
    assert issubclass(dynamic.sslobject_class, _tls._Recheck)
    assert dynamic.sslobject_class.write is not _tls.PinnedSSLObject.write


def _server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return ctx
