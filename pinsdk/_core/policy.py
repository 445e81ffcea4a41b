"""Pin policies: which hosts are pinned to which keys (pure code).

A :class:`PinPolicy` is an immutable value. It indexes its domains by base name so a
lookup costs a few dict probes per label of the host, whatever the number of domains.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal, NamedTuple

import attrs

from .errors import PinConfigError
from .hosts import (
    HostPattern,
    PatternKind,
    all_common_patterns,
    fast_normalize,
    is_ip_literal,
    normalize_host,
)
from .pins import known_pin_sets, parse_pins
from .schema import DOMAIN, POLICY, check_keys
from .timeutil import format_datetime, parse_datetime, to_timestamp

__all__ = ["DomainPins", "PinPolicy"]

logger = logging.getLogger("pinsdk")

Mode = Literal["enforce", "report"]
_MODES = ("enforce", "report")
_DOMAIN_KEYS = DOMAIN.keys
# How many already-expired entries a new policy names one by one in the log.
_MAX_NAMED_EXPIRED = 50
# Marks the log records about expired entries, so a caller that reports them itself (the
# command line) can leave them out.
EXPIRED_ENTRY_FLAG = "pinsdk_expired_entry"
_EXPIRED_LOG = {EXPIRED_ENTRY_FLAG: True}


def _convert_expires(value: object) -> datetime | None:
    return None if value is None else parse_datetime(value, what="expires")


def check_report_uri(value: object, *, what: str) -> str | None:
    """``None`` or an absolute ``https://`` or ``http://`` URL (reports are not secrets)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise PinConfigError(f"{what} must be an http(s):// URL, not {value!r}")
    rest = value.split("://", 1)[1]
    if not rest or rest[0] in "/?#" or any(c.isspace() for c in value):
        raise PinConfigError(f"{what} {value!r} is not a valid URL")
    return value


