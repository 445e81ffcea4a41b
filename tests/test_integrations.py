"""The recipes of docs/integrations.md, run as written against real loopback servers.

Each recipe is read from the page (so the page and the tests cannot drift), then run against
the right server (it answers) and an impostor whose certificate the machine trusts: the
impostor receives zero request bytes and the library raises its own certificate error, with
the pin failure inside. Nothing is logged at ERROR, by asyncio or by pinsdk.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import httpx
import pytest
import requests
import trustme
import urllib3
import websockets
from websockets.asyncio.server import serve as ws_serve

import pinsdk
from pinsdk import DomainPins, PinPolicy
from pinsdk._demo.loopback import LoopbackTLSServer

from .conftest import TOKEN
from .security.test_pool_recheck import Swappable
from .tlsbio import handshake_over

PAGE = Path(__file__).resolve().parent.parent / "docs" / "integrations.md"
MARKER = "<!-- docs-test: skip: run by tests/test_integrations.py -->"
BACKUP = "sha256/" + base64.b64encode(hashlib.sha256(b"backup").digest()).decode()


def recipes() -> dict[str, str]:
    """The code of every fence marked as run here, by the heading of its section."""
    found: dict[str, str] = {}
    heading = ""
    lines = PAGE.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.startswith("## "):
            heading = line[3:].strip()
        elif line == MARKER:
            assert lines[i + 1] == "```python", f"{heading}: the marker must precede a fence"
            end = lines.index("```", i + 2)
            assert heading not in found, f"two recipes under {heading!r}"
            found[heading] = "\n".join(lines[i + 2 : end]) + "\n"
    return found


RECIPES = recipes()


def recipe(heading: str) -> dict[str, Any]:
    """Run the recipe under ``heading`` and return what it defines."""
    namespace: dict[str, Any] = {"__name__": "recipe_" + re.sub(r"\W", "_", heading)}
    exec(compile(RECIPES[heading], f"{PAGE}:{heading}", "exec"), namespace)
    return namespace


def test_every_marked_recipe_is_run_here() -> None:
    assert sorted(RECIPES) == sorted(
        [
            "asyncio streams",
            "anyio streams (asyncio and trio)",
            "aiohttp",
            "requests",
            "urllib3",
            "websockets",
            "Resumed TLS sessions",
        ]
    )


@pytest.fixture
def pinned(pins: dict[str, str]) -> PinPolicy:
    return PinPolicy([DomainPins("127.0.0.1", [pins["intermediate"], BACKUP])])


@pytest.fixture
def servers(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    rogue_cert: trustme.LeafCert,
) -> tuple[LoopbackTLSServer, LoopbackTLSServer]:
    return serve(api_cert, http2=False, body=b"pinned ok"), serve(rogue_cert, http2=False)


@pytest.fixture
def no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    records = caplog.get_records("call")
    loud = [r for r in records if r.levelno >= logging.ERROR]
    assert loud == [], [r.getMessage() for r in loud]
    warnings = [r for r in records if r.name == "pinsdk" and r.levelno == logging.WARNING]
    assert any("enforced, connection refused" in r.getMessage() for r in warnings)


def pin_error(exc: BaseException) -> pinsdk.PinCertVerificationError:
    """The pinsdk error in an exception's cause/context chain (bounded walk)."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            break
        if isinstance(seen, pinsdk.PinCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__ or getattr(seen, "reason", None)
    raise AssertionError(f"no PinCertVerificationError behind {exc!r}")


def assert_refused_cleanly(
    exc: BaseException, impostor: LoopbackTLSServer, pinned: PinPolicy
) -> None:
    error = pin_error(exc)
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert error.verify_code == 50
    assert error.failure is not None
    assert error.failure.host == "127.0.0.1"
    assert error.failure.expected_pins == pinned.pins_for("127.0.0.1")
    assert impostor.wait_idle()
    assert impostor.received == b""
    assert impostor.requests == []


async def run_stream_recipe(
    heading: str,
    servers: tuple[LoopbackTLSServer, LoopbackTLSServer],
    trust: Callable[[], ssl.SSLContext],
    pinned: PinPolicy,
) -> None:
    """A recipe whose ``fetch(host, port, pins, verify)`` talks HTTP over a raw TLS stream."""
    fetch = recipe(heading)["fetch"]
    good, impostor = servers
    assert (await fetch("127.0.0.1", good.port, pinned, trust())).endswith(b"pinned ok")
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        await fetch("127.0.0.1", impostor.port, pinned, trust())
    assert_refused_cleanly(info.value, impostor, pinned)
    assert impostor.handshakes_completed == 0  # the client's Finished never left


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.usefixtures("no_errors_logged")
async def test_asyncio_streams(
    servers: tuple[LoopbackTLSServer, LoopbackTLSServer],
    device_trust: Callable[[], ssl.SSLContext],
    pinned: PinPolicy,
) -> None:
    await run_stream_recipe("asyncio streams", servers, device_trust, pinned)


@pytest.mark.anyio
@pytest.mark.usefixtures("no_errors_logged")
async def test_anyio_streams_on_asyncio_and_trio(
    servers: tuple[LoopbackTLSServer, LoopbackTLSServer],
    device_trust: Callable[[], ssl.SSLContext],
    pinned: PinPolicy,
) -> None:
    await run_stream_recipe("anyio streams (asyncio and trio)", servers, device_trust, pinned)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.usefixtures("no_errors_logged")
async def test_aiohttp(
    servers: tuple[LoopbackTLSServer, LoopbackTLSServer],
    device_trust: Callable[[], ssl.SSLContext],
    pinned: PinPolicy,
) -> None:
    fetch = recipe("aiohttp")["fetch"]
    good, impostor = servers
    assert await fetch(good.url(), pinned, device_trust()) == b"pinned ok"
    with pytest.raises(aiohttp.ClientConnectorCertificateError) as info:
        await fetch(impostor.url(), pinned, device_trust())
    assert isinstance(info.value.certificate_error, pinsdk.PinCertVerificationError)
    assert_refused_cleanly(info.value.certificate_error, impostor, pinned)


def test_requests(
    servers: tuple[LoopbackTLSServer, LoopbackTLSServer],
    device_trust: Callable[[], ssl.SSLContext],
    pinned: PinPolicy,
    no_errors_logged: None,
) -> None:
    fetch = recipe("requests")["fetch"]
    good, impostor = servers
    assert fetch(good.url(), pinned, device_trust()) == b"pinned ok"
    with pytest.raises(requests.exceptions.SSLError) as info:
        fetch(impostor.url(), pinned, device_trust())
    assert_refused_cleanly(info.value, impostor, pinned)


def test_requests_adapter_never_runs_unverified(
    servers: tuple[LoopbackTLSServer, LoopbackTLSServer],
    device_trust: Callable[[], ssl.SSLContext],
    pinned: PinPolicy,
) -> None:
    good, _ = servers
    adapter = recipe("requests")["PinnedAdapter"](pinned, device_trust())
    with requests.Session() as session:
        session.mount("https://", adapter)
        with pytest.raises(ValueError, match="check_hostname"):
            session.get(good.url(), verify=False, timeout=5)
    assert good.wait_idle()
    assert good.received == b""


def test_requests_adapter_trusts_only_what_it_was_given(
    servers: tuple[LoopbackTLSServer, LoopbackTLSServer], ca: trustme.CA, pinned: PinPolicy
) -> None:
    """requests names a CA bundle (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE or certifi's) for each
    pool; urllib3 would load it into the pinned context on every new connection."""
    good, _ = servers
    private = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no default store: this CA only
    ca.configure_trust(private)
    adapter = recipe("requests")["PinnedAdapter"](pinned, private)
    before = adapter.ssl_context.cert_store_stats()
    assert before["x509_ca"] == 1
    with requests.Session() as session:
        session.mount("https://", adapter)
        for _ in range(2):
            assert session.get(good.url(), timeout=5).content == b"pinned ok"
            adapter.poolmanager.clear()  # a new connection next time
    assert adapter.ssl_context.cert_store_stats() == before


def test_urllib3(
    servers: tuple[LoopbackTLSServer, LoopbackTLSServer],
    device_trust: Callable[[], ssl.SSLContext],
    pinned: PinPolicy,
    no_errors_logged: None,
) -> None:
    fetch = recipe("urllib3")["fetch"]
    good, impostor = servers
    assert fetch(good.url(), pinned, device_trust()) == b"pinned ok"
    with pytest.raises(urllib3.exceptions.SSLError) as info:
        fetch(impostor.url(), pinned, device_trust())
    assert_refused_cleanly(info.value, impostor, pinned)


class WebSocketServer:
    """A websockets server over TLS on 127.0.0.1 that records what reaches it."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.messages: list[str] = []

    def process_request(self, connection: Any, request: Any) -> None:
        self.requests.append(request.path)

    async def handler(self, websocket: Any) -> None:
        async for message in websocket:
            self.messages.append(message)
            await websocket.send(f"echo {message}")


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_websockets(
    api_cert: trustme.LeafCert,
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pinned: PinPolicy,
    no_errors_logged: None,
) -> None:
    exchange = recipe("websockets")["exchange"]
    good, impostor = WebSocketServer(), WebSocketServer()

    def context(cert: trustme.LeafCert) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        return ctx

    async with (
        ws_serve(
            good.handler,
            "127.0.0.1",
            0,
            ssl=context(api_cert),
            process_request=good.process_request,
        ) as good_server,
        ws_serve(
            impostor.handler,
            "127.0.0.1",
            0,
            ssl=context(rogue_cert),
            process_request=impostor.process_request,
        ) as impostor_server,
    ):
        good_port = good_server.sockets[0].getsockname()[1]
        impostor_port = impostor_server.sockets[0].getsockname()[1]
        reply = await exchange(f"wss://127.0.0.1:{good_port}/feed", pinned, TOKEN, device_trust())
        assert reply == f"echo {TOKEN}"
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            await exchange(f"wss://127.0.0.1:{impostor_port}/feed", pinned, TOKEN, device_trust())
    error = pin_error(info.value)
    assert error.failure is not None
    assert error.failure.host == "127.0.0.1"
    assert impostor.requests == []  # not even the HTTP upgrade request arrived
    assert impostor.messages == []
    assert good.requests == ["/feed"]
    assert websockets.__version__


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_unavailable_check_is_a_quiet_certificate_error(
    servers: tuple[LoopbackTLSServer, LoopbackTLSServer],
    device_trust: Callable[[], ssl.SSLContext],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Fail-closed refusals (the pin source raised) are ssl errors too: no "Fatal error"."""

    class Broken:
        @property
        def current(self) -> PinPolicy:
            raise RuntimeError("pin store unavailable")

    fetch = recipe("asyncio streams")["fetch"]
    good, _ = servers
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        await fetch("127.0.0.1", good.port, Broken(), device_trust())
    assert isinstance(info.value, pinsdk.PinCertVerificationError)
    assert info.value.failure is None
    assert "pin store unavailable" in str(info.value)
    assert good.wait_idle()
    assert good.received == b""
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.anyio
async def test_httpx_with_a_pinned_context_still_raises_pin_validation_error(
    servers: tuple[LoopbackTLSServer, LoopbackTLSServer],
    device_trust: Callable[[], ssl.SSLContext],
    pinned: PinPolicy,
) -> None:
    """Plain httpx on a pinned context: pinsdk's error, not retried (asyncio and trio)."""
    good, impostor = servers
    context = pinsdk.pinned_ssl_context(pinned, verify=device_trust())
    transport = httpx.AsyncHTTPTransport(verify=context, retries=3)
    async with httpx.AsyncClient(transport=transport) as client:
        assert (await client.get(good.url())).text == "pinned ok"
        with pytest.raises(pinsdk.PinValidationError):
            await client.get(impostor.url())
    assert impostor.wait_idle()
    assert impostor.handshakes_failed == 1


# -- resumed sessions ---------------------------------------------------------------


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_resumed_session_is_judged_on_the_remembered_chain(
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pinned: PinPolicy,
    pins: dict[str, str],
    version: ssl.TLSVersion,
) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    api_cert.configure_cert(server_context)
    server_context.maximum_version = version
    with LoopbackTLSServer(server_context, http2=False) as server:
        two_connections = recipe("Resumed TLS sessions")["two_connections"]
        assert two_connections("127.0.0.1", server.port, pinned, device_trust()) is True
        assert len(server.requests) == 2

        # The policy in force judges the remembered chain: a key denied since is refused.
        source = Swappable(pinned)
        context = pinsdk.pinned_ssl_context(source, verify=device_trust())
        with context.wrap_socket(
            socket.create_connection(("127.0.0.1", server.port), timeout=10),
            server_hostname="127.0.0.1",
        ) as first:
            first.sendall(b"GET /first HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert first.recv(65536).startswith(b"HTTP/1.1 200")
            session = first.session
        source.current = PinPolicy(
            [DomainPins("127.0.0.1", [pins["intermediate"], BACKUP])],
            deny=[pins["root"]],
            version=2,
        )
        with pytest.raises(pinsdk.PinCertVerificationError) as info:
            context.wrap_socket(
                socket.create_connection(("127.0.0.1", server.port), timeout=10),
                server_hostname="127.0.0.1",
                session=session,
            )
        assert info.value.failure is not None
        assert info.value.failure.denied_pins == (pins["root"],)
        assert server.wait_idle()
    assert [r[":path"] for r in server.requests] == ["/", "/", "/first"]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_resumed_session_on_asyncio(
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pinned: PinPolicy,
) -> None:
    """asyncio never resumes by itself; an SSLObject handed a session by hand resumes."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    api_cert.configure_cert(server_context)
    with LoopbackTLSServer(server_context, http2=False) as server:
        context = pinsdk.pinned_ssl_context(pinned, verify=device_trust())

        def handshake(session: ssl.SSLSession | None) -> ssl.SSLObject:
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1", session=session)
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
                handshake_over(tls, raw, incoming, outgoing)
                raw.sendall(outgoing.read())
                tls.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                raw.sendall(outgoing.read())
                for _ in range(20):
                    data = raw.recv(65536)
                    if not data:
                        break
                    incoming.write(data)
                    try:
                        while tls.read(65536):
                            pass
                    except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                        pass
            return tls

        first = await anyio.to_thread.run_sync(handshake, None)
        second = await anyio.to_thread.run_sync(handshake, first.session)
        assert second.session_reused
        assert server.wait_idle()
    assert len(server.requests) == 2


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.usefixtures("no_errors_logged")
async def test_trio_ssl_stream(
    servers: tuple[LoopbackTLSServer, LoopbackTLSServer],
    device_trust: Callable[[], ssl.SSLContext],
    pinned: PinPolicy,
) -> None:
    """trio's own SSLStream turns the ssl error into BrokenResourceError, caused by ours."""
    import trio

    good, impostor = servers
    context = pinsdk.pinned_ssl_context(pinned, verify=device_trust())
    stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", good.port, ssl_context=context)
    await stream.do_handshake()
    await stream.aclose()
    refused = await trio.open_ssl_over_tcp_stream("127.0.0.1", impostor.port, ssl_context=context)
    with pytest.raises(trio.BrokenResourceError) as info:
        await refused.do_handshake()  # trio handshakes on first use
    await refused.aclose()
    assert_refused_cleanly(info.value, impostor, pinned)
