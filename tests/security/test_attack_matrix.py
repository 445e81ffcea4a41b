"""The attack matrix: one test per row, real TLS on loopback, asyncio and trio.

Each row is an attack people really run against pinning; see docs/security.md.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
from collections.abc import Callable, Iterator

import httpx
import pytest
import trustme

import pinsdk
from pinsdk import DomainPins, PinPolicy
from pinsdk._demo.loopback import LoopbackTLSServer, Reply

from ..conftest import TOKEN
from ..proxy import ConnectProxy
from ..signing import ed25519_key

pytestmark = pytest.mark.anyio

BACKUP = "sha256/" + base64.b64encode(hashlib.sha256(b"backup").digest()).decode()


def pinned(host: str, *pins: str, **kw: object) -> PinPolicy:
    return PinPolicy([DomainPins(host, [*pins, BACKUP])], **kw)  # type: ignore[arg-type]


@pytest.fixture
def silent_listener() -> Iterator[tuple[int, Callable[[], bool]]]:
    """A plain TCP port and a probe: did anyone connect to it?"""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)

    def connected() -> bool:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return False
        conn.close()
        return True

    yield listener.getsockname()[1], connected
    listener.close()


@pytest.mark.parametrize("path", ["direct", "http-proxy", "https-proxy"])
async def test_row01_mitm_with_a_device_trusted_ca(
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    rogue_ca: trustme.CA,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    path: str,
) -> None:
    """A corporate or malware proxy CA the device trusts: blocked, 0 bytes, on every path."""
    rogue = serve(rogue_cert)
    proxy_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    rogue_ca.issue_cert("localhost").configure_cert(proxy_ctx)  # the proxy is not pinned
    proxy = ConnectProxy(tls_context=proxy_ctx if path == "https-proxy" else None, host="localhost")
    with proxy:
        kwargs: dict[str, object] = {}
        if path != "direct":
            proxy_trust = device_trust() if path == "https-proxy" else None
            kwargs["proxy"] = httpx.Proxy(proxy.url, ssl_context=proxy_trust)
        async with pinsdk.AsyncClient(
            pins=pinned("127.0.0.1", pins["intermediate"]),
            verify=device_trust(),
            **kwargs,  # type: ignore[arg-type]
        ) as client:
            with pytest.raises(pinsdk.PinValidationError):
                await client.post(rogue.url(), headers={"Authorization": TOKEN}, content=b"secret")
        assert proxy.connects == ([] if path == "direct" else [f"127.0.0.1:{rogue.port}"])
    assert rogue.wait_idle()
    assert rogue.received == b""
    assert rogue.handshakes_completed == 0


async def test_row02_chain_injection_cve_2016_2402(
    rogue_cert: trustme.LeafCert,
    intermediate: trustme.CA,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    tmp_path: object,
) -> None:
    """A trusted, unpinned chain with the pinned CA certificate appended: matched on the verified
    chain, so the appended certificate never counts."""
    import pathlib

    bundle = pathlib.Path(str(tmp_path)) / "chain.pem"
    bundle.write_bytes(
        rogue_cert.private_key_and_cert_chain_pem.bytes() + intermediate.cert_pem.bytes()
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(bundle))
    with LoopbackTLSServer(ctx) as rogue:
        async with pinsdk.AsyncClient(
            pins=pinned("127.0.0.1", pins["intermediate"]), verify=device_trust()
        ) as client:
            with pytest.raises(pinsdk.PinValidationError) as info:
                await client.get(rogue.url(), headers={"Authorization": TOKEN})
        assert rogue.wait_idle()
        assert rogue.received == b""
    assert pins["intermediate"] not in info.value.served_pins


async def test_row03_same_ca_other_key_for_the_pinned_leaf(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    intermediate: trustme.CA,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    """A certificate from the very same CA, but another key: blocked when only the leaf is pinned,
    allowed when the CA is pinned (that is what pinning the CA means)."""
    other_leaf = intermediate.issue_cert("127.0.0.1")
    impostor = serve(other_leaf)
    assert pinsdk.spki_pin(other_leaf.cert_chain_pems[0].bytes()) != pins["leaf"]
    async with pinsdk.AsyncClient(
        pins=pinned("127.0.0.1", pins["leaf"]), verify=device_trust()
    ) as client:
        with pytest.raises(pinsdk.PinValidationError):
            await client.get(impostor.url(), headers={"Authorization": TOKEN})
    assert impostor.wait_idle()
    assert impostor.received == b""
    async with pinsdk.AsyncClient(
        pins=pinned("127.0.0.1", pins["intermediate"]), verify=device_trust()
    ) as client:
        assert (await client.get(impostor.url())).status_code == 200


async def test_row04_denied_key_anywhere_in_the_verified_chain(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    server = serve(api_cert)
    for denied in (pins["leaf"], pins["intermediate"], pins["root"]):
        policy = pinned("127.0.0.1", pins["leaf"], deny=[denied])
        async with pinsdk.AsyncClient(pins=policy, verify=device_trust()) as client:
            with pytest.raises(pinsdk.PinValidationError) as info:
                await client.get(server.url(), headers={"Authorization": TOKEN})
        assert info.value.denied_pins == (denied,)
    assert server.wait_idle()
    assert server.received == b""


async def test_row05a_plaintext_downgrade_to_a_pinned_host(
    silent_listener: tuple[int, Callable[[], bool]],
    pins: dict[str, str],
) -> None:
    port, connected = silent_listener
    async with pinsdk.AsyncClient(pins=pinned("127.0.0.1", pins["leaf"])) as client:
        with pytest.raises(pinsdk.PlaintextRequestError):
            await client.get(f"http://127.0.0.1:{port}/", headers={"Authorization": TOKEN})
    assert not connected()


async def test_row05b_redirect_from_pinned_https_to_http(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    silent_listener: tuple[int, Callable[[], bool]],
) -> None:
    """follow_redirects=True and a 302 to http:// on the pinned host: refused before connecting."""
    port, connected = silent_listener

    def redirect(request: dict[str, str]) -> Reply:
        return (302, [("Location", f"http://127.0.0.1:{port}/stolen")], b"")

    server = serve(api_cert, http2=False, handler=redirect)
    async with pinsdk.AsyncClient(
        pins=pinned("127.0.0.1", pins["intermediate"]), verify=device_trust(), follow_redirects=True
    ) as client:
        with pytest.raises(pinsdk.PlaintextRequestError):
            await client.get(server.url(), headers={"Authorization": TOKEN})
    assert not connected()


