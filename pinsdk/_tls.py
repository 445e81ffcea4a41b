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
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, ClassVar, NoReturn, Protocol

import httpx

from ._core.check import Verdict, describe_failure, evaluate, evaluate_pins
from ._core.errors import PinConfigError
from ._core.events import PinFailure, Stats
from ._core.pins import DEFAULT_CACHE, ChainPinCache
from ._core.policy import PinPolicy
from ._native import for_caller
from ._request_errors import PinCheckUnavailableError, PinValidationError
from ._unclaimed import Unclaimed

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


_DER: int = ssl._ssl.ENCODING_DER  # type: ignore[attr-defined]
_CERT_REQUIRED = int(ssl.CERT_REQUIRED)
# The C getter: ssl.SSLContext.verify_mode wraps it in an enum, which costs several
# microseconds on a cold interpreter, once per handshake.
_raw_verify_mode: Any = ssl._ssl._SSLContext.verify_mode.__get__  # type: ignore[attr-defined]
# The verified chain as certificate objects (3.10+, private): cheaper than DER.
_CERT_OBJECTS = hasattr(ssl._ssl._SSLSocket, "get_verified_chain")  # type: ignore[attr-defined]
_PASSED_MAX = 256
# The stdlib's session properties, which the pinned classes extend.
_OBJECT_SESSION: Any = ssl.SSLObject.__dict__["session"]
_SOCKET_SESSION: Any = ssl.SSLSocket.__dict__["session"]


def _listens(monitor: FailureMonitor, policy: PinPolicy) -> bool:
    """Whether ``monitor`` acts on failures of ``policy`` (a callback, or reports)."""
    if getattr(monitor, "on_pin_failure", None) is not None:
        return True
    if getattr(monitor, "reporter", None) is None:
        return False
    return policy.report_uri is not None or any(d.report_uri for d in policy.domains)


# Pins keyed by the TLS layer's own certificate objects, which hash and compare by content:
# a repeated chain costs dict hits, not DER encoding plus hashing.
_CERT_PINS = ChainPinCache(der_of=lambda cert: cert.public_bytes(_DER))


