"""Issue 12, item 5: report-mode pins never widen what an enforced host accepts.

Each row of the precedence table in docs/static-pinning.md is a case here, judged by the
pure check; the attack itself (a trial rollout in report mode on ``**.`` while the host
is enforced) runs on real TLS.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Callable

import pytest
import trustme

import pinsdk
from pinsdk._core.check import evaluate_pins
from pinsdk._demo.loopback import LoopbackTLSServer

from ..conftest import TOKEN


def _pin(label: str) -> str:
    return "sha256/" + base64.b64encode(label.encode().ljust(32, b"_")).decode()


GOOD, BACKUP, TRIAL, OTHER, DENIED = (_pin(x) for x in ("good", "backup", "trial", "o", "d"))
HOST = "api.example.test"

ENFORCED = pinsdk.DomainPins(HOST, [GOOD, BACKUP])
ENFORCED_WILDCARD = pinsdk.DomainPins("*.example.test", [OTHER, BACKUP])
REPORTED = pinsdk.DomainPins("*.example.test", [TRIAL, BACKUP], mode="report")
REPORTED_EXACT = pinsdk.DomainPins(HOST, [TRIAL, BACKUP], mode="report")

# (entries, pins of the verified chain, deny) -> None (pass), "report" or "refuse"
CASES = [
    pytest.param([ENFORCED], (GOOD,), (), None, id="enforce-match"),
    pytest.param([ENFORCED], (OTHER,), (), "refuse", id="enforce-miss"),
    pytest.param([REPORTED], (TRIAL,), (), None, id="report-match"),
    pytest.param([REPORTED], (OTHER,), (), "report", id="report-miss"),
    pytest.param([ENFORCED, REPORTED], (GOOD, TRIAL), (), None, id="both-match"),
    pytest.param([ENFORCED, REPORTED], (GOOD,), (), "report", id="enforce-ok-report-miss"),
    pytest.param([ENFORCED, REPORTED], (TRIAL,), (), "refuse", id="report-pin-never-widens"),
    pytest.param([REPORTED, ENFORCED], (TRIAL,), (), "refuse", id="order-does-not-matter"),
    pytest.param([ENFORCED, REPORTED_EXACT], (TRIAL,), (), "refuse", id="exact-report-entry"),
    pytest.param([ENFORCED, REPORTED], (OTHER,), (), "refuse", id="both-miss"),
    pytest.param([ENFORCED, ENFORCED_WILDCARD], (OTHER,), (), None, id="enforced-union"),
    pytest.param([ENFORCED], (GOOD, DENIED), (DENIED,), "refuse", id="deny-beats-match"),
    pytest.param([REPORTED], (TRIAL, DENIED), (DENIED,), "refuse", id="deny-beats-report"),
    pytest.param([], (DENIED,), (DENIED,), "refuse", id="deny-unpinned-host"),
    pytest.param([], (OTHER,), (DENIED,), None, id="unpinned-no-denied-key"),
]


@pytest.mark.parametrize(("entries", "served", "deny", "outcome"), CASES)
def test_precedence_of_overlapping_entries(
    entries: list[pinsdk.DomainPins],
    served: tuple[str, ...],
    deny: tuple[str, ...],
    outcome: str | None,
) -> None:
    policy = pinsdk.PinPolicy(entries, deny=deny)
    verdict = evaluate_pins(policy, HOST, lambda: served)
    if outcome is None:
        assert verdict is None
        return
    assert verdict is not None
    assert verdict.enforced is (outcome == "refuse")
    if outcome == "refuse" and not verdict.denied_pins:
        # The message lists what would have been accepted: enforced pins only.
        enforced = [d for d in entries if d.mode == "enforce"]
        assert verdict.expected_pins == frozenset().union(*(d.pins for d in enforced))
        assert TRIAL not in verdict.expected_pins or any(TRIAL in d.pins for d in enforced)
    if outcome == "report":
        assert verdict.expected_pins == frozenset().union(
            *(d.pins for d in entries if d.mode == "report")
        )


@pytest.mark.anyio
async def test_trial_pin_in_report_mode_does_not_admit_an_impostor(
    pins: dict[str, str],
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    serve: Callable[..., LoopbackTLSServer],
) -> None:
    """``localhost`` is enforced on the real keys; ``**.localhost`` trials a new key in
    report mode. A server holding the trial key (from a CA the device trusts) is refused
    for ``localhost``: before, the union of every matching entry's pins let it in."""
    trial = pinsdk.spki_pin(rogue_cert.cert_chain_pems[0].bytes())
    policy = pinsdk.PinPolicy(
        [
            pinsdk.DomainPins("localhost", [pins["intermediate"], pins["root"]]),
            pinsdk.DomainPins("**.localhost", [trial, pins["root"]], mode="report"),
        ]
    )
    server = serve(rogue_cert, http2=False)
    async with pinsdk.AsyncClient(pins=policy, verify=device_trust()) as client:
        with pytest.raises(pinsdk.PinValidationError) as caught:
            await client.get(server.url("localhost"), headers={"Authorization": TOKEN})
    assert trial not in caught.value.expected_pins
    assert server.received == b""


@pytest.mark.anyio
async def test_report_entry_still_reports_when_the_enforced_entry_passes(
    pins: dict[str, str],
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    serve: Callable[..., LoopbackTLSServer],
) -> None:
    """The trial rollout keeps working: the real server passes the enforced entry, and the
    report-mode entry whose pins it lacks is reported (the request goes through)."""
    seen: list[pinsdk.PinFailure] = []
    policy = pinsdk.PinPolicy(
        [
            pinsdk.DomainPins("localhost", [pins["intermediate"], pins["root"]]),
            pinsdk.DomainPins("**.localhost", [TRIAL, OTHER], mode="report"),
        ]
    )
    server = serve(api_cert, http2=False)
    async with pinsdk.AsyncClient(
        pins=policy, verify=device_trust(), on_pin_failure=seen.append
    ) as client:
        response = await client.get(server.url("localhost"))
    assert response.status_code == 200
    assert len(seen) == 1
    assert seen[0].enforced is False
    assert set(seen[0].expected_pins) == {TRIAL, OTHER}


def test_pins_for_can_leave_report_entries_out() -> None:
    """Self-healing compares what a connection must match: enforced pins only."""
    policy = pinsdk.PinPolicy([ENFORCED, REPORTED])
    assert policy.pins_for(HOST) == {GOOD, BACKUP, TRIAL}
    assert policy.pins_for(HOST, mode="enforce") == {GOOD, BACKUP}
    assert policy.pins_for(HOST, mode="report") == {TRIAL, BACKUP}
