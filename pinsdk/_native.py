"""What a pinned ``SSLContext`` raises outside httpx: an ``ssl.SSLCertVerificationError``.

asyncio's TLS (``asyncio.open_connection``, aiohttp, websockets, asyncpg), trio's
``SSLStream``, urllib3 and requests all handle ``ssl.SSLError`` from a handshake as the
certificate failure it is: asyncio logs it at DEBUG and hands it to the waiter, aiohttp
raises ``ClientConnectorCertificateError``, requests ``SSLError``. Any other exception
escapes asyncio's protocol callbacks and is logged at ERROR as a "Fatal error".

Inside httpx (httpcore drives the handshake) the same refusal stays a
:class:`~pinsdk.PinValidationError`, an ``httpx.ConnectError``: httpcore turns every
``ssl.SSLError`` into its own ``ConnectError``, which its ``retries=`` retries and which
reaches the caller without pinsdk's type. Which one to raise is decided when a refusal
happens (never on the path of a connection that passes), by looking for httpcore's
frames on the stack: the TLS object cannot know who drives it otherwise, the same
``SSLContext`` may serve both, and a hook in the request path would cost every request.
"""

from __future__ import annotations

import ssl
import sys
from types import FrameType

from ._core.check import Verdict
from ._core.errors import PinningError
from ._core.events import PinFailure
from ._request_errors import PinCheckUnavailableError, PinValidationError

__all__ = ["PinCertVerificationError", "for_caller"]

# X509_V_ERR_APPLICATION_VERIFICATION: "application verification failure", OpenSSL's code
# for a check the application added on top of its own.
APPLICATION_VERIFICATION = 50
_MAX_FRAMES = 40  # httpcore's frame is 3-6 frames up; bounded whatever the caller


class PinCertVerificationError(PinningError, ssl.SSLCertVerificationError):
    """A pinned ``SSLContext`` refused the server, as the TLS layer reports it.

    Raised by the handshake (or, with dynamic pins, a later read or write) of a pinned
    context used outside httpx: asyncio streams, aiohttp, websockets, urllib3, requests,
    trio's ``SSLStream``. It is an ``ssl.SSLCertVerificationError`` (``verify_code`` 50,
    OpenSSL's "application verification failure"), so each library reports it as its own
    certificate error, with this exception as its cause. ``failure`` is the
    :class:`~pinsdk.PinFailure` (``None`` when the check could not run: the pin source
    failed or the context was weakened, and the connection was refused anyway);
    ``verdict``, ``host``, ``served_pins``, ``expected_pins``, ``denied_pins`` and ``stage``
    are those of :class:`~pinsdk.PinValidationError`, which pinsdk's own clients raise
    instead.
    """

    def __init__(
        self,
        message: str,
        verdict: Verdict | None = None,
        failure: PinFailure | None = None,
        *,
        stage: str = "handshake",
    ) -> None:
        # errno 1 is SSL_ERROR_SSL, what OpenSSL's own verification failures carry;
        # str() of an SSLError is its strerror, the message.
        super().__init__(ssl.SSL_ERROR_SSL, message)
        self.reason = "CERTIFICATE_VERIFY_FAILED"
        self.library = "SSL"
        self.verify_code = APPLICATION_VERIFICATION
        self.verify_message = (
            "certificate pinning failure" if verdict is not None else "pin check unavailable"
        )
        self.stage = stage
        self.verdict = verdict
        self.failure = failure
        self.host = None if verdict is None else verdict.host
        self.served_pins: tuple[str, ...] = () if verdict is None else tuple(verdict.served_pins)
        self.expected_pins: tuple[str, ...] = (
            () if verdict is None else tuple(sorted(verdict.expected_pins))
        )
        self.denied_pins: tuple[str, ...] = () if verdict is None else tuple(verdict.denied_pins)


def _driven_by_httpcore() -> bool:
    frame: FrameType | None = sys._getframe(2)
    for _ in range(_MAX_FRAMES):
        if frame is None:
            return False
        if frame.f_globals.get("__name__", "").startswith("httpcore."):
            return True
        frame = frame.f_back
    return False


def for_caller(exc: PinValidationError | PinCheckUnavailableError) -> Exception:
    """The exception a refusal is raised as: ``exc`` itself when httpcore drives the
    TLS object, else its :class:`PinCertVerificationError` form."""
    if _driven_by_httpcore():
        return exc
    if isinstance(exc, PinValidationError):
        return PinCertVerificationError(str(exc), exc.verdict, exc.failure, stage=exc.stage)
    return PinCertVerificationError(str(exc))