class PinCheck:
    """Runs the policy of a pin source against one completed handshake.

    Report-mode failures (the connection goes on) wait in ``unclaimed`` with a weak
    reference to their TLS object, until the transport that made the request claims
    them; enforced failures travel on the :class:`PinValidationError` they raise.
    """

    def __init__(self, source: PinSource, cache: ChainPinCache = DEFAULT_CACHE) -> None:
        self.source = source
        # A static policy is its own ``current``: skip the property on the hot path.
        self._static: PinPolicy | None = source if isinstance(source, PinPolicy) else None
        self.cache = cache
        self.monitors: tuple[FailureMonitor, ...] = ()
        self._counters: tuple[dict[str, int], ...] = ()
        # True when no observer does anything with a failure beyond counting it (a
        # static policy without report_uri, no callback): the transport then adds no
        # per-request step at all.
        self.quiet = self._static is not None
        self.unclaimed = Unclaimed()
        # The chains that passed the policy in force, by host: a known chain is then
        # recognised by comparing certificates (OpenSSL compares their SHA-1 and
        # encoding, no hashing) instead of being evaluated again. Replaced whole, with
        # the policy it belongs to, when the policy changes.
        self._passed: tuple[PinPolicy | None, dict[str, list[Any]]] = (None, {})
        self.sessions = _Sessions()

    def add_monitors(self, monitors: Iterable[FailureMonitor]) -> None:
        """Also count into (and report to) these observers."""
        added = tuple(m for m in monitors if m not in self.monitors)
        self._set_monitors((*self.monitors, *added))

    def remove_monitors(self, monitors: Iterable[FailureMonitor]) -> None:
        """Stop counting into these observers (their owner closed): a shared context keeps
        nothing of a closed client."""
        gone = tuple(monitors)
        self._set_monitors(tuple(m for m in self.monitors if m not in gone))

    def _set_monitors(self, monitors: tuple[FailureMonitor, ...]) -> None:
        # Replaced whole: a handshake on another thread sees the old tuple or the new one.
        self.monitors = monitors
        self._counters = tuple(m.stats.counts for m in monitors)
        self.quiet = self._static is not None and not any(
            _listens(m, self._static) for m in self.monitors
        )

    def _count(self, key: str) -> None:
        for counts in self._counters:
            counts[key] += 1

    def __call__(self, obj: ssl.SSLObject | ssl.SSLSocket) -> PinPolicy:
        """Check the completed handshake of ``obj``; return the policy it passed (or was
        only reported under), raise :class:`PinValidationError` if it is refused."""
        # The hot path reads the C-level TLS object directly: every Python-level step
        # here runs once per handshake on a cold interpreter, so each one counts.
        raw = obj._sslobj  # type: ignore[union-attr]
        context = raw.context
        if _raw_verify_mode(context) != _CERT_REQUIRED or not context.check_hostname:
            raise PinCheckUnavailableError(
                "refusing the connection: certificate verification or hostname checking was "
                "turned off on the pinned SSLContext after pinning was installed"
            )
        host = raw.server_hostname
        if not host:
            raise PinCheckUnavailableError("refusing the connection: no server name to pin")
        try:
            policy = self._static or self.source.current
        except Exception as exc:
            raise PinCheckUnavailableError(
                f"refusing the connection to {host}: the pin source failed: {exc!r}"
            ) from exc
        verdict, chain = self._judge(obj, raw, policy, host)
        if verdict is None:
            for counts in self._counters:
                counts["handshakes_passed"] += 1
            return policy
        self._fail(obj, verdict, chain)
        return policy

    def recheck(self, obj: ssl.SSLObject | ssl.SSLSocket, policy: PinPolicy, stage: str) -> None:
        """Check an established connection again, under ``policy`` (which replaced the one
        its handshake passed). Raises :class:`PinValidationError` if ``policy`` enforces a
        refusal of its verified chain; a report-mode mismatch was reported at the handshake
        and is not reported again per connection."""
        raw = obj._sslobj  # type: ignore[union-attr]
        host = raw.server_hostname
        if not host:
            raise PinCheckUnavailableError("refusing the connection: no server name to pin")
        verdict, chain = self._judge(obj, raw, policy, host)
        if verdict is None:
            return
        if verdict.enforced:
            self._fail(obj, verdict, chain, stage)  # raises
        logger.debug("pooled connection to %s: report-mode mismatch after a policy change", host)

    def _judge(
        self, obj: ssl.SSLObject | ssl.SSLSocket, raw: Any, policy: object, host: str
    ) -> tuple[Verdict | None, list[bytes]]:
        """The verdict of ``policy`` on the verified chain of ``obj`` (``None``: it passes),
        and the chain as DER when it does not (for the message)."""
        passed_policy, passed = self._passed
        if policy is not passed_policy:  # a new policy: validate it once, forget old passes
            if not isinstance(policy, PinPolicy):
                raise PinCheckUnavailableError(
                    f"refusing the connection to {host}: the pin source failed: it returned "
                    f"{type(policy).__name__}, not PinPolicy"
                )
            passed = {}
            self._passed = (policy, passed)
        assert isinstance(policy, PinPolicy)
        if not _CERT_OBJECTS:  # no certificate objects on this Python: the public DER route
            chain = verified_chain(obj) or self.sessions.resumed(obj, raw, host)
            return evaluate(policy, host, chain, cache=self.cache), chain
        certs = raw.get_verified_chain() or self.sessions.resumed(obj, raw, host)
        if certs and passed.get(host) == certs:
            return None, []
        verdict = evaluate_pins(policy, host, lambda: _CERT_PINS.chain_pins(certs))
        if verdict is not None:
            return verdict, [cert.public_bytes(_DER) for cert in certs]
        # A pass turns into a failure only when an entry expires: then no memo.
        if certs and not policy.has_expiring_entries:
            if len(passed) >= _PASSED_MAX:
                passed.clear()
            passed[host] = certs
        return None, []

    def _fail(
        self,
        obj: ssl.SSLObject | ssl.SSLSocket,
        verdict: Verdict,
        chain: list[bytes],
        stage: str = "handshake",
    ) -> None:
        self._count("pin_failures_enforced" if verdict.enforced else "pin_failures_reported")
        failure = PinFailure.from_verdict(
            verdict,
            at=datetime.now(timezone.utc),
            validated_chain=chain,
            served_chain=served_chain(obj),
        )
        if verdict.enforced:
            logger.warning(
                "pin failure for %s (enforced, connection refused%s): %s; served %s; expected %s",
                verdict.host,
                "" if stage == "handshake" else f" before its next {stage}",
                verdict.reason,
                list(verdict.served_pins),
                sorted(verdict.expected_pins),
            )
            message = describe_failure(verdict, chain)
            if stage != "handshake":
                message += (
                    f"\n  This kept-alive connection passed the pin check of an earlier policy; "
                    f"the policy now in force (version {verdict.policy_version}) refuses it, so "
                    f"it is not used again (refused before its next {stage})."
                )
            raise PinValidationError(message, verdict, failure, stage=stage)
        logger.warning(
            "pin failure for %s (report mode, connection allowed): %s; served %s; expected %s",
            verdict.host,
            verdict.reason,
            list(verdict.served_pins),
            sorted(verdict.expected_pins),
        )
        if not self.quiet:  # someone will claim it (quiet: it is logged and counted only)
            self.unclaimed.put(obj, failure)

    def claim(self, obj: object) -> tuple[list[PinFailure], list[PinFailure]]:
        """Take the report-mode failures of the TLS object ``obj`` and the orphans."""
        return self.unclaimed.claim(obj)


