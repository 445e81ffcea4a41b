"""Pin policies: which hosts are pinned to which keys (pure code).

A :class:`PinPolicy` is an immutable value: its entries (:class:`DomainPins`, in
:mod:`.domain`), a deny list, and an index of the entries by base name (:mod:`.index`)
so a lookup costs a few dict probes per label of the host, whatever the number of domains.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import attrs

from .domain import DomainPins, Mode, check_report_uri
from .errors import PinConfigError
from .hosts import host_keys
from .hosttable import HostTable
from .index import build_index, parse_entries
from .pins import parse_pins
from .schema import POLICY, check_keys
from .timeutil import format_datetime, to_timestamp

# DomainPins and Mode are re-exported: this is where the rest of pinsdk finds a policy's parts.
__all__ = ["EXPIRED_ENTRY_FLAG", "DomainPins", "Mode", "PinPolicy"]

logger = logging.getLogger("pinsdk")

# How many already-expired entries a new policy names one by one in the log.
_MAX_NAMED_EXPIRED = 50
# Marks the log records about expired entries, so a caller that reports them itself (the
# command line) can leave them out.
EXPIRED_ENTRY_FLAG = "pinsdk_expired_entry"
_EXPIRED_LOG = {EXPIRED_ENTRY_FLAG: True}


def _check_policy_fields(
    version: object, require_backup: object, deny: Iterable[str], report_uri: object
) -> tuple[frozenset[str], str | None]:
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise PinConfigError(f"version must be a non-negative integer, not {version!r}")
    if not isinstance(require_backup, bool):
        raise PinConfigError(f"require_backup must be true or false, not {require_backup!r}")
    deny_set = parse_pins(deny, what="deny")
    return deny_set, check_report_uri(report_uri, what="report_uri")


def _when(entry: DomainPins) -> str:
    return "?" if entry.expires is None else format_datetime(entry.expires)


@attrs.frozen(init=False, eq=False, repr=False)
class PinPolicy:
    """An immutable set of pinned domains plus a deny list. Equal by value.

    ``deny`` pins are never accepted on any connection, pinned host or not, even when
    another certificate of the chain matches a pin. ``version`` is the policy's
    version (dynamic documents carry theirs). With ``require_backup=True`` every
    enforced domain must have at least two pins.

    A policy read with :meth:`from_dict` (every signed document) validates all its
    entries at once but builds the :class:`DomainPins` object of a common entry only
    when a lookup, or ``domains``, first needs it: a document of 10,000 domains is in
    force sooner, and the values are the same.
    """

    _table: HostTable = attrs.field(repr=False)
    deny: frozenset[str]
    version: int
    require_backup: bool
    report_uri: str | None
    _expiring: bool = attrs.field(repr=False)
    _domains: list[tuple[DomainPins, ...]] = attrs.field(repr=False)
    # The entries (by id) whose expiry was logged: each is reported once per policy.
    _lapsed: set[int] = attrs.field(repr=False)

    def __init__(
        self,
        domains: Iterable[DomainPins] = (),
        *,
        deny: Iterable[str] = (),
        version: int = 0,
        require_backup: bool = False,
        report_uri: str | None = None,
    ) -> None:
        if isinstance(domains, (str, bytes, Mapping)):
            raise PinConfigError("domains must be a list of DomainPins")
        entries = tuple(domains)
        deny_set, uri = _check_policy_fields(version, require_backup, deny, report_uri)
        table, expiring = build_index(entries, require_backup)
        self.__attrs_init__(
            table,
            deny_set,
            version,
            require_backup,
            uri,
            expiring,
            [entries],
            set(),
        )
        if expiring:
            self._report_expired()

    @classmethod
    def _from_table(
        cls,
        table: HostTable,
        expiring: bool,
        *,
        deny: Iterable[str],
        version: int,
        require_backup: bool,
        report_uri: str | None,
    ) -> PinPolicy:
        deny_set, uri = _check_policy_fields(version, require_backup, deny, report_uri)
        policy = cls.__new__(cls)
        policy.__attrs_init__(table, deny_set, version, require_backup, uri, expiring, [], set())
        if expiring:
            policy._report_expired()
        return policy

    def _report_expired(self) -> None:
        """Log each entry that expired before the policy was even built. Per-domain expiry
        is a feature; an entry dead on arrival is a mistake (typically an ``expires``
        copied from an old policy) that leaves its hosts unpinned, so it is said loudly."""
        expired = self.expired_entries()
        lapsed = self._lapsed
        for n, entry in enumerate(expired):
            lapsed.add(id(entry))
            if n < _MAX_NAMED_EXPIRED:
                logger.warning(
                    "the pins of %r expired at %s, before this policy (version %d) was built: "
                    "%r is NOT pinned. Remove the entry or give it a later 'expires'.",
                    entry.host,
                    _when(entry),
                    self.version,
                    entry.host,
                    extra=_EXPIRED_LOG,
                )
        if len(expired) > _MAX_NAMED_EXPIRED:
            logger.warning(
                "%d more entries of this policy (version %d) expired before it was built; "
                "their hosts are NOT pinned (%d expired entries in all)",
                len(expired) - _MAX_NAMED_EXPIRED,
                self.version,
                len(expired),
                extra=_EXPIRED_LOG,
            )

    def _report_lapsed(self, found: tuple[DomainPins, ...], at: float) -> None:
        """Log, once per entry, that a lookup dropped it because it expired in force."""
        lapsed = self._lapsed
        for entry in found:
            expires_at = entry.expires_at
            if expires_at is not None and at >= expires_at and id(entry) not in lapsed:
                lapsed.add(id(entry))
                logger.warning(
                    "the pins of %r expired at %s (policy version %d): %r is no longer pinned",
                    entry.host,
                    _when(entry),
                    self.version,
                    entry.host,
                )

    def expired_entries(self, now: datetime | float | None = None) -> tuple[DomainPins, ...]:
        """The entries whose ``expires`` has passed at ``now`` (default: the current time).

        They pin nothing any more: a host they alone matched is not pinned.
        """
        if not self._expiring:
            return ()
        at = to_timestamp(now)
        at = time.time() if at is None else at
        # Entries still held as rows (not built yet) never carry an expiry.
        return tuple(
            d for d in self._table.objects() if d.expires_at is not None and at >= d.expires_at
        )

    @property
    def domains(self) -> tuple[DomainPins, ...]:
        """Every entry, in the order given."""
        cache = self._domains
        if not cache:
            cache.append(tuple(self._table.entries()))
        return cache[0]

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, PinPolicy)
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[Any, ...]:
        return (self.domains, self.deny, self.version, self.require_backup, self.report_uri)

    def __repr__(self) -> str:
        return (
            f"PinPolicy(domains={self.domains!r}, deny={self.deny!r}, version={self.version!r}, "
            f"require_backup={self.require_backup!r}, report_uri={self.report_uri!r})"
        )

    @property
    def has_expiring_entries(self) -> bool:
        """Whether some domain has an ``expires`` time (then a check depends on the clock)."""
        return self._expiring

    @property
    def current(self) -> PinPolicy:
        """A static policy is its own source: ``current`` is the policy itself."""
        return self

    def lookup(self, host: str, *, now: datetime | float | None = None) -> tuple[DomainPins, ...]:
        """The unexpired domains that match ``host`` (any form; it is normalised)."""
        found = self._table.lookup(host_keys(host))
        if found and self._expiring:
            return self._live(found, None if now is None else to_timestamp(now))
        return found

    def _live(self, found: tuple[DomainPins, ...], now: float | None) -> tuple[DomainPins, ...]:
        """The entries of ``found`` not expired at ``now`` (default: the current time)."""
        at = time.time() if now is None else now
        live = tuple(d for d in found if d.expires_at is None or at < d.expires_at)
        if len(live) != len(found):
            self._report_lapsed(found, at)
        return live

    # The two below are lookup() for the hot path, each one call deep (a lookup of a
    # million-domain policy costs about a microsecond; a call, a tenth of that).

    def match_normalized(self, host: str, now: float | None = None) -> tuple[DomainPins, ...]:
        """:meth:`lookup` with ``now`` as a timestamp (the transport's path); ``host`` is
        usually normalised already, and any spelling gives the same answer."""
        found = self._table.lookup(host_keys(host))
        if found and self._expiring:
            return self._live(found, now)
        return found

    def match_keys(self, keys: tuple[str, ...], now: float | None = None) -> tuple[DomainPins, ...]:
        """:meth:`lookup` for a host given as its :func:`host_keys` (the pin check, which
        reads the normalised name from them as well)."""
        found = self._table.lookup(keys)
        if found and self._expiring:
            return self._live(found, now)
        return found

    def match_fast(self, server_hostname: str, now: float | None = None) -> tuple[DomainPins, ...]:
        """:meth:`match_normalized`, kept under the name earlier callers use."""
        return self.match_normalized(server_hostname, now)

    def report_uri_for(self, domains: Iterable[DomainPins]) -> str | None:
        """Where failures of these matching entries are reported: an entry's own
        ``report_uri`` wins over the policy's."""
        for d in domains:
            if d.report_uri is not None:
                return d.report_uri
        return self.report_uri

    def pins_for(
        self, host: str, *, now: datetime | float | None = None, mode: Mode | None = None
    ) -> frozenset[str]:
        """The union of the pins of every matching, unexpired domain (empty if unpinned);
        with ``mode``, of the entries in that mode only (``"enforce"``: what a connection
        must match, since report-mode entries never widen it)."""
        found = self.lookup(host, now=now)
        if mode is not None:
            found = tuple(d for d in found if d.mode == mode)
        if len(found) == 1:
            return found[0].pins
        return frozenset().union(*(d.pins for d in found))

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, max_pins_per_domain: int | None = None
    ) -> PinPolicy:
        """Build from the JSON shape documented in docs/static-pinning.md.

        ``domains`` is required (``[]`` pins nothing, deliberately); a key the schema does
        not know, at any level, is an error naming it (``x-…`` keys are extensions, ignored).
        ``max_pins_per_domain`` refuses longer pin lists (signed documents use 64).
        """
        if not isinstance(data, Mapping):
            raise PinConfigError(f"a pin policy must be a JSON object, not {type(data).__name__}")
        check_keys(data, POLICY)
        domains = data["domains"]
        if not isinstance(domains, list):
            raise PinConfigError(f"'domains' must be a list, not {domains!r}")
        deny = data.get("deny", [])
        if not isinstance(deny, list):
            raise PinConfigError(f"'deny' must be a list, not {deny!r}")
        require_backup = data.get("require_backup", False)
        groups = data.get("host_groups", [])
        if not isinstance(groups, list):
            raise PinConfigError(f"'host_groups' must be a list, not {groups!r}")
        return cls._from_table(
            *parse_entries(domains, max_pins_per_domain, require_backup is True, groups),
            deny=deny,
            version=data.get("version", 0),
            require_backup=require_backup,
            report_uri=data.get("report_uri"),
        )

    def to_dict(self, *, host_groups: bool = False) -> dict[str, Any]:
        """The JSON shape of this policy; ``from_dict(p.to_dict()) == p``.

        With ``host_groups=True``, entries without ``expires`` or ``report_uri`` are written
        as host groups (one per pin list, ``include_subdomains`` and ``mode``, in order of
        first use) after the others: the same lookups, entries in another order.
        """
        domains = self.domains
        grouped: dict[tuple[frozenset[str], bool, str], list[str]] = {}
        if host_groups:
            rest = []
            for d in domains:
                if d.expires is None and d.report_uri is None:
                    grouped.setdefault((d.pins, d.include_subdomains, d.mode), []).append(d.host)
                else:
                    rest.append(d)
            domains = tuple(rest)
        out: dict[str, Any] = {
            "version": self.version,
            "domains": [d.to_dict() for d in domains],
            "deny": sorted(self.deny),
        }
        if grouped:
            out["host_groups"] = [
                {"hosts": hosts, "pins": sorted(pins), "include_subdomains": sub, "mode": mode}
                for (pins, sub, mode), hosts in grouped.items()
            ]
        if self.require_backup:
            out["require_backup"] = True
        if self.report_uri is not None:
            out["report_uri"] = self.report_uri
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PinPolicy:
        """Read a policy from a UTF-8 JSON file."""
        try:
            with open(path, "rb") as f:
                data = json.loads(f.read().decode("utf-8"))
        except OSError as exc:
            raise PinConfigError(f"cannot read pin policy {os.fspath(path)!r}: {exc}") from exc
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PinConfigError(
                f"pin policy {os.fspath(path)!r} is not valid JSON: {exc}"
            ) from exc
        try:
            return cls.from_dict(data)
        except PinConfigError as exc:
            raise PinConfigError(f"pin policy {os.fspath(path)!r}: {exc}") from None
