"""The httpx private API pinsdk relies on, pinned down so an httpx upgrade fails loudly.

``pinsdk.AsyncClient`` overrides ``httpx.AsyncClient._init_transport`` and
``_init_proxy_transport``: they are where httpx builds the transport of every mount,
proxies from the environment included, and the only place a subclass can make each one a
``PinnedTransport`` (the plaintext guard, failure callbacks, self-healing and the
``sni_hostname`` rule live there; the pinned ``verify=`` context alone would pin the TLS
but not those). It also reads ``_transport`` and ``_mounts`` to fail closed if httpx ever
builds a transport another way. If any of this changes shape, these tests fail before a
user's client silently loses a guard.
"""

from __future__ import annotations

import inspect

import httpx
import pytest

import pinsdk

EXPECTED = {
    "_init_transport": [
        "self",
        "verify",
        "cert",
        "trust_env",
        "http1",
        "http2",
        "limits",
        "transport",
    ],
    "_init_proxy_transport": [
        "self",
        "proxy",
        "verify",
        "cert",
        "trust_env",
        "http1",
        "http2",
        "limits",
    ],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_httpx_private_transport_builders_keep_their_signature(name: str) -> None:
    theirs = list(inspect.signature(getattr(httpx.AsyncClient, name)).parameters)
    ours = list(inspect.signature(getattr(pinsdk.AsyncClient, name)).parameters)
    assert theirs == EXPECTED[name], f"httpx.AsyncClient.{name} changed: {theirs}"
    assert ours == theirs


def test_httpx_calls_the_builders_and_keeps_what_they_return() -> None:
    calls: list[str] = []

    class Probe(httpx.AsyncClient):
        def _init_transport(self, *args: object, **kwargs: object) -> httpx.AsyncBaseTransport:
            calls.append("transport")
            return super()._init_transport(*args, **kwargs)  # type: ignore[arg-type]

        def _init_proxy_transport(
            self, *args: object, **kwargs: object
        ) -> httpx.AsyncBaseTransport:
            calls.append("proxy")
            return super()._init_proxy_transport(*args, **kwargs)  # type: ignore[arg-type]

    client = Probe(proxy="http://127.0.0.1:9", trust_env=False)
    assert calls == ["transport", "proxy"]
    assert isinstance(client._transport, httpx.AsyncHTTPTransport)
    assert all(isinstance(t, httpx.AsyncHTTPTransport) for t in client._mounts.values())


def test_httpx_default_limits_are_where_we_read_them() -> None:
    assert isinstance(httpx._config.DEFAULT_LIMITS, httpx.Limits)