def _remembering(stdlib: Any) -> Any:
    """The stdlib's ``session`` property, whose getter also remembers the session with this
    connection's verified chain (see :class:`_Sessions`), and whose setter notes the
    session offered (``SSLSocket`` keeps it in ``_session`` itself)."""

    def get(self: Any) -> ssl.SSLSession | None:
        session: ssl.SSLSession | None = stdlib.fget(self)
        if session is not None:
            self.pin_check.sessions.remember(self, session)
        return session

    def put(self: Any, session: ssl.SSLSession | None) -> None:
        self._session = session
        stdlib.fset(self, session)

    return property(get, put, doc=stdlib.__doc__)


class PinnedSSLObject(ssl.SSLObject):
    """An ``SSLObject`` whose handshake also checks pins. Subclassed once per context.

    A read or write before ``do_handshake()`` has checked the pins would let OpenSSL
    complete the handshake by itself, unchecked: such a read or write runs
    ``do_handshake()`` (and the check) first, raising what that raises
    (``SSLWantReadError`` included). After the check, a read or write tests one flag."""

    pin_check: ClassVar[PinCheck]
    # The session offered for resumption (SSLSocket keeps its own under this name).
    _session: ssl.SSLSession | None = None
    # Set on the object once its handshake passed the check. A flag, not a switch to
    # another class as the socket twin does: assigning __class__ turns the object's
    # attributes into a plain dict, and every attribute read of it (the stdlib's and
    # anyio's, several per request) then loses the interpreter's specialisation, about 2.5
    # times slower on 3.11-3.13: 2,800 instructions more per kept-alive request (callgrind).
    _pins_checked: bool = False

    @classmethod
    def _create(
        cls,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | None = None,
        session: ssl.SSLSession | None = None,
        context: ssl.SSLContext | None = None,
    ) -> Any:
        # wrap_bio(session=...) hands the session straight to C: note which one was offered.
        obj = super()._create(  # type: ignore[misc]
            incoming, outgoing, server_side, server_hostname, session, context
        )
        obj._session = session
        return obj

    def do_handshake(self) -> None:
        # What ssl.SSLObject.do_handshake does, minus one Python frame for the
        # SSLWant* exceptions (the handshake is not done yet) to cross.
        self._sslobj.do_handshake()  # type: ignore[attr-defined]
        try:
            self.pin_check(self)
        except _REFUSALS as exc:
            _raise_for_caller(exc)
        self._pins_checked = True

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        if not self._pins_checked:
            self.do_handshake()
        # ssl.SSLObject.read, inlined: one Python frame per read, as without pinsdk.
        tls: Any = self._sslobj  # type: ignore[attr-defined]
        return tls.read(len) if buffer is None else tls.read(len, buffer)

    def write(self, data: Any) -> int:
        if not self._pins_checked:
            self.do_handshake()
        return self._sslobj.write(data)  # type: ignore[attr-defined,no-any-return]

    session = _remembering(_OBJECT_SESSION)


