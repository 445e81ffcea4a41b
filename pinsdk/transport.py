"""``PinnedTransport``: an httpx transport whose every TLS connection is pin-checked."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

import httpx

from .hosts import fast_normalize
from .request_errors import PlaintextRequestError
from .sslhook import PinsArg, PinSource, VerifyTypes, as_source, pinned_ssl_context

__all__ = ["PinnedTransport"]

logger = logging.getLogger("pinsdk")


class PinnedTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` that checks pins on every new TLS connection.

    ``pins`` is a :class:`~pinsdk.PinPolicy` or an object whose ``.current`` is the
    policy in force (read at each handshake). Other keyword arguments are those of
    ``httpx.AsyncHTTPTransport`` (``proxy=``, ``limits=``, ``retries=``, ``uds=`` …);
    with ``proxy=`` the pins apply to the origin, never to the proxy. Plaintext
    ``http://`` requests to a host with enforced pins are refused.
    """

    def __init__(
        self,
        pins: PinsArg,
        *,
        verify: VerifyTypes = True,
        http2: bool = False,
        trust_env: bool = True,
        **kwargs: Any,
    ) -> None:
        self.pins: PinSource = as_source(pins)
        self.ssl_context = pinned_ssl_context(self.pins, verify=verify, trust_env=trust_env)
        self._inner = httpx.AsyncHTTPTransport(
            verify=self.ssl_context, http2=http2, trust_env=trust_env, **kwargs
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Refuse plaintext requests to enforced hosts, then delegate to httpx."""
        if request.url.scheme == "http":
            self._check_plaintext(request)
        return await self._inner.handle_async_request(request)

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
        """Close the connection pool."""
        await self._inner.aclose()

    async def __aenter__(self) -> PinnedTransport:
        await self._inner.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self._inner.__aexit__(exc_type, exc_value, traceback)
