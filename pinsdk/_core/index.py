"""The host index of a policy and the bulk loader of its entries (pure code).

A policy's entries are indexed by the name a host must equal (``exact``), be the child of
(``parent``: ``*.`` patterns, and every entry that matches names below its base) or be
further below (``under``: ``**.`` patterns and ``include_subdomains``), so a lookup costs
one dict probe for the host, one for its parent, and one per deeper depth at which some
base is indexed, whatever the number of entries. :func:`parse_entries` validates and
indexes a document's entries (``domains`` and ``host_groups``) in one pass, keeping the
common ones as rows until a lookup needs their :class:`DomainPins`; :func:`realise` builds
that value.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping
from itertools import repeat
from typing import Any, NamedTuple

from .domain import MODES, DomainPins, Mode
from .errors import PinConfigError
from .hosts import HostPattern, PatternKind, all_common_patterns
from .pins import known_pin_sets, parse_pins
from .schema import DOMAIN, HOST_GROUP, check_keys

__all__ = ["Index", "Indexes", "Parts", "Rows", "build_index", "parse_entries", "realise"]

logger = logging.getLogger("pinsdk")

# A bucket is an entry number (one entry not yet realised), or a tuple of entry numbers
# and DomainPins; once a lookup needs it, a tuple of DomainPins. See PinPolicy._lookup.
Index = dict[str, Any]
# exact, parent, under, and the depths (dot counts) of the under keys, deepest first.
Indexes = tuple[Index, Index, Index, tuple[int, ...]]

# The pin set, include_subdomains and mode of a row: one shared tuple per combination.
Template = tuple[frozenset[str], bool, Mode]


class Rows(NamedTuple):
    """Common entries not yet built, as two columns (fewer objects to allocate, and for
    the garbage collector to visit, than a tuple per entry). ``hosts[i]`` is the
    canonical pattern text; entries that are objects already hold ``None`` there."""

    hosts: list[str | None]
    templates: list[Template | None]


class Parts(NamedTuple):
    """What a policy is made of: entries (``None`` where a row waits to be realised),
    rows, the index buckets, and whether some entry expires."""

    entries: list[DomainPins | None]
    rows: Rows | None
    buckets: Indexes
    expiring: bool


def _add(index: Index, key: str, i: int) -> None:
    """Add entry number ``i`` to a bucket, keeping the bucket in document order."""
    known = index.get(key)
    if known is None:
        index[key] = i
    elif type(known) is int:
        index[key] = (known, i) if known < i else (i, known)
    else:
        index[key] = (*known, i) if known[-1] < i else tuple(sorted((*known, i)))


_SLICE = 50_000


def _add_all(index: Index, pairs: list[tuple[str, int]]) -> Index:
    """``index`` with many (key, entry number) pairs added (the same dict, or a new one
    when ``index`` was empty): in C when no key is there yet or repeated, the usual case,
    instead of a Python call per entry."""
    if not pairs:
        return index
    fresh: Index = {}
    # In slices: between two C calls another thread (the event loop, when a document is
    # judged in a worker) can take the GIL; one call over a million pairs holds it ~0.3 s.
    for start in range(0, len(pairs), _SLICE):
        fresh.update(pairs[start : start + _SLICE])
    if len(fresh) == len(pairs):
        if not index:
            return fresh
        # Views: isdisjoint then walks the smaller side.
        if index.keys().isdisjoint(fresh.keys()):
            index.update(fresh)
            return index
    for key, i in pairs:
        _add(index, key, i)
    return index


Pending = tuple[list[tuple[str, int]], list[tuple[str, int]], list[tuple[str, int]]]


def _place_group(pending: Pending, hosts: list[str], joined: str, sub: bool, first: int) -> None:
    """Collect the (key, entry number) pairs of a host group's rows (numbered from
    ``first``) for the exact, parent and under indexes, as _place_row places a row: all
    groups' pairs are added at once (see _add_all)."""
    exact, parent, under = pending
    pairs = list(zip(hosts, range(first, first + len(hosts)), strict=True))
    if "*" in joined:
        plain = [p for p in pairs if p[0][:1] != "*"]
        ones = [(h[2:], i) for h, i in pairs if h[:2] == "*."]
        anys = [(h[3:], i) for h, i in pairs if h[:3] == "**."]
    else:
        plain, ones, anys = pairs, [], []
    exact += plain
    exact += anys
    parent += ones
    parent += anys
    under += anys
    if sub:
        parent += plain
        under += plain
        under += ones


