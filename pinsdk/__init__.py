"""pinsdk: public-key pinning for httpx async clients, with signed dynamic pin updates."""

from __future__ import annotations

from .check import Verdict
from .client import AsyncClient
from .dynamic import DynamicPins, UpdateResult, UpdateState
from .envelope import VerifiedPayload, sign_envelope, verify_envelope
from .errors import (
    EnvelopeFormatError,
    EquivocationError,
    ExpiredDocumentError,
    PinConfigError,
    PinningError,
    RollbackError,
    SignatureError,
    UpdateRejectedError,
)
from .events import PinFailure
from .hosts import normalize_host
from .keys import keyid_of
from .pins import parse_pin, spki_pin
from .policy import DomainPins, PinPolicy
from .reporting import Reporting
from .request_errors import (
    PinCheckUnavailableError,
    PinValidationError,
    PlaintextRequestError,
    SNIHostnameError,
)
from .sslhook import pinned_ssl_context
from .transport import PinnedTransport
from .trust import UpdateStatus

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "DomainPins",
    "DynamicPins",
    "EnvelopeFormatError",
    "EquivocationError",
    "ExpiredDocumentError",
    "RollbackError",
    "SignatureError",
    "UpdateRejectedError",
    "UpdateResult",
    "UpdateState",
    "UpdateStatus",
    "VerifiedPayload",
    "keyid_of",
    "sign_envelope",
    "verify_envelope",
    "PinCheckUnavailableError",
    "PinFailure",
    "Reporting",
    "PinConfigError",
    "PinPolicy",
    "PinValidationError",
    "PinnedTransport",
    "PinningError",
    "PlaintextRequestError",
    "SNIHostnameError",
    "Verdict",
    "__version__",
    "normalize_host",
    "parse_pin",
    "pinned_ssl_context",
    "spki_pin",
]
