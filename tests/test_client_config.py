"""Settings that would weaken pinning are refused at construction, with a clear error."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import trustme

import pinsdk
from pinsdk import DomainPins, PinPolicy
from pinsdk._demo.loopback import LoopbackTLSServer

from .conftest import TOKEN


def causes(exc: BaseException | None) -> str:
    seen = []
    while exc is not None and len(seen) < 10:
        seen.append(repr(exc))
        exc = exc.__cause__ or exc.__context__
    return " <- ".join(seen)


@pytest.fixture
def policy(pins: dict[str, str]) -> PinPolicy:
    return PinPolicy([DomainPins("127.0.0.1", [pins["intermediate"], pins["root"]])])


def test_verify_false_is_refused(policy: PinPolicy) -> None:
    with pytest.raises(ValueError, match="verify=False turns off certificate verification"):
        pinsdk.AsyncClient(pins=policy, verify=False)
    with pytest.raises(pinsdk.PinConfigError, match="verify=False"):
        pinsdk.PinnedTransport(policy, verify=False)
    with pytest.raises(pinsdk.PinConfigError, match="verify=False"):
        pinsdk.pinned_ssl_context(policy, verify=False)


def test_cert_none_context_is_refused(policy: PinPolicy) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with pytest.raises(ValueError, match="CERT_REQUIRED"):
        pinsdk.AsyncClient(pins=policy, verify=ctx)


def test_check_hostname_false_is_refused(policy: PinPolicy) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    with pytest.raises(ValueError, match="check_hostname=False"):
        pinsdk.PinnedTransport(policy, verify=ctx)


def test_foreign_transport_and_mounts_are_refused(policy: PinPolicy) -> None:
    with pytest.raises(ValueError, match="transport=AsyncHTTPTransport would bypass pinning"):
        pinsdk.AsyncClient(pins=policy, transport=httpx.AsyncHTTPTransport())
    with pytest.raises(ValueError, match=r"mounts\['https://evil'\] is AsyncHTTPTransport"):
        pinsdk.AsyncClient(pins=policy, mounts={"https://evil": httpx.AsyncHTTPTransport()})


def test_bad_pins_argument_is_refused() -> None:
    with pytest.raises(ValueError, match=r"pins must be a PinPolicy or an object with a \.current"):
        pinsdk.AsyncClient(pins={"127.0.0.1": ["sha256/x"]})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no such CA bundle"):
        pinsdk.AsyncClient(pins=PinPolicy(), verify="/nonexistent/ca.pem")


def test_context_already_pinned_for_another_source(policy: PinPolicy) -> None:
    ctx = pinsdk.pinned_ssl_context(policy)
    assert pinsdk.pinned_ssl_context(policy, verify=ctx) is ctx  # same source: fine
    with pytest.raises(ValueError, match="already enforces another pin source"):
        pinsdk.pinned_ssl_context(PinPolicy(), verify=ctx)


def test_client_uses_one_context_for_every_transport(
    policy: PinPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    client = pinsdk.AsyncClient(pins=policy, proxy="http://127.0.0.1:9")
    transports = [client._transport, *client._mounts.values()]
    assert all(isinstance(t, pinsdk.PinnedTransport) for t in transports)
    contexts = {id(t.ssl_context) for t in transports if isinstance(t, pinsdk.PinnedTransport)}
    assert len(contexts) == 1


@pytest.mark.anyio
async def test_plaintext_request_to_pinned_host_is_refused_before_connecting(
    policy: PinPolicy,
) -> None:
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0)
    port = listener.getsockname()[1]
    try:
        async with pinsdk.AsyncClient(pins=policy) as client:
            with pytest.raises(pinsdk.PlaintextRequestError) as info:
                await client.get(f"http://127.0.0.1:{port}/", headers={"Authorization": TOKEN})
        assert isinstance(info.value, httpx.TransportError)
        assert info.value.request.url.port == port
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody ever connected
    finally:
        listener.close()


@pytest.mark.anyio
async def test_redirect_to_plaintext_of_pinned_host_is_refused(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    policy: PinPolicy,
) -> None:
    server = serve(api_cert)
    async with pinsdk.AsyncClient(pins=policy, verify=device_trust()) as client:
        request = client.build_request("GET", server.url())
        request.url = request.url.copy_with(scheme="http")
        with pytest.raises(pinsdk.PlaintextRequestError, match="refusing plaintext request"):
            await client.send(request)


@pytest.mark.anyio
async def test_private_trust_anchors_ignore_the_device_store(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    rogue_cert: trustme.LeafCert,
    ca: trustme.CA,
    policy: PinPolicy,
    tmp_path: Path,
) -> None:
    """verify=<bundle of the app's own anchors>: a device-trusted rogue CA is not even consulted."""
    bundle = tmp_path / "anchors.pem"
    bundle.write_bytes(ca.cert_pem.bytes())
    server, rogue = serve(api_cert), serve(rogue_cert)
    async with pinsdk.AsyncClient(pins=policy, verify=str(bundle)) as client:
        assert (await client.get(server.url())).status_code == 200
        with pytest.raises(httpx.ConnectError) as info:
            await client.get(rogue.url(), headers={"Authorization": TOKEN})
    assert "CERTIFICATE_VERIFY_FAILED" in causes(info.value)  # trio hides it under a cause
    assert rogue.wait_idle()
    assert rogue.received == b""
