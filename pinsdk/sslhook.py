"""The pin check inside the TLS layer: an ``ssl.SSLObject`` subclass per context.

``SSLContext.sslobject_class`` is honoured by every ``wrap_bio`` caller (anyio on
asyncio and trio, trio's own ``SSLStream``), so the check runs on every connection
httpx opens with the context: direct, through an ``http://`` or ``https://`` proxy,
HTTP/1.1 or HTTP/2. It runs right after the handshake completes and before the
handshake's last flight is flushed, so a rejected server never receives a request byte.
"""

from __future__ import annotations

import logging
import os
import ssl
import sys
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any, ClassVar, Protocol

import httpx

from .check import describe_failure, evaluate, evaluate_pins
from .errors import PinConfigError
from .events import PinFailure, Stats
from .pins import DEFAULT_CACHE, ChainPinCache, pin_of_der
from .policy import PinPolicy
from .request_errors import PinCheckUnavailableError, PinValidationError

__all__ = ["PinSource", "PinsArg", "VerifyTypes", "as_source", "pinned_ssl_context"]

logger = logging.getLogger("pinsdk")


class PinSource(Protocol):
    """Anything with a ``current`` attribute holding the :class:`PinPolicy` in force."""

    @property
    def current(self) -> PinPolicy: ...


PinsArg = PinPolicy | PinSource
VerifyTypes = bool | str | os.PathLike[str] | ssl.SSLContext


def as_source(pins: object) -> PinSource:
    """Accept a :class:`PinPolicy` or an object with ``.current``; refuse anything else."""
    if isinstance(pins, PinPolicy):
        return pins
    if pins is None or (not hasattr(type(pins), "current") and not hasattr(pins, "current")):
        raise PinConfigError(
            "pins must be a PinPolicy or an object with a .current attribute returning "
            f"the PinPolicy in force (such as DynamicPins), not {type(pins).__name__}"
        )
    return pins  # type: ignore[return-value]


def _chain_private(obj: ssl.SSLObject | ssl.SSLSocket, which: str) -> list[bytes]:
    """3.10-3.12: only the private ``_sslobj`` has the chains, as PEM unless told DER."""
    chain = getattr(obj._sslobj, which)()  # type: ignore[union-attr]
    if not chain:
        return []
    return [cert.public_bytes(_DER) for cert in chain]


def _verified_chain_private(obj: ssl.SSLObject | ssl.SSLSocket) -> list[bytes]:
    return _chain_private(obj, "get_verified_chain")


if sys.version_info >= (3, 13):

    def verified_chain(obj: ssl.SSLObject | ssl.SSLSocket) -> list[bytes]:
        """The chain OpenSSL verified, leaf to trust anchor, as DER (``[]`` if none)."""
        return obj.get_verified_chain()

    def served_chain(obj: ssl.SSLObject | ssl.SSLSocket) -> list[bytes]:
        """The certificates the server sent, as DER (for reports only, never for matching)."""
        return obj.get_unverified_chain()

else:
    verified_chain = _verified_chain_private

    def served_chain(obj: ssl.SSLObject | ssl.SSLSocket) -> list[bytes]:
        """The certificates the server sent, as DER (for reports only, never for matching)."""
        return _chain_private(obj, "get_unverified_chain")


class FailureMonitor(Protocol):
    """What the pin check needs of an observer: counters."""

    stats: Stats


# Set by PinnedTransport around each request: the pin check appends the failures it
# sees, so the transport can dispatch them (callbacks, reports) with the request's port.
SEEN_FAILURES: ContextVar[list[PinFailure] | None] = ContextVar("pinsdk_failures", default=None)


_DER: int = ssl._ssl.ENCODING_DER  # type: ignore[attr-defined]


class _CertPinCache:
    """Pins keyed by the TLS layer's own certificate objects, which hash and compare by
    content: a repeated chain costs dict hits, not DER encoding plus hashing."""

    def __init__(self, max_entries: int = 1024) -> None:
        self._max = max_entries
        self._pins: dict[object, str] = {}

    def pins(self, certs: Sequence[Any]) -> tuple[str, ...]:
        get = self._pins.get
        out = []
        for cert in certs:
            pin = get(cert)
            if pin is None:
                pin = pin_of_der(cert.public_bytes(_DER))
                if len(self._pins) >= self._max:
                    self._pins.clear()
                self._pins[cert] = pin
            out.append(pin)
        return tuple(out)


