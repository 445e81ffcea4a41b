"""The host index of a policy and the bulk loader of its entries (pure code).

A policy's entries are indexed by the name a host must equal (``exact``), be the
parent of (``child``, for ``*.`` patterns) or be under (``under``, for ``**.`` patterns
and ``include_subdomains``), so a lookup costs a few dict probes per label of the host,
whatever the number of entries. :func:`parse_entries` validates and indexes a document's
list of entries in one pass, keeping the common ones as rows (columns of plain values)
until a lookup needs their :class:`DomainPins`; :func:`realise` builds that value.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from .domain import MODES, DomainPins, Mode
from .errors import PinConfigError
from .hosts import HostPattern, PatternKind, all_common_patterns
from .pins import known_pin_sets
from .schema import DOMAIN

__all__ = ["Index", "Indexes", "Parts", "Rows", "build_index", "parse_entries", "realise"]

logger = logging.getLogger("pinsdk")

# Buckets hold DomainPins, or entry numbers (ints) not yet realised: see PinPolicy.
Index = dict[str, tuple[Any, ...]]
Indexes = tuple[Index, Index, Index, frozenset[int]]


# A common entry as validated by the bulk path, before it is an object:
# (host or pattern, shared pin set, include_subdomains, mode).
class Rows(NamedTuple):
    """Common entries not yet built, as columns (a few lists rather than a tuple per
    entry: fewer objects to allocate, and for the garbage collector to visit). Entries
    that are objects already hold ``None`` here."""

    hosts: list[str | None]
    pins: list[frozenset[str] | None]
    subs: list[bool]
    modes: list[Mode]


class Parts(NamedTuple):
    """What a policy is made of: entries (``None`` where a row waits to be realised),
    rows, the index buckets, and whether some entry expires."""

    entries: list[DomainPins | None]
    rows: Rows | None
    buckets: Indexes
    expiring: bool


def parse_entries(entries: Iterable[Any], max_pins: int | None, require_backup: bool) -> Parts:
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
    rows = Rows([], [], [], [])
    row_hosts, row_pins, row_subs, row_modes = rows
    general = False  # whether some entry took the general path
    single: list[int] = []  # enforced with one pin: warned about once all is valid
    exact: Index = {}
    child: Index = {}
    under: Index = {}
    keys, modes, known_sets = DOMAIN.keys, MODES, known_pin_sets()
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
                    # Placed as place() would, with the pattern read as if canonical (the
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
        place(exact, child, under, pattern.kind, pattern.base, entry.include_subdomains, i)
    # A canonical name of this shape ends in a letter: no address, so every option is
    # valid for it. Any other host (to normalise, or wrong) takes the general path.
    hosts: list[Any] = [h for h in row_hosts if h is not None] if general else row_hosts
    if hosts and not (max(map(len, hosts)) <= 253 and all_common_patterns(hosts)):
        every = tuple(
            DomainPins.from_dict(items[i]) if built is None else built
            for i, built in enumerate(objects)
        )
        index, expiring = build_index(every, require_backup)
        return Parts(list(every), None, index, expiring)
    for i in single:
        built = objects[i]
        # A row's host is its canonical pattern text, which is what DomainPins.host gives.
        host = built.host if built is not None else row_hosts[i]
        assert host is not None
        no_backup(host, require_backup)
    under_dots = frozenset(key.count(".") for key in under)
    return Parts(objects, rows, (exact, child, under, under_dots), expiring)


def place(
    exact: Index,
    child: Index,
    under: Index,
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


def realise(rows: Rows | None, i: int) -> DomainPins:
    """The :class:`DomainPins` of row ``i`` (a row is valid already: see parse_entries)."""
    assert rows is not None
    host, pins = rows.hosts[i], rows.pins[i]
    assert host is not None
    assert pins is not None
    return DomainPins._common(HostPattern._canonical(host), pins, rows.subs[i], rows.modes[i])


def build_index(domains: tuple[DomainPins, ...], require_backup: bool) -> tuple[Indexes, bool]:
    """Index domains by the name a host must equal, be the parent of, or be under; check
    each entry on the way (one pass). Also returns whether some entry expires."""
    exact: Index = {}
    child: Index = {}  # host's immediate parent is the key
    under: Index = {}  # host is strictly below the key
    expiring = False
    for d in domains:
        if type(d) is not DomainPins and not isinstance(d, DomainPins):
            raise PinConfigError(f"domains must hold DomainPins, not {d!r}")
        if d.expires_at is not None:
            expiring = True
        if d.mode == "enforce" and len(d.pins) < 2:
            no_backup(d.host, require_backup)
        place(exact, child, under, d.pattern.kind, d.pattern.base, d.include_subdomains, d)
    under_dots = frozenset(key.count(".") for key in under)
    return (exact, child, under, under_dots), expiring


def no_backup(host: str, require_backup: bool) -> None:
    message = (
        f"{host!r} is enforced with a single pin and no backup: when that key "
        "is rotated or lost, every client is locked out. Add the pin of a backup key "
        "kept offline (or of the issuing CA)."
    )
    if require_backup:
        raise PinConfigError(message)
    logger.warning(message)
