"""pinsdk: public-key pinning for httpx async clients, with signed dynamic pin updates."""

from __future__ import annotations

from .check import Verdict
from .client import AsyncClient
from .errors import PinConfigError, PinningError
from .hosts import normalize_host
from .pins import parse_pin, spki_pin
from .policy import DomainPins, PinPolicy
from .request_errors import PinCheckUnavailableError, PinValidationError, PlaintextRequestError
from .sslhook import pinned_ssl_context
from .transport import PinnedTransport

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "DomainPins",
    "PinCheckUnavailableError",
    "PinConfigError",
    "PinPolicy",
    "PinValidationError",
    "PinnedTransport",
    "PinningError",
    "PlaintextRequestError",
    "Verdict",
    "__version__",
    "normalize_host",
    "parse_pin",
    "pinned_ssl_context",
    "spki_pin",
]
