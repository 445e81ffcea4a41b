"""``pinsdk.AsyncClient``: ``httpx.AsyncClient`` with pinning that nothing bypasses."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from ._core.errors import PinConfigError
from ._core.policy import PinPolicy
from ._reporting import FailureCallback, Monitor, Observed, Reporting
from ._tls import PinCheck, PinsArg, VerifyTypes, as_source, pin_check_of, pinned_ssl_context
from ._transport import PinnedTransport, pinned_proxy_context

__all__ = ["AsyncClient", "PinnedClientBase"]


def _same_pins(a: object, b: object) -> bool:
    return a is b or (isinstance(a, PinPolicy) and isinstance(b, PinPolicy) and a == b)


class PinnedClientBase:
    """What AsyncClient and Client share: the pin source, the observer, one pinned context
    for every transport, and the refusal of transports that would bypass pinning."""

    # PinnedTransport or PinnedSyncTransport: the only transports a client accepts.
    _transport_class: ClassVar[type[Any]]
    _transport: Any
    _mounts: Any

    def _pin_setup(
        self,
        pins: PinsArg,
        verify: VerifyTypes,
        transport: object,
        mounts: Mapping[str, object] | None,
        trust_env: bool,
        monitor: Monitor,
        kwargs: Mapping[str, Any],
    ) -> None:
        self.pins = as_source(pins)
        self.monitor = monitor
        wanted = self._transport_class.__name__
        if transport is not None and not isinstance(transport, self._transport_class):
            raise PinConfigError(
                f"transport={type(transport).__name__} would bypass pinning; pass a "
                f"pinsdk.{wanted}, or leave transport unset"
            )
        for pattern, mounted in (mounts or {}).items():
            if mounted is not None and not isinstance(mounted, self._transport_class):
                raise PinConfigError(
                    f"mounts[{pattern!r}] is {type(mounted).__name__}, which would bypass "
                    f"pinning; mount pinsdk.{wanted} instances only"
                )
        if transport is not None and verify is not True:
            raise PinConfigError(
                "verify= and transport= together: the transport's own verify= decides the "
                "trust of its connections, so this one would be ignored; pass verify= to "
                f"pinsdk.{wanted}(...) instead"
            )
        for name, given in [("transport", transport), *(mounts or {}).items()]:
            if isinstance(given, self._transport_class) and not _same_pins(given.pins, self.pins):
                where = "transport=" if name == "transport" else f"mounts[{name!r}]"
                raise PinConfigError(
                    f"pins= and the pins of the {wanted} given as {where} differ: the "
                    "transport's would be enforced, not these. Give both the same PinPolicy "
                    "or DynamicPins object"
                )
        if kwargs.get("cert") is not None:
            raise PinConfigError(
                "cert= is deprecated by httpx; load the client certificate on an "
                "ssl.SSLContext and pass it as verify="
            )
        # One context for every transport of this client: loading the trust store once.
        self._pinned_context: ssl.SSLContext = pinned_ssl_context(
            self.pins, verify=verify, trust_env=trust_env, monitors=[self.monitor]
        )
        check = pin_check_of(self._pinned_context)
        assert check is not None
        self._check: PinCheck = check
        self._verify = verify
        # The context of https:// proxies' own TLS, built on first use and shared by
        # every proxy transport of this client (one trust store load).
        self._proxy_context: ssl.SSLContext | None = None

    def _refuse_unpinned_built(self) -> None:
        # Defence in depth: fail closed if a future httpx builds transports another way.
        for candidate in [self._transport, *self._mounts.values()]:
            if candidate is not None and not isinstance(candidate, self._transport_class):
                raise PinConfigError(
                    f"httpx built an unpinned {type(candidate).__name__}; this httpx "
                    f"version ({httpx.__version__}) is not supported by pinsdk"
                )

    def _pinned_proxy(self, proxy: httpx.Proxy, trust_env: bool) -> httpx.Proxy:
        if proxy.url.scheme == "https" and proxy.ssl_context is None:
            if self._proxy_context is None:
                self._proxy_context = pinned_proxy_context(
                    self._check, verify=self._verify, trust_env=trust_env
                )
            proxy = httpx.Proxy(
                proxy.url, ssl_context=self._proxy_context, auth=proxy.auth, headers=proxy.headers
            )
        return proxy

    def _pinned_transport(
        self,
        http1: bool,
        http2: bool,
        limits: httpx.Limits,
        trust_env: bool,
        proxy: httpx.Proxy | None = None,
    ) -> Any:
        # Every transport of this client shares its context, pin source and observer.
        return self._transport_class(
            self.pins,
            verify=self._pinned_context,
            http1=http1,
            http2=http2,
            limits=limits,
            trust_env=trust_env,
            proxy=proxy,
            _monitor=self.monitor,
        )


class AsyncClient(PinnedClientBase, Observed, httpx.AsyncClient):
    """An ``httpx.AsyncClient`` whose every connection is pin-checked.

    ``pins`` is the pin source: a :class:`~pinsdk.PinPolicy` (static pins) or a
    :class:`~pinsdk.DynamicPins` (signed updates; enter it with ``async with``), read at every
    new TLS connection. ``verify`` is the trust the chain must first pass before its pins are
    checked, as in httpx: ``True`` (the default store; ``SSL_CERT_FILE``/``SSL_CERT_DIR`` with
    ``trust_env``), a CA bundle path, or an ``ssl.SSLContext`` (``False`` is refused: a pin
    check needs a verified chain). With ``transport=``, that transport's own ``pins`` and
    ``verify`` decide: it must have been given the same ``pins`` object, and ``verify=`` is
    refused here (pass it to the transport), rather than one being silently ignored.

    Every httpx argument works (``proxy=``, environment proxies with
    ``trust_env=True``, ``http2=``, ``limits=``, ``mounts=`` …): each transport the
    client builds, the proxy ones included, carries the pin check, and an ``https://``
    proxy's own TLS is verified with ``verify``'s trust and pin-checked. A ``transport=`` or
    ``mounts=`` entry that is not a :class:`PinnedTransport` would bypass pinning and
    is refused with a ``ValueError`` (:class:`~pinsdk.PinConfigError`).

    ``on_pin_failure`` and ``reporting`` work as for :class:`PinnedTransport`; reports
    are sent by a background task that starts with the first report and stops at
    :meth:`aclose` (or the end of ``async with``), which also removes the client's
    observer from the pin check of a shared ``SSLContext``.
    """

    _transport_class = PinnedTransport

    def __init__(
        self,
        *,
        pins: PinsArg,
        verify: VerifyTypes = True,
        transport: httpx.AsyncBaseTransport | None = None,
        mounts: Mapping[str, httpx.AsyncBaseTransport | None] | None = None,
        trust_env: bool = True,
        on_pin_failure: FailureCallback | None = None,
        reporting: Reporting | None = None,
        **kwargs: Any,
    ) -> None:
        from ._version import __version__

        monitor = Monitor(
            on_pin_failure=on_pin_failure,
            reporting=reporting if reporting is not None else Reporting(),
            sdk_version=__version__,
        )
        self._pin_setup(pins, verify, transport, mounts, trust_env, monitor, kwargs)
        super().__init__(
            verify=self._pinned_context,
            transport=transport,
            mounts=mounts,
            trust_env=trust_env,
            **kwargs,
        )
        self._refuse_unpinned_built()

    def _init_transport(
        self,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = httpx._config.DEFAULT_LIMITS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> httpx.AsyncBaseTransport:
        if transport is not None:
            return transport
        return self._pinned_transport(http1, http2, limits, trust_env)  # type: ignore[no-any-return]

    def _init_proxy_transport(
        self,
        proxy: httpx.Proxy,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = httpx._config.DEFAULT_LIMITS,
    ) -> httpx.AsyncBaseTransport:
        proxy = self._pinned_proxy(proxy, trust_env)
        return self._pinned_transport(http1, http2, limits, trust_env, proxy=proxy)  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Close the transports, leave the pin check of a shared ``SSLContext`` and stop
        the report sender. Safe in any order with other clients."""
        try:
            await super().aclose()
        finally:
            await self.monitor.release([self._check])
