"""Other clients on new connections: the pinned context against the same client unpinned,
and the fingerprint checks of aiohttp and urllib3 against theirs (paired, interleaved).

pinsdk's ``pinned_ssl_context`` keeps full chain verification (then checks the pins of
the verified chain); aiohttp's ``Fingerprint`` switches chain verification off and checks
the leaf's certificate hash (its session here is never given the CA, and connects);
urllib3's ``assert_fingerprint`` checks the leaf's hash on top of whatever verification
the context does (here: full).

Each client runs in rounds: one request of every variant (the plain client first in the
list), in an order that cycles through every permutation, so that no variant is always
first, last or next to the same one. A variant is compared with the plain request of the
same round. The stage has a time budget instead of a count of rounds, shared among the
clients by their number of variants: a client stops early (after a third of its share)
once the intervals of its judged variants are within ±:data:`TARGET` and hands the time
it saved to the clients after it. A quiet machine then finishes sooner; a busy one runs
the whole budget and reports the intervals it reached.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import itertools
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

import pinsdk

from .requests import _trust
from .stats import Comparison, compare

# A variant: one request on a new connection, sync (returns None) or async (awaitable).
Variant = Callable[[], Awaitable[None] | None]
Say = Callable[[str], None]

STAGE_SECONDS = 180.0  # the whole stage, shared among the clients
TARGET = 0.003  # half-width of the judged intervals at which a client may stop early
LEAST_SHARE = 1 / 3  # of its share of the budget, a client runs at least this much
LEAST_ROUNDS = 300  # even on a very busy machine
WARMUP_ROUNDS = 60  # discarded: first handshakes, caches, lazily built pin indexes
_BATCH = 120  # rounds between two (untimed) garbage collections; a multiple of 3! and 2!
_CHECK_EVERY = 10.0  # seconds between progress lines (and precision checks)

# What each variant checks, printed next to its figure.
CHECKS = {
    "httpx.Client, pinned context": "chain verified, then the pins of the verified chain",
    "pinsdk.Client (sync)": "chain verified, then the pins of the verified chain",
    "requests, pinned context": "chain verified, then the pins of the verified chain",
    "urllib3, pinned context": "chain verified, then the pins of the verified chain",
    "urllib3, assert_fingerprint": "chain verified, then the leaf certificate's SHA-256",
    "aiohttp, pinned context": "chain verified, then the pins of the verified chain",
    "aiohttp, Fingerprint (no chain verification)": (
        "leaf certificate's SHA-256 only: chain NOT verified (connects without the CA)"
    ),
}
# The variants that use pinsdk, judged against issue 17's goal; the fingerprint checks
# are there for comparison only.
JUDGED = frozenset(
    {
        "httpx.Client, pinned context",
        "pinsdk.Client (sync)",
        "requests, pinned context",
        "urllib3, pinned context",
        "aiohttp, pinned context",
    }
)


def _pinned(info: dict[str, Any]) -> ssl.SSLContext:
    policy = pinsdk.PinPolicy([pinsdk.DomainPins("127.0.0.1", info["pins"])])
    return pinsdk.pinned_ssl_context(policy, verify=_trust(info))


@attrs.frozen
class Measured:
    """One variant against the plain client: latency, and the client's CPU time."""

    latency: Comparison
    cpu: Comparison

    def as_dict(self) -> dict[str, Any]:
        return {**self.latency.as_dict(), "cpu": self.cpu.as_dict()}

    @property
    def noise(self) -> float:
        # Either figure can settle the goal (see __main__.judge): the narrower one counts.
        return min(self.latency.noise, self.cpu.noise)