@attrs.frozen(init=False)
class DomainPins:
    """The pins of one host or host pattern.

    ``host`` is an exact name, ``*.example.com`` (exactly one more label) or
    ``**.example.com`` (zero or more labels). ``include_subdomains`` extends the match
    to every name below. ``mode`` is ``"enforce"`` or ``"report"``. After ``expires``
    (an aware datetime or RFC 3339 string) the pins are no longer applied.
    """

    pattern: HostPattern
    pins: frozenset[str]
    include_subdomains: bool
    mode: Mode
    expires: datetime | None
    report_uri: str | None
    expires_at: float | None = attrs.field(eq=False, repr=False)

    def __init__(
        self,
        host: str | HostPattern,
        pins: Iterable[str],
        *,
        include_subdomains: bool = False,
        mode: Mode = "enforce",
        expires: datetime | str | None = None,
        report_uri: str | None = None,
    ) -> None:
        pattern = host if isinstance(host, HostPattern) else HostPattern.parse(host)
        if include_subdomains is not True and include_subdomains is not False:
            raise PinConfigError(
                f"include_subdomains must be true or false, not {include_subdomains!r}"
            )
        if mode not in _MODES:
            raise PinConfigError(
                f"mode for {pattern.text!r} must be 'enforce' or 'report', not {mode!r}"
            )
        try:
            pin_set = parse_pins(pins, what="pins")
        except PinConfigError as exc:
            raise PinConfigError(f"{pattern.text}: {exc}") from None
        if not pin_set:
            raise PinConfigError(f"domain {pattern.text!r} has no pins")
        when = None if expires is None else _convert_expires(expires)
        if include_subdomains is True and is_ip_literal(pattern.base):
            raise PinConfigError(
                f"include_subdomains makes no sense for the IP address {pattern.text!r}"
            )
        self.__attrs_init__(
            pattern,
            pin_set,
            include_subdomains,
            mode,
            when,
            None
            if report_uri is None
            else check_report_uri(report_uri, what=f"report_uri of {pattern.text!r}"),
            None if when is None else when.timestamp(),
        )

    @property
    def host(self) -> str:
        """The pattern as written in canonical form (``*.example.com``)."""
        return self.pattern.text

    def is_expired(self, now: datetime | float | None = None) -> bool:
        """Whether ``expires`` has passed at ``now`` (default: the current time)."""
        if self.expires_at is None:
            return False
        at = to_timestamp(now)
        return (time.time() if at is None else at) >= self.expires_at

    def matches(self, host: str) -> bool:
        """Whether this entry applies to ``host`` (any form; it is normalised first)."""
        return self.pattern.matches(
            normalize_host(host), include_subdomains=self.include_subdomains
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DomainPins:
        """Build from the JSON shape ``{"host": …, "pins": […], …}``."""
        if not isinstance(data, dict) and not isinstance(data, Mapping):
            raise PinConfigError(f"a domain entry must be an object, not {data!r}")
        if not _DOMAIN_KEYS.issuperset(data):
            host = data.get("host")
            where = f"domain {host!r}" if isinstance(host, str) else "a domain entry"
            check_keys(data, DOMAIN, where, required=False)
        if "host" not in data or "pins" not in data:
            needs = " and ".join(repr(k) for k in DOMAIN.required)
            raise PinConfigError(f"domain entry {dict(data)!r} needs {needs}")
        pins = data["pins"]
        if not isinstance(pins, list):
            raise PinConfigError(f"'pins' of {data['host']!r} must be a list, not {pins!r}")
        get = data.get
        host, sub, mode = data["host"], get("include_subdomains", False), get("mode", "enforce")
        expires, report_uri = get("expires"), get("report_uri")
        return cls(
            host,
            pins,
            include_subdomains=sub,
            mode=mode,
            expires=expires,
            report_uri=report_uri,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of this entry (pins sorted, so output is stable)."""
        out: dict[str, Any] = {
            "host": self.pattern.text,
            "pins": sorted(self.pins),
            "include_subdomains": self.include_subdomains,
            "mode": self.mode,
        }
        if self.expires is not None:
            out["expires"] = format_datetime(self.expires)
        if self.report_uri is not None:
            out["report_uri"] = self.report_uri
        return out


# The bulk path fills the slots of the frozen classes directly (attrs' generated
# __init__ costs several times more per object). Their fields are listed here and
# checked against the classes at import, so a new field cannot be forgotten.
_PATTERN_FIELDS = ("kind", "base", "text")
_DOMAIN_FIELDS = (
    "pattern",
    "pins",
    "include_subdomains",
    "mode",
    "expires",
    "report_uri",
    "expires_at",
)
if (
    tuple(f.name for f in attrs.fields(HostPattern)) != _PATTERN_FIELDS
    or tuple(f.name for f in attrs.fields(DomainPins)) != _DOMAIN_FIELDS
):  # pragma: no cover - a guard for whoever changes the classes
    raise ImportError("pinsdk.policy: the bulk builder's field lists are out of date")


# A common entry as validated by the bulk path, before it is an object:
# (host or pattern, shared pin set, include_subdomains, mode).
class _Rows(NamedTuple):
    """Common entries not yet built, as columns (a few lists rather than a tuple per
    entry: fewer objects to allocate, and for the garbage collector to visit). Entries
    that are objects already hold ``None`` here."""

    hosts: list[str | None]
    pins: list[frozenset[str] | None]
    subs: list[bool]
    modes: list[Mode]


class _Parts(NamedTuple):
    """What a policy is made of: entries (``None`` where a row waits to be realised),
    rows, the index buckets, and whether some entry expires."""

    entries: list[DomainPins | None]
    rows: _Rows | None
    buckets: _Indexes
    expiring: bool


def _parse_entries(entries: Iterable[Any], max_pins: int | None, require_backup: bool) -> _Parts:
    """Validate and index a list of entry dicts in one pass.

    An entry of the usual shape (a canonical ASCII host or pattern, pins validated
    before, no expiry or report_uri) skips the general parser and stays a row: all such
    hosts are validated by one regular expression over the joined list, and the
    :class:`DomainPins` is built when a lookup first needs it. Documents of thousands of
    domains would otherwise spend most of their time in per-entry parsing and object
    construction. Anything else takes the general path, which validates it and names
    what is wrong. Both paths give equal values (a property test checks it).
    ``max_pins`` bounds each pin list (a resource limit for untrusted documents).
    """
    items = entries if isinstance(entries, list) else list(entries)
    objects: list[DomainPins | None] = [None] * len(items)
    rows = _Rows([], [], [], [])
    row_hosts, row_pins, row_subs, row_modes = rows
    general = False  # whether some entry took the general path
    single: list[int] = []  # enforced with one pin: warned about once all is valid
    exact: _Index = {}
    child: _Index = {}
    under: _Index = {}
    keys, modes, known_sets = _DOMAIN_KEYS, _MODES, known_pin_sets()
    exact_get, child_get, under_get = exact.get, child.get, under.get
    limit = sys.maxsize if max_pins is None else max_pins
    expiring = False
    for i, data in enumerate(items):
        if type(data) is dict and data.keys() <= keys:
            get = data.get
            host, pins = get("host"), get("pins")
            sub, mode = get("include_subdomains", False), get("mode", "enforce")
            if (
                type(host) is str
                and type(pins) is list
                and (sub is False or sub is True)
                and mode in modes
                and get("expires") is None
                and get("report_uri") is None
            ):
                try:
                    pin_set = known_sets.get(frozenset(pins))
                except TypeError:  # an unhashable pin: the general path says so
                    pin_set = None
                if len(pins) > limit:
                    raise PinConfigError(f"domain {host!r} has {len(pins)} pins; at most {limit}")
                if pin_set:
                    row_hosts.append(host)
                    row_pins.append(pin_set)
                    row_subs.append(sub)
                    row_modes.append(mode)
                    if mode == "enforce" and len(pin_set) < 2:
                        single.append(i)
                    # Placed as _place would, with the pattern read as if canonical (the
                    # check after the loop redoes everything if it is not); inline, since
                    # this runs once per entry of a large document.
                    if host[:1] != "*":  # exact
                        known = exact_get(host)
                        exact[host] = (i,) if known is None else (*known, i)
                        if sub:
                            known = under_get(host)
                            under[host] = (i,) if known is None else (*known, i)
                    elif host[:3] == "**.":
                        base = host[3:]
                        known = exact_get(base)
                        exact[base] = (i,) if known is None else (*known, i)
                        known = under_get(base)
                        under[base] = (i,) if known is None else (*known, i)
                    elif sub:  # "*." with include_subdomains
                        base = host[2:]
                        known = under_get(base)
                        under[base] = (i,) if known is None else (*known, i)
                    else:
                        base = host[2:]
                        known = child_get(base)
                        child[base] = (i,) if known is None else (*known, i)
                    continue
        if isinstance(data, Mapping):
            pins = data.get("pins")
            if isinstance(pins, list) and len(pins) > limit:
                raise PinConfigError(
                    f"domain {data.get('host')!r} has {len(pins)} pins; at most {limit}"
                )
        entry = DomainPins.from_dict(data)
        objects[i] = entry
        general = True
        row_hosts.append(None)
        row_pins.append(None)
        row_subs.append(False)
        row_modes.append("enforce")
        if entry.expires_at is not None:
            expiring = True
        if entry.mode == "enforce" and len(entry.pins) < 2:
            single.append(i)
        pattern = entry.pattern
        _place(exact, child, under, pattern.kind, pattern.base, entry.include_subdomains, i)
    # A canonical name of this shape ends in a letter: no address, so every option is
    # valid for it. Any other host (to normalise, or wrong) takes the general path.
    hosts: list[Any] = [h for h in row_hosts if h is not None] if general else row_hosts
    if hosts and not (max(map(len, hosts)) <= 253 and all_common_patterns(hosts)):
        every = tuple(
            DomainPins.from_dict(items[i]) if built is None else built
            for i, built in enumerate(objects)
        )
        index, expiring = _build_index(every, require_backup)
        return _Parts(list(every), None, index, expiring)
    for i in single:
        built = objects[i]
        # A row's host is its canonical pattern text, which is what DomainPins.host gives.
        host = built.host if built is not None else row_hosts[i]
        assert host is not None
        _no_backup(host, require_backup)
    under_dots = frozenset(key.count(".") for key in under)
    return _Parts(objects, rows, (exact, child, under, under_dots), expiring)


def _place(
    exact: _Index,
    child: _Index,
    under: _Index,
    kind: PatternKind,
    base: str,
    sub: bool,
    value: object,
) -> None:
    """Add ``value`` to the buckets an entry belongs to (tuples keep entries in order)."""
    if kind is PatternKind.EXACT or kind is PatternKind.ANY_LABELS:
        known = exact.get(base)
        exact[base] = (value,) if known is None else (*known, value)
        if kind is PatternKind.ANY_LABELS or sub:
            known = under.get(base)
            under[base] = (value,) if known is None else (*known, value)
    elif sub:
        known = under.get(base)
        under[base] = (value,) if known is None else (*known, value)
    else:
        known = child.get(base)
        child[base] = (value,) if known is None else (*known, value)


def _realise(rows: _Rows | None, i: int) -> DomainPins:
    """The DomainPins of row ``i``, built by filling the slots directly (attrs' generated
    __init__ costs several times more, and the row is valid already)."""
    assert rows is not None
    host, pin_set, sub, mode = rows.hosts[i], rows.pins[i], rows.subs[i], rows.modes[i]
    assert host is not None
    pattern = _new(HostPattern)
    if host[:1] != "*":
        _set_kind(pattern, PatternKind.EXACT)
        _set_base(pattern, host)
    elif host[:3] == "**.":
        _set_kind(pattern, PatternKind.ANY_LABELS)
        _set_base(pattern, host[3:])
    else:
        _set_kind(pattern, PatternKind.ONE_LABEL)
        _set_base(pattern, host[2:])
    _set_text(pattern, host)
    entry = _new(DomainPins)
    _set_pattern(entry, pattern)
    _set_pins(entry, pin_set)
    _set_sub(entry, sub)
    _set_mode(entry, mode)
    _set_expires(entry, None)
    _set_uri(entry, None)
    _set_at(entry, None)
    return entry


_new = object.__new__
_set_kind, _set_base, _set_text = (getattr(HostPattern, f).__set__ for f in _PATTERN_FIELDS)
_set_pattern, _set_pins, _set_sub, _set_mode, _set_expires, _set_uri, _set_at = (
    getattr(DomainPins, f).__set__ for f in _DOMAIN_FIELDS
)


# Buckets hold DomainPins, or entry numbers (ints) not yet realised: see PinPolicy.
_Index = dict[str, tuple[Any, ...]]
_Indexes = tuple[_Index, _Index, _Index, frozenset[int]]


def _build_index(domains: tuple[DomainPins, ...], require_backup: bool) -> tuple[_Indexes, bool]:
    """Index domains by the name a host must equal, be the parent of, or be under; check
    each entry on the way (one pass). Also returns whether some entry expires."""
    exact: _Index = {}
    child: _Index = {}  # host's immediate parent is the key
    under: _Index = {}  # host is strictly below the key
    expiring = False
    for d in domains:
        if type(d) is not DomainPins and not isinstance(d, DomainPins):
            raise PinConfigError(f"domains must hold DomainPins, not {d!r}")
        if d.expires_at is not None:
            expiring = True
        if d.mode == "enforce" and len(d.pins) < 2:
            _no_backup(d.host, require_backup)
        _place(exact, child, under, d.pattern.kind, d.pattern.base, d.include_subdomains, d)
    under_dots = frozenset(key.count(".") for key in under)
    return (exact, child, under, under_dots), expiring


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


def _no_backup(host: str, require_backup: bool) -> None:
    message = (
        f"{host!r} is enforced with a single pin and no backup: when that key "
        "is rotated or lost, every client is locked out. Add the pin of a backup key "
        "kept offline (or of the issuing CA)."
    )
    if require_backup:
        raise PinConfigError(message)
    logger.warning(message)


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

    _entries: list[DomainPins | None] = attrs.field(repr=False)
    _rows: _Rows | None = attrs.field(repr=False)
    deny: frozenset[str]
    version: int
    require_backup: bool
    report_uri: str | None
    _index: _Indexes = attrs.field(repr=False)
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
        index, expiring = _build_index(entries, require_backup)
        self.__attrs_init__(
            list(entries),
            None,
            deny_set,
            version,
            require_backup,
            uri,
            index,
            expiring,
            [entries],
            set(),
        )
        if expiring:
            self._report_expired()

    @classmethod
    def _from_parts(
        cls,
        parts: _Parts,
        *,
        deny: Iterable[str],
        version: int,
        require_backup: bool,
        report_uri: str | None,
    ) -> PinPolicy:
        deny_set, uri = _check_policy_fields(version, require_backup, deny, report_uri)
        policy = cls.__new__(cls)
        policy.__attrs_init__(
            parts.entries,
            parts.rows,
            deny_set,
            version,
            require_backup,
            uri,
            parts.buckets,
            parts.expiring,
            [],
            set(),
        )
        if parts.expiring:
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
        # Entries still held as rows (None here) never carry an expiry.
        return tuple(
            d
            for d in self._entries
            if d is not None and d.expires_at is not None and at >= d.expires_at
        )

    @property
    def domains(self) -> tuple[DomainPins, ...]:
        """Every entry, in the order given."""
        cache = self._domains
        if not cache:
            entries, rows = self._entries, self._rows
            for i, entry in enumerate(entries):
                if entry is None:
                    entries[i] = _realise(rows, i)
            cache.append(tuple(entries))  # type: ignore[arg-type]
        return cache[0]

    def _realise_bucket(
        self, index: _Index, key: str, numbers: tuple[int, ...]
    ) -> tuple[DomainPins, ...]:
        entries, rows = self._entries, self._rows
        bucket = []
        for i in numbers:
            entry = entries[i]
            if entry is None:  # each entry is built once, whichever bucket needs it first
                entry = entries[i] = _realise(rows, i)
            bucket.append(entry)
        realised = tuple(bucket)
        index[key] = realised  # one assignment: readers see numbers or objects, both valid
        return realised

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
        return self._lookup(normalize_host(host), to_timestamp(now))

    def _lookup(self, host: str, now: float | None) -> tuple[DomainPins, ...]:
        exact, child, under, under_dots = self._index
        # A bucket of a document's policy holds entry numbers until first needed.
        found: tuple[Any, ...] = exact.get(host, ())
        if found and type(found[0]) is int:
            found = self._realise_bucket(exact, host, found)
        parent = host.partition(".")[2]
        if parent:
            more = child.get(parent)
            if more:
                if type(more[0]) is int:
                    more = self._realise_bucket(child, parent, more)
                found += more
            if under_dots:
                # Probe only the suffixes as deep as some indexed base: one per depth.
                total = host.count(".")
                for dots in under_dots:
                    if dots < total:
                        base = host.split(".", total - dots)[-1]
                        more = under.get(base)
                        if more:
                            if type(more[0]) is int:
                                more = self._realise_bucket(under, base, more)
                            found += more
        if found and self._expiring:
            at = time.time() if now is None else now
            live = tuple(d for d in found if d.expires_at is None or at < d.expires_at)
            if len(live) != len(found):
                self._report_lapsed(found, at)
            found = live
        return found

    def match_fast(self, server_hostname: str, now: float | None = None) -> tuple[DomainPins, ...]:
        """:meth:`lookup` for a name the TLS layer already validated (hot path)."""
        return self._lookup(fast_normalize(server_hostname), now)

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
        return cls._from_parts(
            _parse_entries(domains, max_pins_per_domain, require_backup is True),
            deny=deny,
            version=data.get("version", 0),
            require_backup=require_backup,
            report_uri=data.get("report_uri"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of this policy; ``from_dict(p.to_dict()) == p``."""
        out: dict[str, Any] = {
            "version": self.version,
            "domains": [d.to_dict() for d in self.domains],
            "deny": sorted(self.deny),
        }
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