_REFUSALS = (PinValidationError, PinCheckUnavailableError)


def _raise_for_caller(exc: PinValidationError | PinCheckUnavailableError) -> NoReturn:
    """Raise a refusal as its caller expects it (see :mod:`pinsdk._native`): unchanged
    inside httpx, an ``ssl.SSLCertVerificationError`` anywhere else."""
    other = for_caller(exc)
    if other is exc:
        raise exc
    raise other from exc.__cause__


class _Sessions:
    """The verified chains of TLS sessions a client may resume, by the session object.

    A resumed session skips certificate verification, so OpenSSL has no verified chain
    for it (CPython gh-160171) and the pin check would refuse it. A session handed out
    by a pinned connection (its ``session`` attribute: how ``session=`` gets one) is
    remembered with that connection's server name and verified chain; a connection that
    resumes the very object it was offered, under that server name, is judged on that
    chain by the policy in force exactly as on a full handshake. Anything else (a session
    nobody remembered, or one resumed under another server name) finds no chain and is
    refused. The object, not the session id, is the key: a TLS 1.2 session id (or the
    ticket it is hashed from) is chosen by the server and sent in clear, so an impostor
    for another name can copy the id of a pinned server's session.
    """

    def __init__(self) -> None:
        # id() of a session object handed out -> (the object, kept so the id stays its
        # own; the server name; the verified chain)
        self._handed: dict[int, tuple[ssl.SSLSession, str, list[Any]]] = {}

    def remember(self, obj: ssl.SSLObject | ssl.SSLSocket, session: ssl.SSLSession) -> None:
        raw: Any = getattr(obj, "_sslobj", None)
        host = None if raw is None else raw.server_hostname
        if not host:
            return
        chain = self._verified(raw, obj) or self.resumed(obj, raw, host)
        if chain:
            if len(self._handed) >= _PASSED_MAX:
                self._handed.pop(next(iter(self._handed)), None)
            self._handed[id(session)] = (session, host, chain)

    def resumed(self, obj: ssl.SSLObject | ssl.SSLSocket, raw: Any, host: str) -> list[Any]:
        """The remembered chain of the session ``obj`` resumed (``[]`` if it did not, or
        that session was not handed out by this context for ``host``)."""
        if not raw.session_reused:
            return []
        # OpenSSL resumes only the session it was offered: that object decides.
        offered = getattr(obj, "_session", None)
        entry = None if offered is None else self._handed.get(id(offered))
        if entry is None or entry[0] is not offered or entry[1] != host:
            return []
        return list(entry[2])

    @staticmethod
    def _verified(raw: Any, obj: ssl.SSLObject | ssl.SSLSocket) -> list[Any]:
        if _CERT_OBJECTS:
            return list(raw.get_verified_chain() or ())
        return verified_chain(obj)


def _source_failed(exc: Exception) -> PinCheckUnavailableError:
    return PinCheckUnavailableError(
        f"refusing to use a kept-alive connection: the pin source failed: {exc!r}"
    )


class _Recheck:
    """What a TLS object of a changing pin source remembers: the policy its verified chain
    was last checked under, and the refusal once a later policy refused it."""

    pin_check: ClassVar[PinCheck]
    pin_source: ClassVar[PinSource]
    # Class-level defaults: a write before the handshake finds no policy and rechecks.
    _checked_under: PinPolicy | None = None
    # What the refusal said (not the exception: its traceback would hold this object).
    _refusal: tuple[str, Verdict, PinFailure | None] | None = None

    def _guard(self, stage: str) -> None:
        """Before a write or after a read: has the policy changed since the check?"""
        try:
            try:
                changed = self._checked_under is not self.pin_source.current
            except Exception as exc:
                raise _source_failed(exc) from exc
            if changed:
                self._recheck(stage)
        except _REFUSALS as exc:
            _raise_for_caller(exc)

    def _recheck(self, stage: str) -> None:
        """The policy in force is not the one this connection was checked under."""
        refusal = self._refusal
        if refusal is not None:  # refused once: refused for good, whatever comes next
            raise PinValidationError(*refusal, stage=stage)
        check = self.pin_check
        try:
            policy = self.pin_source.current
        except Exception as exc:
            raise _source_failed(exc) from exc
        try:
            check.recheck(self, policy, stage)  # type: ignore[arg-type]
        except PinValidationError as exc:
            self._refusal = (str(exc), exc.verdict, exc.failure)
            raise
        self._checked_under = policy