async def _rounds(
    client: str,
    variants: dict[str, Variant],
    seconds: float,
    say: Say,
    settle: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, Measured]:
    """Every variant after the first against the first (the plain client), round by round,
    for ``seconds`` at most (and :data:`LEAST_ROUNDS` rounds at least); ``settle``, if
    given, runs untimed after each request (to finish what it left running)."""
    calls = list(variants.values())
    orders = list(itertools.permutations(range(len(calls))))
    judged = [name for name in list(variants)[1:] if name in JUDGED]
    # Per variant, the latency and the CPU time of this thread (which runs the client,
    # its event loop and the pin check) of each request.
    wall: list[list[float]] = [[] for _ in calls]
    cpu: list[list[float]] = [[] for _ in calls]

    async def one_round(i: int) -> None:
        for k in orders[i % len(orders)]:
            start, start_cpu = time.perf_counter(), time.thread_time()
            pending = calls[k]()
            if pending is not None:
                await pending
            wall[k].append(time.perf_counter() - start)
            cpu[k].append(time.thread_time() - start_cpu)
            if settle is not None:
                await settle()

    def measured(resamples: int = 1000) -> dict[str, Measured]:
        return {
            name: Measured(
                compare(wall[0], wall[k], resamples=resamples),
                compare(cpu[0], cpu[k], resamples=resamples),
            )
            for k, name in enumerate(variants)
            if k > 0
        }

    for i in range(WARMUP_ROUNDS):
        await one_round(i)
    for column in (*wall, *cpu):
        column.clear()  # the warm-up is discarded
    started = time.perf_counter()
    check_at = started + _CHECK_EVERY
    # As timeit does, the collector is paused while requests are timed (a collection
    # would land on whichever request happens to run) and run between batches.
    gc.collect()
    gc.disable()
    try:
        i = 0
        while True:
            # Decided between whole batches only: every order then ran equally often.
            if i % _BATCH == 0:
                gc.collect()
                elapsed = time.perf_counter() - started
                if i >= LEAST_ROUNDS and elapsed >= seconds:
                    break
                if time.perf_counter() >= check_at:
                    check_at += _CHECK_EVERY
                    # A quick bootstrap: precise enough to decide whether to go on.
                    so_far = measured(resamples=200)
                    noise = max((so_far[name].noise for name in judged), default=0.0)
                    say(f"    {client}: {i:,} rounds, {elapsed:.0f} s, intervals ±{noise:.2%}")
                    if i >= LEAST_ROUNDS and elapsed >= seconds * LEAST_SHARE and noise <= TARGET:
                        break
            await one_round(i)
            i += 1
    finally:
        gc.enable()
    out = measured()
    for name, m in out.items():
        say(
            f"    {name}: latency {_interval(m.latency)}, client CPU {_interval(m.cpu)}, "
            f"{m.latency.n:,} rounds"
        )
    return out


def _interval(c: Comparison) -> str:
    return f"{c.ratio:.4f} [{c.ci_low:.4f}, {c.ci_high:.4f}]"


def httpx_sync(info: dict[str, Any], seconds: float, say: Say) -> dict[str, Measured]:
    """httpx.Client with the pinned context, and pinsdk.Client, against httpx.Client."""
    import httpx

    url = f"https://127.0.0.1:{info['h1']}/"
    fresh = httpx.Limits(max_keepalive_connections=0)
    policy = pinsdk.PinPolicy([pinsdk.DomainPins("127.0.0.1", info["pins"])])
    with (
        httpx.Client(verify=_trust(info), limits=fresh) as plain,
        httpx.Client(verify=_pinned(info), limits=fresh) as pinned,
        pinsdk.Client(pins=policy, verify=_trust(info), limits=fresh) as client,
    ):
        variants: dict[str, Variant] = {
            "httpx.Client": lambda: _ok(plain.get(url)),
            "httpx.Client, pinned context": lambda: _ok(pinned.get(url)),
            "pinsdk.Client (sync)": lambda: _ok(client.get(url)),
        }
        out = asyncio.run(_rounds("httpx.Client", variants, seconds, say))
        if client.stats()["handshakes_passed"] < out["pinsdk.Client (sync)"].latency.n:
            raise RuntimeError(f"pinsdk.Client did not check every connection: {client.stats()}")
        return out


def requests_(info: dict[str, Any], seconds: float, say: Say) -> dict[str, Measured]:
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

        def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
            # The context carries the trust. Left alone, requests names a CA bundle as
            # the pool's ca_certs (REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE if set, else
            # certifi's) and urllib3 loads it into the context on every new connection:
            # 25-40 ms a connection in both arms, which swamped the TLS cost measured.
            super().cert_verify(conn, url, verify, cert)
            if verify is not False:
                conn.ca_certs = conn.ca_cert_dir = None

    url = f"https://127.0.0.1:{info['h1']}/"

    def client(context: ssl.SSLContext) -> Variant:
        session = requests.Session()
        adapter = ContextAdapter(context)
        session.mount("https://", adapter)

        def get() -> None:
            _ok(session.get(url))
            adapter.poolmanager.clear()  # the next request opens a new connection

        return get

    variants = {"requests": client(_trust(info)), "requests, pinned context": client(_pinned(info))}
    return asyncio.run(_rounds("requests", variants, seconds, say))


