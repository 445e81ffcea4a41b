"""Errors raised while a request is in flight; each also subclasses an httpx error."""

from __future__ import annotations

import httpx

from ._core.check import Verdict
from ._core.errors import PinningError
from ._core.events import PinFailure

__all__ = ["PinValidationError", "PlaintextRequestError", "SNIHostnameError"]


class PinValidationError(PinningError, httpx.ConnectError):
    """The server's verified chain does not match the pins (or holds a denied key).

    Raised right after the TLS handshake, before any request byte is written. httpx
    does not retry it (``retries=``) and attaches ``.request``. ``host``,
    ``served_pins`` (the verified chain's pins, leaf first) and ``expected_pins`` say
    what was seen and what was configured; ``failure`` is the
    :class:`~pinsdk.PinFailure` given to ``on_pin_failure`` (its ``port`` is ``None``
    until a transport fills it in). ``stage`` is ``"handshake"`` for a new connection;
    ``"send"`` or ``"receive"`` when a kept-alive connection that passed an earlier policy
    is refused by the policy now in force before its next write or read (after
    ``"receive"``, the request in flight may have reached the server).
    """

    def __init__(
        self,
        message: str,
        verdict: Verdict,
        failure: PinFailure | None = None,
        *,
        stage: str = "handshake",
    ) -> None:
        super().__init__(message)
        self.stage = stage
        self.verdict = verdict
        self.failure = failure
        self.host = verdict.host
        self.served_pins = verdict.served_pins
        self.expected_pins = verdict.expected_pins
        self.denied_pins = verdict.denied_pins


class PinCheckUnavailableError(PinningError, httpx.ConnectError):
    """The pin check could not run (the pin source failed, or the TLS context was
    weakened after construction). The connection is refused: pinsdk fails closed."""


class PlaintextRequestError(PinningError, httpx.TransportError):
    """A plaintext ``http://`` request was made to a host with enforced pins.

    Raised before any connection is opened: pins can only protect TLS.
    """


class SNIHostnameError(PinningError, httpx.TransportError):
    """A request's ``sni_hostname`` extension is not usable with pinning: it is not a
    valid host name, or it differs from the URL host while the URL host has enforced pins
    (the pins of the URL host would not be checked: the TLS layer checks the name it
    sends). Raised before any connection is opened.
    """
