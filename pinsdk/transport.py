"""``PinnedTransport``: an httpx transport whose every TLS connection is pin-checked."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any

import attrs
import httpx

from .events import PinFailure
from .hosts import fast_normalize
from .reporting import FailureCallback, Monitor, MonitorOwner, Reporting
from .request_errors import PinValidationError, PlaintextRequestError
from .sslhook import (
    PinCheck,
    PinsArg,
    PinSource,
    VerifyTypes,
    as_source,
    pin_check_of,
    pinned_ssl_context,
)

__all__ = ["PinnedTransport"]

logger = logging.getLogger("pinsdk")

Heal = Callable[[str, frozenset[str]], Awaitable[bool]]


def _default_port(url: httpx.URL) -> int | None:
    if url.port is not None:
        return url.port
    return {"https": 443, "http": 80}.get(url.scheme)


class PinnedTransport(MonitorOwner, httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` that checks pins on every new TLS connection.

    ``pins`` is a :class:`~pinsdk.PinPolicy` or an object whose ``.current`` is the
    policy in force (read at each handshake). Other keyword arguments are those of
    ``httpx.AsyncHTTPTransport`` (``proxy=``, ``limits=``, ``retries=``, ``uds=`` …);
    with ``proxy=`` the pins apply to the origin, never to the proxy. Plaintext
    ``http://`` requests to a host with enforced pins are refused.

    ``on_pin_failure`` (sync or async) receives a :class:`~pinsdk.PinFailure` for every
    failure; ``reporting`` configures reports to the policy's ``report_uri`` (sent by a
    background task while the transport is open). With :class:`~pinsdk.DynamicPins`, an
    enforced failure triggers a rate-limited refresh and, if the host's pins changed, one
    retry on a new connection (safe: no request byte was sent).
    """

    def __init__(
        self,
        pins: PinsArg,
        *,
        verify: VerifyTypes = True,
        http2: bool = False,
        trust_env: bool = True,
        on_pin_failure: FailureCallback | None = None,
        reporting: Reporting | None = None,
        _monitor: Monitor | None = None,
        **kwargs: Any,
    ) -> None:
        from . import __version__

        self.pins: PinSource = as_source(pins)
        self._owns_monitor = _monitor is None
        self.monitor = _monitor or Monitor(
            on_pin_failure=on_pin_failure,
            reporting=reporting if reporting is not None else Reporting(),
            sdk_version=__version__,
        )
        self.ssl_context = pinned_ssl_context(
            self.pins, verify=verify, trust_env=trust_env, monitors=[self.monitor]
        )
        check = pin_check_of(self.ssl_context)
        assert check is not None
        self._check: PinCheck = check
        self._inner = httpx.AsyncHTTPTransport(
            verify=self.ssl_context, http2=http2, trust_env=trust_env, **kwargs
        )

    def handle_async_request(self, request: httpx.Request) -> Coroutine[Any, Any, httpx.Response]:
        """Refuse plaintext to enforced hosts; run the request; dispatch pin failures."""
        # The pin check itself runs inside the handshake. Here, the common case costs a
        # scheme test: when nobody listens for failures (a static policy, no callback, no
        # report_uri), the pool's own coroutine is returned, so the request crosses no
        # frame of ours each time it resumes.
        if request.url.scheme == "http":
            self._check_plaintext(request)
        if self._check.quiet:
            return self._inner.handle_async_request(request)
        return self._observed(request)

    async def _observed(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await self._inner.handle_async_request(request)
        except PinValidationError as exc:
            return await self._after_failure(request, exc)
        if self._check.unclaimed:  # report-mode failures: rare
            await self._dispatch_reported(request, response)
        return response

    async def _after_failure(
        self, request: httpx.Request, exc: PinValidationError
    ) -> httpx.Response:
        await self._dispatch(request, exc)
        if not await self._heal(exc):
            raise exc
        self.monitor.stats.add("self_heal_retries")
        logger.info("pins for %s changed after a refresh; retrying once", exc.host)
        try:
            response = await self._inner.handle_async_request(request)
        except PinValidationError as again:
            await self._dispatch(request, again)
            raise
        if self._check.unclaimed:
            await self._dispatch_reported(request, response)
        return response

    async def _dispatch(self, request: httpx.Request, exc: PinValidationError) -> None:
        if exc.failure is not None:
            await self._dispatch_all([attrs.evolve(exc.failure, port=_default_port(request.url))])

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
        heal: Heal | None = getattr(self.pins, "heal", None)
        if heal is None or not exc.verdict.enforced or not exc.expected_pins:
            return False  # static pins, a denied key on an unpinned host, or report mode
        try:
            return await heal(exc.host, exc.expected_pins)
        except Exception:
            logger.exception("self-healing refresh failed (ignored)")
            return False

    def _check_plaintext(self, request: httpx.Request) -> None:
        host = fast_normalize(request.url.host)
        domains = self.pins.current.match_fast(host)
        if not domains:
            return
        if any(d.mode == "enforce" for d in domains):
            raise PlaintextRequestError(
                f"refusing plaintext request to {request.url.host}: the host has enforced "
                "pins, which only TLS (https://) can check",
                request=request,
            )
        logger.warning("plaintext request to report-mode pinned host %s", request.url.host)

    async def aclose(self) -> None:
        """Close the connection pool (and stop the report sender if it runs)."""
        await self._inner.aclose()
        await self._stop_reporter()

    async def __aenter__(self) -> PinnedTransport:
        await self._inner.__aenter__()
        if self._owns_monitor:  # inside an AsyncClient, the client runs the sender
            await self._start_reporter()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self._stop_reporter()
        await self._inner.__aexit__(exc_type, exc_value, traceback)
