"""Pin failure events, RFC 7469-style reports, deduplication and counters (pure code)."""

from __future__ import annotations

import base64
import textwrap
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import attrs

from .check import Verdict
from .policy import PinPolicy
from .timeutil import format_datetime

__all__ = ["STAT_KEYS", "Deduplicator", "PinFailure", "Stats", "build_report"]


@attrs.frozen
class PinFailure:
    """One pin failure on a connection, as given to ``on_pin_failure`` callbacks.

    ``mode`` is ``"enforce"`` (the connection was refused) or ``"report"`` (it went on).
    ``port`` is ``None`` when the failure was seen outside a pinsdk transport, or (report
    mode) when the request that opened the connection ended before it could claim it.
    """

    host: str
    port: int | None
    served_pins: tuple[str, ...]
    expected_pins: frozenset[str]
    mode: Literal["enforce", "report"]
    policy_version: int
    time: datetime
    reason: str
    denied_pins: tuple[str, ...] = ()
    noted_hostname: str | None = None
    include_subdomains: bool = False
    expiration: datetime | None = None
    report_uri: str | None = attrs.field(default=None, repr=False)
    validated_chain: tuple[bytes, ...] = attrs.field(default=(), eq=False, repr=False)
    served_chain: tuple[bytes, ...] = attrs.field(default=(), eq=False, repr=False)

    @property
    def enforced(self) -> bool:
        """Whether the connection was refused."""
        return self.mode == "enforce"

    @classmethod
    def from_verdict(
        cls,
        verdict: Verdict,
        *,
        at: datetime,
        validated_chain: Sequence[bytes] = (),
        served_chain: Sequence[bytes] = (),
        port: int | None = None,
    ) -> PinFailure:
        """Build the event for a failed verdict."""
        first = verdict.domains[0] if verdict.domains else None
        expirations = [d.expires for d in verdict.domains if d.expires is not None]
        return cls(
            host=verdict.host,
            port=port,
            served_pins=verdict.served_pins,
            expected_pins=verdict.expected_pins,
            mode="enforce" if verdict.enforced else "report",
            policy_version=verdict.policy_version,
            time=at,
            reason=verdict.reason,
            denied_pins=verdict.denied_pins,
            noted_hostname=None if first is None else first.host,
            include_subdomains=any(d.include_subdomains for d in verdict.domains),
            expiration=min(expirations) if expirations else None,
            report_uri=verdict.report_uri,
            validated_chain=tuple(validated_chain),
            served_chain=tuple(served_chain),
        )


def _pem(der: bytes) -> str:
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode("ascii"), 64))
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


def build_report(failure: PinFailure, *, sdk_version: str) -> dict[str, Any]:
    """The JSON report: RFC 7469 section 3 fields plus pinsdk's own."""
    return {
        "date-time": format_datetime(failure.time),
        "hostname": failure.host,
        "port": failure.port,
        "effective-expiration-date": (
            None if failure.expiration is None else format_datetime(failure.expiration)
        ),
        "include-subdomains": failure.include_subdomains,
        "noted-hostname": failure.noted_hostname or failure.host,
        "served-certificate-chain": [_pem(d) for d in failure.served_chain],
        "validated-certificate-chain": [_pem(d) for d in failure.validated_chain],
        "known-pins": [
            f'pin-sha256="{pin.removeprefix("sha256/")}"' for pin in sorted(failure.expected_pins)
        ],
        "pinsdk-version": sdk_version,
        "policy-version": failure.policy_version,
        "enforced": failure.enforced,
        "reason": failure.reason,
        "denied-pins": list(failure.denied_pins),
    }


def dedup_key(failure: PinFailure) -> tuple[object, ...]:
    """Identical reports: same host, port, chains, known pins and mode."""
    return (
        failure.host,
        failure.port,
        failure.served_chain,
        failure.validated_chain,
        failure.expected_pins,
        failure.mode,
        failure.report_uri,
    )


class Deduplicator:
    """Remembers what was reported, so an identical report goes out once per interval."""

    def __init__(self, interval: float, max_entries: int = 1024) -> None:
        self.interval = interval
        self.max_entries = max_entries
        self._sent: dict[tuple[object, ...], float] = {}

    def first_in_interval(self, key: tuple[object, ...], now: float) -> bool:
        """True (and remembered) if ``key`` was not reported within the interval."""
        last = self._sent.get(key)
        if last is not None and now - last < self.interval:
            return False
        if len(self._sent) >= self.max_entries:
            cutoff = now - self.interval
            self._sent = {k: t for k, t in self._sent.items() if t > cutoff}
            while len(self._sent) >= self.max_entries:
                del self._sent[next(iter(self._sent))]
        self._sent[key] = now
        return True


STAT_KEYS = (
    "handshakes_checked",
    "handshakes_passed",
    "pin_failures_enforced",
    "pin_failures_reported",
    "updates_accepted",
    "updates_rejected",
    "updates_not_modified",
    "updates_failed",
    "reports_sent",
    "reports_failed",
    "reports_deduplicated",
    "reports_dropped",
    "self_heal_refreshes",
    "self_heal_retries",
)


class Stats:
    """Plain counters; a snapshot is taken with :meth:`as_dict`."""

    def __init__(self) -> None:
        # handshakes_checked keeps its place here but stays 0: as_dict derives it.
        self.counts: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)

    def add(self, key: str, n: int = 1) -> None:
        """Increment one counter."""
        self.counts[key] += n

    def as_dict(self, policy_version: int, policy: PinPolicy | None = None) -> dict[str, int]:
        """A copy of every counter plus the version of the policy in force; given that
        policy, also ``entries_expired``: how many of its entries have expired (their
        hosts are no longer pinned by them)."""
        counts = self.counts
        # Derived, so a handshake costs one counter increment, not two.
        checked = (
            counts["handshakes_passed"]
            + counts["pin_failures_enforced"]
            + counts["pin_failures_reported"]
        )
        out = {**counts, "handshakes_checked": checked, "policy_version": policy_version}
        if policy is not None:
            out["entries_expired"] = len(policy.expired_entries())
        return out
