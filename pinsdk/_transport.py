"""``PinnedTransport``: an httpx transport whose every TLS connection is pin-checked."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar

import attrs
import httpx

from ._core.errors import PinConfigError
from ._core.events import PinFailure
from ._core.hosts import normalize_host
from ._reporting import Counted, FailureCallback, Monitor, Observed, Reporting
from ._request_errors import PinValidationError, PlaintextRequestError, SNIHostnameError
from ._tls import (
    PinCheck,
    PinsArg,
    PinSource,
    VerifyTypes,
    as_source,
    install_pin_check,
    pin_check_of,
    pinned_ssl_context,
    trust_context,
)

__all__ = ["PinnedBase", "PinnedTransport"]

logger = logging.getLogger("pinsdk")

Heal = Callable[[str, frozenset[str]], Awaitable[bool]]


def _default_port(url: httpx.URL) -> int | None:
    if url.port is not None:
        return url.port
    return {"https": 443, "http": 80}.get(url.scheme)


def pinned_proxy_context(
    check: PinCheck, *, verify: VerifyTypes, trust_env: bool
) -> ssl.SSLContext:
    """A context for an ``https://`` proxy's own TLS: ``verify``'s trust, ``check``'s pins.

    A new context unless ``verify`` is an ``SSLContext`` (which cannot be copied): httpcore
    sets ALPN on a context before each handshake, and a proxy's differs from an origin's.
    """
    context = trust_context(verify, trust_env=trust_env)
    return install_pin_check(context, check.source, check.monitors, check=check)


def pinned_proxy(
    proxy: object,
    check: PinCheck,
    *,
    verify: VerifyTypes,
    trust_env: bool,
) -> object:
    """``proxy`` (a URL or ``httpx.Proxy``) with the pin check on its TLS, if it is an
    ``https://`` proxy: on the user's ``Proxy(ssl_context=...)``, else on a context built
    from ``verify`` (the client's trust, not httpcore's default store). Other proxies
    (``http://``, SOCKS) have no TLS of their own and are returned as is."""
    if isinstance(proxy, (str, httpx.URL)):
        proxy = httpx.Proxy(proxy)
    if not isinstance(proxy, httpx.Proxy) or proxy.url.scheme != "https":
        return proxy  # httpx reports unusable values itself
    try:
        if proxy.ssl_context is not None:
            install_pin_check(proxy.ssl_context, check.source, check.monitors, check=check)
            return proxy
        context = pinned_proxy_context(check, verify=verify, trust_env=trust_env)
    except PinConfigError as exc:
        raise PinConfigError(f"the https proxy {proxy.url}: {exc}") from None
    return httpx.Proxy(proxy.url, ssl_context=context, auth=proxy.auth, headers=proxy.headers)


class PinnedBase(Counted):
    """What the async and the sync pinned transports share: building the pools, the
    plaintext and ``sni_hostname`` guards, and deciding on a failure's port and retry."""

    # httpx.AsyncHTTPTransport or httpx.HTTPTransport: the pools this transport drives.
    _pool_class: ClassVar[Callable[..., Any]]
    _inner: Any
    _sni_inner: dict[str, Any]

    def __init__(
        self,
        pins: PinsArg,
        *,
        verify: VerifyTypes = True,
        http2: bool = False,
        trust_env: bool = True,
        on_pin_failure: FailureCallback | None = None,
        reporting: Reporting | None = None,
        **kwargs: Any,
    ) -> None:
        from ._version import __version__

        # A pinsdk client shares its monitor with the transports it builds (private: not
        # in the signature that help() and the docs show).
        _monitor: Monitor | None = kwargs.pop("_monitor", None)
        self.pins: PinSource = as_source(pins)
        self._owns_monitor = _monitor is None
        self.monitor = _monitor or self._own_monitor(on_pin_failure, reporting, __version__)
        self.ssl_context = pinned_ssl_context(
            self.pins, verify=verify, trust_env=trust_env, monitors=[self.monitor]
        )
        check = pin_check_of(self.ssl_context)
        assert check is not None
        self._check: PinCheck = check
        # Every pin check this transport counts into: emptied of its monitor at close.
        self._checks: list[PinCheck] = [check]
        self._proxy_host: str | None = None
        self._proxy_port: int | None = None
        proxy = kwargs.get("proxy")
        self._proxied = proxy is not None
        if proxy is not None:
            kwargs["proxy"] = proxy = pinned_proxy(proxy, check, verify=verify, trust_env=trust_env)
            if isinstance(proxy, httpx.Proxy) and proxy.url.scheme == "https":
                self._proxy_host = normalize_host(proxy.url.host)
                self._proxy_port = _default_port(proxy.url)
                proxy_check = None if proxy.ssl_context is None else pin_check_of(proxy.ssl_context)
                if proxy_check is not None and proxy_check is not check:
                    self._checks.append(proxy_check)
        self._inner_kwargs: dict[str, Any] = {
            "verify": self.ssl_context,
            "http2": http2,
            "trust_env": trust_env,
            **kwargs,
        }
        self._inner = self._pool_class(**self._inner_kwargs)
        # DynamicPins used without being entered: said once, at the first request.
        self._idle_hint: Callable[[], None] | None = getattr(self.pins, "warn_if_idle", None)
        # Requests naming another TLS server name (sni_hostname) than their URL host:
        # one connection pool per name, since httpcore pools by URL origin alone.
        self._sni_inner = {}

    def _own_monitor(
        self, on_pin_failure: FailureCallback | None, reporting: Reporting | None, version: str
    ) -> Monitor:
        return Monitor(
            on_pin_failure=on_pin_failure,
            reporting=reporting if reporting is not None else Reporting(),
            sdk_version=version,
        )

    def _inner_for_sni(self, request: httpx.Request) -> Any:
        """The pool for a request with an ``sni_hostname`` extension.

        The TLS layer checks the pins of the name it sends, while httpcore reuses a
        connection for any request to the same URL origin: a connection checked for
        another name must never carry a request that did not ask for that name, and a
        request to a URL host with enforced pins must be checked for that host."""
        sni = request.extensions["sni_hostname"]
        if sni is None:
            return self._inner
        if self._proxied:
            # httpcore hands the request's extensions to the proxy connection too: the
            # proxy's own TLS would send, and be pin-checked under, this name.
            raise SNIHostnameError(
                f"refusing the request to {request.url.host} with sni_hostname {sni!r}: it "
                "goes through a proxy, whose own TLS handshake would then be checked under "
                f"{sni!r} instead of the proxy's name; leave sni_hostname unset",
                request=request,
            )
        try:
            name = normalize_host(sni)
        except PinConfigError as exc:
            raise SNIHostnameError(
                f"refusing the request: sni_hostname {sni!r} is not a valid host name ({exc})",
                request=request,
            ) from None
        url_host = normalize_host(request.url.host)
        if name == url_host:
            return self._inner  # the name the pool key stands for: nothing to keep apart
        domains = self.pins.current.match_normalized(url_host)
        if any(d.mode == "enforce" for d in domains):
            raise SNIHostnameError(
                f"refusing the request to {request.url.host} with sni_hostname {sni!r}: "
                f"{request.url.host} has enforced pins, and the TLS layer checks the pins of "
                "the name it sends; leave sni_hostname unset or equal to the URL host",
                request=request,
            )
        if domains:
            logger.warning(
                "request to report-mode pinned host %s with sni_hostname %r: the pins of %s "
                "are not checked on this connection",
                request.url.host,
                sni,
                request.url.host,
            )
        inner = self._sni_inner.get(name)
        if inner is None:
            inner = self._sni_inner[name] = self._pool_class(**self._inner_kwargs)
        return inner

    def _check_plaintext(self, request: httpx.Request) -> None:
        host = normalize_host(request.url.host)
        domains = self.pins.current.match_normalized(host)
        if not domains:
            return
        if any(d.mode == "enforce" for d in domains):
            raise PlaintextRequestError(
                f"refusing plaintext request to {request.url.host}: the host has enforced "
                "pins, which only TLS (https://) can check",
                request=request,
            )
        logger.warning("plaintext request to report-mode pinned host %s", request.url.host)

    def _failure_port(self, request: httpx.Request, exc: PinValidationError) -> int | None:
        """The port of the connection ``exc`` refused: the request's, or the https
        proxy's when the proxy's own TLS was refused."""
        if exc.host == self._proxy_host and exc.host != normalize_host(request.url.host):
            return self._proxy_port
        return _default_port(request.url)

    def _heal_with(self, exc: PinValidationError, name: str) -> Any:
        """The pin source's self-healing method ``name``, if ``exc`` may heal."""
        if not exc.verdict.enforced or not exc.expected_pins:
            return None  # a denied key on an unpinned host, or report mode
        return getattr(self.pins, name, None)  # static pins have none


class PinnedTransport(PinnedBase, Observed, httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` that checks pins on every new TLS connection.

    ``pins`` is a :class:`~pinsdk.PinPolicy` or an object whose ``.current`` is the
    policy in force (read at each handshake). Other keyword arguments are those of
    ``httpx.AsyncHTTPTransport`` (``proxy=``, ``limits=``, ``retries=``, ``uds=`` …).
    With ``proxy=`` the pins apply to the origin and, for an ``https://`` proxy, to the
    proxy's own TLS too, which also uses ``verify``'s trust. Plaintext ``http://``
    requests to a host with enforced pins are refused, and so is an ``sni_hostname``
    extension that differs from the URL host when the URL host has enforced pins; a
    request with another ``sni_hostname`` gets connections of its own, never shared with
    requests that do not name it.

    ``on_pin_failure`` (sync or async) receives a :class:`~pinsdk.PinFailure` for every
    failure; ``reporting`` configures reports to the policy's ``report_uri`` (sent by a
    background task from the first report until :meth:`aclose`). With
    :class:`~pinsdk.DynamicPins`, an enforced failure triggers a rate-limited refresh and,
    if the host's pins changed, one retry on a new connection (safe: no request byte was
    sent).
    """

    _pool_class = httpx.AsyncHTTPTransport
    _inner: httpx.AsyncHTTPTransport
    _sni_inner: dict[str, httpx.AsyncHTTPTransport]

    def handle_async_request(self, request: httpx.Request) -> Coroutine[Any, Any, httpx.Response]:
        """Refuse plaintext to enforced hosts; run the request; dispatch pin failures."""
        # The pin check itself runs inside the handshake. Here, the common case costs a
        # scheme test and a dict probe: when nobody listens for failures (a static policy,
        # no callback, no report_uri), the pool's own coroutine is returned, so the
        # request crosses no frame of ours each time it resumes.
        if request.url.scheme == "http":
            self._check_plaintext(request)
        hint = self._idle_hint
        if hint is not None:
            self._idle_hint = None
            hint()
        inner = self._inner
        if "sni_hostname" in request.extensions:
            inner = self._inner_for_sni(request)
        if self._check.quiet:
            return inner.handle_async_request(request)
        return self._observed(inner, request)

    async def _observed(
        self, inner: httpx.AsyncHTTPTransport, request: httpx.Request
    ) -> httpx.Response:
        try:
            response = await inner.handle_async_request(request)
        except PinValidationError as exc:
            return await self._after_failure(inner, request, exc)
        if self._check.unclaimed:  # report-mode failures: rare
            await self._dispatch_reported(request, response)
        return response

    async def _after_failure(
        self, inner: httpx.AsyncHTTPTransport, request: httpx.Request, exc: PinValidationError
    ) -> httpx.Response:
        await self._dispatch(request, exc)
        # Only a refused handshake is safe to retry: a kept-alive connection refused by a
        # new policy may have carried part of this request already.
        if exc.stage != "handshake" or not await self._heal(exc):
            raise exc
        self.monitor.stats.add("self_heal_retries")
        logger.info("pins for %s changed after a refresh; retrying once", exc.host)
        try:
            response = await inner.handle_async_request(request)
        except PinValidationError as again:
            await self._dispatch(request, again)
            raise
        if self._check.unclaimed:
            await self._dispatch_reported(request, response)
        return response

    async def _dispatch(self, request: httpx.Request, exc: PinValidationError) -> None:
        if exc.failure is not None:
            port = self._failure_port(request, exc)
            await self._dispatch_all([attrs.evolve(exc.failure, port=port)])

    async def _dispatch_reported(self, request: httpx.Request, response: httpx.Response) -> None:
        stream = response.extensions.get("network_stream")
        ssl_object = None if stream is None else stream.get_extra_info("ssl_object")
        mine, orphans = self._check.claim(ssl_object)
        port = _default_port(request.url)
        await self._dispatch_all([attrs.evolve(f, port=port) for f in mine] + orphans)

    async def _dispatch_all(self, failures: list[PinFailure]) -> None:
        for failure in failures:
            for monitor in self._check.monitors:
                if isinstance(monitor, Monitor):
                    await monitor.dispatch(failure)

    async def _heal(self, exc: PinValidationError) -> bool:
        heal: Heal | None = self._heal_with(exc, "heal")
        if heal is None:
            return False
        try:
            return await heal(exc.host, exc.verdict.expected_pins)
        except Exception:
            logger.exception("self-healing refresh failed (ignored)")
            return False

    async def aclose(self) -> None:
        """Close the connection pools, leave the pin check of a shared ``SSLContext`` and
        stop the report sender. Safe in any order with other clients and transports."""
        try:
            await self._inner.aclose()
            await self._close_sni_pools()
        finally:
            await self._release()

    async def _close_sni_pools(self) -> None:
        pools, self._sni_inner = list(self._sni_inner.values()), {}
        for pool in pools:
            await pool.aclose()

    async def _release(self) -> None:
        # Inside an AsyncClient the monitor is the client's: the client stops its sender.
        if self._owns_monitor:
            await self.monitor.release(self._checks)
        else:
            for check in self._checks:
                check.remove_monitors([self.monitor])

    async def __aenter__(self) -> PinnedTransport:
        await self._inner.__aenter__()
        return self
