"""Lifetimes (issue 13): background work, closing in any order, nothing kept per refresh.

Every object runs its background work (the report sender, the refresher) as a task of
the event loop that it starts and stops itself: two of anything close first-in-first-out
or last-in-first-out on asyncio and trio, a client used without ``async with`` still
sends its reports, a closed client leaves nothing on a shared ``SSLContext``, and a
refresh keeps nothing but the policy it installs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import hashlib
import json
import logging
import os
import ssl
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio
import trustme

import pinsdk
from pinsdk import DomainPins, PinPolicy, UpdateStatus
from pinsdk._background import BackgroundTask
from pinsdk._demo.loopback import LoopbackTLSServer, Reply
from pinsdk._tls import pin_check_of

from .signing import payload, public_pem
from .updates import UpdateServer

BACKUP = "sha256/" + base64.b64encode(hashlib.sha256(b"backup").digest()).decode()
OTHER = "sha256/" + base64.b64encode(hashlib.sha256(b"other key").digest()).decode()


class Collector:
    """An HTTPS report collector on loopback."""

    def __init__(self, serve: Callable[..., LoopbackTLSServer], cert: trustme.LeafCert) -> None:
        self.reports: list[dict[str, Any]] = []
        self.server = serve(cert, http2=False, handler=self.handle)

    def handle(self, request: dict[str, str]) -> Reply:
        self.reports.append(json.loads(request[":body"]))
        return (204, [], b"")

    @property
    def url(self) -> str:
        return self.server.url("localhost", "/pin-reports")


@pytest.fixture
def collector(serve: Callable[..., LoopbackTLSServer], api_cert: trustme.LeafCert) -> Collector:
    return Collector(serve, api_cert)


def reported_policy(pins: dict[str, str], report_uri: str) -> PinPolicy:
    return PinPolicy(
        [DomainPins("127.0.0.1", [pins["intermediate"], BACKUP])], report_uri=report_uri
    )


def pinsdk_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("pinsdk") and r.levelno >= logging.ERROR
    ]


def background_task_names() -> set[str]:
    """The names of every task of the running event loop (asyncio or trio)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        names: set[str] = set()
        pending = [trio.lowlevel.current_root_task()]
        while pending:  # bounded: a tree of the run's tasks
            task = pending.pop()
            names.add(task.name)
            pending.extend(c for n in task.child_nurseries for c in n.child_tasks)
        return names
    return {task.get_name() for task in asyncio.all_tasks()}


def pinsdk_tasks() -> set[str]:
    return {name for name in background_task_names() if "pinsdk" in name}


# -- closing in any order ----------------------------------------------------------------


