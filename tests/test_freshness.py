"""Freshness: what a client does after too long without a verified update.

Default: the last verified pins stay enforced however old (TUF: fail closed). With
``max_age``: they stop being enforced once the newest verified document was issued more
than ``max_age`` ago (Chromium's 70 days), with an ERROR. Both driven by an injected clock.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from typing import Any

import pytest
import trustme

import pinsdk
from pinsdk import DomainPins, PinPolicy, UpdateStatus
from pinsdk._core.errors import PinConfigError
from pinsdk._core.keys import KeySet
from pinsdk._core.trusted import TrustedPins
from pinsdk._demo.loopback import LoopbackTLSServer

from .signing import payload, public_pem
from .test_trusted import DAY, HOST, T0, A, B, C, Clock, signed
from .updates import UpdateServer


def trusted(key: Any, clock: Clock, **kw: Any) -> TrustedPins:
    return TrustedPins(KeySet.build([key.public_key()], 1), clock=clock, **kw)


def test_default_keeps_enforcing_the_last_verified_pins(signer: Any) -> None:
    clock = Clock()
    t = trusted(signer, clock)
    assert t.update(signed(3, signer, expires=T0 + 30 * DAY)).status is UpdateStatus.UPDATED
    clock.now = T0 + 400 * DAY  # long expired, long unrefreshed
    assert t.current.pins_for(HOST) == {A, B}
    facts = t.facts()
    assert facts.stale
    assert facts.enforcing


def test_max_age_stops_enforcing_loudly_and_a_fresh_document_restores_it(
    signer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    t = trusted(signer, clock, max_age=70 * DAY)
    issued = T0 - 60
    doc = signed(3, signer, issued=issued, expires=T0 + 365 * DAY, deny=[C])
    assert t.update(doc).status is UpdateStatus.UPDATED
    clock.now = issued + 70 * DAY - 1
    assert t.current.pins_for(HOST) == {A, B}
    assert t.facts().enforcing
    assert t.unenforced_reason() == ""
    clock.now = issued + 70 * DAY  # the instant it is 70 days old
    with caplog.at_level(logging.ERROR, logger="pinsdk"):
        for _ in range(3):
            policy = t.current
            assert policy.pins_for(HOST) == frozenset()
    assert policy.deny == {C}  # a known-compromised key stays refused
    assert policy.version == 3
    alarms = [r for r in caplog.records if "PINS ARE NOT ENFORCED" in r.getMessage()]
    assert len(alarms) == 1  # once per document, not per handshake
    assert "version 3" in alarms[0].getMessage()
    facts = t.facts()
    assert not facts.enforcing
    assert not facts.stale  # not expired: too old is a separate rule
    fresh = signed(4, signer, issued=clock.now - 60, expires=clock.now + DAY)
    assert t.update(fresh).status is UpdateStatus.UPDATED
    assert t.current.pins_for(HOST) == {A, B}
    assert t.facts().enforcing


def test_max_age_without_a_document_keeps_the_bootstrap_policy(signer: Any) -> None:
    """The app's own bootstrap policy carries no signed issue date: it is kept."""
    clock = Clock()
    bootstrap = PinPolicy([DomainPins(HOST, [A, B])])
    t = TrustedPins(KeySet.build([signer.public_key()], 1), bootstrap, clock=clock, max_age=1.0)
    clock.now = T0 + 1000 * DAY
    assert t.current is bootstrap
    assert t.facts().enforcing


@pytest.mark.parametrize("bad", [0, -1, True, "70d", float("nan")])
def test_max_age_must_be_positive_seconds(signer: Any, bad: Any) -> None:
    with pytest.raises(PinConfigError, match="max_age must be a positive number"):
        trusted(signer, Clock(), max_age=bad)


@pytest.mark.anyio
@pytest.mark.parametrize("max_age", [None, 70 * DAY])
async def test_dynamic_pins_end_to_end_with_an_injected_clock(
    updates: UpdateServer,
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    max_age: float | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An interceptor with a certificate from another trusted CA: refused while the pins
    are enforced; after max_age without a fresh document (only with max_age), let through,
    and the state, the stats and the log say so."""
    now = [time.time()]
    entries = [{"host": "127.0.0.1", "pins": [pins["root"], pins["leaf"]]}]
    updates.publish(pinsdk.sign_envelope(payload(2, entries, expires_in=30 * DAY), signer))
    dyn = pinsdk.DynamicPins(
        updates.url,
        [public_pem(signer)],
        verify=device_trust(),
        auto_refresh=False,
        max_age=max_age,
        clock=lambda: now[0],
    )
    first = await dyn.refresh()
    assert first.status is UpdateStatus.UPDATED, first.reason
    assert dyn.state.enforcing
    assert dyn.state.max_age == max_age
    assert dyn.state.issued_at is not None
    assert dyn.stats()["pins_enforced"] == 1
    interceptor = serve(rogue_cert)
    url = interceptor.url("127.0.0.1", "/")
    async with pinsdk.AsyncClient(pins=dyn, verify=device_trust()) as client:
        with pytest.raises(pinsdk.PinValidationError):
            await client.get(url)
        now[0] += 71 * DAY  # no verified update for 71 days
        with caplog.at_level(logging.ERROR, logger="pinsdk"):
            if max_age is None:
                with pytest.raises(pinsdk.PinValidationError):
                    await client.get(url)
            else:
                assert (await client.get(url)).status_code == 200
            await dyn.refresh()  # the server still has only the old document
    state = dyn.state
    assert state.stale  # expired after 30 days either way
    assert state.enforcing is (max_age is None)
    assert dyn.stats()["pins_enforced"] == int(max_age is None)
    alarms = [r for r in caplog.records if "PINS ARE NOT ENFORCED" in r.getMessage()]
    assert bool(alarms) is (max_age is not None)
