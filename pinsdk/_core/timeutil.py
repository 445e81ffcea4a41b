"""RFC 3339 timestamps (pure code)."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from .errors import PinConfigError

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


def parse_datetime(value: object, *, what: str) -> datetime:
    """Return an aware UTC datetime from an aware ``datetime`` or an RFC 3339 string."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise PinConfigError(f"{what} {value!r} has no time zone; use an aware datetime")
        return value.astimezone(timezone.utc)
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise PinConfigError(
            f"{what} {value!r} is not an RFC 3339 date-time such as '2027-06-01T00:00:00Z'"
        )
    text = value[:-1] + "+00:00" if value[-1] in "Zz" else value
    frac = re.search(r"\.(\d+)", text)
    if frac and len(frac.group(1)) > 6:  # datetime keeps microseconds only
        text = text.replace(frac.group(0), "." + frac.group(1)[:6], 1)
    try:
        return datetime.fromisoformat(text.replace("t", "T")).astimezone(timezone.utc)
    except ValueError as exc:
        raise PinConfigError(f"{what} {value!r} is not a valid date-time: {exc}") from None


def format_datetime(value: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with a ``Z`` suffix."""
    utc = value.astimezone(timezone.utc)
    if utc.microsecond:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def to_timestamp(now: datetime | float | None) -> float | None:
    """Accept ``now`` as an aware datetime or a POSIX timestamp; ``None`` stays ``None``."""
    if now is None or isinstance(now, float | int):
        return None if now is None else float(now)
    return parse_datetime(now, what="now").timestamp()
