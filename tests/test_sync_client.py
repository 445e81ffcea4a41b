"""pinsdk.Client, the sync client: real loopback TLS, threads, dynamic pins, reports."""

from __future__ import annotations

import base64
import hashlib
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import trustme

import pinsdk
from pinsdk import DomainPins, PinPolicy, UpdateStatus
from pinsdk._demo.loopback import LoopbackTLSServer
from pinsdk._tls import pin_check_of

from .conftest import TOKEN
from .proxy import ConnectProxy
from .security.test_pool_recheck import Swappable
from .signing import payload, public_pem
from .test_proxies import https_proxy, proxy_client_context
from .test_reporting import Collector
from .updates import UpdateServer

BACKUP = "sha256/" + base64.b64encode(hashlib.sha256(b"backup").digest()).decode()


def policy(pin: str, version: int = 1, **kw: Any) -> PinPolicy:
    return PinPolicy([DomainPins("127.0.0.1", [pin, BACKUP])], version=version, **kw)


def doc(signer: Any, version: int, pins: list[str]) -> bytes:
    return pinsdk.sign_envelope(payload(version, [{"host": "127.0.0.1", "pins": pins}]), signer)


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_sync_client_pins_and_refuses_before_any_byte(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    http2: bool,
) -> None:
    good, rogue = serve(api_cert, body=b"pinned ok"), serve(rogue_cert)
    pinned = policy(pins["intermediate"])
    transport = pinsdk.PinnedSyncTransport(pinned, verify=device_trust(), http2=http2, retries=3)
    with pinsdk.Client(pins=pinned, transport=transport) as client:
        response = client.get(good.url(), headers={"Authorization": TOKEN})
        assert response.text == "pinned ok"
        assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
        with pytest.raises(pinsdk.PinValidationError) as info:
            client.post(rogue.url(), headers={"Authorization": TOKEN}, content=b"secret")
        stats = transport.stats()  # a transport given to the client counts into its own
    assert rogue.wait_idle()
    assert rogue.received == b""
    assert rogue.requests == []
    # A blocking socket flushes its Finished inside the handshake: the handshake completed
    # on the server's side, but no request byte followed. retries=3 does not retry it.
    assert rogue.handshakes_completed + rogue.handshakes_failed == 1
    assert isinstance(info.value, httpx.ConnectError)
    assert info.value.request.url.port == rogue.port
    assert info.value.expected_pins == tuple(sorted({pins["intermediate"], BACKUP}))
    assert stats["handshakes_passed"] == 1
    assert stats["pin_failures_enforced"] == 1


def test_plaintext_and_unpinned_transports_are_refused(
    device_trust: Callable[[], ssl.SSLContext], pins: dict[str, str]
) -> None:
    pinned = policy(pins["leaf"])
    with (
        pinsdk.Client(pins=pinned, verify=device_trust()) as client,
        pytest.raises(pinsdk.PlaintextRequestError),
    ):
        client.get("http://127.0.0.1:9/")  # refused before any connection
    with pytest.raises(pinsdk.PinConfigError, match="PinnedSyncTransport"):
        pinsdk.Client(pins=pinned, transport=httpx.HTTPTransport())
    with pytest.raises(pinsdk.PinConfigError, match="mounts"):
        pinsdk.Client(pins=pinned, mounts={"https://": httpx.HTTPTransport()})
    with pytest.raises(pinsdk.PinConfigError, match="PinnedSyncTransport"):
        pinsdk.Client(pins=pinned, transport=pinsdk.PinnedTransport(pinned))  # the async one
    with pytest.raises(pinsdk.PinConfigError, match="verify=False"):
        pinsdk.Client(pins=pinned, verify=False)
    transport = pinsdk.PinnedSyncTransport(pinned, verify=device_trust())
    with pinsdk.Client(pins=pinned, transport=transport) as client:
        assert client._transport is transport


