"""The pin check on real loopback TLS, asyncio and trio, HTTP/1.1 and HTTP/2."""

from __future__ import annotations

import base64
import hashlib
import logging
import ssl
from collections.abc import Callable

import httpx
import pytest
import trustme

import pinsdk
from pinsdk import DomainPins, PinPolicy
from pinsdk._demo.loopback import LoopbackTLSServer

from .conftest import TOKEN

pytestmark = pytest.mark.anyio


def policy(*pins: str, host: str = "127.0.0.1", mode: str = "enforce", **kw: object) -> PinPolicy:
    return PinPolicy([DomainPins(host, pins, mode=mode)], **kw)  # type: ignore[arg-type]


BACKUP = "sha256/" + base64.b64encode(hashlib.sha256(b"offline backup key").digest()).decode()


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
@pytest.mark.parametrize("which", ["leaf", "intermediate", "root"])
async def test_matching_pin_connects(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    which: str,
    http2: bool,
) -> None:
    server = serve(api_cert, body=b"pinned ok")
    async with pinsdk.AsyncClient(
        pins=policy(pins[which], BACKUP), verify=device_trust(), http2=http2
    ) as client:
        response = await client.get(server.url(), headers={"Authorization": TOKEN})
    assert response.status_code == 200
    assert response.text == "pinned ok"
    assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    assert TOKEN.encode() in server.received or http2  # h2 compresses headers (HPACK)
    assert server.requests[0].get("authorization") == TOKEN


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
async def test_rogue_server_gets_zero_bytes(
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    http2: bool,
) -> None:
    rogue = serve(rogue_cert)
    async with pinsdk.AsyncClient(
        pins=policy(pins["leaf"], pins["intermediate"]), verify=device_trust(), http2=http2
    ) as client:
        with pytest.raises(pinsdk.PinValidationError) as info:
            await client.post(rogue.url(), headers={"Authorization": TOKEN}, content=b"secret body")
    assert rogue.wait_idle()
    assert rogue.received == b""
    assert rogue.requests == []
    assert rogue.handshakes_completed == 0  # the client's Finished never left
    err = info.value
    assert isinstance(err, httpx.ConnectError)
    assert isinstance(err, pinsdk.PinningError)
    assert err.request.url.port == rogue.port
    assert err.host == "127.0.0.1"
    assert err.expected_pins == tuple(sorted({pins["leaf"], pins["intermediate"]}))
    assert len(err.served_pins) == 2  # rogue leaf + rogue root, from the verified chain
    assert isinstance(err.served_pins, tuple)
    assert err.port == rogue.port
    assert str(err).startswith(f"Certificate pinning failure for 127.0.0.1:{rogue.port}: ")


async def test_unpinned_httpx_leaks_to_the_same_rogue(
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
) -> None:
    """The control experiment: the rogue server above is a working MitM without pins."""
    rogue = serve(rogue_cert)
    async with httpx.AsyncClient(verify=device_trust()) as client:
        await client.get(rogue.url(), headers={"Authorization": TOKEN})
    assert TOKEN.encode() in rogue.received


