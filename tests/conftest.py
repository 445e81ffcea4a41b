"""Shared fixtures: real CAs (trustme), real TLS servers on 127.0.0.1."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trustme

from pinsdk._core.pins import spki_pin
from pinsdk._demo.loopback import Handler, LoopbackTLSServer

from .signing import ed25519_key
from .updates import UpdateServer

API_HOSTS = ("127.0.0.1", "localhost", "api.pinsdk.test")
TOKEN = "Bearer s3cret-token-never-leaks"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """The API's real CA: trusted by the device."""
    return trustme.CA()


@pytest.fixture(scope="session")
def intermediate(ca: trustme.CA) -> trustme.CA:
    return ca.create_child_ca()


@pytest.fixture(scope="session")
def rogue_ca() -> trustme.CA:
    """Another CA the device also trusts (a corporate or malware-installed proxy CA)."""
    return trustme.CA()


@pytest.fixture(scope="session")
def api_cert(intermediate: trustme.CA) -> trustme.LeafCert:
    """Leaf -> intermediate -> root: a three-certificate verified chain."""
    return intermediate.issue_cert(*API_HOSTS)


@pytest.fixture(scope="session")
def rogue_cert(rogue_ca: trustme.CA) -> trustme.LeafCert:
    return rogue_ca.issue_cert(*API_HOSTS)


def pin_of(pem: bytes) -> str:
    return spki_pin(pem)


@pytest.fixture(scope="session")
def pins(ca: trustme.CA, intermediate: trustme.CA, api_cert: trustme.LeafCert) -> dict[str, str]:
    return {
        "leaf": pin_of(api_cert.cert_chain_pems[0].bytes()),
        "intermediate": pin_of(intermediate.cert_pem.bytes()),
        "root": pin_of(ca.cert_pem.bytes()),
    }


@pytest.fixture
def device_trust(ca: trustme.CA, rogue_ca: trustme.CA) -> Callable[[], ssl.SSLContext]:
    """A fresh client context trusting both the real and the rogue CA, as a device would."""

    def make() -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        rogue_ca.configure_trust(ctx)
        return ctx

    return make


@pytest.fixture
def serve() -> Iterator[Callable[..., LoopbackTLSServer]]:
    """Start loopback TLS servers presenting a given trustme leaf; all stop at teardown."""
    started: list[LoopbackTLSServer] = []

    def start(
        cert: trustme.LeafCert,
        *,
        http2: bool = True,
        body: bytes = b"ok",
        handler: Handler | None = None,
    ) -> LoopbackTLSServer:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        server = LoopbackTLSServer(ctx, http2=http2, body=body, handler=handler).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def updates(serve: Callable[..., LoopbackTLSServer], api_cert: trustme.LeafCert) -> UpdateServer:
    """A real HTTPS update server on loopback (see tests/updates.py)."""
    return UpdateServer(serve, api_cert)


@pytest.fixture
def signer() -> Any:
    """A fresh Ed25519 signing key."""
    return ed25519_key()