def test_callbacks_in_the_requesting_thread_and_reports(
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    collector = Collector(serve, api_cert)
    rogue = serve(rogue_cert, http2=False)
    seen: list[tuple[pinsdk.PinFailure, str]] = []
    reporting = pinsdk.Reporting(verify=device_trust())
    client = pinsdk.Client(
        pins=policy(pins["intermediate"], report_uri=collector.url),
        verify=device_trust(),
        on_pin_failure=lambda f: seen.append((f, threading.current_thread().name)),
        reporting=reporting,
    )
    with pytest.raises(pinsdk.PinValidationError):
        client.get(rogue.url())
    assert client.flush_reports(10)
    assert collector.arrived.acquire(timeout=10)
    client.close()
    [(failure, thread)] = seen
    assert thread == threading.current_thread().name
    assert failure.port == rogue.port
    assert failure.enforced
    [report] = collector.reports
    assert report["hostname"] == "127.0.0.1"
    assert report["port"] == rogue.port
    assert client.stats()["reports_sent"] == 1
    assert not client.monitor.runner.started  # type: ignore[union-attr]  # thread stopped


def test_report_mode_failure_is_claimed_by_its_request(
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    rogue = serve(rogue_cert, http2=False)
    seen: list[pinsdk.PinFailure] = []
    report_only = PinPolicy(
        [DomainPins("127.0.0.1", [pins["intermediate"], BACKUP], mode="report")]
    )
    with pinsdk.Client(pins=report_only, verify=device_trust(), on_pin_failure=seen.append) as c:
        assert c.get(rogue.url()).status_code == 200
    assert [(f.mode, f.port) for f in seen] == [("report", rogue.port)]


def test_many_threads_while_the_policy_is_swapped(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    """Eight threads send requests, each on a new connection (a handshake reading the policy
    in force), while another thread swaps the policy 200 times; every request passes, and
    once a policy denying the server's key is in force, no request reaches it any more."""
    server = serve(api_cert, http2=False)
    source = Swappable(policy(pins["intermediate"], 1))
    swapped = threading.Event()
    errors: list[BaseException] = []

    def swapper() -> None:
        for version in range(2, 202):  # alternate between two policies the server passes
            pin = pins["intermediate"] if version % 2 else pins["root"]
            source.current = policy(pin, version)
        swapped.set()

    # Each request on a connection of its own (new connections are what reads the policy),
    # by ``Connection: close``, not by ``max_keepalive_connections=0``: httpcore 1.0.x's sync
    # pool can close a connection it has already handed to a waiting request, from another
    # thread, once that request is under way (EBADF, or TLS records on a reused descriptor;
    # encode/httpcore#1110, plain httpx too). A connection the server closes after its
    # response is closed by the thread that used it and is never idle in the pool, so no
    # other thread closes it; max_connections=4 keeps the eight threads queueing for it.
    limits = httpx.Limits(max_connections=4)
    with pinsdk.Client(
        pins=source, verify=device_trust(), limits=limits, headers={"Connection": "close"}
    ) as client:

        def worker(n: int) -> int:
            done = 0
            for i in range(25):
                try:
                    assert client.get(server.url(path=f"/{n}/{i}")).status_code == 200
                    done += 1
                except BaseException as exc:
                    errors.append(exc)
            return done

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(worker, n) for n in range(8)]
            threading.Thread(target=swapper).start()
            done = sum(f.result(timeout=60) for f in futures)
            assert errors == [], errors[:3]
            assert done == 200
        assert swapped.wait(10)
        assert errors == []
        before = len(server.requests)
        assert server.handshakes_completed == before == 200  # a new connection each
        source.current = policy(pins["intermediate"], 1000, deny=(pins["leaf"],))
        with ThreadPoolExecutor(4) as pool:
            urls = [server.url(path=f"/x{i}") for i in range(8)]
            outcomes = list(pool.map(lambda url: _refused(client, url), urls))
        assert all(outcomes)
    assert server.wait_idle()
    assert len(server.requests) == before


def _refused(client: pinsdk.Client, url: str) -> bool:
    try:
        client.get(url)
    except pinsdk.PinValidationError:
        return True
    return False


def test_dynamic_pins_refresh_in_a_thread_the_client_owns(
    updates: UpdateServer,
    signer: Any,
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    server = serve(api_cert, http2=False)
    updates.publish(doc(signer, 2, [pins["intermediate"], BACKUP]))
    results: list[pinsdk.UpdateResult] = []
    updated = threading.Event()

    def on_update(result: pinsdk.UpdateResult) -> None:
        results.append(result)
        updated.set()

    before = set(threading.enumerate())
    dynamic = pinsdk.DynamicPins(
        updates.url,
        [public_pem(signer)],
        bootstrap=doc(signer, 1, [pins["root"], BACKUP]),
        verify=device_trust(),
        on_update=on_update,
    )
    first = pinsdk.Client(pins=dynamic, verify=device_trust())
    second = pinsdk.Client(pins=dynamic, verify=device_trust())  # shares the refresher
    assert updated.wait(10)
    assert results[0].status is UpdateStatus.UPDATED
    assert dynamic.current.version == 2
    assert first.get(server.url()).status_code == 200
    first.close()  # the first to close: the refresher keeps running for the second
    assert dynamic._sync_runner is not None
    assert second.get(server.url()).status_code == 200
    second.close()
    assert dynamic._sync_runner is None
    assert dynamic._refresher is None
    leftover = {t for t in set(threading.enumerate()) - before if t.is_alive()}
    for thread in leftover:
        thread.join(5)
    assert not any(t.is_alive() for t in leftover)
    # a closed client leaves nothing on the DynamicPins' shared context
    check = pin_check_of(dynamic._ssl_context)
    assert check is not None
    assert check.monitors == (dynamic.monitor,)


def test_self_heal_retries_once_after_the_rotation(
    updates: UpdateServer,
    signer: Any,
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    rogue_ca: trustme.CA,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    new_server = serve(rogue_cert, http2=False)
    new_pin = pinsdk.spki_pin(rogue_ca.cert_pem.bytes())
    updates.publish(doc(signer, 2, [new_pin, BACKUP]))
    dynamic = pinsdk.DynamicPins(
        updates.url,
        [public_pem(signer)],
        bootstrap=doc(signer, 1, [pins["intermediate"], BACKUP]),
        auto_refresh=False,
        verify=device_trust(),
    )
    with dynamic, pinsdk.Client(pins=dynamic, verify=device_trust()) as client:
        response = client.post(new_server.url(path="/transfer"), content=b"amount=100")
        stats = client.stats()
    assert response.status_code == 200
    assert dynamic.current.version == 2
    assert new_server.wait_idle()
    assert new_server.connections == 2  # the refused one carried no byte
    assert [r[":body"] for r in new_server.requests] == ["amount=100"]
    assert stats["self_heal_retries"] == 1
    assert dynamic.stats()["self_heal_refreshes"] == 1


def test_dynamic_pins_in_async_use_are_refused_by_the_sync_client(
    updates: UpdateServer, signer: Any, pins: dict[str, str]
) -> None:
    import anyio

    dynamic = pinsdk.DynamicPins(
        updates.url, [public_pem(signer)], bootstrap=policy(pins["leaf"]), refresh_interval=3600
    )

    shared = ssl.create_default_context()

    async def main() -> None:
        async with dynamic:
            with pytest.raises(pinsdk.PinConfigError, match="async with"):
                pinsdk.Client(pins=dynamic, verify=shared)

    anyio.run(main)
    check = pin_check_of(shared)
    assert check is not None
    assert check.monitors == (dynamic.monitor,)  # the refused client left nothing behind


def test_shared_context_keeps_nothing_of_closed_clients(
    device_trust: Callable[[], ssl.SSLContext], pins: dict[str, str]
) -> None:
    shared = pinsdk.pinned_ssl_context(policy(pins["leaf"]), verify=device_trust())
    check = pin_check_of(shared)
    assert check is not None
    clients = [pinsdk.Client(pins=check.source, verify=shared) for _ in range(3)]
    assert len(check.monitors) == 3
    for client in (clients[1], clients[0], clients[2]):
        client.close()
    assert check.monitors == ()


@pytest.mark.parametrize("kind", ["http", "https"])
def test_through_a_proxy_the_origin_is_pinned(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    kind: str,
) -> None:
    proxy_ca = trustme.CA()  # the proxy's own CA: trusted for the proxy only
    server, rogue = serve(api_cert, http2=False), serve(rogue_cert, http2=False)
    proxy_server = https_proxy(proxy_ca) if kind == "https" else ConnectProxy()
    with proxy_server as proxy:
        proxy_arg = httpx.Proxy(
            proxy.url, ssl_context=proxy_client_context(proxy_ca) if kind == "https" else None
        )
        with pinsdk.Client(
            pins=policy(pins["intermediate"]), verify=device_trust(), proxy=proxy_arg
        ) as client:
            assert client.get(server.url(), headers={"Authorization": TOKEN}).status_code == 200
            with pytest.raises(pinsdk.PinValidationError):  # TLS in TLS for https proxies
                client.get(rogue.url(), headers={"Authorization": TOKEN})
        assert proxy.connects == [f"127.0.0.1:{server.port}", f"127.0.0.1:{rogue.port}"]
    assert rogue.wait_idle()
    assert rogue.received == b""


def test_dynamic_pins_updated_while_threads_send_requests(
    updates: UpdateServer,
    signer: Any,
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    """Signed documents applied from sync code while six threads send requests: every
    request passes, and the last document (denying the server's root) stops them all."""
    server = serve(api_cert, http2=False)
    dynamic = pinsdk.DynamicPins(
        updates.url,
        [public_pem(signer)],
        bootstrap=doc(signer, 1, [pins["intermediate"], BACKUP]),
        auto_refresh=False,
        verify=device_trust(),
    )
    with pytest.raises(RuntimeError, match="not in sync use"):
        dynamic.apply_document_blocking(doc(signer, 2, [pins["root"], BACKUP]))
    limits = httpx.Limits(max_keepalive_connections=0)
    stop, started = threading.Event(), threading.Event()
    with dynamic, pinsdk.Client(pins=dynamic, verify=device_trust(), limits=limits) as client:

        def worker() -> int:
            done = 0
            for _ in range(200):  # bounded; stops early once the updates are done
                if stop.is_set():
                    break
                assert client.get(server.url()).status_code == 200
                done += 1
                started.set()
            return done

        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(worker) for _ in range(6)]
            assert started.wait(10)
            for version in range(2, 22):
                pin = pins["root"] if version % 2 else pins["intermediate"]
                result = dynamic.apply_document_blocking(doc(signer, version, [pin, BACKUP]))
                assert result.status is UpdateStatus.UPDATED
            stop.set()
            assert sum(f.result(timeout=60) for f in futures) > 0
        denied = payload(22, [{"host": "127.0.0.1", "pins": [pins["root"], BACKUP]}])
        denied["deny"] = [pins["root"]]
        result = dynamic.apply_document_blocking(pinsdk.sign_envelope(denied, signer))
        assert result.status is UpdateStatus.UPDATED
        assert dynamic.current.version == 22
        before = len(server.requests)
        with pytest.raises(pinsdk.PinValidationError):
            client.get(server.url())
    assert server.wait_idle()
    assert len(server.requests) == before
