"""pinsdk: public-key pinning for httpx clients (async and sync) and any Python TLS client,
with signed dynamic pin updates."""

from ._client import AsyncClient
from ._core.check import Verdict
from ._core.envelope import VerifiedPayload, sign_envelope, verify_envelope
from ._core.errors import (
    EnvelopeFormatError,
    EquivocationError,
    ExpiredDocumentError,
    PinConfigError,
    PinningError,
    RollbackError,
    SignatureError,
    UpdateRejectedError,
)
from ._core.events import PinFailure
from ._core.hosts import normalize_host
from ._core.keys import keyid_of
from ._core.limits import UpdateLimits
from ._core.pins import parse_pin, spki_pin
from ._core.policy import DomainPins, PinPolicy
from ._core.trusted import UpdateStatus
from ._native import PinCertVerificationError
from ._refresher import DynamicPins, UpdateResult, UpdateState
from ._reporting import Reporting
from ._request_errors import (
    PinCheckUnavailableError,
    PinValidationError,
    PlaintextRequestError,
    SNIHostnameError,
)
from ._sync_client import Client, PinnedSyncTransport
from ._tls import pinned_ssl_context
from ._transport import PinnedTransport
from ._version import __version__

__all__ = [
    "AsyncClient",
    "Client",
    "DomainPins",
    "DynamicPins",
    "EnvelopeFormatError",
    "EquivocationError",
    "ExpiredDocumentError",
    "PinCertVerificationError",
    "PinCheckUnavailableError",
    "PinConfigError",
    "PinFailure",
    "PinPolicy",
    "PinValidationError",
    "PinnedSyncTransport",
    "PinnedTransport",
    "PinningError",
    "PlaintextRequestError",
    "Reporting",
    "RollbackError",
    "SNIHostnameError",
    "SignatureError",
    "UpdateLimits",
    "UpdateRejectedError",
    "UpdateResult",
    "UpdateState",
    "UpdateStatus",
    "Verdict",
    "VerifiedPayload",
    "__version__",
    "keyid_of",
    "normalize_host",
    "parse_pin",
    "pinned_ssl_context",
    "sign_envelope",
    "spki_pin",
    "verify_envelope",
]
