"""Pins apply to the origin through http:// and https:// proxies, explicit or from env."""

from __future__ import annotations

import ssl
from collections.abc import Callable

import httpx
import pytest
import trustme

import pinsdk
from pinsdk import DomainPins, PinPolicy
from pinsdk._demo.loopback import LoopbackTLSServer

from .conftest import TOKEN
from .proxy import ConnectProxy

pytestmark = pytest.mark.anyio


@pytest.fixture
def origin_policy(pins: dict[str, str]) -> PinPolicy:
    return PinPolicy([DomainPins("127.0.0.1", [pins["intermediate"], pins["root"]])])


@pytest.fixture(scope="module")
def proxy_ca() -> trustme.CA:
    return trustme.CA()


def proxy_client_context(proxy_ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    proxy_ca.configure_trust(ctx)
    return ctx


def https_proxy(proxy_ca: trustme.CA) -> ConnectProxy:
    # Named "localhost": 127.0.0.1 is the pinned origin, and a pinned proxy is checked too.
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    proxy_ca.issue_cert("localhost").configure_cert(ctx)
    return ConnectProxy(tls_context=ctx, host="localhost")


@pytest.mark.parametrize("kind", ["http", "https"])
@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
async def test_through_proxy_origin_is_pinned(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    origin_policy: PinPolicy,
    proxy_ca: trustme.CA,
    kind: str,
    http2: bool,
) -> None:
    server, rogue = serve(api_cert), serve(rogue_cert)
    proxy_server = https_proxy(proxy_ca) if kind == "https" else ConnectProxy()
    with proxy_server as proxy:
        proxy_arg = httpx.Proxy(
            proxy.url, ssl_context=proxy_client_context(proxy_ca) if kind == "https" else None
        )
        async with pinsdk.AsyncClient(
            pins=origin_policy, verify=device_trust(), proxy=proxy_arg, http2=http2
        ) as client:
            # The proxy's own certificate is not pinned and does not need to be.
            ok = await client.get(server.url(), headers={"Authorization": TOKEN})
            assert ok.status_code == 200
            with pytest.raises(pinsdk.PinValidationError):
                await client.get(rogue.url(), headers={"Authorization": TOKEN})
        assert proxy.connects == [f"127.0.0.1:{server.port}", f"127.0.0.1:{rogue.port}"]
    assert rogue.wait_idle()
    assert rogue.received == b""
    assert server.requests[0]["authorization"] == TOKEN


async def test_environment_proxy_is_pinned_too(
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    origin_policy: PinPolicy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rogue = serve(rogue_cert)
    with ConnectProxy() as proxy:
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        async with pinsdk.AsyncClient(pins=origin_policy, verify=device_trust()) as client:
            with pytest.raises(pinsdk.PinValidationError):
                await client.get(rogue.url(), headers={"Authorization": TOKEN})
        assert proxy.connects == [f"127.0.0.1:{rogue.port}"]
    assert rogue.wait_idle()
    assert rogue.received == b""


async def test_mounted_pinned_proxy_transport(
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    origin_policy: PinPolicy,
) -> None:
    rogue = serve(rogue_cert)
    with ConnectProxy() as proxy:
        mounted = pinsdk.PinnedTransport(origin_policy, verify=device_trust(), proxy=proxy.url)
        async with pinsdk.AsyncClient(
            pins=origin_policy, verify=device_trust(), mounts={"https://": mounted}
        ) as client:
            with pytest.raises(pinsdk.PinValidationError):
                await client.get(rogue.url())
        assert proxy.connects == [f"127.0.0.1:{rogue.port}"]
