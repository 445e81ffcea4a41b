"""Host name normalisation and pin host patterns (pure code).

Patterns follow OkHttp's ``CertificatePinner``: an exact name, ``*.example.com``
(exactly one more label) or ``**.example.com`` (zero or more labels). Names are
compared in their lower-case IDNA A-label form without a trailing dot.
"""

from __future__ import annotations

import ipaddress
import re
from enum import Enum

import attrs
import idna

from .errors import PinConfigError

__all__ = ["HostPattern", "PatternKind", "host_keys", "is_ip_literal", "normalize_host"]

_LABEL = r"(?!-)[a-z0-9_-]{1,63}(?<!-)"
_NAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")


# The shape of nearly every pattern in a large document: an optional "*." or "**.",
# then a lower-case ASCII name whose last label ends in a letter and is no hexadecimal
# number (so it is no address: "1.0xff" is 1.0.0.255 to a resolver).
_COMMON = rf"(?:\*\*?\.)?(?:{_LABEL}\.)*(?!0x[0-9a-f]+(?:\n|\Z)){_LABEL}(?<=[a-z])"
_COMMON_LINES = re.compile(rf"(?:{_COMMON}\n)*{_COMMON}")


def all_common_patterns(patterns: list[str], longest: int | None = None) -> bool:
    """Whether every pattern is already canonical and of the common shape (the caller
    also bounds their length, and may pass the longest). Such a pattern parses to
    itself, with no normalising."""
    # In slices: each C call over a slice is short, so that another thread (the event
    # loop, while a large document is judged in a worker) gets the GIL between them.
    for start in range(0, len(patterns), _SLICE):
        some = patterns[start : start + _SLICE]
        joined = "\n".join(some)
        # A pattern holding a line break would pass as two lines: count them too.
        if joined.count("\n") != len(some) - 1:
            return False
        if not (_plainly_common(joined, some, longest) or _COMMON_LINES.fullmatch(joined)):
            return False
    return True


_SLICE = 50_000


_SHAPE_CHARS = b"abcdefghijklmnopqrstuvwxyz0123456789_-.*\n"
# A line break ends a pattern as a dot ends a label: read as one, a few searches find an
# empty label, a "-" at a label's edge, or a label that begins with "0x" (which might be
# a hexadecimal number, an address: the regular expression decides).
_AS_LABELS = bytes.maketrans(b"\n", b".")
_NOT_PLAIN = (b"..", b"-.", b".-", b".0x")
# Digits and "_" as "0": a "0" before a line break is a pattern not ending in a letter.
_AS_ZERO = bytes.maketrans(b"0123456789_", b"00000000000")


def _plainly_common(joined: str, patterns: list[str], longest: int | None = None) -> bool:
    """A sufficient test for _COMMON_LINES in a few passes of C code (the regular
    expression costs ~35 ns a character; large documents are tens of megabytes): only
    the allowed characters, "*" only in a leading "*." or "**.", no empty label and no
    "-" at a label's edge, every last label ends in a letter and begins with no "0x",
    and no pattern longer than a label may be (``longest``, when the caller knows it).
    False means "ask the regular expression"."""
    try:
        raw = joined.encode("ascii")
    except UnicodeEncodeError:
        return False
    if longest is None:
        longest = max(map(len, patterns))
    if not raw or longest > 63 or raw.translate(None, _SHAPE_CHARS):
        return False
    if raw[:1] in b".-\n" or raw[-1:] in b".-\n" or raw[:2] == b"0x":
        return False
    labels = raw.translate(_AS_LABELS)
    if any(bad in labels for bad in _NOT_PLAIN):
        return False
    stars = raw.count(b"*")
    if stars:
        leading = raw.count(b"\n*.") + raw.startswith(b"*.")
        double = raw.count(b"\n**.") + raw.startswith(b"**.")
        if stars != leading + 2 * double:
            return False
    del labels
    # What may end a pattern now: a letter, a digit or "_" (".", "-" and "*" are out).
    return b"0\n" not in raw.translate(_AS_ZERO) and raw[-1:].isalpha()