class _RecheckedSSLObject(_Recheck, PinnedSSLObject):
    """A :class:`PinnedSSLObject` for a pin source whose policy can change (not a static
    :class:`PinPolicy`): every write, and every read with data to return, compares the
    policy in force with the one the connection was checked under (reading ``.current``
    and an identity test) and, only when it changed, checks the verified chain again
    before any byte is sent or returned."""

    def do_handshake(self) -> None:
        self._sslobj.do_handshake()  # type: ignore[attr-defined]
        try:
            self._checked_under = self.pin_check(self)
        except _REFUSALS as exc:
            _raise_for_caller(exc)

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        # ssl.SSLObject.read, inlined (one Python frame per read is enough), with the
        # guard after it: a read with nothing to return (SSLWantReadError, about one in
        # two) then costs nothing, and data is never returned without the guard.
        tls: Any = self._sslobj  # type: ignore[attr-defined]
        data = tls.read(len) if buffer is None else tls.read(len, buffer)
        self._guard("receive")
        return data

    def write(self, data: Any) -> int:
        self._guard("send")
        return self._sslobj.write(data)  # type: ignore[attr-defined,no-any-return]


class PinnedSSLSocket(ssl.SSLSocket):
    """The blocking-socket twin, so a pinned context also protects ``httpx.Client``."""

    pin_check: ClassVar[PinCheck]

    def do_handshake(self, block: bool = False) -> None:
        super().do_handshake(block)
        try:
            self.pin_check(self)
        except BaseException as exc:
            self.close()
            if isinstance(exc, _REFUSALS):
                _raise_for_caller(exc)
            raise

    session = _remembering(_SOCKET_SESSION)


class _RecheckedSSLSocket(_Recheck, PinnedSSLSocket):
    """The socket twin of :class:`_RecheckedSSLObject`. ``sendall`` and ``sendfile`` send
    through ``send``, ``recv`` and ``recv_into`` read through ``read`` (CPython 3.10-3.13)."""

    def do_handshake(self, block: bool = False) -> None:
        ssl.SSLSocket.do_handshake(self, block)
        try:
            self._checked_under = self.pin_check(self)
        except BaseException as exc:
            self.close()
            if isinstance(exc, _REFUSALS):
                _raise_for_caller(exc)
            raise

    def _current(self, stage: str) -> None:
        # Unwrapped or not yet connected: no TLS, nothing pinned to recheck.
        if self._sslobj is None:  # type: ignore[attr-defined]
            return
        self._guard(stage)

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        self._current("receive")
        return super().read(len, buffer)

    def write(self, data: Any) -> int:
        self._current("send")
        return super().write(data)

    def send(self, data: Any, flags: int = 0) -> int:
        self._current("send")
        return super().send(data, flags)


class _Unchecked:
    """A static policy's TLS socket until ``do_handshake()`` has checked its pins.

    A read or write before that lets OpenSSL complete the handshake by itself, so the check
    would never run: it runs ``do_handshake()`` (and the check) first, raising what that
    raises (``SSLWantReadError`` included). Once the check passes, the socket becomes its
    plain pinned class, which adds no frame to reads and writes (but makes its attribute
    reads slower: see :class:`PinnedSSLObject`, which tests a flag instead)."""

    _checked: ClassVar[type]
    _sslobj: Any

    def _handshake_first(self) -> None:
        # A bound method taken before the switch still comes here: then nothing to do.
        # Unconnected or unwrapped (no _sslobj): the stdlib says so.
        if isinstance(self, _Unchecked) and self._sslobj is not None:
            self.do_handshake()

    def do_handshake(self, *args: Any) -> None:
        super().do_handshake(*args)  # type: ignore[misc]
        self.__class__ = self._checked


