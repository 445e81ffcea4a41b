"""The preflight behind ``pinsdk check``: would clients accept these servers? (pure code)

The command line does the TLS handshakes; this module judges what they returned. The
accept/refuse decision is :func:`~pinsdk._core.check.evaluate`, the very function a
pinned client runs after its handshake, so the check cannot drift from the client.
Around it, the facts an operator needs before a rotation: which pins matched, which pins
are spares (pinned but not on the chain: what still holds after this chain changes),
pins on a leaf key (leaf keys rotate with every certificate), entries with fewer than two
pins, and days until the certificates expire.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime

import attrs
from cryptography import x509

from .check import evaluate
from .hosts import PatternKind
from .pins import NotDERError, pin_of_der
from .policy import DomainPins, PinPolicy
from .timeutil import format_datetime

__all__ = [
    "TargetReport",
    "default_hosts",
    "judge_chain",
    "mark_backup_only",
    "policy_findings",
    "unreachable",
]

_DAY = 86400.0


@attrs.frozen
class TargetReport:
    """What a client would make of one server (one address of one host).

    ``ok``: a client with this policy would accept it. ``matched``: the pins of the
    verified chain that the host's entries list. ``spare``: pins of those entries that
    are not on the chain (backups, for this server). ``backup_only``: the server matched
    none of the pins that most servers of the same host matched (set by
    :func:`mark_backup_only`). ``leaf_pins``: matched pins that are the leaf's own key.
    ``days_left``: whole days until the leaf certificate expires; ``chain_days_left``:
    until the first certificate of the chain does.
    """

    host: str
    port: int
    address: str | None
    ok: bool
    pinned: bool = False
    matched: tuple[str, ...] = ()
    spare: tuple[str, ...] = ()
    leaf_pins: tuple[str, ...] = ()
    backup_only: bool = False
    days_left: int | None = None
    chain_days_left: int | None = None
    not_after: datetime | None = None
    reason: str = ""
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """The ``--json`` shape of the report."""
        return {
            "host": self.host,
            "port": self.port,
            "address": self.address,
            "ok": self.ok,
            "pinned": self.pinned,
            "matched": list(self.matched),
            "spare": list(self.spare),
            "backup_only": self.backup_only,
            "leaf_pins": list(self.leaf_pins),
            "days_left": self.days_left,
            "chain_days_left": self.chain_days_left,
            "not_after": None if self.not_after is None else format_datetime(self.not_after),
            "reason": self.reason,
            "warnings": list(self.warnings),
        }


def default_hosts(policy: PinPolicy, now: float) -> list[str]:
    """Every exact host of the policy's live entries, in order, once each (wildcard
    patterns name no server to connect to)."""
    seen: dict[str, None] = {}
    expired = {id(d) for d in policy.expired_entries(now)}
    for entry in policy.domains:
        if entry.pattern.kind is PatternKind.EXACT and id(entry) not in expired:
            seen.setdefault(entry.pattern.base, None)
    return list(seen)


def policy_findings(policy: PinPolicy, now: float) -> list[str]:
    """Warnings about the policy itself: entries with fewer than two pins, expired ones."""
    out = []
    expired = {id(d) for d in policy.expired_entries(now)}
    for entry in policy.domains:
        if id(entry) in expired:
            out.append(f"{entry.host!r}: the entry has expired and pins nothing")
        elif len(entry.pins) < 2:
            out.append(
                f"{entry.host!r}: {len(entry.pins)} pin, no backup: a rotated or lost key "
                "locks every client out (pin a backup key kept offline)"
            )
    return out


def _days(not_after: datetime, now: float) -> int:
    return math.floor((not_after.timestamp() - now) / _DAY)


def _not_after(der: bytes) -> datetime | None:
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    return cert.not_valid_after_utc


def unreachable(host: str, port: int, address: str | None, reason: str) -> TargetReport:
    """A server no client could use: connection or TLS verification failed."""
    return TargetReport(host=host, port=port, address=address, ok=False, reason=reason)


def judge_chain(
    policy: PinPolicy,
    host: str,
    port: int,
    address: str | None,
    chain: Sequence[bytes],
    *,
    now: float,
    warn_days: float = 30.0,
) -> TargetReport:
    """Judge a **verified** chain (DER, leaf first) served for ``host`` as a client would."""
    verdict = evaluate(policy, host, chain, now=now)
    entries = policy.lookup(host, now=now)
    enforced: tuple[DomainPins, ...] = tuple(d for d in entries if d.mode == "enforce")
    listed = frozenset().union(*(d.pins for d in entries))
    warnings: list[str] = []
    try:
        served = [pin_of_der(der) for der in chain]
    except NotDERError:
        served = []
    matched = tuple(p for p in served if p in listed)
    leaf_pins = tuple(p for p in served[:1] if p in listed)
    spare = tuple(sorted(listed.difference(served)))
    dates = [d for d in (_not_after(der) for der in chain) if d is not None]
    leaf_date = _not_after(chain[0]) if chain else None
    days_left = None if leaf_date is None else _days(leaf_date, now)
    chain_days = min((_days(d, now) for d in dates), default=None)
    if not entries:
        warnings.append("the host is not pinned by this policy")
    if leaf_pins:
        warnings.append(
            "a pin is the leaf's own key: it changes whenever the certificate is renewed "
            "with a new key; pin the issuing CA or keep a spare pin"
        )
    if entries and not spare:
        warnings.append(
            "every pin of the host is on this chain: no spare pin survives a change of chain"
        )
    if verdict is not None and not verdict.enforced:
        warnings.append(f"report-mode entry would report: {verdict.reason}")
    if chain_days is not None and chain_days < warn_days:
        warnings.append(f"a certificate of the chain expires in {chain_days} days")
    return TargetReport(
        host=host,
        port=port,
        address=address,
        ok=verdict is None or not verdict.enforced,
        pinned=bool(enforced),
        matched=matched,
        spare=spare,
        leaf_pins=leaf_pins,
        days_left=days_left,
        chain_days_left=chain_days,
        not_after=leaf_date,
        reason="" if verdict is None or not verdict.enforced else verdict.reason,
        warnings=tuple(warnings),
    )


def mark_backup_only(reports: Iterable[TargetReport]) -> list[TargetReport]:
    """Flag servers that are accepted only through pins the rest of their host does not use.

    For each host, the pins matched by more than half of its accepted servers are the
    pins in use; an accepted server that matched none of them is running on a backup
    (mid-rotation, or one address moved to another CA): it works, but the host's spare
    is spent.
    """
    reports = list(reports)
    by_host: dict[str, list[TargetReport]] = {}
    for r in reports:
        if r.ok and r.matched:
            by_host.setdefault(r.host, []).append(r)
    in_use: dict[str, frozenset[str]] = {}
    for host, group in by_host.items():
        counts = Counter(p for r in group for p in set(r.matched))
        in_use[host] = frozenset(p for p, n in counts.items() if n * 2 > len(group))
    out = []
    for r in reports:
        used = in_use.get(r.host)
        if used and r.ok and r.matched and not used.intersection(r.matched):
            note = "accepted only through a pin the host's other servers do not use (a backup)"
            r = attrs.evolve(r, backup_only=True, warnings=(*r.warnings, note))
        out.append(r)
    return out