_CERT_PINS = _CertPinCache()


def _raw_chain(obj: ssl.SSLObject | ssl.SSLSocket) -> Sequence[Any] | None:
    """The verified chain as certificate objects, or ``None`` where only DER is offered."""
    getter = getattr(getattr(obj, "_sslobj", None), "get_verified_chain", None)
    return None if getter is None else list(getter() or ())


class PinCheck:
    """Runs the policy of a pin source against one completed handshake."""

    def __init__(self, source: PinSource, cache: ChainPinCache = DEFAULT_CACHE) -> None:
        self.source = source
        self.cache = cache
        self.monitors: tuple[FailureMonitor, ...] = ()

    def add_monitors(self, monitors: Iterable[FailureMonitor]) -> None:
        """Also count into (and report to) these observers."""
        for monitor in monitors:
            if monitor not in self.monitors:
                self.monitors = (*self.monitors, monitor)

    def _count(self, key: str) -> None:
        for monitor in self.monitors:
            stats = monitor.stats
            stats.add("handshakes_checked")
            stats.add(key)

    def __call__(self, obj: ssl.SSLObject | ssl.SSLSocket) -> None:
        context = obj.context
        if context.verify_mode != ssl.CERT_REQUIRED or not context.check_hostname:
            raise PinCheckUnavailableError(
                "refusing the connection: certificate verification or hostname checking was "
                "turned off on the pinned SSLContext after pinning was installed"
            )
        host = obj.server_hostname
        if not host:
            raise PinCheckUnavailableError("refusing the connection: no server name to pin")
        try:
            policy = self.source.current
            if not isinstance(policy, PinPolicy):
                raise TypeError(f"pin source returned {type(policy).__name__}, not PinPolicy")
        except Exception as exc:
            raise PinCheckUnavailableError(
                f"refusing the connection to {host}: the pin source failed: {exc!r}"
            ) from exc
        if not policy.domains and not policy.deny:
            self._count("handshakes_passed")
            return
        certs = _raw_chain(obj)
        if certs is None:  # no certificate objects here: the public DER route
            chain = verified_chain(obj)
            verdict = evaluate(policy, host, chain, cache=self.cache)
        else:
            verdict = evaluate_pins(policy, host, lambda: _CERT_PINS.pins(certs))
        if verdict is None:
            self._count("handshakes_passed")
            return
        if certs is not None:
            chain = [cert.public_bytes(_DER) for cert in certs]  # failures only: for the message
        self._count("pin_failures_enforced" if verdict.enforced else "pin_failures_reported")
        seen = SEEN_FAILURES.get()
        if seen is not None:
            seen.append(
                PinFailure.from_verdict(
                    verdict,
                    at=datetime.now(timezone.utc),
                    validated_chain=chain,
                    served_chain=served_chain(obj),
                )
            )
        if verdict.enforced:
            logger.warning(
                "pin failure for %s (enforced, connection refused): %s; served %s; expected %s",
                verdict.host,
                verdict.reason,
                list(verdict.served_pins),
                sorted(verdict.expected_pins),
            )
            raise PinValidationError(describe_failure(verdict, chain), verdict)
        logger.warning(
            "pin failure for %s (report mode, connection allowed): %s; served %s; expected %s",
            verdict.host,
            verdict.reason,
            list(verdict.served_pins),
            sorted(verdict.expected_pins),
        )


class PinnedSSLObject(ssl.SSLObject):
    """An ``SSLObject`` whose handshake also checks pins. Subclassed once per context."""

    pin_check: ClassVar[PinCheck]

    def do_handshake(self) -> None:
        super().do_handshake()  # SSLWant* propagate: the handshake is not done yet
        self.pin_check(self)


class PinnedSSLSocket(ssl.SSLSocket):
    """The blocking-socket twin, so a pinned context also protects ``httpx.Client``."""

    pin_check: ClassVar[PinCheck]

    def do_handshake(self, block: bool = False) -> None:
        super().do_handshake(block)
        try:
            self.pin_check(self)
        except BaseException:
            self.close()
            raise