def _group(data: object, limit: int) -> tuple[list[Any], frozenset[str], Any, Any]:
    """A host group's hosts (not yet checked), its pin set, include_subdomains and mode."""
    if not isinstance(data, dict):
        raise PinConfigError(f"a host group must be an object, not {data!r}")
    check_keys(data, HOST_GROUP, "a host group")
    hosts, pins = data["hosts"], data["pins"]
    if not isinstance(hosts, list) or not hosts:
        raise PinConfigError(f"'hosts' of a host group must be a non-empty list, not {hosts!r}")
    where = f"host group of {hosts[0]!r}"
    if not isinstance(pins, list):
        raise PinConfigError(f"'pins' of the {where} must be a list, not {pins!r}")
    if len(pins) > limit:
        raise PinConfigError(f"the {where} has {len(pins)} pins; at most {limit}")
    try:
        pin_set = parse_pins(pins, what="pins")
    except PinConfigError as exc:
        raise PinConfigError(f"{where}: {exc}") from None
    if not pin_set:
        raise PinConfigError(f"the {where} has no pins")
    sub, mode = data.get("include_subdomains", False), data.get("mode", "enforce")
    if sub is not True and sub is not False:
        raise PinConfigError(
            f"include_subdomains of the {where} must be true or false, not {sub!r}"
        )
    if mode not in MODES:
        raise PinConfigError(f"mode of the {where} must be 'enforce' or 'report', not {mode!r}")
    return hosts, pin_set, sub, mode


def parse_entries(
    entries: Iterable[Any],
    max_pins: int | None,
    require_backup: bool,
    groups: Iterable[Any] = (),
) -> Parts:
    """Validate and index a list of entry dicts, then the hosts of ``groups`` (host
    groups: many hosts sharing one pin list), in one pass.

    An entry of the usual shape (a canonical ASCII host or pattern, pins validated
    before, no expiry or report_uri) skips the general parser and stays a row: all such
    hosts are validated by one regular expression over the joined list, and the
    :class:`DomainPins` is built when a lookup first needs it. Documents of thousands of
    domains would otherwise spend most of their time in per-entry parsing and object
    construction. Anything else takes the general path, which validates it and names
    what is wrong. Both paths give equal values (a property test checks it); a group's
    host is the entry ``{"host": h, "pins": pins, ...}`` of its group, after ``entries``.
    ``max_pins`` bounds each pin list (a resource limit for untrusted documents).
    """
    items = entries if isinstance(entries, list) else list(entries)
    objects: list[DomainPins | None] = [None] * len(items)
    rows = Rows([], [])
    row_hosts, row_templates = rows
    general = False  # whether some entry took the general path
    single: list[int] = []  # enforced with one pin: warned about once all is valid
    exact: Index = {}
    parent: Index = {}
    under: Index = {}
    keys, modes, known_sets = DOMAIN.keys, MODES, known_pin_sets()
    templates: dict[Template, Template] = {}
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
                    template = (pin_set, sub, mode)
                    row_hosts.append(host)
                    row_templates.append(templates.setdefault(template, template))
                    if mode == "enforce" and len(pin_set) < 2:
                        single.append(i)
                    _place_row(exact, parent, under, host, sub, i)
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
        row_templates.append(None)
        if entry.expires_at is not None:
            expiring = True
        if entry.mode == "enforce" and len(entry.pins) < 2:
            single.append(i)
        pattern = entry.pattern
        place(exact, parent, under, pattern.kind, pattern.base, entry.include_subdomains, i)
    # Host groups: validated as a group (pins once), their hosts as rows.
    grouped: list[tuple[list[Any], Template]] = []
    odd = False  # a group host that is no string: the general path below names it
    pending: Pending = ([], [], [])
    for data in groups if isinstance(groups, list) else list(groups):
        hosts, pin_set, sub, mode = _group(data, limit)
        template = (pin_set, sub, mode)
        template = templates.setdefault(template, template)
        grouped.append((hosts, template))
        try:
            joined = "\n".join(hosts)
        except TypeError:
            odd = True
        if odd:
            continue
        first = len(row_hosts)
        row_hosts += hosts
        row_templates += [template] * len(hosts)
        if mode == "enforce" and len(pin_set) < 2:
            single += range(first, first + len(hosts))
        _place_group(pending, hosts, joined, sub, first)
    exact, parent, under = (
        _add_all(index, pairs) for index, pairs in zip((exact, parent, under), pending, strict=True)
    )
    del pending
    objects += [None] * (len(row_hosts) - len(objects))
    # A canonical name of this shape ends in a letter: no address, so every option is
    # valid for it. Any other host (to normalise, or wrong) takes the general path.
    common: list[Any] = [h for h in row_hosts if h is not None] if general else row_hosts
    if odd or (common and not (max(map(len, common)) <= 253 and all_common_patterns(common))):
        every = [
            DomainPins.from_dict(items[i]) if built is None else built
            for i, built in enumerate(objects[: len(items)])
        ]
        for hosts, (pin_set, sub, mode) in grouped:
            pin_list = sorted(pin_set)
            every += [
                DomainPins.from_dict(
                    {"host": h, "pins": pin_list, "include_subdomains": sub, "mode": mode}
                )
                for h in hosts
            ]
        index, expiring = build_index(tuple(every), require_backup)
        return Parts(list(every), None, index, expiring)
    for i in single:
        built = objects[i]
        # A row's host is its canonical pattern text, which is what DomainPins.host gives.
        host = built.host if built is not None else row_hosts[i]
        assert host is not None
        no_backup(host, require_backup)
    return Parts(objects, rows, (exact, parent, under, _depths(under)), expiring)


