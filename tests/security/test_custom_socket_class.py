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
