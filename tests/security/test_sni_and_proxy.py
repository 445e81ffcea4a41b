"""``sni_hostname`` and ``https://`` proxies: real TLS on loopback, asyncio and trio.

- The TLS layer checks the pins of the name it sends (SNI), while httpcore pools
  connections by URL origin: a connection checked for another name must never carry a
  request to the URL host, and a URL host with enforced pins is never reached under
  another name.
- An ``https://`` proxy's own TLS uses the client's trust and, if its host is pinned, is
  pin-checked like an origin: a rogue certificate on the proxy gets no CONNECT and no
  proxy credentials.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import ssl
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import trustme

import pinsdk
from pinsdk import DomainPins, PinPolicy
from pinsdk._demo.loopback import LoopbackTLSServer

from ..conftest import TOKEN, pin_of
from ..proxy import ConnectProxy

pytestmark = pytest.mark.anyio

BACKUP = "sha256/" + base64.b64encode(hashlib.sha256(b"backup").digest()).decode()
PROXY_SECRET = "proxy-password-never-leaks"


class Swappable:
    """A pin source test double: the policy in force, swapped by one assignment."""

    def __init__(self, policy: PinPolicy) -> None:
        self.current = policy


# -- sni_hostname ------------------------------------------------------------------------


async def test_sni_hostname_cannot_dodge_the_url_hosts_pins(
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    """The issue's case: 127.0.0.1 is pinned, api.pinsdk.test is not; the rogue server's
    certificate is valid for both. Naming the unpinned host in SNI must not open (and
    pool) a connection that a plain request to the pinned URL host then reuses."""
    rogue = serve(rogue_cert)
    policy = PinPolicy([DomainPins("127.0.0.1", [pins["intermediate"], BACKUP])])
    async with pinsdk.AsyncClient(pins=policy, verify=device_trust()) as client:
        with pytest.raises(pinsdk.SNIHostnameError, match="has enforced pins") as info:
            await client.get(
                rogue.url(),
                headers={"Authorization": TOKEN},
                extensions={"sni_hostname": "api.pinsdk.test"},
            )
        assert isinstance(info.value, httpx.TransportError)
        assert info.value.request.url == rogue.url()
        with pytest.raises(pinsdk.PinValidationError):
            await client.get(rogue.url(), headers={"Authorization": TOKEN})
    assert rogue.wait_idle()
    assert rogue.received == b""
    assert rogue.handshakes_completed == 0  # the refused SNI request opened nothing


async def test_a_connection_opened_under_another_sni_name_is_never_pooled_for_the_url_host(
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    """Dynamic pins: the URL host becomes pinned after an SNI request was served. A
    plain request to it opens a new connection, checked for the URL host."""
    rogue = serve(rogue_cert)
    source = Swappable(PinPolicy())
    async with pinsdk.AsyncClient(pins=source, verify=device_trust()) as client:
        sni = {"sni_hostname": "api.pinsdk.test"}
        for _ in range(2):  # one connection for this name, kept alive
            assert (await client.get(rogue.url(), extensions=sni)).status_code == 200
        assert rogue.connections == 1
        source.current = PinPolicy([DomainPins("127.0.0.1", [pins["intermediate"], BACKUP])])
        with pytest.raises(pinsdk.PinValidationError) as info:
            await client.get(rogue.url(), headers={"Authorization": TOKEN})
        assert info.value.host == "127.0.0.1"
        assert info.value.stage == "handshake"
        with pytest.raises(pinsdk.SNIHostnameError):
            await client.get(rogue.url(), headers={"Authorization": TOKEN}, extensions=sni)
    assert rogue.wait_idle()
    assert rogue.connections == 2
    assert len(rogue.requests) == 2
    assert TOKEN.encode() not in rogue.received


@pytest.mark.parametrize(
    ("url_host", "sni"), [("127.0.0.1", "127.0.0.1"), ("localhost", "LOCALHOST")]
)
async def test_sni_hostname_naming_the_url_host_shares_the_pool(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    url_host: str,
    sni: str,
) -> None:
    """An sni_hostname that names the (pinned) URL host, in any spelling, is no reason to
    refuse or to keep connections apart: one pool, one connection."""
    server = serve(api_cert)
    policy = PinPolicy([DomainPins(url_host, [pins["intermediate"], BACKUP])])
    async with pinsdk.AsyncClient(pins=policy, verify=device_trust()) as client:
        url = server.url(url_host)
        assert (await client.get(url, extensions={"sni_hostname": sni})).status_code == 200
        assert (await client.get(url)).status_code == 200
    assert server.connections == 1


async def test_report_mode_url_host_with_another_sni_name_warns(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = serve(api_cert)
    policy = PinPolicy(
        [
            DomainPins("127.0.0.1", [BACKUP], mode="report"),
            DomainPins("api.pinsdk.test", [pins["root"], BACKUP]),
        ]
    )
    async with pinsdk.AsyncClient(pins=policy, verify=device_trust()) as client:
        with caplog.at_level(logging.WARNING, logger="pinsdk"):
            response = await client.get(
                server.url(), extensions={"sni_hostname": "api.pinsdk.test"}
            )
        assert response.status_code == 200
        assert "are not checked on this connection" in caplog.text


async def test_invalid_sni_hostname_is_refused(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    server = serve(api_cert)
    policy = PinPolicy([DomainPins("api.pinsdk.test", [pins["root"], BACKUP])])
    async with pinsdk.AsyncClient(pins=policy, verify=device_trust()) as client:
        with pytest.raises(pinsdk.SNIHostnameError, match="not a valid host name"):
            await client.get(server.url(), extensions={"sni_hostname": "bad host!"})
    assert server.connections == 0


# -- https:// proxies --------------------------------------------------------------------


@pytest.fixture(scope="module")
def proxy_ca() -> trustme.CA:
    """The CA of the company proxy: only in the app's own bundle, not the device's."""
    return trustme.CA()


def tls_proxy(issuer: trustme.CA) -> ConnectProxy:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    issuer.issue_cert("localhost").configure_cert(ctx)
    return ConnectProxy(tls_context=ctx, host="localhost")


def pinned_policy(pins: dict[str, str], proxy_ca: trustme.CA) -> PinPolicy:
    return PinPolicy(
        [
            DomainPins("localhost", [pin_of(proxy_ca.cert_pem.bytes()), BACKUP]),
            DomainPins("api.pinsdk.test", [pins["intermediate"], BACKUP]),
        ]
    )


@pytest.mark.parametrize("how", ["client", "proxy-ssl-context", "transport", "environment"])
async def test_pinned_https_proxy_with_a_rogue_certificate_gets_nothing(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    rogue_ca: trustme.CA,
    proxy_ca: trustme.CA,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    """A MitM in front of the proxy with a device-trusted certificate: the proxy's TLS is
    refused at its handshake, so neither the CONNECT nor the proxy credentials leave."""
    server = serve(api_cert)
    policy = pinned_policy(pins, proxy_ca)
    trust = device_trust()
    proxy_ca.configure_trust(trust)
    with tls_proxy(rogue_ca) as proxy:
        client = _client(how, policy, trust, proxy, monkeypatch)
        async with client:
            with pytest.raises(pinsdk.PinValidationError) as info:
                await client.get(server.url("api.pinsdk.test"), headers={"Authorization": TOKEN})
    assert info.value.host == "localhost"
    assert proxy.connects == []
    assert bytes(proxy.received) == b""
    assert server.connections == 0


@pytest.mark.parametrize("sni", ["unpinned.test", "url-host"])
@pytest.mark.parametrize("how", ["client", "transport"])
async def test_sni_hostname_cannot_move_a_pinned_proxys_check(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    rogue_ca: trustme.CA,
    proxy_ca: trustme.CA,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    how: str,
    sni: str,
) -> None:
    """Red-team finding: httpcore hands a request's extensions to the proxy connection, so
    an ``sni_hostname`` would make the pinned proxy's TLS send, and be checked under, that
    name; a rogue certificate for it in front of the proxy then got the CONNECT and the
    proxy password. Through a proxy, pinned clients refuse ``sni_hostname``."""
    server = serve(api_cert)
    trust = device_trust()
    proxy_ca.configure_trust(trust)
    url_host = "unpinned.test"
    name = url_host if sni == "url-host" else sni
    with tls_proxy(rogue_ca) as proxy:
        client = _client(how, pinned_policy(pins, proxy_ca), trust, proxy, monkeypatch)
        async with client:
            with pytest.raises(pinsdk.SNIHostnameError, match="proxy"):
                await client.get(
                    f"https://{url_host}:{server.port}/",
                    extensions={"sni_hostname": name},
                    headers={"Authorization": TOKEN},
                )
    assert proxy.connects == []
    assert bytes(proxy.received) == b""


@pytest.mark.parametrize("how", ["client", "proxy-ssl-context", "transport", "environment"])
async def test_pinned_https_proxy_with_its_own_key_tunnels(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    proxy_ca: trustme.CA,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    server = serve(api_cert)
    trust = device_trust()
    proxy_ca.configure_trust(trust)
    with tls_proxy(proxy_ca) as proxy:
        client = _client(how, pinned_policy(pins, proxy_ca), trust, proxy, monkeypatch)
        async with client:
            ok = await client.get(server.url("api.pinsdk.test"), headers={"Authorization": TOKEN})
            assert ok.status_code == 200
    assert proxy.connects == [f"api.pinsdk.test:{server.port}"]
    assert b"Proxy-Authorization: Basic" in bytes(proxy.received)
    assert server.requests[0]["authorization"] == TOKEN


def _client(
    how: str,
    policy: PinPolicy,
    trust: ssl.SSLContext,
    proxy: ConnectProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> httpx.AsyncClient:
    auth = ("user", PROXY_SECRET)
    if how == "client":
        proxy_arg = httpx.Proxy(proxy.url, auth=auth)
        return pinsdk.AsyncClient(pins=policy, verify=trust, proxy=proxy_arg)
    if how == "proxy-ssl-context":  # the app's own proxy context gets the pin check too
        # A context of its own, trusting what the client trusts.
        own = ssl.create_default_context(cadata=b"".join(trust.get_ca_certs(binary_form=True)))
        proxy_arg = httpx.Proxy(proxy.url, ssl_context=own, auth=auth)
        return pinsdk.AsyncClient(pins=policy, verify=trust, proxy=proxy_arg)
    if how == "transport":
        transport = pinsdk.PinnedTransport(
            policy, verify=trust, proxy=httpx.Proxy(proxy.url, auth=auth)
        )
        return httpx.AsyncClient(transport=transport)
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url.replace("://", f"://user:{PROXY_SECRET}@"))
    return pinsdk.AsyncClient(pins=policy, verify=trust)


@pytest.mark.parametrize("verify", ["bundle", "context"])
@pytest.mark.parametrize("where", ["client", "transport"])
async def test_unpinned_https_proxy_is_verified_with_the_clients_trust(
    serve: Callable[..., LoopbackTLSServer],
    ca: trustme.CA,
    api_cert: trustme.LeafCert,
    proxy_ca: trustme.CA,
    rogue_ca: trustme.CA,
    pins: dict[str, str],
    tmp_path: Path,
    verify: str,
    where: str,
) -> None:
    """A proxy certificate from a CA in the client's own bundle works (httpcore's default
    store does not know it); one from a CA outside it fails ordinary verification."""
    server = serve(api_cert)
    policy = PinPolicy([DomainPins("api.pinsdk.test", [pins["intermediate"], BACKUP])])

    def trust() -> str | ssl.SSLContext:
        if verify == "bundle":
            bundle = tmp_path / "bundle.pem"
            bundle.write_bytes(ca.cert_pem.bytes() + proxy_ca.cert_pem.bytes())
            return str(bundle)
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        proxy_ca.configure_trust(ctx)
        return ctx

    def client(proxy_url: str) -> httpx.AsyncClient:
        if where == "client":
            return pinsdk.AsyncClient(pins=policy, verify=trust(), proxy=proxy_url)
        transport = pinsdk.PinnedTransport(policy, verify=trust(), proxy=proxy_url)
        return httpx.AsyncClient(transport=transport)

    with tls_proxy(proxy_ca) as proxy:
        async with client(proxy.url) as good:
            assert (await good.get(server.url("api.pinsdk.test"))).status_code == 200
    with tls_proxy(rogue_ca) as stranger:  # a CA the client's trust does not hold
        async with client(stranger.url) as bad:
            with pytest.raises(httpx.ConnectError) as info:
                await bad.get(server.url("api.pinsdk.test"), headers={"Authorization": TOKEN})
    assert not isinstance(info.value, pinsdk.PinningError)
    assert any(isinstance(e, ssl.SSLCertVerificationError) for e in _chain(info.value))
    assert stranger.connects == []
    assert len(server.requests) == 1
    assert TOKEN.encode() not in server.received


def _chain(exc: BaseException | None) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen and len(seen) < 20:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def test_proxy_context_that_does_not_verify_is_refused(pins: dict[str, str]) -> None:
    policy = PinPolicy([DomainPins("api.pinsdk.test", [pins["intermediate"], BACKUP])])
    lax = ssl.create_default_context()
    lax.check_hostname = False
    lax.verify_mode = ssl.CERT_NONE
    proxy = httpx.Proxy("https://localhost:3128", ssl_context=lax)
    with pytest.raises(pinsdk.PinConfigError, match=r"https proxy .*CERT_REQUIRED"):
        pinsdk.AsyncClient(pins=policy, proxy=proxy)
    with pytest.raises(pinsdk.PinConfigError, match=r"https proxy .*CERT_REQUIRED"):
        pinsdk.PinnedTransport(policy, proxy=proxy)


async def test_proxy_context_is_separate_from_the_origins(
    device_trust: Callable[[], ssl.SSLContext], pins: dict[str, str]
) -> None:
    """Built from verify=True or a path, the proxy's context is its own (httpcore sets
    ALPN on a context before each handshake); a given SSLContext cannot be copied."""
    policy = PinPolicy([DomainPins("api.pinsdk.test", [pins["intermediate"], BACKUP])])
    transport = pinsdk.PinnedTransport(policy, proxy="https://localhost:3128")
    proxy_ctx = transport._inner._pool._proxy_ssl_context  # type: ignore[attr-defined]
    assert proxy_ctx is not transport.ssl_context
    assert pinsdk._tls.pin_check_of(proxy_ctx) is transport._check
    await transport.aclose()
