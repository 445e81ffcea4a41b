"""Fetching the update URL: the one piece of the refresher that does network I/O.

The refresher asks a :class:`Fetcher` for a response and judges it with pure code
(:mod:`pinsdk._core.response`). The default fetcher is a plain ``httpx.AsyncClient`` on the
refresher's pinned SSLContext: the update host is pin-checked (a document may pin it), and
nothing registers observers or self-heals behind the user's back. Tests and apps with
their own transport inject another (python-tuf's ``FetcherInterface`` is the model).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

import httpx

__all__ = ["FetchedResponse", "Fetcher", "HttpxFetcher"]


class FetchedResponse(Protocol):
    """What the refresher reads of a response: status, headers, the raw body."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Case-insensitive, or with lower-case keys."""
        ...

    def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as sent (not decoded: the refresher decodes under its size cap)."""
        ...


class Fetcher(Protocol):
    """Opens a GET of ``url`` with ``headers``; any exception is a failed fetch."""

    def stream(
        self, url: str, headers: Mapping[str, str]
    ) -> AbstractAsyncContextManager[FetchedResponse]: ...


class HttpxFetcher:
    """The default fetcher: one plain httpx client per fetch, on a pinned context, no
    redirects (an update URL that moves is a failure, not a hop to another host)."""

    def __init__(self, ssl_context: ssl.SSLContext, *, timeout: float, trust_env: bool) -> None:
        self.ssl_context = ssl_context
        self.timeout = timeout
        self.trust_env = trust_env

    @asynccontextmanager
    async def stream(self, url: str, headers: Mapping[str, str]) -> AsyncIterator[FetchedResponse]:
        """Open the response; the client closes with it."""
        async with (
            httpx.AsyncClient(
                verify=self.ssl_context,
                timeout=self.timeout,
                follow_redirects=False,
                trust_env=self.trust_env,
            ) as client,
            client.stream("GET", url, headers=dict(headers)) as response,
        ):
            yield response
