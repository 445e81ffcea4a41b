"""The handshake's fast path: known chains, the DER route, and report-mode bookkeeping.

A chain that passed is remembered per host and per policy, and recognised again by
comparing certificates. These tests make sure the memo never lets through what a full
check would refuse.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import ssl
import time
import weakref
from collections.abc import Callable
from datetime import datetime, timezone

import httpx
import pytest
import trustme

import pinsdk
from pinsdk import DomainPins, PinPolicy
from pinsdk import _tls as sslhook
from pinsdk._demo.loopback import LoopbackTLSServer

from .test_tls_pinning import BACKUP, Swappable, policy

pytestmark = pytest.mark.anyio

NO_POOL = httpx.Limits(max_keepalive_connections=0)  # every request: a new handshake
OTHER = "sha256/" + base64.b64encode(hashlib.sha256(b"another key").digest()).decode()


async def test_known_chain_is_only_the_same_chain_under_the_same_policy(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    rogue_cert: trustme.LeafCert,
    rogue_ca: trustme.CA,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    legit, rogue = serve(api_cert), serve(rogue_cert)
    source = Swappable(policy(pins["intermediate"], BACKUP))
    async with pinsdk.AsyncClient(pins=source, verify=device_trust(), limits=NO_POOL) as client:
        assert (await client.get(legit.url())).status_code == 200
        # Same host, same policy, another chain: evaluated, refused.
        with pytest.raises(pinsdk.PinValidationError):
            await client.get(rogue.url())
        assert (await client.get(legit.url())).status_code == 200  # the known chain
        assert (await client.get(legit.url())).status_code == 200
        # A new policy forgets every pass of the old one.
        source.current = policy(pinsdk.spki_pin(rogue_ca.cert_pem.bytes()), BACKUP)
        with pytest.raises(pinsdk.PinValidationError):
            await client.get(legit.url())
        assert (await client.get(rogue.url())).status_code == 200
        stats = client.stats()
    assert stats["handshakes_passed"] == 4
    assert stats["pin_failures_enforced"] == 2
    assert stats["handshakes_checked"] == 6
    assert rogue.received.count(b"GET") == 1  # only after the swap made it the pinned one


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


async def test_a_pass_that_depends_on_an_expiring_entry_is_checked_again(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = serve(api_cert)
    expires = time.time() + 3600
    clock = _Clock(expires - 60)
    monkeypatch.setattr("pinsdk._core.policy.time", clock)  # the policy's clock only
    pinned = PinPolicy(
        [
            DomainPins(
                "127.0.0.1",
                [pins["leaf"], BACKUP],
                expires=datetime.fromtimestamp(expires, timezone.utc),
            ),
            DomainPins("127.0.0.1", [OTHER, BACKUP]),
        ]
    )
    async with pinsdk.AsyncClient(pins=pinned, verify=device_trust(), limits=NO_POOL) as client:
        assert (await client.get(server.url())).status_code == 200
        assert (await client.get(server.url())).status_code == 200
        clock.now = expires + 1  # the entry that matched has expired; the other remains
        with pytest.raises(pinsdk.PinValidationError, match="no key of the verified chain"):
            await client.get(server.url())


async def test_der_route_where_certificate_objects_are_missing(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fallback for a Python whose TLS object has no private chain getter."""
    monkeypatch.setattr(sslhook, "_CERT_OBJECTS", False)
    legit, rogue = serve(api_cert), serve(rogue_cert)
    pinned = policy(pins["root"], BACKUP)
    async with pinsdk.AsyncClient(pins=pinned, verify=device_trust(), limits=NO_POOL) as client:
        assert (await client.get(legit.url())).status_code == 200
        with pytest.raises(pinsdk.PinValidationError) as info:
            await client.get(rogue.url())
    assert info.value.served_pins
    assert pins["root"] not in info.value.served_pins
    assert rogue.received == b""


async def test_report_mode_failures_are_claimed_by_their_own_request(
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    first, second = serve(rogue_cert), serve(rogue_cert)
    events: list[pinsdk.PinFailure] = []
    reporting = policy(pins["root"], BACKUP, mode="report")
    async with pinsdk.AsyncClient(
        pins=reporting, verify=device_trust(), on_pin_failure=events.append, limits=NO_POOL
    ) as client:
        assert (await client.get(first.url())).status_code == 200
        assert (await client.get(second.url())).status_code == 200
        assert not client._transport._check.unclaimed  # type: ignore[attr-defined]
    assert [(e.port, e.mode) for e in events] == [(first.port, "report"), (second.port, "report")]


async def test_report_mode_failures_nobody_listens_to_are_not_kept(
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    server = serve(rogue_cert)
    reporting = policy(pins["root"], BACKUP, mode="report")
    async with pinsdk.AsyncClient(pins=reporting, verify=device_trust()) as client:
        assert (await client.get(server.url())).status_code == 200
        check = client._transport._check  # type: ignore[attr-defined]
        assert check.quiet
        assert not check.unclaimed
        assert client.stats()["pin_failures_reported"] == 1


def test_claim_takes_its_own_and_orphaned_failures_only() -> None:
    check = sslhook.PinCheck(policy(BACKUP, OTHER))

    class Conn:
        pass

    mine, other, gone = Conn(), Conn(), Conn()

    def failure(host: str) -> pinsdk.PinFailure:
        return pinsdk.PinFailure(
            host=host,
            port=None,
            served_pins=(),
            expected_pins=frozenset({BACKUP}),
            mode="report",
            policy_version=0,
            time=datetime.now(timezone.utc),
            reason="test",
        )

    check.unclaimed.append((weakref.ref(mine), failure("a")))
    check.unclaimed.append((weakref.ref(other), failure("b")))
    check.unclaimed.append((weakref.ref(gone), failure("c")))
    del gone  # its connection closed before any request claimed the failure
    gc.collect()
    taken, orphans = check.claim(mine)
    assert [f.host for f in taken] == ["a"]
    assert [f.host for f in orphans] == ["c"]
    assert [entry[1].host for entry in check.unclaimed] == ["b"]
    assert check.claim(None) == ([], [])  # a response without a TLS object claims nothing


def test_quiet_only_without_listeners() -> None:
    static = policy(BACKUP, OTHER)
    assert sslhook.PinCheck(static).quiet
    assert not sslhook.PinCheck(Swappable(static)).quiet  # a dynamic source may change
    with_uri = policy(BACKUP, OTHER, report_uri="https://collector.pinsdk.test/r")
    quiet_uri = sslhook.PinCheck(with_uri)
    assert quiet_uri.quiet  # nobody to send reports yet
    quiet_uri.add_monitors([pinsdk._reporting.Monitor(reporting=pinsdk.Reporting())])
    assert not quiet_uri.quiet
    callback = sslhook.PinCheck(static)
    callback.add_monitors([pinsdk._reporting.Monitor(on_pin_failure=print)])
    assert not callback.quiet