# A label that makes a name an IPv4 address when it is the last one (WHATWG URL's "ends
# in a number"): resolvers (inet_aton) read "127.1", "0x7f.1" or "2130706433" as
# 127.0.0.1, so a pin for 127.0.0.1 must apply to every such spelling.
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0x[0-9a-f]+)$")
_IPV4_PART = re.compile(r"^(?:0x[0-9a-f]+|0[0-7]*|[1-9][0-9]*)$")


def _ipv4_numeric(name: str) -> str | None:
    """The dotted-quad form of an IPv4 address in any inet_aton spelling (one to four
    parts, each decimal, octal with a leading 0, or hexadecimal with 0x; the last part
    fills the remaining bytes), or ``None`` when it is no such address."""
    parts = name.split(".")
    if len(parts) > 4 or not all(_IPV4_PART.match(p) for p in parts):
        return None
    values = [int(p[2:], 16) if p[:2] == "0x" else int(p, 8 if p[:1] == "0" else 10) for p in parts]
    *head, last = values
    if any(v > 0xFF for v in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    number = last
    for i, v in enumerate(head):
        number |= v << (8 * (3 - i))
    return ".".join(str((number >> shift) & 0xFF) for shift in (24, 16, 8, 0))


def _ip_literal(host: str) -> str | None:
    """The canonical text of an IP literal (brackets allowed), or ``None`` for a name.

    IPv6 is compressed; an IPv4-mapped IPv6 address becomes its IPv4 address (it
    reaches that address); a zone id (``%eth0``) is dropped: it names the interface the
    address is reached through, not another host.
    """
    candidate = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if ":" in candidate:
        address, _, _zone = candidate.partition("%")
        try:
            ip6 = ipaddress.IPv6Address(address)
        except ValueError:
            return None
        mapped = ip6.ipv4_mapped
        return ip6.compressed if mapped is None else mapped.compressed
    last = candidate.rpartition(".")[2]
    if not _NUMERIC_LABEL.match(last):
        return None
    return _ipv4_numeric(candidate)


def is_ip_literal(host: str) -> bool:
    """Whether ``host`` is an IPv4 or IPv6 address (brackets allowed)."""
    return _ip_literal(host.lower()) is not None


_MEMO: dict[str, str] = {}
_MEMO_MAX = 4096
# A str subclass can answer ==, hash(), lower() and find() as it likes, and a memo keyed
# by it would answer later lookups of a plain name with its keys: each normalises (and is
# remembered as) a plain str of its characters, never the object itself.
_plain = str.__str__


def normalize_host(host: str) -> str:
    """Return the canonical form of a host name used for matching.

    Lower case, no trailing dot, IDNA A-labels (``σkhttp.com`` becomes
    ``xn--khttp-fde.com``). IP literals become one canonical text, however written:
    IPv6 compressed without brackets (``[0:0::1]`` is ``::1``), IPv4-mapped IPv6 as
    IPv4, zone ids dropped, and IPv4 in any spelling a resolver accepts (``127.1``,
    ``0x7f.0.0.1``, ``2130706433``) as a dotted quad. A name whose last label is a
    number but is no IPv4 address is invalid. This is the one normaliser: policies,
    the handshake lookup, the plaintext guard and reports all use it. Raises
    :class:`PinConfigError` naming the host if it is not a valid name.
    """
    if type(host) is not str:  # anything but a str raises, naming it
        host = _plain(host) if isinstance(host, str) else _normalize(host)
    known = _MEMO.get(host)
    if known is not None:
        return known
    name = _normalize(host)
    if len(_MEMO) >= _MEMO_MAX:
        _MEMO.clear()
    _MEMO[host] = name
    return name


_KEYS: dict[str, tuple[str, ...]] = {}


def host_keys(host: str) -> tuple[str, ...]:
    """The normalised ``host`` and its ancestors, by dot count: item ``d`` is the suffix
    with ``d`` dots, and the last is the name itself (``a.b.c``: ``c``, ``b.c``,
    ``a.b.c``). Raises as :func:`normalize_host` does.

    What a lookup probes the host table with. Memoised like the name: a client looks up
    the same few hosts again and again, and each suffix keeps its hash, so a lookup of a
    known host slices and hashes nothing (on this path that was a third of a lookup).
    """
    if type(host) is not str:  # anything but a str raises, naming it
        host = _plain(host) if isinstance(host, str) else _normalize(host)
    known = _KEYS.get(host)
    if known is not None:
        return known
    name = normalize_host(host)
    keys = [name]
    at = name.find(".")
    while at >= 0:
        keys.append(name[at + 1 :])
        at = name.find(".", at + 1)
    keys.reverse()
    found = tuple(keys)
    if len(_KEYS) >= _MEMO_MAX:
        _KEYS.clear()
    _KEYS[host] = found
    return found


def _normalize(host: str) -> str:
    if not isinstance(host, str) or not host:
        raise PinConfigError(f"host must be a non-empty string, not {host!r}")
    if host.isascii():
        name = host.lower()
    else:
        try:
            # Lower-cased first, as httpx does before its IDNA encoding: UTS46 alone maps
            # a word-final "Σ" to "σ" where lower() gives "ς", another name on the wire.
            name = idna.encode(host.lower(), uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise PinConfigError(f"host {host!r} is not a valid IDNA name: {exc}") from None
    if name.endswith(".") and not name.endswith("]."):
        name = name[:-1]
    ip = _ip_literal(name)
    if ip is not None:
        return ip
    if len(name) > 253 or not _NAME.match(name):
        raise PinConfigError(f"host {host!r} is not a valid host name")
    if _NUMERIC_LABEL.match(name.rpartition(".")[2]):
        raise PinConfigError(
            f"host {host!r} is not a valid host name: its last label is a number, so "
            "resolvers read it as an IPv4 address, and it is not one"
        )
    return name


class PatternKind(Enum):
    """How a pattern's base name relates to the host names it matches."""

    EXACT = "exact"  # the base name itself
    ONE_LABEL = "*"  # exactly one label below the base
    ANY_LABELS = "**"  # the base and any number of labels below it


@attrs.frozen(repr=False)
class HostPattern:
    """A parsed host pattern: its kind and its normalised base name."""

    kind: PatternKind
    base: str
    text: str

    def __repr__(self) -> str:
        return f"HostPattern({self.text!r})"

    @classmethod
    def parse(cls, pattern: str) -> HostPattern:
        """Parse ``example.com``, ``*.example.com`` or ``**.example.com``."""
        if not isinstance(pattern, str) or not pattern:
            raise PinConfigError(f"host pattern must be a non-empty string, not {pattern!r}")
        if pattern.startswith("**."):
            kind, rest = PatternKind.ANY_LABELS, pattern[3:]
        elif pattern.startswith("*."):
            kind, rest = PatternKind.ONE_LABEL, pattern[2:]
        else:
            kind, rest = PatternKind.EXACT, pattern
        if "*" in rest:
            raise PinConfigError(
                f"host pattern {pattern!r} is invalid: a wildcard is only allowed as a "
                "leading '*.' or '**.' label"
            )
        try:
            base = normalize_host(rest)
        except PinConfigError as exc:
            raise PinConfigError(f"host pattern {pattern!r} is invalid: {exc}") from None
        if kind is PatternKind.EXACT:
            return cls(kind, base, base)
        if _ip_literal(base) is not None:
            raise PinConfigError(f"host pattern {pattern!r} puts a wildcard on an IP address")
        return cls(kind, base, ("**." if kind is PatternKind.ANY_LABELS else "*.") + base)

    def matches(self, host: str, *, include_subdomains: bool = False) -> bool:
        """Whether a normalised host name matches (the readable reference implementation)."""
        if self.kind is PatternKind.EXACT:
            return host == self.base or (include_subdomains and host.endswith("." + self.base))
        if self.kind is PatternKind.ANY_LABELS:
            return host == self.base or host.endswith("." + self.base)
        if not host.endswith("." + self.base):
            return False
        extra = host[: -len(self.base) - 1]
        return include_subdomains or "." not in extra
