"""Errors raised by pinsdk that carry no I/O dependency.

Every SDK error subclasses :class:`PinningError`. Errors raised while a request is
in flight (see :mod:`pinsdk.request_errors`) also subclass the fitting httpx error.
"""

from __future__ import annotations


class PinningError(Exception):
    """Base class of every error raised by pinsdk."""


class PinConfigError(PinningError, ValueError):
    """A pin, host pattern, policy or client setting is invalid.

    Raised at construction time, never during a request; the message names the
    offending value.
    """


class UpdateRejectedError(PinningError):
    """A signed pin document is not acceptable; ``reason`` says why in words.

    Raised by :func:`pinsdk.verify_envelope`; the refresher turns it into an
    ``UpdateResult`` with status ``REJECTED`` and never lets it escape.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EnvelopeFormatError(UpdateRejectedError):
    """The envelope or its payload is malformed (JSON, base64, fields, sizes, pins)."""


class SignatureError(UpdateRejectedError):
    """Fewer than ``threshold`` distinct trusted keys signed the document."""


class ExpiredDocumentError(UpdateRejectedError):
    """The document's ``expires`` has passed, or its ``issued_at`` is in the future."""


class RollbackError(UpdateRejectedError):
    """The document's version is lower than the version already trusted."""


class EquivocationError(UpdateRejectedError):
    """The document has the trusted version but different content."""
