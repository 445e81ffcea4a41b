"""The resource limits of a signed pin document, defined once (pure code).

The signer (:func:`~pinsdk.sign_envelope`, ``pinsdk sign``) and the verifier
(:func:`~pinsdk.verify_envelope`, :class:`~pinsdk.DynamicPins`) read the same
:class:`UpdateLimits`, so a document signed under the default limits is never refused by a
client using them, and a message about a limit names the setting that raises it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from .errors import PinConfigError

__all__ = ["DEFAULT_LIMITS", "UpdateLimits"]

# Bytes a typical entry takes in the signed file: a host of up to ~60 characters and four
# pins, as compact JSON, then base64 (4/3) inside the envelope. The default max_size is
# the default max_domains of such entries, so that a document within the domain limit is
# not refused for its size unless its entries are unusually large (and then the message
# says to raise max_size).
TYPICAL_ENTRY_BYTES = 640


def _positive(name: str, minimum: int = 1) -> Callable[[Any, Any, int], None]:
    def check(_instance: Any, _attribute: Any, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise PinConfigError(f"{name} must be an integer of at least {minimum}, not {value!r}")

    return check


@attrs.frozen
class UpdateLimits:
    """What a signed pin document may hold: checked by the signer and by every client.

    ``max_domains`` entries of ``domains``; ``max_size`` bytes of the whole signed file
    (the download is aborted past it); ``max_pins_per_domain`` pins in one entry;
    ``max_deny`` pins in ``deny``. The defaults fit each other: a document of
    ``max_domains`` ordinary entries (a host name and up to four pins) is within
    ``max_size``. Raise them on the clients first, then pass the same values to the
    signer (``sign_envelope(..., limits=...)``, ``pinsdk sign --max-domains/--max-size``).
    """

    max_domains: int = attrs.field(default=100_000, validator=_positive("max_domains", 0))
    max_size: int = attrs.field(
        default=100_000 * TYPICAL_ENTRY_BYTES, validator=_positive("max_size", 1024)
    )
    max_pins_per_domain: int = attrs.field(default=64, validator=_positive("max_pins_per_domain"))
    max_deny: int = attrs.field(default=4_096, validator=_positive("max_deny", 0))


DEFAULT_LIMITS = UpdateLimits()


def too_large(size: int, max_size: int) -> str:
    """The message for a signed file over ``max_size``: which setting raises it."""
    return (
        f"document is {size} bytes; the limit is {max_size} (max_size: raise it with "
        "DynamicPins(max_size=...) or UpdateLimits(max_size=...), and pinsdk sign --max-size)"
    )


def too_many_domains(count: int, limits: UpdateLimits) -> str:
    return (
        f"{count} domains; at most {limits.max_domains} are accepted (max_domains: raise it "
        "with UpdateLimits(max_domains=...) on the clients, and pinsdk sign --max-domains)"
    )
