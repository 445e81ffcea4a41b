"""One pinned host or host pattern: :class:`DomainPins`, a validated immutable value (pure code)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

import attrs

from .errors import PinConfigError
from .hosts import HostPattern, is_ip_literal, normalize_host
from .pins import parse_pins
from .schema import DOMAIN, check_keys
from .timeutil import format_datetime, parse_datetime, to_timestamp

__all__ = ["MODES", "DomainPins", "Mode", "check_report_uri"]

Mode = Literal["enforce", "report"]
MODES = ("enforce", "report")
_DOMAIN_KEYS = DOMAIN.keys


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
        if mode not in MODES:
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

    @classmethod
    def _common(
        cls, pattern: HostPattern, pins: frozenset[str], include_subdomains: bool, mode: Mode
    ) -> DomainPins:
        """An entry the bulk loader (:mod:`.index`) validated already: a canonical pattern,
        a known-valid pin set, no expiry, no ``report_uri``. Skips the checks (and the
        keyword handling) of ``__init__``, which would cost several times more per entry
        of a large document; the value is the one ``__init__`` would build."""
        entry = object.__new__(cls)
        entry.__attrs_init__(pattern, pins, include_subdomains, mode, None, None, None)
        return entry