async def test_error_message_lists_chain_and_pins(
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    rogue_ca: trustme.CA,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    rogue = serve(rogue_cert)
    async with pinsdk.AsyncClient(
        pins=policy(pins["leaf"], BACKUP), verify=device_trust()
    ) as client:
        with pytest.raises(pinsdk.PinValidationError) as info:
            await client.get(rogue.url())
    message = str(info.value)
    rogue_leaf = pinsdk.spki_pin(rogue_cert.cert_chain_pems[0].bytes())
    rogue_root = pinsdk.spki_pin(rogue_ca.cert_pem.bytes())
    assert info.value.served_pins == (rogue_leaf, rogue_root)
    assert f"{rogue_leaf} : " in message
    assert f"{rogue_root} : OU=Testing CA" in message
    assert pins["leaf"] in message
    assert BACKUP in message
    assert "Certificate pinning failure for 127.0.0.1" in message


async def test_pin_failure_is_not_retried(
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    rogue = serve(rogue_cert)
    transport = pinsdk.PinnedTransport(
        policy(pins["leaf"], BACKUP), verify=device_trust(), retries=3
    )
    async with pinsdk.AsyncClient(pins=transport.pins, transport=transport) as client:
        with pytest.raises(pinsdk.PinValidationError):
            await client.get(rogue.url())
    assert rogue.wait_idle()
    assert rogue.connections == 1


async def test_report_mode_connects_and_warns(
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    rogue = serve(rogue_cert)
    caplog.set_level(logging.WARNING, logger="pinsdk")
    async with pinsdk.AsyncClient(
        pins=policy(pins["leaf"], BACKUP, mode="report"), verify=device_trust()
    ) as client:
        response = await client.get(rogue.url())
    assert response.status_code == 200
    records = [r for r in caplog.records if "report mode" in r.getMessage()]
    assert len(records) == 1
    assert records[0].name == "pinsdk"
    assert records[0].levelno == logging.WARNING
    assert "127.0.0.1" in records[0].getMessage()


async def test_unpinned_host_connects_but_deny_applies(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    server = serve(api_cert)
    other = PinPolicy([DomainPins("elsewhere.example", [pins["leaf"], BACKUP])])
    async with pinsdk.AsyncClient(pins=other, verify=device_trust()) as client:
        assert (await client.get(server.url())).status_code == 200
    deny_root = PinPolicy(deny=[pins["root"]])
    async with pinsdk.AsyncClient(pins=deny_root, verify=device_trust()) as client:
        with pytest.raises(pinsdk.PinValidationError) as info:
            await client.get(server.url())
    assert info.value.denied_pins == (pins["root"],)
    assert "denied" in str(info.value)


async def test_deny_wins_over_a_matching_pin(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    server = serve(api_cert)
    both = policy(pins["leaf"], BACKUP, deny=[pins["intermediate"]])
    async with pinsdk.AsyncClient(pins=both, verify=device_trust()) as client:
        with pytest.raises(pinsdk.PinValidationError):
            await client.get(server.url())
    assert server.wait_idle()
    assert server.received == b""


async def test_sni_hostname_and_name_normalisation(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    server, rogue = serve(api_cert), serve(rogue_cert)
    pinned = PinPolicy([DomainPins("API.PinSDK.test.", [pins["root"], BACKUP])])
    async with pinsdk.AsyncClient(pins=pinned, verify=device_trust()) as client:
        ok = await client.get(server.url(), extensions={"sni_hostname": "api.pinsdk.test"})
        assert ok.status_code == 200
        with pytest.raises(pinsdk.PinValidationError) as info:
            await client.get(rogue.url(), extensions={"sni_hostname": "api.pinsdk.test"})
    assert info.value.host == "api.pinsdk.test"


class Swappable:
    """A minimal dynamic pin source: anything with ``.current`` works."""

    def __init__(self, policy: PinPolicy) -> None:
        self.current = policy


async def test_swapped_policy_applies_to_next_new_connection(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    rogue_cert: trustme.LeafCert,
    rogue_ca: trustme.CA,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    server = serve(api_cert)
    source = Swappable(policy(pins["leaf"], BACKUP))
    async with pinsdk.AsyncClient(pins=source, verify=device_trust()) as client:
        assert (await client.get(server.url())).status_code == 200
        source.current = policy(pinsdk.spki_pin(rogue_ca.cert_pem.bytes()), BACKUP)
        # The pooled connection is checked again under the new policy, which refuses it.
        with pytest.raises(pinsdk.PinValidationError):
            await client.get(server.url())
        assert server.connections == 1
    async with pinsdk.AsyncClient(pins=source, verify=device_trust()) as client:
        with pytest.raises(pinsdk.PinValidationError):
            await client.get(server.url())
        rogue = serve(rogue_cert)
        assert (await client.get(rogue.url())).status_code == 200


async def test_failing_pin_source_fails_closed(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
) -> None:
    class Broken:
        @property
        def current(self) -> PinPolicy:
            raise RuntimeError("store unavailable")

    server = serve(api_cert)
    async with pinsdk.AsyncClient(pins=Broken(), verify=device_trust()) as client:
        with pytest.raises(pinsdk.PinCheckUnavailableError, match="store unavailable"):
            await client.get(server.url())
    assert server.wait_idle()
    assert server.received == b""


async def test_weakened_context_after_construction_fails_closed(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    server = serve(api_cert)
    ctx = device_trust()
    async with pinsdk.AsyncClient(pins=policy(pins["leaf"], BACKUP), verify=ctx) as client:
        ctx.check_hostname = False
        with pytest.raises(pinsdk.PinCheckUnavailableError, match="hostname"):
            await client.get(server.url())


def test_sync_httpx_client_with_pinned_context(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    server, rogue = serve(api_cert), serve(rogue_cert)
    ctx = pinsdk.pinned_ssl_context(policy(pins["intermediate"], BACKUP), verify=device_trust())
    with httpx.Client(verify=ctx) as client:
        assert client.get(server.url()).status_code == 200
        with pytest.raises(pinsdk.PinValidationError):
            client.get(rogue.url(), headers={"Authorization": TOKEN})
    assert rogue.wait_idle()
    assert TOKEN.encode() not in rogue.received
    assert rogue.requests == []
