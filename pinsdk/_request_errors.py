"""Errors raised while a request is in flight; each also subclasses an httpx error."""

from __future__ import annotations

import httpx

from ._core.check import Verdict
from ._core.errors import PinningError
from ._core.events import PinFailure
from ._core.hosts import normalize_host

__all__ = ["PinValidationError", "PlaintextRequestError", "SNIHostnameError"]


class PinValidationError(PinningError, httpx.ConnectError):
    """The server's verified chain does not match the pins (or holds a denied key).

    Raised right after the TLS handshake, before any request byte is written. httpx
    does not retry it (``retries=``) and attaches ``.request``. ``host`` and ``port``
    (``None`` when not known: outside a request, or a proxy's own TLS) name the server;
    ``served_pins`` (the verified chain's pins, leaf first), ``expected_pins`` (the pins
    configured for the host, sorted) and ``denied_pins`` (served pins on the deny list)
    are tuples of ``sha256/…`` strings; ``failure`` is the
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
        self.served_pins: tuple[str, ...] = tuple(verdict.served_pins)
        self.expected_pins: tuple[str, ...] = tuple(sorted(verdict.expected_pins))
        self.denied_pins: tuple[str, ...] = tuple(verdict.denied_pins)

    @property
    def port(self) -> int | None:
        """The server's port, from the request httpx attached (``None`` if unknown)."""
        try:
            url = self.request.url
        except RuntimeError:  # raised outside a request: httpx attached none
            return None
        try:
            same = normalize_host(url.host) == self.host
        except ValueError:  # PinConfigError: a URL host pins could not name
            same = False
        if not same:
            return None  # the failure was a proxy's own TLS, not the URL host's
        return url.port or {"https": 443, "http": 80}.get(url.scheme)

    def __str__(self) -> str:
        text = super().__str__()
        port = self.port
        if port is None:
            return text
        host = f"[{self.host}]" if ":" in self.host else self.host
        # The first line names the host; the port says which of its services refused.
        return text.replace(f" for {self.host}:", f" for {host}:{port}:", 1)


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
