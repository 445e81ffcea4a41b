"""The bulk loader of a policy's entries (pure code).

:func:`parse_entries` validates a document's entries (``domains`` and ``host_groups``) in
one pass and packs them into a :class:`~.hosttable.HostTable`, keeping the common ones as
rows (a base name and a shared meta) until a lookup needs their :class:`DomainPins`;
:func:`build_index` packs entries that are objects already.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping
from itertools import repeat
from typing import Any

from .domain import MODES, DomainPins
from .errors import PinConfigError
from .hosts import all_common_patterns
from .hosttable import ANY, EXACT, KIND_NUMBERS, ONE, HostTable, Meta, levels_of
from .pins import known_pin_sets, parse_pins
from .schema import DOMAIN, HOST_GROUP, check_keys

__all__ = ["build_index", "parse_entries"]

logger = logging.getLogger("pinsdk")


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


class _Metas:
    """Numbers for the metas of rows (pin set, include_subdomains, mode, kind): a row
    stores its meta's number, one small int, instead of its own tuple. Number 0 marks an
    entry that is an object already."""

    def __init__(self) -> None:
        self.metas: list[Meta | None] = [None]
        self.levels: list[int] = [0]
        self._numbers: dict[Meta, int] = {}

    def number(self, pins: frozenset[str], sub: bool, mode: Any, kind: int) -> int:
        meta: Meta = (pins, sub, mode, kind)
        n = self._numbers.get(meta)
        if n is None:
            n = self._numbers[meta] = len(self.metas)
            self.metas.append(meta)
            self.levels.append(levels_of(kind, sub))
        return n


# A pattern read as if canonical (parse_entries redoes everything if it is not) has
# as its kind number (EXACT, ONE, ANY) its count of leading "*": str.count(h, "*", 0, 2).
_STAR, _ZERO, _TWO = repeat("*"), repeat(0), repeat(2)


def parse_entries(
    entries: Iterable[Any],
    max_pins: int | None,
    require_backup: bool,
    groups: Iterable[Any] = (),
) -> tuple[HostTable, bool]:
    """Validate and pack a list of entry dicts, then the hosts of ``groups`` (host
    groups: many hosts sharing one pin list), in one pass; also returns whether some
    entry expires.

    An entry of the usual shape (a canonical ASCII host or pattern, pins validated
    before, no expiry or report_uri) skips the general parser and stays a row: all such
    hosts are validated together (a few C passes over the joined list; a regular
    expression decides what they cannot), and the :class:`DomainPins` is built when a
    lookup first needs it. Documents of thousands of
    domains would otherwise spend most of their time in per-entry parsing and object
    construction. Anything else takes the general path, which validates it and names
    what is wrong. Both paths give equal values (a property test checks it); a group's
    host is the entry ``{"host": h, "pins": pins, ...}`` of its group, after ``entries``.
    ``max_pins`` bounds each pin list (a resource limit for untrusted documents).
    """
    items = entries if isinstance(entries, list) else list(entries)
    objects: dict[int, DomainPins] = {}  # by entry number (1-based)
    hosts_of: list[str | None] = []  # a row's pattern text; None for an object
    meta_of: list[int] = []
    metas = _Metas()
    single: list[int] = []  # enforced with one pin: warned about once all is valid
    keys, modes, known_sets = DOMAIN.keys, MODES, known_pin_sets()
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
                    hosts_of.append(host)
                    meta_of.append(metas.number(pin_set, sub, mode, host.count("*", 0, 2)))
                    if mode == "enforce" and len(pin_set) < 2:
                        single.append(i)
                    continue
        if isinstance(data, Mapping):
            pins = data.get("pins")
            if isinstance(pins, list) and len(pins) > limit:
                raise PinConfigError(
                    f"domain {data.get('host')!r} has {len(pins)} pins; at most {limit}"
                )
        entry = DomainPins.from_dict(data)
        objects[i + 1] = entry
        hosts_of.append(None)
        meta_of.append(0)
        if entry.expires_at is not None:
            expiring = True
        if entry.mode == "enforce" and len(entry.pins) < 2:
            single.append(i)
    # Host groups: validated as a group (pins once), their hosts as rows.
    grouped: list[tuple[list[Any], tuple[frozenset[str], bool, Any]]] = []
    odd = False  # a group host that is no string: the general path below names it
    for data in groups if isinstance(groups, list) else list(groups):
        hosts, pin_set, sub, mode = _group(data, limit)
        grouped.append((hosts, (pin_set, sub, mode)))
        try:
            joined = "\n".join(hosts)
        except TypeError:
            odd = True
        if odd:
            continue
        first = len(hosts_of)
        hosts_of += hosts
        if "*" in joined:
            numbers = [metas.number(pin_set, sub, mode, k) for k in (EXACT, ONE, ANY)]
            meta_of += map(numbers.__getitem__, map(str.count, hosts, _STAR, _ZERO, _TWO))
        else:
            meta_of += [metas.number(pin_set, sub, mode, EXACT)] * len(hosts)
        if mode == "enforce" and len(pin_set) < 2:
            single += range(first, first + len(hosts))
    # A canonical name of this shape ends in a letter: no address, so every option is
    # valid for it. Any other host (to normalise, or wrong) takes the general path.
    common: list[Any] = [h for h in hosts_of if h is not None] if objects else hosts_of
    # In slices, as HostTable indexes them: the event loop can run between two.
    longest = max(
        (max(map(len, common[i : i + 50_000])) for i in range(0, len(common), 50_000)), default=0
    )
    if odd or (common and not (longest <= 253 and all_common_patterns(common, longest))):
        every = [
            DomainPins.from_dict(data) if i + 1 not in objects else objects[i + 1]
            for i, data in enumerate(items)
        ]
        for hosts, (pin_set, sub, mode) in grouped:
            pin_list = sorted(pin_set)
            every += [
                DomainPins.from_dict(
                    {"host": h, "pins": pin_list, "include_subdomains": sub, "mode": mode}
                )
                for h in hosts
            ]
        return build_index(tuple(every), require_backup)
    for i in single:
        row = hosts_of[i]
        # A row's host is its canonical pattern text, which is what DomainPins.host gives.
        no_backup(objects[i + 1].host if row is None else row, require_backup)
    del common
    # A row's base is its text without "*." or "**." (one comprehension: a million rows).
    texts: list[str] = [h or "" for h in hosts_of] if objects else hosts_of  # type: ignore[assignment]
    bases = [h if h[:1] != "*" else h[3:] if h[:3] == "**." else h[2:] for h in texts]
    levels = list(map(metas.levels.__getitem__, meta_of))
    found_in: list[Any] = meta_of  # a meta number, or the entry itself
    for n, entry in objects.items():
        bases[n - 1] = entry.pattern.base
        levels[n - 1] = levels_of(KIND_NUMBERS[entry.pattern.kind], entry.include_subdomains)
        found_in[n - 1] = entry
    del hosts_of, texts
    return HostTable(bases, found_in, levels, metas.metas, tuple(objects.values())), expiring


def build_index(domains: tuple[DomainPins, ...], require_backup: bool) -> tuple[HostTable, bool]:
    """Pack entries that are objects already; check each on the way (one pass). Also
    returns whether some entry expires."""
    expiring = False
    bases: list[str] = []
    levels: list[int] = []
    for d in domains:
        if type(d) is not DomainPins and not isinstance(d, DomainPins):
            raise PinConfigError(f"domains must hold DomainPins, not {d!r}")
        if d.expires_at is not None:
            expiring = True
        if d.mode == "enforce" and len(d.pins) < 2:
            no_backup(d.host, require_backup)
        bases.append(d.pattern.base)
        levels.append(levels_of(KIND_NUMBERS[d.pattern.kind], d.include_subdomains))
    return HostTable(bases, domains, levels, [None], domains), expiring


def no_backup(host: str, require_backup: bool) -> None:
    message = (
        f"{host!r} is enforced with a single pin and no backup: when that key "
        "is rotated or lost, every client is locked out. Add the pin of a backup key "
        "kept offline (or of the issuing CA)."
    )
    if require_backup:
        raise PinConfigError(message)
    logger.warning(message)
