"""Pin failure reports to a real loopback collector, callbacks, stats and logging."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import ssl
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import anyio
import httpx
import pytest
import trustme
from cryptography import x509

import pinsdk
from pinsdk import DomainPins, PinPolicy
from pinsdk._demo.loopback import LoopbackTLSServer, Reply

from .conftest import TOKEN
from .signing import ed25519_key

pytestmark = pytest.mark.anyio

BACKUP = "sha256/" + base64.b64encode(hashlib.sha256(b"backup").digest()).decode()
OTHER = "sha256/" + base64.b64encode(hashlib.sha256(b"other key").digest()).decode()


class Collector:
    """An HTTPS report collector on loopback; each report sets ``arrived``."""

    def __init__(self, serve: Callable[..., LoopbackTLSServer], cert: trustme.LeafCert) -> None:
        self.reports: list[dict[str, Any]] = []
        self.arrived = threading.Semaphore(0)
        self.gate: threading.Event | None = None
        self.server = serve(cert, http2=False, handler=self.handle)

    def handle(self, request: dict[str, str]) -> Reply:
        if self.gate is not None:
            self.gate.wait(10)
        self.reports.append(json.loads(request[":body"]))
        self.arrived.release()
        return (204, [], b"")

    @property
    def url(self) -> str:
        return self.server.url("localhost", "/pin-reports")

    async def wait(self, count: int = 1) -> list[dict[str, Any]]:
        for _ in range(count):
            assert await anyio.to_thread.run_sync(self.arrived.acquire, True, 10)
        return self.reports


@pytest.fixture
def collector(serve: Callable[..., LoopbackTLSServer], api_cert: trustme.LeafCert) -> Collector:
    return Collector(serve, api_cert)


def policy(
    pins: dict[str, str], *, mode: str = "enforce", report_uri: str | None, **kw: Any
) -> PinPolicy:
    return PinPolicy(
        [
            DomainPins(
                "127.0.0.1",
                [pins["intermediate"], BACKUP],
                mode=mode,  # type: ignore[arg-type]
                expires="2099-01-01T00:00:00Z",
                **kw,
            )
        ],
        report_uri=report_uri,
        version=12,
    )


async def test_enforced_failure_report_is_well_formed(
    collector: Collector,
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    rogue_ca: trustme.CA,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    rogue = serve(rogue_cert)
    reporting = pinsdk.Reporting(verify=device_trust())
    async with pinsdk.AsyncClient(
        pins=policy(pins, report_uri=collector.url), verify=device_trust(), reporting=reporting
    ) as client:
        with pytest.raises(pinsdk.PinValidationError):
            await client.get(rogue.url(), headers={"Authorization": TOKEN})
        (report,) = await collector.wait()
        assert await client.flush_reports(5)
        stats = client.stats()
    assert report["hostname"] == "127.0.0.1"
    assert report["port"] == rogue.port
    assert report["noted-hostname"] == "127.0.0.1"
    assert report["include-subdomains"] is False
    assert report["effective-expiration-date"] == "2099-01-01T00:00:00Z"
    assert report["enforced"] is True
    assert report["policy-version"] == 12
    assert report["pinsdk-version"] == pinsdk.__version__
    assert datetime.fromisoformat(report["date-time"].replace("Z", "+00:00")).tzinfo is not None
    assert sorted(report["known-pins"]) == sorted(
        f'pin-sha256="{p[7:]}"' for p in (pins["intermediate"], BACKUP)
    )
    served = [
        pinsdk.spki_pin(x509.load_pem_x509_certificate(p.encode()))
        for p in report["served-certificate-chain"]
    ]
    validated = [pinsdk.spki_pin(p.encode()) for p in report["validated-certificate-chain"]]
    assert served == [pinsdk.spki_pin(rogue_cert.cert_chain_pems[0].bytes())]
    assert validated == [served[0], pinsdk.spki_pin(rogue_ca.cert_pem.bytes())]
    assert TOKEN not in json.dumps(report)
    assert stats["pin_failures_enforced"] == 1
    assert stats["reports_sent"] == 1
    assert rogue.received == b""


async def test_report_only_rollout_keeps_traffic_flowing(
    collector: Collector,
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    rogue = serve(rogue_cert)
    async with pinsdk.AsyncClient(
        pins=policy(pins, mode="report", report_uri=collector.url),
        verify=device_trust(),
        reporting=pinsdk.Reporting(verify=device_trust()),
    ) as client:
        for _ in range(3):
            assert (await client.get(rogue.url())).status_code == 200
        (report,) = await collector.wait()
        assert await client.flush_reports(5)
        stats = client.stats()
    assert report["enforced"] is False
    assert stats["pin_failures_reported"] == 1  # one connection, kept alive
    assert stats["handshakes_checked"] == 1
    assert stats["reports_sent"] == 1


async def test_identical_reports_are_deduplicated(
    collector: Collector,
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    rogue, other = serve(rogue_cert), serve(rogue_cert)
    async with pinsdk.AsyncClient(
        pins=policy(pins, report_uri=collector.url),
        verify=device_trust(),
        reporting=pinsdk.Reporting(verify=device_trust()),
    ) as client:
        for _ in range(4):
            with pytest.raises(pinsdk.PinValidationError):
                await client.get(rogue.url())
        with pytest.raises(pinsdk.PinValidationError):
            await client.get(other.url())  # another port: another report
        reports = await collector.wait(2)
        assert await client.flush_reports(5)
        stats = client.stats()
    assert sorted(r["port"] for r in reports) == sorted([rogue.port, other.port])
    assert stats["reports_deduplicated"] == 3
    assert stats["reports_sent"] == 2
    assert len(collector.reports) == 2


async def test_slow_collector_and_full_queue_never_block_requests(
    collector: Collector,
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    rogues = [serve(rogue_cert) for _ in range(4)]
    collector.gate = threading.Event()
    reporting = pinsdk.Reporting(verify=device_trust(), queue_size=1, timeout=0.5)
    async with pinsdk.AsyncClient(
        pins=policy(pins, report_uri=collector.url), verify=device_trust(), reporting=reporting
    ) as client:
        with anyio.fail_after(5):
            for rogue in rogues:
                with pytest.raises(pinsdk.PinValidationError):
                    await client.get(rogue.url())
        assert not collector.gate.is_set()  # every request finished while the collector hung
        assert not await client.flush_reports(10)  # attempted, and timed out: not delivered
        stats = client.stats()
    collector.gate.set()
    assert stats["reports_dropped"] >= 2
    assert (
        stats["reports_failed"] == 4 - stats["reports_dropped"]
    )  # timed out against the hung collector
    assert stats["pin_failures_enforced"] == 4


async def test_collector_down(
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as s:
        dead = f"https://127.0.0.1:{s.getsockname()[1]}/reports"
    rogue = serve(rogue_cert)
    async with pinsdk.AsyncClient(
        pins=policy(pins, report_uri=dead),
        verify=device_trust(),
        reporting=pinsdk.Reporting(verify=device_trust(), timeout=2),
    ) as client:
        with pytest.raises(pinsdk.PinValidationError):
            await client.get(rogue.url())
        with caplog.at_level(logging.WARNING, logger="pinsdk"):
            assert not await client.flush_reports(5)  # the report was not delivered
        assert await client.flush_reports(5)  # nothing attempted since
        stats = client.stats()
    assert any(
        r.levelno == logging.WARNING and "not delivered" in r.getMessage() for r in caplog.records
    )
    assert stats["reports_failed"] == 1
    assert stats["reports_sent"] == 0


async def test_report_to_the_host_that_failed_does_not_loop(
    collector: Collector,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    """The collector's host itself is pinned wrongly: its request fails, and its report still
    arrives through the separate report channel; nothing reports about the report."""
    wrong = PinPolicy([DomainPins("localhost", [BACKUP, OTHER])], report_uri=collector.url)
    async with pinsdk.AsyncClient(
        pins=wrong, verify=device_trust(), reporting=pinsdk.Reporting(verify=device_trust())
    ) as client:
        with pytest.raises(pinsdk.PinValidationError):
            await client.get(collector.url)
        (report,) = await collector.wait()
        assert await client.flush_reports(5)
        stats = client.stats()
    assert report["hostname"] == "localhost"
    assert stats["reports_sent"] == 1
    assert len(collector.reports) == 1


async def test_pinned_report_channel_never_reports_about_reports(
    collector: Collector,
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    rogue = serve(rogue_cert)
    channel = PinPolicy([DomainPins("localhost", [BACKUP, OTHER])], report_uri=collector.url)
    reporting = pinsdk.Reporting(verify=device_trust(), pins=channel)
    async with pinsdk.AsyncClient(
        pins=policy(pins, report_uri=collector.url), verify=device_trust(), reporting=reporting
    ) as client:
        with pytest.raises(pinsdk.PinValidationError):
            await client.get(rogue.url())
        assert not await client.flush_reports(5)  # the report was not delivered
        stats = client.stats()
    assert stats["reports_failed"] == 1  # the channel's own pins refused the collector
    assert collector.reports == []
    assert collector.server.wait_idle()
    assert collector.server.received == b""


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_on_pin_failure_callbacks_everywhere(
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rogue = serve(rogue_cert)
    events: dict[str, list[pinsdk.PinFailure]] = {"client": [], "transport": [], "dynamic": []}

    def make(name: str) -> Callable[[pinsdk.PinFailure], Any]:
        if kind == "sync":

            def sync_cb(f: pinsdk.PinFailure) -> None:
                events[name].append(f)
                raise RuntimeError("callback bug")  # logged, never breaks the request

            return sync_cb

        async def async_cb(f: pinsdk.PinFailure) -> None:
            await anyio.sleep(0)
            events[name].append(f)

        return async_cb

    key = pinsdk._core.keys.TrustedKey.load(ed25519_key().public_key())
    dynamic = pinsdk.DynamicPins(
        "https://localhost:9/pins.json",
        [key.key],
        bootstrap=policy(pins, report_uri=None),
        auto_refresh=False,
        on_pin_failure=make("dynamic"),
        self_heal_interval=None,
        verify=device_trust(),
    )
    async with pinsdk.AsyncClient(
        pins=dynamic, verify=device_trust(), on_pin_failure=make("client")
    ) as client:
        with pytest.raises(pinsdk.PinValidationError):
            await client.get(rogue.url())
    transport = pinsdk.PinnedTransport(
        dynamic, verify=device_trust(), on_pin_failure=make("transport")
    )
    async with httpx.AsyncClient(transport=transport) as plain:
        with pytest.raises(pinsdk.PinValidationError):
            await plain.get(rogue.url())
    assert len(events["client"]) == 1
    assert len(events["transport"]) == 1
    assert len(events["dynamic"]) == 2
    event = events["client"][0]
    assert event.host == "127.0.0.1"
    assert event.port == rogue.port
    assert event.mode == "enforce"
    assert event.enforced
    assert event.policy_version == 12
    assert event.expected_pins == {pins["intermediate"], BACKUP}
    assert event.served_pins[0] == pinsdk.spki_pin(rogue_cert.cert_chain_pems[0].bytes())
    assert event.time.tzinfo is not None
    if kind == "sync":
        assert caplog.text.count("on_pin_failure callback failed") == 4
    assert dynamic.stats()["pin_failures_enforced"] == 2


async def test_stats_and_log_lines(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, rogue = serve(api_cert), serve(rogue_cert)
    caplog.set_level(logging.DEBUG, logger="pinsdk")
    async with pinsdk.AsyncClient(
        pins=policy(pins, report_uri=None), verify=device_trust()
    ) as client:
        for _ in range(3):
            await client.get(server.url())
        with pytest.raises(pinsdk.PinValidationError):
            await client.get(rogue.url())
        stats = client.stats()
    assert set(stats) >= {
        "handshakes_checked",
        "handshakes_passed",
        "pin_failures_enforced",
        "pin_failures_reported",
        "updates_accepted",
        "updates_rejected",
        "updates_not_modified",
        "updates_failed",
        "reports_sent",
        "reports_deduplicated",
        "reports_dropped",
        "policy_version",
    }
    assert stats["handshakes_checked"] == 2  # one kept-alive connection, one refused
    assert stats["handshakes_passed"] == 1
    assert stats["pin_failures_enforced"] == 1
    assert stats["policy_version"] == 12
    pinsdk_records = [r for r in caplog.records if r.name == "pinsdk"]
    assert len(pinsdk_records) == 1  # one line for the failure; nothing per good request
    assert "\n" not in pinsdk_records[0].getMessage()
