"""The pin check: a verified chain and a policy in, a verdict out (pure code)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs
from cryptography import x509

from .errors import PinConfigError
from .hosts import host_keys
from .pins import DEFAULT_CACHE, ChainPinCache, NotDERError
from .policy import DomainPins, PinPolicy

__all__ = ["Verdict", "describe_failure", "evaluate", "evaluate_pins"]


@attrs.frozen
class Verdict:
    """Why a verified chain failed the policy for a host.

    ``enforced`` tells whether the failure blocks the connection (enforce mode, a
    denied key or a missing chain) or is only reported (report mode).
    """

    host: str
    enforced: bool
    reason: str
    served_pins: tuple[str, ...]
    expected_pins: frozenset[str]
    denied_pins: tuple[str, ...]
    policy_version: int
    domains: tuple[DomainPins, ...] = attrs.field(default=(), eq=False, repr=False)
    report_uri: str | None = None


def evaluate(
    policy: PinPolicy,
    server_hostname: str,
    chain: Sequence[bytes] | None,
    *,
    now: float | None = None,
    cache: ChainPinCache = DEFAULT_CACHE,
) -> Verdict | None:
    """Check the **verified** chain (DER, leaf first) of a connection to a host.

    Returns ``None`` when the connection may proceed, else a :class:`Verdict`.
    ``server_hostname`` is the name the TLS layer verified the certificate against.
    """
    return evaluate_pins(policy, server_hostname, lambda: cache.chain_pins(chain or ()), now=now)


def evaluate_pins(
    policy: PinPolicy,
    server_hostname: str,
    served: Callable[[], tuple[str, ...]],
    *,
    now: float | None = None,
) -> Verdict | None:
    """:func:`evaluate` with the chain's pins supplied by ``served`` (called only when the
    host is pinned or a deny list exists); an empty tuple means no verified chain, and
    :class:`~pinsdk.pins.NotDERError` from it means a certificate has no pin.

    Enforce-mode entries decide: the chain must hold a pin of one of them. Report-mode
    entries never widen that; they are judged on their own and can only report. A
    denied key refuses the connection whatever the entries say.
    """
    try:
        keys = host_keys(server_hostname)
    except PinConfigError as exc:  # which pins apply to a name we cannot read is unknown
        return Verdict(
            host=server_hostname,
            enforced=True,
            reason=str(exc),
            served_pins=(),
            expected_pins=frozenset(),
            denied_pins=(),
            policy_version=policy.version,
        )
    host = keys[-1]
    domains = policy.match_keys(keys, now)
    deny = policy.deny
    if not domains and not deny:
        return None
    if len(domains) == 1:  # the common case: one entry, one mode
        enforced: tuple[DomainPins, ...] = domains if domains[0].mode == "enforce" else ()
    else:
        enforced = tuple(d for d in domains if d.mode == "enforce")

    def verdict(
        reason: str, pins: tuple[str, ...], which: tuple[DomainPins, ...], refuse: bool = True
    ) -> Verdict:
        return Verdict(
            host=host,
            enforced=refuse,
            reason=reason,
            served_pins=pins,
            expected_pins=_union(which),
            denied_pins=tuple(p for p in pins if p in deny),
            policy_version=policy.version,
            domains=which,
            report_uri=policy.report_uri_for(which),
        )

    try:
        pins = served()
    except NotDERError as exc:
        # Fail closed: its key cannot be read the way OpenSSL reads it, so no pin (or
        # denied key) can be ruled out.
        reason = f"a certificate of the verified chain is refused ({exc})"
        return verdict(reason, (), enforced or domains)
    if not pins:
        reason = "the TLS layer returned no verified chain (a resumed session?)"
        return verdict(reason, (), enforced or domains)
    if deny and any(p in deny for p in pins):
        return verdict("the verified chain contains a denied key", pins, enforced or domains)
    if enforced:
        if not _matches(pins, enforced):
            return verdict("no key of the verified chain matches the pins", pins, enforced)
        if len(enforced) == len(domains):
            return None
    reported = tuple(d for d in domains if d.mode == "report")
    if not reported or _matches(pins, reported):
        return None
    reason = "no key of the verified chain matches the report-mode pins"
    return verdict(reason, pins, reported, refuse=False)


def _union(domains: tuple[DomainPins, ...]) -> frozenset[str]:
    if len(domains) == 1:
        return domains[0].pins
    return frozenset().union(*(d.pins for d in domains))


def _matches(pins: tuple[str, ...], domains: tuple[DomainPins, ...]) -> bool:
    for d in domains:
        accepted = d.pins
        for pin in pins:
            if pin in accepted:
                return True
    return False


def _subject(der: bytes) -> str:
    try:
        return x509.load_der_x509_certificate(der).subject.rfc4514_string()
    except ValueError:
        return "<unparsable certificate>"


def describe_failure(verdict: Verdict, chain: Sequence[bytes] | None) -> str:
    """A multi-line message listing the chain (``sha256/… : subject``) and the pins."""
    lines = [f"Certificate pinning failure for {verdict.host}: {verdict.reason}."]
    lines.append("  Verified certificate chain (leaf first):")
    if chain:
        for pin, der in zip(verdict.served_pins, chain, strict=False):
            mark = "  (denied)" if pin in verdict.denied_pins else ""
            lines.append(f"    {pin} : {_subject(der)}{mark}")
    else:
        lines.append("    (none)")
    lines.append(f"  Pins configured for {verdict.host}:")
    lines.extend(f"    {pin}" for pin in sorted(verdict.expected_pins))
    if not verdict.expected_pins:
        lines.append("    (none: the host is not pinned)")
    return "\n".join(lines)