async def _close(obj: Any, how: str) -> None:
    if how == "aclose":
        await obj.aclose()
    else:
        await obj.__aexit__(None, None, None)


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["aexit", "aclose"])
@pytest.mark.parametrize("order", ["fifo", "lifo"])
@pytest.mark.parametrize("kinds", ["clients", "dynamic", "mixed"])
async def test_two_owners_close_in_any_order(
    kinds: str,
    order: str,
    how: str,
    collector: Collector,
    updates: UpdateServer,
    signer: Any,
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two clients, two DynamicPins, or one of each, entered then closed first-in-first-out
    or last-in-first-out: nothing raises, every background task ends, and the shared
    context keeps no observer of a closed client."""
    caplog.set_level(logging.INFO, logger="pinsdk")
    good = serve(api_cert, http2=False)
    rogue = serve(rogue_cert, http2=False)
    updates.publish(pinsdk.sign_envelope(payload(2, []), signer), etag='"v2"')
    shared = device_trust()
    static = reported_policy(pins, collector.url)
    reporting = pinsdk.Reporting(verify=device_trust())

    def client() -> pinsdk.AsyncClient:
        return pinsdk.AsyncClient(pins=static, verify=shared, reporting=reporting)

    def dynamic() -> pinsdk.DynamicPins:
        return pinsdk.DynamicPins(
            updates.url,
            [public_pem(signer)],
            bootstrap=static,
            verify=device_trust(),
            refresh_interval=3600,
        )

    makers = {
        "clients": [client, client],
        "dynamic": [dynamic, dynamic],
        "mixed": [dynamic, client],
    }
    with anyio.fail_after(20):
        objects = [make() for make in makers[kinds]]
        for obj in objects:
            await obj.__aenter__()
        for obj in objects:
            if isinstance(obj, pinsdk.AsyncClient):
                assert (await obj.get(good.url())).status_code == 200
                with pytest.raises(pinsdk.PinValidationError):
                    await obj.get(rogue.url())  # queues a report: the sender runs
        for obj in reversed(objects) if order == "lifo" else objects:
            await _close(obj, how)
        assert pinsdk_tasks() == set()
    check = pin_check_of(shared)
    assert check is None or check.monitors == ()  # installed by the clients, if any
    assert pinsdk_errors(caplog) == []


@pytest.mark.anyio
async def test_reports_are_sent_without_async_with(
    collector: Collector,
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    """A client never entered sends its reports: the sender starts with the first report
    queued, flush_reports() waits for it, and aclose() stops it."""
    rogue = serve(rogue_cert, http2=False)
    client = pinsdk.AsyncClient(
        pins=reported_policy(pins, collector.url),
        verify=device_trust(),
        reporting=pinsdk.Reporting(verify=device_trust()),
    )
    with anyio.fail_after(20):
        with pytest.raises(pinsdk.PinValidationError):
            await client.get(rogue.url())
        assert await client.flush_reports(5)
        assert [r["hostname"] for r in collector.reports] == ["127.0.0.1"]
        assert client.stats()["reports_sent"] == 1
        assert "pinsdk report sender" in pinsdk_tasks()
        await client.aclose()
        assert pinsdk_tasks() == set()
        await client.aclose()  # twice: nothing to do


@pytest.mark.anyio
async def test_a_transport_used_alone_sends_its_reports_and_leaves_the_shared_context(
    collector: Collector,
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    rogue = serve(rogue_cert, http2=False)
    shared = device_trust()
    policy = reported_policy(pins, collector.url)
    reporting = pinsdk.Reporting(verify=device_trust())
    first = pinsdk.PinnedTransport(policy, verify=shared, reporting=reporting)
    second = pinsdk.PinnedTransport(policy, verify=shared, reporting=reporting)
    check = pin_check_of(shared)
    assert check is not None
    assert set(check.monitors) == {first.monitor, second.monitor}
    with anyio.fail_after(20):
        async with pinsdk.AsyncClient(pins=policy, transport=first) as c:
            with pytest.raises(pinsdk.PinValidationError):
                await c.get(rogue.url())
            assert await c.flush_reports(5)  # the client's own monitor: nothing queued
            assert await first.flush_reports(5)
        assert collector.reports != []
        assert check.monitors == (second.monitor,)  # the client closed its transport
        await second.aclose()
    assert check.monitors == ()


# -- the event loop ends with the background task running -----------------------------


def test_a_client_never_closed_stops_with_its_event_loop(
    collector: Collector,
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``asyncio.run`` cancels the report sender of a client never closed, and trio
    cancels it at the end of ``trio.run``: no error, no task left pending."""
    caplog.set_level(logging.DEBUG)
    rogue = serve(rogue_cert, http2=False)
    clients: list[pinsdk.AsyncClient] = []

    async def main() -> None:
        client = pinsdk.AsyncClient(
            pins=reported_policy(pins, collector.url),
            verify=device_trust(),
            reporting=pinsdk.Reporting(verify=device_trust()),
        )
        clients.append(client)
        with pytest.raises(pinsdk.PinValidationError):
            await client.get(rogue.url())
        assert "pinsdk report sender" in pinsdk_tasks()
        # returns with the sender running and the client open

    asyncio.run(main())
    trio.run(main)
    for client in clients:
        reporter = client.monitor.reporter
        assert reporter is not None
        assert not reporter._task.running
    assert pinsdk_errors(caplog) == []
    assert not [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR]


def test_dynamic_pins_never_closed_stop_with_their_event_loop(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    updates.publish(pinsdk.sign_envelope(payload(2, []), signer))
    made: list[pinsdk.DynamicPins] = []

    async def main() -> None:
        pinned = pinsdk.DynamicPins(
            updates.url, [public_pem(signer)], verify=device_trust(), refresh_interval=3600
        )
        made.append(pinned)
        await pinned.__aenter__()  # never left
        assert pinsdk_tasks() == {"pinsdk refresher"}

    asyncio.run(main())
    trio.run(main)
    for pinned in made:
        assert pinned._refresher is not None
        assert not pinned._refresher.running
    assert pinsdk_errors(caplog) == []
    assert not [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR]


# -- BackgroundTask itself ----------------------------------------------------------------


@pytest.mark.anyio
async def test_background_task_logs_its_failure_and_can_run_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = 0

    async def boom() -> None:
        nonlocal runs
        runs += 1
        raise ValueError("broken on purpose")

    task = BackgroundTask(boom, "pinsdk test task")
    with anyio.fail_after(5):
        task.start()
        while task.running:  # bounded by fail_after; the task ends at its first step
            await anyio.sleep(0)
        task.start()  # a run that ended starts again
        while task.running:
            await anyio.sleep(0)
    assert runs == 2
    failures = [r for r in caplog.records if r.name == "pinsdk" and r.levelno == logging.ERROR]
    assert len(failures) == 2
    assert "pinsdk test task" in failures[0].getMessage()
    assert failures[0].exc_info is not None
    assert failures[0].exc_info[0] is ValueError
    await task.aclose()
    task.start()
    assert not task.running
    assert runs == 2


@pytest.mark.anyio
async def test_background_task_stopped_from_another_task_and_before_it_ran() -> None:
    started = anyio.Event()
    cleaned = anyio.Event()

    async def forever() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cleaned.set()

    task = BackgroundTask(forever, "pinsdk test task")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: _start_and_wait(task, started))
        assert task.running
        async with anyio.create_task_group() as tg:  # stopped by yet another task
            tg.start_soon(task.aclose)
        assert cleaned.is_set()
        assert not task.running
        assert pinsdk_tasks() == set()

        never = BackgroundTask(forever, "pinsdk test never")
        never.start()
        await never.aclose()  # before its first step: the function never runs
        assert not never.running
        assert pinsdk_tasks() == set()


async def _start_and_wait(task: BackgroundTask, started: anyio.Event) -> None:
    task.start()
    await started.wait()


@pytest.mark.anyio
async def test_background_task_closed_from_a_cancelled_scope_still_stops() -> None:
    started = anyio.Event()
    cleaned = anyio.Event()

    async def forever() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cleaned.set()

    task = BackgroundTask(forever, "pinsdk test task")
    with anyio.fail_after(5):
        task.start()
        await started.wait()
        with anyio.CancelScope() as scope:
            scope.cancel()
            await task.aclose()
        assert cleaned.is_set()
        assert not task.running


# -- a refresh keeps nothing ---------------------------------------------------------------

# The update server of the memory test runs in a process of its own: tracemalloc then
# sees the client's allocations only (an in-process server's threads and recorded
# requests would be counted, and telling them apart needs deep, slow tracebacks).
_SERVER = """
import ssl, sys
from pinsdk._demo.loopback import LoopbackTLSServer
cert, document = sys.argv[1], open(sys.argv[2], "rb").read()
context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert)
def handle(request):
    if request.get("if-none-match") == '"v2"':
        return (304, [("ETag", '"v2"')], b"")
    return (200, [("Content-Type", "application/json"), ("ETag", '"v2"')], document)
server = LoopbackTLSServer(context, http2=False, handler=handle).start()
print(server.port, flush=True)
sys.stdin.read()  # until the test closes stdin
server.stop()
"""


@contextlib.contextmanager
def update_server_process(
    cert: trustme.LeafCert, document: bytes, directory: Path
) -> Iterator[str]:
    """The update URL of a loopback TLS server in a child process serving ``document``."""
    cert_path, document_path = directory / "server.pem", directory / "document.json"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    document_path.write_bytes(document)
    env = {**os.environ, "PYTHONPATH": str(Path(pinsdk.__file__).parent.parent)}
    child = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(cert_path), str(document_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert child.stdout is not None
        port = child.stdout.readline().strip()  # "" if the child failed: EOF
        assert port.isdigit(), "the update server process did not start"
        yield f"https://localhost:{port}/pins.json"
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=10)


@pytest.mark.anyio
async def test_400_refreshes_on_one_shared_context_keep_nothing(
    signer: Any,
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    tmp_path: Path,
) -> None:
    """Each refresh fetches with a client of its own on the pins' context: the context's
    observers stay the same and memory does not grow with the number of refreshes (the
    refresher of aa7d43b kept a Monitor and a Reporter per refresh, about 1 MB per 400)."""
    document = pinsdk.sign_envelope(
        payload(2, [{"host": "127.0.0.1", "pins": [pins["intermediate"], BACKUP]}]), signer
    )
    shared = device_trust()
    with update_server_process(api_cert, document, tmp_path) as url:
        pinned = pinsdk.DynamicPins(url, [public_pem(signer)], verify=shared, auto_refresh=False)
        check = pin_check_of(shared)
        assert check is not None
        with anyio.fail_after(120):
            first = await pinned.refresh()
            assert first.status is UpdateStatus.UPDATED, first.reason
            for _ in range(20):  # warm caches (TLS, httpx, logging) before measuring
                assert (await pinned.refresh()).status is UpdateStatus.NOT_MODIFIED
            monitors = check.monitors
            gc.collect()
            tracemalloc.start()
            try:
                before = tracemalloc.take_snapshot()
                for _ in range(400):
                    result = await pinned.refresh()
                    assert result.status is UpdateStatus.NOT_MODIFIED, result.reason
                gc.collect()
                after = tracemalloc.take_snapshot()
            finally:
                tracemalloc.stop()
    assert check.monitors == monitors
    assert len(monitors) == 1  # the DynamicPins' own counters
    stats = after.compare_to(before, "lineno")
    growth = sum(stat.size_diff for stat in stats)
    # Measured: 20-30 kB on asyncio, 70-90 kB on trio (caches filling: about the same
    # after 800); the refresher of aa7d43b kept 0.9-1.1 MB.
    assert growth < 300_000, f"{growth} bytes kept after 400 refreshes: {stats[:3]}"
    assert pinned.stats()["updates_not_modified"] == 420


# -- self-heal while the update host fails pinning ---------------------------------------


def _update_host_fails(
    updates: UpdateServer, signer: Any, pins: dict[str, str], trust: ssl.SSLContext
) -> pinsdk.DynamicPins:
    """Pins whose document pins the update host ("localhost") to keys it does not have,
    and the API host (127.0.0.1) to the real intermediate CA."""
    document = pinsdk.sign_envelope(
        payload(
            1,
            [
                {"host": "localhost", "pins": [BACKUP, OTHER]},
                {"host": "127.0.0.1", "pins": [pins["intermediate"], BACKUP]},
            ],
        ),
        signer,
    )
    updates.publish(document)
    return pinsdk.DynamicPins(
        updates.url,
        [public_pem(signer)],
        bootstrap=document,
        verify=trust,
        auto_refresh=False,
        timeout=2,
    )


@pytest.mark.anyio
async def test_self_heal_while_the_update_host_fails_pinning(
    updates: UpdateServer,
    signer: Any,
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A request refused by the pins triggers a self-heal refresh, whose fetch is refused
    by the pins too: the request raises PinValidationError, the refresh fails with the
    reason, and nothing waits on itself or re-enters the refresh lock."""
    caplog.set_level(logging.DEBUG, logger="pinsdk")
    pinned = _update_host_fails(updates, signer, pins, device_trust())
    rogue = serve(rogue_cert, http2=False)
    # Under the fetch's own limit (3 x timeout = 6 s): at aa7d43b the fetch's client
    # self-healed, waited for the heal in flight (its own) and ran into that limit.
    with anyio.fail_after(5):
        async with pinsdk.AsyncClient(pins=pinned, verify=device_trust()) as client:
            with pytest.raises(pinsdk.PinValidationError):
                await client.get(rogue.url())
            assert client.stats()["self_heal_retries"] == 0
    assert pinned.stats()["self_heal_refreshes"] == 1
    result = pinned.state.last_result
    assert result is not None
    assert result.status is UpdateStatus.FAILED
    assert "PinValidationError" in result.reason
    assert "localhost" in result.reason
    assert updates.server.requests == []  # refused at the handshake
    assert pinsdk_errors(caplog) == []


@pytest.mark.anyio
async def test_refresh_while_the_update_host_fails_pinning(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="pinsdk")
    pinned = _update_host_fails(updates, signer, pins, device_trust())
    with anyio.fail_after(5):
        result = await pinned.refresh()
    # aa7d43b: the fetch's client self-healed into this refresh, and re-entering its
    # lock logged "self-healing refresh failed (ignored)" with a RuntimeError at ERROR.
    assert pinsdk_errors(caplog) == []
    assert not [r for r in caplog.records if r.exc_info and r.exc_info[0] is RuntimeError]
    assert result.status is UpdateStatus.FAILED
    assert "PinValidationError" in result.reason
    assert pinned.stats()["self_heal_refreshes"] == 0