async def test_row05c_redirect_to_an_unpinned_host(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    """Documented: the new host's own policy applies (here: unpinned, so it connects), and the
    credentials of the pinned host are not carried over to another origin."""
    elsewhere = serve(api_cert, http2=False)

    def redirect(request: dict[str, str]) -> Reply:
        return (302, [("Location", elsewhere.url("localhost", "/next"))], b"")

    server = serve(api_cert, http2=False, handler=redirect)
    async with pinsdk.AsyncClient(
        pins=pinned("127.0.0.1", pins["intermediate"]), verify=device_trust(), follow_redirects=True
    ) as client:
        response = await client.get(server.url(), headers={"Authorization": TOKEN})
    assert response.status_code == 200
    assert response.url.host == "localhost"
    assert TOKEN.encode() not in elsewhere.received


@pytest.mark.parametrize(
    ("pattern", "sni", "outcome"),
    [
        ("api.pinsdk.test", "API.PINSDK.TEST", "pin failure"),  # upper case
        # OpenSSL itself refuses a trailing-dot name against the certificate: fails closed.
        ("api.pinsdk.test", "api.pinsdk.test.", "refused"),
        ("API.PinSDK.test.", "api.pinsdk.test", "pin failure"),  # the pattern's case and dot
        ("σkhttp.pinsdk.test", "xn--khttp-fde.pinsdk.test", "pin failure"),  # unicode pattern
        ("*.pinsdk.test", "api.pinsdk.test", "pin failure"),
        ("*.pinsdk.test", "pinsdk.test", "allowed"),  # '*.' needs exactly one more label
        ("**.pinsdk.test", "pinsdk.test", "pin failure"),  # '**.' matches zero labels too
        ("*.pinsdk.test", "api.pinsdk.test.evil.test", "allowed"),  # another host entirely
        ("127.0.0.1", None, "pin failure"),  # an IP-address URL
    ],
)
async def test_row06_hostname_tricks(
    serve: Callable[..., LoopbackTLSServer],
    rogue_ca: trustme.CA,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    pattern: str,
    sni: str | None,
    outcome: str,
) -> None:
    names = [*([sni.rstrip(".").lower()] if sni else []), "127.0.0.1"]
    rogue = serve(rogue_ca.issue_cert(*names))
    extensions = {"sni_hostname": sni} if sni else {}
    policy = pinned(pattern, pins["intermediate"])
    async with pinsdk.AsyncClient(pins=policy, verify=device_trust()) as client:
        if outcome == "allowed":
            assert (await client.get(rogue.url(), extensions=extensions)).status_code == 200
            return
        expected = pinsdk.PinValidationError if outcome == "pin failure" else httpx.ConnectError
        with pytest.raises(expected):
            await client.get(rogue.url(), headers={"Authorization": TOKEN}, extensions=extensions)
    assert rogue.wait_idle()
    assert rogue.received == b""


def test_row10_misconfiguration_is_refused(pins: dict[str, str]) -> None:
    policy = pinned("127.0.0.1", pins["leaf"])
    with pytest.raises(ValueError, match="verify=False"):
        pinsdk.AsyncClient(pins=policy, verify=False)
    none = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    none.check_hostname = False
    none.verify_mode = ssl.CERT_NONE
    with pytest.raises(ValueError, match="CERT_REQUIRED"):
        pinsdk.PinnedTransport(policy, verify=none)
    no_host = ssl.create_default_context()
    no_host.check_hostname = False
    with pytest.raises(ValueError, match="check_hostname=False"):
        pinsdk.pinned_ssl_context(policy, verify=no_host)
    key = ed25519_key().public_key()
    with pytest.raises(ValueError, match="verify=False"):
        pinsdk.DynamicPins("https://127.0.0.1/p.json", [key], verify=False)