def install_pin_check(
    context: ssl.SSLContext, source: PinSource, monitors: Iterable[FailureMonitor] = ()
) -> ssl.SSLContext:
    """Install the pin check of ``source`` on ``context`` (in place) and return it."""
    _require_verification(context)
    current: Any = context.sslobject_class
    if isinstance(current, type) and issubclass(current, PinnedSSLObject):
        if current.pin_check.source is source:
            current.pin_check.add_monitors(monitors)
            return context
        raise PinConfigError(
            "this SSLContext already enforces another pin source; use one SSLContext per "
            "pin source (ssl.create_default_context() for each client)"
        )
    if current is not ssl.SSLObject:
        raise PinConfigError(
            f"this SSLContext has a custom sslobject_class ({current!r}); pinsdk cannot "
            "install its pin check on it"
        )
    check = PinCheck(source)
    check.add_monitors(monitors)
    context.sslobject_class = type("PinnedSSLObject", (PinnedSSLObject,), {"pin_check": check})
    if context.sslsocket_class is ssl.SSLSocket:
        context.sslsocket_class = type("PinnedSSLSocket", (PinnedSSLSocket,), {"pin_check": check})
    return context


def _require_verification(context: ssl.SSLContext) -> None:
    if context.verify_mode != ssl.CERT_REQUIRED:
        raise PinConfigError(
            "the SSLContext does not verify certificates (verify_mode is not CERT_REQUIRED); "
            "pinning needs a verified chain, otherwise the 'chain' is whatever the server sent"
        )
    if not context.check_hostname:
        raise PinConfigError(
            "the SSLContext has check_hostname=False; pinning needs the certificate to be "
            "verified for the host it is pinned for"
        )


def pin_check_of(context: ssl.SSLContext) -> PinCheck | None:
    """The pin check installed on a context, if any."""
    current: Any = context.sslobject_class
    if isinstance(current, type) and issubclass(current, PinnedSSLObject):
        return current.pin_check
    return None


def pinned_ssl_context(
    pins: PinsArg,
    *,
    verify: VerifyTypes = True,
    trust_env: bool = True,
    monitors: Iterable[FailureMonitor] = (),
) -> ssl.SSLContext:
    """Return an ``ssl.SSLContext`` that verifies certificates and then checks pins.

    ``verify`` is ``True`` (httpx's default trust store; with ``trust_env``,
    ``SSL_CERT_FILE``/``SSL_CERT_DIR`` as httpx honours them), a path to a CA bundle
    file or directory (then *only* those anchors are trusted: private trust anchors),
    or an ``ssl.SSLContext`` that the check is installed on. ``verify=False`` and
    contexts without ``CERT_REQUIRED`` and ``check_hostname`` are refused.
    """
    source = as_source(pins)
    if verify is True:
        context = httpx.create_ssl_context(verify=True, trust_env=trust_env)
    elif verify is False:
        raise PinConfigError(
            "verify=False turns off certificate verification, and pinning an unverified "
            "chain protects nothing; pass verify=True, a CA bundle path or an SSLContext"
        )
    elif isinstance(verify, ssl.SSLContext):
        context = verify
    elif isinstance(verify, (str, os.PathLike)):
        path = os.fspath(verify)
        if not os.path.exists(path):
            raise PinConfigError(f"verify={path!r}: no such CA bundle file or directory")
        try:
            if os.path.isdir(path):
                context = ssl.create_default_context(capath=path)
            else:
                context = ssl.create_default_context(cafile=path)
        except ssl.SSLError as exc:
            raise PinConfigError(f"verify={path!r} is not a usable CA bundle: {exc}") from exc
    else:
        raise PinConfigError(
            f"verify must be True, a CA bundle path or an ssl.SSLContext, not {verify!r}"
        )
    # A pin source that observes failures itself (DynamicPins) counts every handshake too.
    own = getattr(source, "monitor", None)
    if own is not None and isinstance(getattr(own, "stats", None), Stats):
        monitors = (*monitors, own)
    return install_pin_check(context, source, monitors)
