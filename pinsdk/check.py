"""The pin check: a verified chain and a policy in, a verdict out (pure code)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs
from cryptography import x509

from .pins import DEFAULT_CACHE, ChainPinCache
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
    host is pinned or a deny list exists); an empty tuple means no verified chain."""
    domains = policy.match_fast(server_hostname, now)
    deny = policy.deny
    if not domains and not deny:
        return None
    host = server_hostname.lower().rstrip(".")
    pins = served()
    if not pins:
        return Verdict(
            host=host,
            enforced=True,
            reason="the TLS layer returned no verified chain (a resumed session?)",
            served_pins=(),
            expected_pins=frozenset().union(*(d.pins for d in domains)),
            denied_pins=(),
            policy_version=policy.version,
            domains=domains,
            report_uri=policy.report_uri_for(domains),
        )
    expected: frozenset[str] = (
        domains[0].pins if len(domains) == 1 else frozenset().union(*(d.pins for d in domains))
    )
    if deny:
        denied = tuple(p for p in pins if p in deny)
        if denied:
            return Verdict(
                host=host,
                enforced=True,
                reason="the verified chain contains a denied key",
                served_pins=pins,
                expected_pins=expected,
                denied_pins=denied,
                policy_version=policy.version,
                domains=domains,
                report_uri=policy.report_uri_for(domains),
            )
    if not domains:
        return None
    for pin in pins:
        if pin in expected:
            return None
    return Verdict(
        host=host,
        enforced=any(d.mode == "enforce" for d in domains),
        reason="no key of the verified chain matches the pins",
        served_pins=pins,
        expected_pins=expected,
        denied_pins=(),
        policy_version=policy.version,
        domains=domains,
        report_uri=policy.report_uri_for(domains),
    )


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
