"""A context whose ``sslsocket_class`` another library replaced is refused, never pinned on
its non-blocking path only.

Found by the red-team pass: the installer refused a custom ``sslobject_class`` but skipped a
custom ``sslsocket_class`` without a word, so every blocking socket of that context (the sync
``pinsdk.Client``, ``httpx.Client``, requests, urllib3, ``wrap_socket``) went unpinned and an
impostor with a device-trusted certificate received the request.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

import pinsdk
from pinsdk import DomainPins, PinPolicy
from pinsdk._core.errors import PinConfigError
from pinsdk._demo.loopback import LoopbackTLSServer


class _AppSocket(ssl.SSLSocket):
    """What an instrumenting or green-thread library puts on a context."""


@pytest.fixture
def hooked_trust(device_trust: Callable[[], ssl.SSLContext]) -> Callable[[], ssl.SSLContext]:
    def make() -> ssl.SSLContext:
        context = device_trust()
        context.sslsocket_class = _AppSocket
        return context

    return make


def test_a_custom_sslsocket_class_is_refused_and_leaves_the_context_alone(
    hooked_trust: Callable[[], ssl.SSLContext], pins: dict[str, str]
) -> None:
    policy = PinPolicy([DomainPins("127.0.0.1", [pins["leaf"], pins["root"]])])
    context = hooked_trust()
    with pytest.raises(PinConfigError, match="custom sslsocket_class"):
        pinsdk.pinned_ssl_context(policy, verify=context)
    assert context.sslobject_class is ssl.SSLObject  # nothing half-installed
    assert context.sslsocket_class is _AppSocket


def test_the_sync_client_never_reaches_an_impostor_through_such_a_context(
    hooked_trust: Callable[[], ssl.SSLContext],
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    pins: dict[str, str],
) -> None:
    policy = PinPolicy([DomainPins("127.0.0.1", [pins["leaf"], pins["root"]])])
    impostor = serve(rogue_cert, http2=False)

    def send() -> None:
        with pinsdk.Client(pins=policy, verify=hooked_trust()) as client:
            client.get(impostor.url("127.0.0.1", "/secret"))

    with pytest.raises(PinConfigError, match="custom sslsocket_class"):
        send()
    assert impostor.wait_idle()
    assert impostor.requests == []
    assert impostor.received == b""


class _Delegating(ssl.SSLContext):
    """An SSLContext subclass that hands every connection to an inner context, as
    truststore.SSLContext does."""

    def __new__(cls, inner: ssl.SSLContext) -> _Delegating:
        return super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)

    def __init__(self, inner: ssl.SSLContext) -> None:
        self.inner = inner

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        return self.inner.wrap_socket(sock, *args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        return self.inner.wrap_bio(*args, **kwargs)


def _truststore(device_trust: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    truststore = pytest.importorskip("truststore")
    context: ssl.SSLContext = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for ca in device_trust().get_ca_certs(binary_form=True):
        context.load_verify_locations(cadata=ssl.DER_cert_to_PEM_cert(ca))
    return context


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("kind", ["truststore", "delegating"])
async def test_a_context_with_its_own_wrappers_is_refused(
    device_trust: Callable[[], ssl.SSLContext],
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    pins: dict[str, str],
    kind: str,
) -> None:
    """truststore.SSLContext (httpx's documented way to the OS trust store) wraps through an
    inner context: the pin check installed on the outer one never ran, and both clients sent
    the request to an impostor."""
    policy = PinPolicy([DomainPins("127.0.0.1", [pins["leaf"], pins["root"]])])

    def trust() -> ssl.SSLContext:
        return _truststore(device_trust) if kind == "truststore" else _Delegating(device_trust())

    impostor = serve(rogue_cert, http2=False)
    url = impostor.url("127.0.0.1", "/secret")
    with pytest.raises(PinConfigError, match="has its own wrap_"):
        pinsdk.pinned_ssl_context(policy, verify=trust())
    with pytest.raises(PinConfigError, match="has its own wrap_"):
        async with pinsdk.AsyncClient(pins=policy, verify=trust()) as client:
            await client.get(url)

    def send() -> None:
        with pinsdk.Client(pins=policy, verify=trust()) as client:
            client.get(url)

    with pytest.raises(PinConfigError, match="has its own wrap_"):
        send()
    assert impostor.wait_idle()
    assert impostor.requests == []


def test_truststore_injected_into_ssl_is_refused_whatever_verify_says(
    ca: trustme.CA,
    rogue_ca: trustme.CA,
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    pins: dict[str, str],
    tmp_path: Path,
) -> None:
    """inject_into_ssl() makes ssl.SSLContext truststore's class, so every context pinsdk
    builds itself (verify=True, a CA bundle path) is one: that path reached the impostor even
    once subclasses were refused, as the comparison was with the replaced class."""
    truststore = pytest.importorskip("truststore")
    policy = PinPolicy([DomainPins("127.0.0.1", [pins["leaf"], pins["root"]])])
    bundle = tmp_path / "device.pem"
    bundle.write_bytes(ca.cert_pem.bytes() + rogue_ca.cert_pem.bytes())
    impostor = serve(rogue_cert, http2=False)
    truststore.inject_into_ssl()
    try:
        for verify in (str(bundle), True):

            def send(verify: str | bool = verify) -> None:
                with pinsdk.Client(pins=policy, verify=verify) as client:
                    client.get(impostor.url("127.0.0.1", "/secret"))

            with pytest.raises(PinConfigError, match=r"truststore\.inject_into_ssl"):
                send()
    finally:
        truststore.extract_from_ssl()
    assert impostor.wait_idle()
    assert impostor.requests == []
