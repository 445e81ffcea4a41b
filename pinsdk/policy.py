"""Pin policies: which hosts are pinned to which keys (pure code).

A :class:`PinPolicy` is an immutable value. It indexes its domains by base name so a
lookup costs a few dict probes per label of the host, whatever the number of domains.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

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
from .timeutil import format_datetime, parse_datetime, to_timestamp

__all__ = ["DomainPins", "PinPolicy"]

logger = logging.getLogger("pinsdk")

Mode = Literal["enforce", "report"]
_MODES = ("enforce", "report")
_DOMAIN_KEYS = frozenset({"host", "pins", "include_subdomains", "mode", "expires", "report_uri"})
_POLICY_KEYS = frozenset({"version", "domains", "deny", "require_backup", "report_uri"})


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
        if "host" not in data or "pins" not in data:
            raise PinConfigError(f"domain entry {dict(data)!r} needs 'host' and 'pins'")
        if not _DOMAIN_KEYS.issuperset(data):
            unknown = sorted(set(data) - _DOMAIN_KEYS)
            logger.warning("ignoring unknown keys %s in domain %r", unknown, data["host"])
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


def domains_from_dicts(entries: Iterable[Any], *, max_pins: int | None = None) -> list[DomainPins]:
    """:meth:`DomainPins.from_dict` for a whole list, with a bulk path for common entries.

    An entry of the usual shape (a canonical ASCII host or pattern, pins validated
    before, no expiry or report_uri) is built without the general parser: all such
    hosts are validated by one regular expression over the joined list. Documents of
    thousands of domains would otherwise spend most of their time in per-entry parsing.
    Anything else takes the general path, which validates it and names what is wrong.
    Both paths build equal values (a property test checks it). ``max_pins`` bounds the
    length of each entry's pin list (a resource limit for untrusted documents).
    """
    out: list[DomainPins] = []
    append = out.append
    built: list[int] = []  # where the bulk path built an entry, whose host is checked below
    hosts: list[str] = []
    keys, modes, known_sets = _DOMAIN_KEYS, _MODES, known_pin_sets()
    new = object.__new__
    kind_, base_, text_ = (getattr(HostPattern, f).__set__ for f in _PATTERN_FIELDS)
    pattern_, pins_, sub_, mode_, expires_, uri_, at_ = (
        getattr(DomainPins, f).__set__ for f in _DOMAIN_FIELDS
    )
    exact, one, anylabels = PatternKind.EXACT, PatternKind.ONE_LABEL, PatternKind.ANY_LABELS
    items = entries if isinstance(entries, list) else list(entries)
    for data in items:
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
                if max_pins is not None and len(pins) > max_pins:
                    raise PinConfigError(
                        f"domain {host!r} has {len(pins)} pins; at most {max_pins}"
                    )
                if pin_set:
                    # Built at once, as if the host were canonical; the check after the
                    # loop replaces the whole lot through the general path if not.
                    pattern = new(HostPattern)
                    if host.startswith("**."):
                        kind_(pattern, anylabels)
                        base_(pattern, host[3:])
                    elif host.startswith("*."):
                        kind_(pattern, one)
                        base_(pattern, host[2:])
                    else:
                        kind_(pattern, exact)
                        base_(pattern, host)
                    text_(pattern, host)
                    entry = new(DomainPins)
                    pattern_(entry, pattern)
                    pins_(entry, pin_set)
                    sub_(entry, sub)
                    mode_(entry, mode)
                    expires_(entry, None)
                    uri_(entry, None)
                    at_(entry, None)
                    built.append(len(out))
                    hosts.append(host)
                    append(entry)
                    continue
        if max_pins is not None and isinstance(data, Mapping):
            pins = data.get("pins")
            if isinstance(pins, list) and len(pins) > max_pins:
                raise PinConfigError(
                    f"domain {data.get('host')!r} has {len(pins)} pins; at most {max_pins}"
                )
        append(DomainPins.from_dict(data))
    # A canonical name of this shape ends in a letter: no address, so every option is
    # valid for it. Any other host (to normalise, or wrong) takes the general path.
    if hosts and not (max(map(len, hosts)) <= 253 and all_common_patterns(hosts)):
        for index in built:
            out[index] = DomainPins.from_dict(items[index])
    return out


_Index = dict[str, tuple[DomainPins, ...]]
_Indexes = tuple[_Index, _Index, _Index, frozenset[int]]


def _build_index(domains: tuple[DomainPins, ...]) -> _Indexes:
    """Index domains by the name a host must equal, be the parent of, or be under."""
    exact: _Index = {}
    child: _Index = {}  # host's immediate parent is the key
    under: _Index = {}  # host is strictly below the key
    # Tuples grown in place of lists: nearly every key holds one entry, so this saves a
    # list per entry and a pass to freeze them. Entries keep their order within a key.
    exact_get, child_get, under_get = exact.get, child.get, under.get
    exact_kind, any_kind = PatternKind.EXACT, PatternKind.ANY_LABELS
    for d in domains:
        pattern = d.pattern
        base, kind = pattern.base, pattern.kind
        if kind is exact_kind or kind is any_kind:
            known = exact_get(base)
            exact[base] = (d,) if known is None else (*known, d)
            if kind is any_kind or d.include_subdomains:
                known = under_get(base)
                under[base] = (d,) if known is None else (*known, d)
        elif d.include_subdomains:
            known = under_get(base)
            under[base] = (d,) if known is None else (*known, d)
        else:
            known = child_get(base)
            child[base] = (d,) if known is None else (*known, d)
    under_dots = frozenset(key.count(".") for key in under)
    return exact, child, under, under_dots


@attrs.frozen(init=False)
class PinPolicy:
    """An immutable set of pinned domains plus a deny list. Equal by value.

    ``deny`` pins are never accepted on any connection, pinned host or not, even when
    another certificate of the chain matches a pin. ``version`` is the policy's
    version (dynamic documents carry theirs). With ``require_backup=True`` every
    enforced domain must have at least two pins.
    """

    domains: tuple[DomainPins, ...]
    deny: frozenset[str]
    version: int
    require_backup: bool
    report_uri: str | None
    _index: _Indexes = attrs.field(eq=False, repr=False)
    _expiring: bool = attrs.field(eq=False, repr=False)

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
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise PinConfigError(f"version must be a non-negative integer, not {version!r}")
        if not isinstance(require_backup, bool):
            raise PinConfigError(f"require_backup must be true or false, not {require_backup!r}")
        deny_set = parse_pins(deny, what="deny")
        expiring = False
        for entry in entries:  # one pass: documents carry thousands of entries
            if type(entry) is not DomainPins and not isinstance(entry, DomainPins):
                raise PinConfigError(f"domains must hold DomainPins, not {entry!r}")
            if entry.expires_at is not None:
                expiring = True
            if entry.mode != "enforce" or len(entry.pins) >= 2:
                continue
            message = (
                f"{entry.host!r} is enforced with a single pin and no backup: when that key "
                "is rotated or lost, every client is locked out. Add the pin of a backup key "
                "kept offline (or of the issuing CA)."
            )
            if require_backup:
                raise PinConfigError(message)
            logger.warning(message)
        self.__attrs_init__(
            entries,
            deny_set,
            version,
            require_backup,
            check_report_uri(report_uri, what="report_uri"),
            _build_index(entries),
            expiring,
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
        found: tuple[DomainPins, ...] = exact.get(host, ())
        parent = host.partition(".")[2]
        if parent:
            more = child.get(parent)
            if more:
                found += more
            if under_dots:
                # Probe only the suffixes as deep as some indexed base: one per depth.
                total = host.count(".")
                for dots in under_dots:
                    if dots < total:
                        more = under.get(host.split(".", total - dots)[-1])
                        if more:
                            found += more
        if found and self._expiring:
            at = time.time() if now is None else now
            found = tuple(d for d in found if d.expires_at is None or at < d.expires_at)
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

    def pins_for(self, host: str, *, now: datetime | float | None = None) -> frozenset[str]:
        """The union of the pins of every matching, unexpired domain (empty if unpinned)."""
        found = self.lookup(host, now=now)
        if len(found) == 1:
            return found[0].pins
        return frozenset().union(*(d.pins for d in found))

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, max_pins_per_domain: int | None = None
    ) -> PinPolicy:
        """Build from the JSON shape documented in docs/static-pinning.md.

        ``max_pins_per_domain`` refuses longer pin lists (signed documents use 64).
        """
        if not isinstance(data, Mapping):
            raise PinConfigError(f"a pin policy must be a JSON object, not {type(data).__name__}")
        unknown = set(data) - _POLICY_KEYS
        if unknown:
            logger.warning("ignoring unknown keys %s in pin policy", sorted(unknown))
        domains = data.get("domains", [])
        if not isinstance(domains, list):
            raise PinConfigError(f"'domains' must be a list, not {domains!r}")
        deny = data.get("deny", [])
        if not isinstance(deny, list):
            raise PinConfigError(f"'deny' must be a list, not {deny!r}")
        return cls(
            domains_from_dicts(domains, max_pins=max_pins_per_domain),
            deny=deny,
            version=data.get("version", 0),
            require_backup=data.get("require_backup", False),
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
