"""Other clients on new connections: the pinned context against the same client unpinned,
and the fingerprint checks of aiohttp and urllib3 against theirs (paired, interleaved).

pinsdk's ``pinned_ssl_context`` keeps full chain verification (then checks the pins of
the verified chain); aiohttp's ``Fingerprint`` switches chain verification off and checks
the leaf's certificate hash; urllib3's ``assert_fingerprint`` checks the leaf's hash on
top of whatever verification the context does (here: full).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pinsdk

from .stats import Comparison, compare


def _trust(info: dict[str, Any]) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cadata=info["ca_pem"])
    return ctx


def _pinned(info: dict[str, Any]) -> ssl.SSLContext:
    policy = pinsdk.PinPolicy([pinsdk.DomainPins("127.0.0.1", info["pins"])])
    return pinsdk.pinned_ssl_context(policy, verify=_trust(info))


def _pairs(plain: Callable[[], None], other: Callable[[], None], n: int) -> Comparison:
    for _ in range(max(10, n // 10)):  # warm-up, discarded
        plain()
        other()
    a: list[float] = []
    b: list[float] = []
    gc.collect()
    gc.disable()
    try:
        for i in range(n):
            if i % 100 == 0:
                gc.collect()
            first, second, into = (plain, other, (a, b)) if i % 2 == 0 else (other, plain, (b, a))
            start = time.perf_counter()
            first()
            middle = time.perf_counter()
            second()
            into[0].append(middle - start)
            into[1].append(time.perf_counter() - middle)
    finally:
        gc.enable()
    return compare(a, b)


async def _apairs(
    plain: Callable[[], Awaitable[None]], other: Callable[[], Awaitable[None]], n: int
) -> Comparison:
    for _ in range(max(10, n // 10)):
        await plain()
        await other()
    a: list[float] = []
    b: list[float] = []
    gc.collect()
    gc.disable()
    try:
        for i in range(n):
            if i % 100 == 0:
                gc.collect()
            first, second, into = (plain, other, (a, b)) if i % 2 == 0 else (other, plain, (b, a))
            start = time.perf_counter()
            await first()
            middle = time.perf_counter()
            await second()
            into[0].append(middle - start)
            into[1].append(time.perf_counter() - middle)
    finally:
        gc.enable()
    return compare(a, b)


def httpx_sync(info: dict[str, Any], n: int) -> dict[str, Comparison]:
    """httpx.Client with the pinned context, and pinsdk.Client, each against httpx.Client."""
    import httpx

    url = f"https://127.0.0.1:{info['h1']}/"
    fresh = httpx.Limits(max_keepalive_connections=0)
    policy = pinsdk.PinPolicy([pinsdk.DomainPins("127.0.0.1", info["pins"])])
    with (
        httpx.Client(verify=_trust(info), limits=fresh) as plain,
        httpx.Client(verify=_pinned(info), limits=fresh) as pinned,
        pinsdk.Client(pins=policy, verify=_trust(info), limits=fresh) as client,
    ):
        return {
            "httpx.Client, pinned context": _pairs(
                lambda: _ok(plain.get(url)), lambda: _ok(pinned.get(url)), n
            ),
            "pinsdk.Client (sync), pinned context": _pairs(
                lambda: _ok(plain.get(url)), lambda: _ok(client.get(url)), n
            ),
        }


def requests_(info: dict[str, Any], n: int) -> Comparison:
    """requests with an adapter on the pinned context against one on a plain context."""
    import requests
    from requests.adapters import HTTPAdapter

    class ContextAdapter(HTTPAdapter):
        def __init__(self, context: ssl.SSLContext) -> None:
            self.context = context
            super().__init__()

        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["ssl_context"] = self.context
            super().init_poolmanager(*args, **kwargs)

    url = f"https://127.0.0.1:{info['h1']}/"

    def client(context: ssl.SSLContext) -> Callable[[], None]:
        session = requests.Session()
        adapter = ContextAdapter(context)
        session.mount("https://", adapter)

        def get() -> None:
            _ok(session.get(url))
            adapter.poolmanager.clear()  # the next request opens a new connection

        return get

    return _pairs(client(_trust(info)), client(_pinned(info)), n)


def urllib3_(info: dict[str, Any], n: int) -> dict[str, Comparison]:
    """urllib3 on the pinned context, and with assert_fingerprint, each against plain."""
    import urllib3

    url = f"https://127.0.0.1:{info['h1']}/"
    leaf = hashlib.sha256(bytes.fromhex(info["leaf_der_hex"])).hexdigest()

    def client(**kw: Any) -> Callable[[], None]:
        manager = urllib3.PoolManager(**kw)

        def get() -> None:
            _ok(manager.request("GET", url))
            manager.clear()

        return get

    plain = client(ssl_context=_trust(info))
    return {
        "urllib3, pinned context": _pairs(plain, client(ssl_context=_pinned(info)), n),
        "urllib3, assert_fingerprint": _pairs(
            plain, client(ssl_context=_trust(info), assert_fingerprint=leaf), n
        ),
    }


def aiohttp_(info: dict[str, Any], n: int) -> dict[str, Comparison]:
    """aiohttp on the pinned context, and with its Fingerprint, each against plain."""
    import aiohttp

    url = f"https://127.0.0.1:{info['h1']}/"
    leaf = hashlib.sha256(bytes.fromhex(info["leaf_der_hex"])).digest()

    async def run() -> dict[str, Comparison]:
        def session(ssl_arg: Any) -> aiohttp.ClientSession:
            return aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ssl_arg, force_close=True)
            )

        async with (
            session(_trust(info)) as plain,
            session(_pinned(info)) as pinned,
            session(aiohttp.Fingerprint(leaf)) as fingerprint,
        ):

            def get(s: aiohttp.ClientSession) -> Callable[[], Awaitable[None]]:
                async def one() -> None:
                    async with s.get(url) as response:
                        await response.read()
                        if response.status != 200:
                            raise RuntimeError(f"unexpected HTTP {response.status}")

                return one

            return {
                "aiohttp, pinned context": await _apairs(get(plain), get(pinned), n),
                "aiohttp, Fingerprint (no chain verification)": await _apairs(
                    get(plain), get(fingerprint), n
                ),
            }

    return asyncio.run(run())


def _ok(response: Any) -> None:
    status = getattr(response, "status_code", None) or getattr(response, "status", None)
    if status != 200:
        raise RuntimeError(f"unexpected HTTP {status}")


def run(info: dict[str, Any], n: int, say: Callable[[str], None]) -> dict[str, Comparison]:
    out: dict[str, Comparison] = {}
    say("  httpx.Client (sync) with the pinned context, and pinsdk.Client")
    out.update(httpx_sync(info, n))
    say("  requests with the pinned context")
    out["requests, pinned context"] = requests_(info, n)
    say("  urllib3: pinned context, assert_fingerprint")
    out.update(urllib3_(info, n))
    say("  aiohttp: pinned context, Fingerprint")
    out.update(aiohttp_(info, n))
    return out
