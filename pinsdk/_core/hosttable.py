"""The host table of a policy: which entries apply to a host name (pure code).

Built for policies of a million domains. Each entry is indexed once, by its *base* name
(the pattern without ``*.``/``**.``), in one dict whose value is, until a lookup needs
the entry, a small number naming what the entry shares with many others (its pin set,
``include_subdomains``, mode and kind: a "meta"). So an entry costs its name and a dict
slot (~105 bytes at 25 characters) and no object of its own; the previous index (three
dicts of entry numbers, and lists of rows) cost ~190.

Each entry has a level mask saying where a host may stand relative to its base: the base
itself (``SELF``: exact names, ``**.``), one label below (``PARENT``: ``*.``, ``**.``,
``include_subdomains``) or further below (``UNDER``: ``**.``, ``include_subdomains``). A
lookup probes the dict with the host, its parent, and each ancestor at a depth where
some ``UNDER`` base is indexed: a few probes whatever the number of entries, each with a
suffix of the host that :func:`~.hosts.host_keys` cut (and hashed) once. A suffix whose
own parent is no base's parent cannot be a base, so it is not probed when the bases have
few parents (``api.svc.example.com`` and ``*.tenant.example.net`` have two): at a million
entries each probe skipped is a trip to memory, and then a ``*.``, ``**.`` or exact host
needs one probe and a host that nothing pins none. The first
lookup that finds a base replaces its value by the entries of each level, built.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import compress, repeat
from operator import itemgetter
from typing import Any

from .domain import DomainPins, Mode
from .hosts import HostPattern, PatternKind

__all__ = [
    "ANY",
    "EXACT",
    "KIND_NUMBERS",
    "ONE",
    "PARENT",
    "SELF",
    "UNDER",
    "HostTable",
    "Meta",
    "levels_of",
]

SELF, PARENT, UNDER = 1, 2, 4
# Pattern kinds by number (the index of a row's meta): an exact name, "*.", "**.".
EXACT, ONE, ANY = 0, 1, 2
_KINDS = (PatternKind.EXACT, PatternKind.ONE_LABEL, PatternKind.ANY_LABELS)
_PREFIXES = ("", "*.", "**.")

# What a row shares with many others: its pin set, include_subdomains, mode and kind.
Meta = tuple[frozenset[str], bool, Mode, int]
# What the index holds for a base name: a row's meta number, an entry that is an object
# already, several of those (a list, in document order), or once a lookup found it, the
# entries that match at each level and all of them: (self, parent, under, all).
Item = int | DomainPins
Found = tuple[DomainPins, ...]
Built = tuple[Found, Found, Found, Found]
_SLICE = 50_000
# A host's suffix is probed only if its own parent is the parent of some base, when the
# bases have at most this many parents: a set small enough to stay in the CPU's caches
# (400–480 KB), where a probe of a million-entry index is a trip to memory.
_BASE_PARENTS_MAX = 4096
_TAIL = itemgetter(2)  # of str.partition("."): what follows the first dot


def levels_of(kind: int, sub: bool) -> int:
    """The level mask of an entry of this kind (EXACT, ONE, ANY) and include_subdomains."""
    if kind == ANY:
        return SELF | PARENT | UNDER
    if kind == ONE:
        return PARENT | UNDER if sub else PARENT
    return SELF | PARENT | UNDER if sub else SELF


KIND_NUMBERS = {
    PatternKind.EXACT: EXACT,
    PatternKind.ONE_LABEL: ONE,
    PatternKind.ANY_LABELS: ANY,
}


class HostTable:
    """The entries of a policy by base name, and the lookup over them.

    Lookups may run on several threads at once: building a base's entries is idempotent
    (equal values) and published by one dict assignment that replaces a value, never a
    key, so the dict is never resized after it is built.
    """

    __slots__ = (
        "_base_parents",
        "_count",
        "_depths",
        "_index",
        "_later",
        "_metas",
        "_objects",
        "_own",
        "_parents",
    )

    def __init__(
        self,
        bases: Sequence[str],
        items: Sequence[Item],
        levels: Sequence[int],
        metas: Sequence[Meta | None],
        objects: tuple[DomainPins, ...],
    ) -> None:
        """Index entry ``k`` (document order) under ``bases[k]``: ``items[k]`` is a meta
        number (into ``metas``) or a :class:`DomainPins`; ``levels[k]`` its level mask.
        ``objects`` are the items that are :class:`DomainPins`, in order."""
        self._count = count = len(bases)
        self._metas = tuple(metas)
        index: dict[str, Any] = {}
        # The dot counts of the bases with entries at each level: a host whose own count
        # (or its parent's) no such base has needs no probe at that level.
        own: set[int] = set()
        parents: set[int] = set()
        under: set[int] = set()
        base_parents: set[str] | None = set()
        # In C, in slices: between two calls another thread (the event loop, when a
        # document is judged in a worker) can take the GIL; one call over a million
        # entries would hold it for ~0.3 s.
        for start in range(0, count, _SLICE):
            end = start + _SLICE
            index.update(zip(bases[start:end], items[start:end], strict=True))
            dots = list(map(str.count, bases[start:end], repeat(".")))
            some = levels[start:end]
            own.update(compress(dots, map(SELF.__and__, some)))
            parents.update(compress(dots, map(PARENT.__and__, some)))
            under.update(compress(dots, map(UNDER.__and__, some)))
            if base_parents is not None:
                base_parents.update(map(_TAIL, map(str.partition, bases[start:end], repeat("."))))
                if len(base_parents) > _BASE_PARENTS_MAX:  # too many to stay in cache
                    base_parents = None
        # Entries after the first with the same base: their positions, for `entries`.
        later: dict[int, str] = {}
        if len(index) != count:  # some bases repeat: the rare, slow path
            index = {}
            for k, (base, item) in enumerate(zip(bases, items, strict=True)):
                known = index.get(base)
                if known is None:
                    index[base] = item
                else:
                    index[base] = [*known, item] if type(known) is list else [known, item]
                    later[k] = base
        self._index = index
        self._later = later
        self._objects = objects
        self._own = frozenset(own)
        self._parents = frozenset(parents)
        self._base_parents = None if base_parents is None else frozenset(base_parents)
        # Deepest first: the nearest ancestor's entries come first in a lookup's answer.
        self._depths = tuple(sorted(under, reverse=True))

    def __len__(self) -> int:
        return self._count

    def _entry(self, base: str, item: Item) -> DomainPins:
        if not isinstance(item, int):  # an entry that is an object already
            return item
        meta = self._metas[item]
        assert meta is not None  # meta 0 is never a row's
        pins, sub, mode, kind = meta
        pattern = HostPattern(_KINDS[kind], base, _PREFIXES[kind] + base)
        return DomainPins._common(pattern, pins, sub, mode)

    def _build(self, base: str, value: Any) -> Built:
        """The entries of ``base`` at each level (stored in place of ``value``)."""
        if type(value) is tuple:  # another thread built it meanwhile
            return value
        items = value if type(value) is list else (value,)
        entries = tuple(self._entry(base, item) for item in items)
        levels = [_levels(d) for d in entries]
        if len(entries) == 1:  # the usual case: one tuple, shared by its levels
            lv = levels[0]
            built: Built = (
                entries if lv & SELF else (),
                entries if lv & PARENT else (),
                entries if lv & UNDER else (),
                entries,
            )
        else:
            built = (
                tuple(d for d, lv in zip(entries, levels, strict=True) if lv & SELF),
                tuple(d for d, lv in zip(entries, levels, strict=True) if lv & PARENT),
                tuple(d for d, lv in zip(entries, levels, strict=True) if lv & UNDER),
                entries,
            )
        self._index[base] = built  # replaces a value: the dict is not resized
        return built

    def lookup(self, keys: tuple[str, ...]) -> Found:
        """The entries matching a host given as its :func:`~.hosts.host_keys` (the suffix
        with ``d`` dots at ``keys[d]``): those whose base is the host, then its parent,
        then each deeper ancestor at which an ``UNDER`` base is indexed (nearest first;
        document order within each). A suffix whose own parent is no base's parent is not
        probed, when the table keeps its bases' parents (at most ``_BASE_PARENTS_MAX``)."""
        # The probe is written out at each level on purpose: a helper call per probe
        # would add a tenth to a lookup (the handshake's hot path). The keys are strings
        # that keep their hash: a probe slices and hashes nothing.
        index = self._index
        near = self._base_parents  # None: every suffix at a listed dot count is probed
        found: Found = ()
        dots = len(keys) - 1
        if dots in self._own and (near is None or not dots or keys[dots - 1] in near):
            host = keys[dots]
            value = index.get(host)
            if value is not None:
                if type(value) is not tuple:
                    value = self._build(host, value)
                found = value[0]
        if not dots:
            return found
        depth = dots - 1  # the parent's dot count
        if depth in self._parents and (near is None or not depth or keys[depth - 1] in near):
            parent = keys[depth]
            value = index.get(parent)
            if value is not None:
                if type(value) is not tuple:
                    value = self._build(parent, value)
                if value[1]:
                    found = found + value[1] if found else value[1]
        depths = self._depths
        if depths and depths[-1] < depth:
            for under in depths:
                if under < depth and (near is None or not under or keys[under - 1] in near):
                    base = keys[under]
                    value = index.get(base)
                    if value is not None:
                        if type(value) is not tuple:
                            value = self._build(base, value)
                        if value[2]:
                            found = found + value[2] if found else value[2]
        return found

    def entries(self) -> list[DomainPins]:
        """Every entry, in document order (each built now if it was not yet: later
        lookups return the same objects)."""
        build, index, later = self._build, self._index, self._later
        # The value read now, not from a snapshot: one built meanwhile is kept as it is.
        if not later:
            return [build(base, index[base])[3][0] for base in list(index)]
        # Bases that repeat: the first entry of each base comes in the dict's order, and
        # each later one at its own position.
        firsts = iter(list(index))
        taken: dict[str, int] = {}
        out = []
        for k in range(self._count):
            base = later.get(k)
            if base is None:
                base, n = next(firsts), 0
            else:
                n = taken[base]
            taken[base] = n + 1
            out.append(build(base, index[base])[3][n])
        return out

    def objects(self) -> tuple[DomainPins, ...]:
        """The entries that were objects from the start (the only ones that may expire),
        in document order."""
        return self._objects


def _levels(entry: DomainPins) -> int:
    return levels_of(KIND_NUMBERS[entry.pattern.kind], entry.include_subdomains)