# The stdlib methods are named, not reached by super(): the class changes on the way.
class _UncheckedSocket(_Unchecked):
    def read(self, *args: Any) -> Any:
        self._handshake_first()
        return ssl.SSLSocket.read(self, *args)  # type: ignore[arg-type]

    def write(self, data: Any) -> int:
        self._handshake_first()
        return ssl.SSLSocket.write(self, data)  # type: ignore[arg-type]

    def send(self, data: Any, flags: int = 0) -> int:
        self._handshake_first()
        return ssl.SSLSocket.send(self, data, flags)  # type: ignore[arg-type]


def install_pin_check(
    context: ssl.SSLContext,
    source: PinSource,
    monitors: Iterable[FailureMonitor] = (),
    *,
    check: PinCheck | None = None,
) -> ssl.SSLContext:
    """Install the pin check of ``source`` on ``context`` (in place) and return it.

    ``check`` shares an existing :class:`PinCheck` of ``source`` (a proxy's context and the
    origin's then count and report into the same observers)."""
    _require_verification(context)
    _require_own_wrappers(context)
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
    if context.sslsocket_class is not ssl.SSLSocket:
        # Skipping it would leave blocking sockets (pinsdk.Client, requests, urllib3)
        # unpinned without a word.
        raise PinConfigError(
            f"this SSLContext has a custom sslsocket_class ({context.sslsocket_class!r}); "
            "pinsdk cannot install its pin check on it"
        )
    if check is None:
        check = PinCheck(source)
    elif check.source is not source:
        raise PinConfigError("internal: a shared PinCheck must belong to the same pin source")
    check.add_monitors(monitors)
    attributes = {"pin_check": check, "pin_source": source}
    # A static policy never changes: its connections need no recheck, and cost nothing.
    changing = not isinstance(source, PinPolicy)
    if changing:  # its read and write guards also cover a read or write before the check
        context.sslobject_class = type("PinnedSSLObject", (_RecheckedSSLObject,), attributes)
        context.sslsocket_class = type("PinnedSSLSocket", (_RecheckedSSLSocket,), attributes)
        return context
    context.sslobject_class = type("PinnedSSLObject", (PinnedSSLObject,), attributes)
    checked_socket = type("PinnedSSLSocket", (PinnedSSLSocket,), attributes)
    context.sslsocket_class = type(
        "PinnedSSLSocket", (_UncheckedSocket, checked_socket), {"_checked": checked_socket}
    )
    return context


def _require_own_wrappers(context: ssl.SSLContext) -> None:
    # The check rides on the classes the stdlib's wrap_socket/wrap_bio instantiate. A
    # subclass with wrappers of its own (truststore.SSLContext hands every connection to
    # an inner context) may never create them: its connections would go unpinned. Judged
    # by where the method was defined, not by identity with ssl.SSLContext's, which
    # truststore.inject_into_ssl() replaces with its own class.
    kind = type(context)  # not context.__class__, which truststore overrides
    for name in ("wrap_socket", "wrap_bio"):
        method = getattr(kind, name, None)
        if (
            getattr(method, "__module__", None) != "ssl"
            or getattr(method, "__qualname__", None) != f"SSLContext.{name}"
        ):
            remedy = (
                "ssl.SSLContext itself was replaced (truststore.inject_into_ssl()): "
                "undo it (truststore.extract_from_ssl()) before building pinned clients"
                if ssl.SSLContext is kind
                else "pass verify=True, a CA bundle path or a plain ssl.SSLContext "
                "(ssl.create_default_context())"
            )
            raise PinConfigError(
                f"this SSLContext ({kind.__module__}.{kind.__qualname__}) has its own "
                f"{name}(); pinsdk cannot make sure its pin check runs on its connections; "
                + remedy
            )


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
    context = trust_context(verify, trust_env=trust_env)
    # A pin source that observes failures itself (DynamicPins) counts every handshake too.
    own = getattr(source, "monitor", None)
    if own is not None and isinstance(getattr(own, "stats", None), Stats):
        monitors = (*monitors, own)
    return install_pin_check(context, source, monitors)


def trust_context(verify: VerifyTypes, *, trust_env: bool = True) -> ssl.SSLContext:
    """The verifying context ``verify`` stands for: a new one for ``True`` or a CA bundle
    path, the context itself for an ``ssl.SSLContext`` (checked by the pin installer)."""
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
    return context
