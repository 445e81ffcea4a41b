"""``pinsdk.Client`` and ``PinnedSyncTransport``: the sync twins of the async client.

The pin check is the same object on the same context (``SSLContext.sslsocket_class`` is
the sync hook); what differs is the I/O around it. Callbacks run in the requesting
thread; reports are sent from a loop thread the client starts with its first report;
dynamic pins refresh (and self-heal) on the loop thread of their sync use, which a
client starts when nobody else did and stops when it closes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import httpx

from ._client import PinnedClientBase
from ._core.events import PinFailure
from ._reporting import FailureCallback, Monitor, ObservedSync, Reporting
from ._request_errors import PinValidationError
from ._runner import LoopThread
from ._tls import PinsArg, VerifyTypes
from ._transport import PinnedBase, _default_port

__all__ = ["Client", "PinnedSyncTransport"]

logger = logging.getLogger("pinsdk")

HealBlocking = Callable[[str, frozenset[str]], bool]


def _sync_monitor(
    on_pin_failure: FailureCallback | None, reporting: Reporting | None, version: str
) -> Monitor:
    return Monitor(
        on_pin_failure=on_pin_failure,
        reporting=reporting if reporting is not None else Reporting(),
        sdk_version=version,
        runner=LoopThread("pinsdk report sender"),
    )


class PinnedSyncTransport(PinnedBase, ObservedSync, httpx.BaseTransport):
    """An ``httpx.BaseTransport`` that checks pins on every new TLS connection: the sync
    twin of :class:`~pinsdk.PinnedTransport`, with the same arguments and guards.

    ``on_pin_failure`` is called in the requesting thread (an async callback runs on a
    loop of its own); reports are sent from a thread started by the first report and
    stopped by :meth:`close`. With :class:`~pinsdk.DynamicPins` in sync use (``with
    pins:`` or a :class:`~pinsdk.Client`), an enforced failure refreshes them and retries
    once, as the async transport does.
    """

    _pool_class = httpx.HTTPTransport
    _inner: httpx.HTTPTransport
    _sni_inner: dict[str, httpx.HTTPTransport]

    def _own_monitor(
        self, on_pin_failure: FailureCallback | None, reporting: Reporting | None, version: str
    ) -> Monitor:
        return _sync_monitor(on_pin_failure, reporting, version)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Refuse plaintext to enforced hosts; run the request; dispatch pin failures."""
        if request.url.scheme == "http":
            self._check_plaintext(request)
        inner = self._inner
        if "sni_hostname" in request.extensions:
            inner = self._inner_for_sni(request)
        if self._check.quiet:
            return inner.handle_request(request)
        try:
            response = inner.handle_request(request)
        except PinValidationError as exc:
            return self._after_failure(inner, request, exc)
        if self._check.unclaimed:
            self._dispatch_reported(request, response)
        return response

    def _after_failure(
        self, inner: httpx.HTTPTransport, request: httpx.Request, exc: PinValidationError
    ) -> httpx.Response:
        self._dispatch(request, exc)
        # Only a refused handshake is safe to retry (see PinnedTransport).
        if exc.stage != "handshake" or not self._heal(exc):
            raise exc
        self.monitor.stats.add("self_heal_retries")
        logger.info("pins for %s changed after a refresh; retrying once", exc.host)
        try:
            response = inner.handle_request(request)
        except PinValidationError as again:
            self._dispatch(request, again)
            raise
        if self._check.unclaimed:
            self._dispatch_reported(request, response)
        return response

    def _dispatch(self, request: httpx.Request, exc: PinValidationError) -> None:
        if exc.failure is not None:
            port = self._failure_port(request, exc)
            self._dispatch_all([attrs.evolve(exc.failure, port=port)])

    def _dispatch_reported(self, request: httpx.Request, response: httpx.Response) -> None:
        stream = response.extensions.get("network_stream")
        tls = None if stream is None else stream.get_extra_info("ssl_object")
        # httpcore's sync stream hands out the C-level object; the check saw its owner.
        owner = getattr(tls, "owner", None) or tls
        mine, orphans = self._check.claim(owner)
        port = _default_port(request.url)
        self._dispatch_all([attrs.evolve(f, port=port) for f in mine] + orphans)

    def _dispatch_all(self, failures: list[PinFailure]) -> None:
        for failure in failures:
            for monitor in self._check.monitors:
                if isinstance(monitor, Monitor):
                    monitor.dispatch_blocking(failure)

    def _heal(self, exc: PinValidationError) -> bool:
        heal: HealBlocking | None = self._heal_with(exc, "heal_blocking")
        if heal is None:
            return False
        try:
            return heal(exc.host, exc.verdict.expected_pins)
        except Exception:
            logger.exception("self-healing refresh failed (ignored)")
            return False

    def close(self) -> None:
        """Close the connection pools, leave the pin check of a shared ``SSLContext`` and
        stop the report sender. Safe in any order with other clients and transports."""
        try:
            self._inner.close()
            pools, self._sni_inner = list(self._sni_inner.values()), {}
            for pool in pools:
                pool.close()
        finally:
            if self._owns_monitor:
                self.monitor.release_blocking(self._checks)
            else:
                for check in self._checks:
                    check.remove_monitors([self.monitor])

    def __enter__(self) -> PinnedSyncTransport:
        self._inner.__enter__()
        return self