def urllib3_(info: dict[str, Any], seconds: float, say: Say) -> dict[str, Measured]:
    """urllib3 on the pinned context, and with assert_fingerprint, against plain."""
    import urllib3

    url = f"https://127.0.0.1:{info['h1']}/"
    leaf = hashlib.sha256(bytes.fromhex(info["leaf_der_hex"])).hexdigest()

    def client(**kw: Any) -> Variant:
        manager = urllib3.PoolManager(**kw)

        def get() -> None:
            _ok(manager.request("GET", url))
            manager.clear()

        return get

    variants = {
        "urllib3": client(ssl_context=_trust(info)),
        "urllib3, pinned context": client(ssl_context=_pinned(info)),
        "urllib3, assert_fingerprint": client(ssl_context=_trust(info), assert_fingerprint=leaf),
    }
    return asyncio.run(_rounds("urllib3", variants, seconds, say))


def aiohttp_(info: dict[str, Any], seconds: float, say: Say) -> dict[str, Measured]:
    """aiohttp on the pinned context, and with its Fingerprint, against plain."""
    import aiohttp

    url = f"https://127.0.0.1:{info['h1']}/"
    leaf = hashlib.sha256(bytes.fromhex(info["leaf_der_hex"])).digest()

    async def run() -> dict[str, Measured]:
        # aiohttp closes a connection (force_close) by starting the TLS shutdown, which
        # completes in the background: left alone it would land in the next request's
        # time, whichever variant that is. Each request waits for it, untimed.
        closing: list[asyncio.Future[None]] = []

        async def settle() -> None:
            pending, closing[:] = list(closing), []
            await asyncio.wait_for(asyncio.gather(*pending), timeout=10)

        class Connector(aiohttp.TCPConnector):
            async def _create_connection(self, *args: Any) -> Any:
                protocol = await super()._create_connection(*args)
                if protocol.closed is not None:
                    closing.append(protocol.closed)
                return protocol

        def session(ssl_arg: Any) -> aiohttp.ClientSession:
            return aiohttp.ClientSession(connector=Connector(ssl=ssl_arg, force_close=True))

        async with (
            session(_trust(info)) as plain,
            session(_pinned(info)) as pinned,
            # Never given the CA: that it connects shows the chain goes unverified.
            session(aiohttp.Fingerprint(leaf)) as fingerprint,
        ):

            def get(s: aiohttp.ClientSession) -> Variant:
                async def one() -> None:
                    async with s.get(url) as response:
                        await response.read()
                        _ok(response)

                return one

            variants = {
                "aiohttp": get(plain),
                "aiohttp, pinned context": get(pinned),
                "aiohttp, Fingerprint (no chain verification)": get(fingerprint),
            }
            return await _rounds("aiohttp", variants, seconds, say, settle)

    return asyncio.run(run())


def _ok(response: Any) -> None:
    status = getattr(response, "status_code", None) or getattr(response, "status", None)
    if status != 200:
        raise RuntimeError(f"unexpected HTTP {status}")


def run(info: dict[str, Any], seconds: float, say: Say) -> dict[str, Measured]:
    """Every client, sharing ``seconds`` by their number of variants (the time a client
    does not use goes to the ones after it)."""
    stages = (
        ("httpx.Client (sync): pinned context, and pinsdk.Client", httpx_sync, 3),
        ("requests: pinned context", requests_, 2),
        ("urllib3: pinned context, assert_fingerprint", urllib3_, 3),
        ("aiohttp: pinned context, Fingerprint", aiohttp_, 3),
    )
    out: dict[str, Measured] = {}
    deadline = time.perf_counter() + seconds
    weights = sum(count for *_, count in stages)
    for name, stage, count in stages:
        share = max(0.0, deadline - time.perf_counter()) * count / weights
        weights -= count
        say(f"  {name} (each against the same client unpinned), up to {share:.0f} s")
        out.update(stage(info, share, say))
    return out