def _depths(under: Index) -> tuple[int, ...]:
    return tuple(sorted(set(map(str.count, under, repeat("."))), reverse=True))


def _place_row(exact: Index, parent: Index, under: Index, host: str, sub: bool, i: int) -> None:
    """Place a row as place() would, its pattern read as if canonical (parse_entries
    redoes everything if it is not)."""
    if host[:1] != "*":  # exact
        _add(exact, host, i)
        if sub:
            _add(parent, host, i)
            _add(under, host, i)
    elif host[:3] == "**.":
        base = host[3:]
        _add(exact, base, i)
        _add(parent, base, i)
        _add(under, base, i)
    else:
        base = host[2:]
        _add(parent, base, i)
        if sub:  # "*." with include_subdomains
            _add(under, base, i)


def place(
    exact: Index,
    parent: Index,
    under: Index,
    kind: PatternKind,
    base: str,
    sub: bool,
    value: Any,
) -> None:
    """Add ``value`` (an entry number or a DomainPins) to the buckets an entry belongs to
    (tuples keep entries in order): ``exact`` for a name equal to the base, ``parent``
    for a name one label below it, ``under`` for a name further below."""
    add = _add if type(value) is int else _add_object
    if kind is PatternKind.EXACT or kind is PatternKind.ANY_LABELS:
        add(exact, base, value)
        if kind is PatternKind.ANY_LABELS or sub:
            add(parent, base, value)
            add(under, base, value)
    else:
        add(parent, base, value)
        if sub:
            add(under, base, value)


def _add_object(index: Index, key: str, value: Any) -> None:
    known = index.get(key)
    index[key] = (value,) if known is None else (*known, value)


def realise(rows: Rows | None, i: int) -> DomainPins:
    """The :class:`DomainPins` of row ``i`` (a row is valid already: see parse_entries)."""
    assert rows is not None
    host, template = rows.hosts[i], rows.templates[i]
    assert host is not None
    assert template is not None
    pins, sub, mode = template
    return DomainPins._common(HostPattern._canonical(host), pins, sub, mode)


def build_index(domains: tuple[DomainPins, ...], require_backup: bool) -> tuple[Indexes, bool]:
    """Index domains by the name a host must equal, be the parent of, or be under; check
    each entry on the way (one pass). Also returns whether some entry expires."""
    exact: Index = {}
    parent: Index = {}  # the host's immediate parent is the key
    under: Index = {}  # the host is further below the key
    expiring = False
    for d in domains:
        if type(d) is not DomainPins and not isinstance(d, DomainPins):
            raise PinConfigError(f"domains must hold DomainPins, not {d!r}")
        if d.expires_at is not None:
            expiring = True
        if d.mode == "enforce" and len(d.pins) < 2:
            no_backup(d.host, require_backup)
        place(exact, parent, under, d.pattern.kind, d.pattern.base, d.include_subdomains, d)
    return (exact, parent, under, _depths(under)), expiring


def no_backup(host: str, require_backup: bool) -> None:
    message = (
        f"{host!r} is enforced with a single pin and no backup: when that key "
        "is rotated or lost, every client is locked out. Add the pin of a backup key "
        "kept offline (or of the issuing CA)."
    )
    if require_backup:
        raise PinConfigError(message)
    logger.warning(message)