class Client(PinnedClientBase, ObservedSync, httpx.Client):
    """An ``httpx.Client`` whose every connection is pin-checked: the sync twin of
    :class:`~pinsdk.AsyncClient`, with the same arguments, guards and errors.

    Thread-safe like ``httpx.Client``: many threads may send requests at once while
    dynamic pins are swapped (each handshake reads the policy in force once). A
    ``transport=`` or ``mounts=`` entry that is not a :class:`PinnedSyncTransport` is
    refused. ``on_pin_failure`` runs in the requesting thread; reports are sent from a
    thread started by the first report. Given :class:`~pinsdk.DynamicPins` that nobody
    started, the client starts their refresher (on a thread of theirs) and stops it at
    :meth:`close`; started ones (``with pins:``) it only uses. :meth:`close` (or the end
    of ``with``) also removes the client's observer from a shared ``SSLContext`` and stops
    the threads it started; clients close in any order.
    """

    _transport_class = PinnedSyncTransport

    def __init__(
        self,
        *,
        pins: PinsArg,
        verify: VerifyTypes = True,
        transport: httpx.BaseTransport | None = None,
        mounts: Mapping[str, httpx.BaseTransport | None] | None = None,
        trust_env: bool = True,
        on_pin_failure: FailureCallback | None = None,
        reporting: Reporting | None = None,
        **kwargs: Any,
    ) -> None:
        from ._version import __version__

        monitor = _sync_monitor(on_pin_failure, reporting, __version__)
        self._pin_setup(pins, verify, transport, mounts, trust_env, monitor, kwargs)
        super().__init__(
            verify=self._pinned_context,
            transport=transport,
            mounts=mounts,
            trust_env=trust_env,
            **kwargs,
        )
        self._refuse_unpinned_built()
        # Dynamic pins: join their sync use (starting it if nobody did), left at close.
        self._sync_pins: Any = None
        self._close_lock = threading.Lock()
        acquire = getattr(self.pins, "_acquire_sync", None)
        if acquire is not None:
            try:
                acquire()
            except BaseException:
                self.close()  # leave nothing on a shared context
                raise
            self._sync_pins = self.pins

    def _init_transport(
        self,
        verify: Any = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = httpx._config.DEFAULT_LIMITS,
        transport: httpx.BaseTransport | None = None,
    ) -> httpx.BaseTransport:
        if transport is not None:
            return transport
        return self._pinned_transport(http1, http2, limits, trust_env)  # type: ignore[no-any-return]

    def _init_proxy_transport(
        self,
        proxy: httpx.Proxy,
        verify: Any = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = httpx._config.DEFAULT_LIMITS,
    ) -> httpx.BaseTransport:
        proxy = self._pinned_proxy(proxy, trust_env)
        return self._pinned_transport(http1, http2, limits, trust_env, proxy=proxy)  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close the transports, leave the pin check of a shared ``SSLContext``, stop the
        report sender and leave the sync use of dynamic pins. Safe in any order."""
        try:
            super().close()
        finally:
            self.monitor.release_blocking([self._check])
            with self._close_lock:
                pins, self._sync_pins = self._sync_pins, None
            if pins is not None:
                pins._release_sync()
