"""Micro-benchmarks of the hot path: the pin check a handshake runs, and the policy lookup."""

from __future__ import annotations

import base64
import gc
import hashlib
import ssl
import statistics
import time
from collections.abc import Callable
from typing import Any

import trustme

from pinsdk import DomainPins, PinPolicy, _tls
from pinsdk._core.events import Stats
from pinsdk._core.pins import spki_pin

HOST = "api.bench.test"
_KEY_TYPES = {"rsa": (trustme.KeyType.RSA, "RSA-2048"), "ec": (trustme.KeyType.ECDSA, "P-256")}


def _pin(seed: str) -> str:
    return "sha256/" + base64.b64encode(hashlib.sha256(seed.encode()).digest()).decode()


def per_call(fn: Callable[[], object], *, number: int, repeat: int = 7) -> float:
    """Median seconds per call over ``repeat`` timed batches of ``number`` calls."""
    fn()  # warm-up, discarded
    batches = []
    gc.collect()
    gc.disable()  # as timeit does: a collection triggered by earlier work is not this code's cost
    try:
        for _ in range(repeat):
            start = time.perf_counter()
            for _ in range(number):
                fn()
            batches.append((time.perf_counter() - start) / number)
    finally:
        gc.enable()
    return statistics.median(batches)


def handshake(key_type: str) -> tuple[ssl.SSLObject, str]:
    """A completed client ``SSLObject`` (a real OpenSSL handshake over memory BIOs, as anyio
    drives it) whose verified chain is leaf, intermediate, root; and the root's pin."""
    client_context, server_context, root_pin = contexts(key_type)
    return connect(client_context, server_context), root_pin


def contexts(key_type: str) -> tuple[ssl.SSLContext, ssl.SSLContext, str]:
    """A client context trusting a new root, a server context with a leaf issued by an
    intermediate of that root (for ``HOST``), and the root's pin."""
    kind = _KEY_TYPES[key_type][0]
    root = trustme.CA(key_type=kind)
    leaf = root.create_child_ca(key_type=kind).issue_cert(HOST, key_type=kind)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(server_context)
    client_context = ssl.create_default_context()
    root.configure_trust(client_context)
    return client_context, server_context, spki_pin(root.cert_pem.bytes())


def connect(client_context: ssl.SSLContext, server_context: ssl.SSLContext) -> ssl.SSLObject:
    """A client ``SSLObject`` of ``client_context`` after a completed handshake with a server
    of ``server_context``, both on memory BIOs (as anyio drives them)."""
    bios = [ssl.MemoryBIO() for _ in range(4)]  # client in/out, server in/out
    client = client_context.wrap_bio(bios[0], bios[1], server_hostname=HOST)
    server = server_context.wrap_bio(bios[2], bios[3], server_side=True)
    pending = {client: True, server: True}
    for _ in range(20):  # a TLS 1.3 handshake takes 2-3 round trips
        for side in (client, server):
            if pending[side]:
                try:
                    side.do_handshake()
                    pending[side] = False
                except ssl.SSLWantReadError:
                    pass
        bios[2].write(bios[1].read())
        bios[0].write(bios[3].read())
        if not any(pending.values()):
            return client
    raise RuntimeError("the benchmark handshake did not complete")


class _Counted:
    """An observer as a client installs one: each handshake increments its counters."""

    def __init__(self) -> None:
        self.stats = Stats()


def pin_check() -> list[tuple[str, float]]:
    """``PinCheck`` (what every pinned handshake calls) on a completed handshake whose
    verified chain has 3 certificates: cold (its known-chain memo and the certificate pin
    cache empty, as for a chain never seen) and warm (the chain that last passed for the host
    under the policy in force, recognised by comparing certificates)."""
    if not _tls._CERT_OBJECTS:
        raise RuntimeError("this Python has no certificate objects: not the route timed here")
    cert_pins = _tls._CERT_PINS._pins  # the library's certificate -> pin cache
    rows = []
    for key_type, (_, name) in _KEY_TYPES.items():
        tls, root_pin = handshake(key_type)
        policy = PinPolicy([DomainPins(HOST, [root_pin, _pin("backup")])])
        check = _tls.PinCheck(policy)
        check.add_monitors([_Counted()])

        def cold(check: _tls.PinCheck = check, tls: ssl.SSLObject = tls) -> object:
            check._passed = (None, {})  # as for a policy never used yet: no known chain
            cert_pins.clear()  # and no certificate whose pin is known
            return check(tls)

        def warm(check: _tls.PinCheck = check, tls: ssl.SSLObject = tls) -> object:
            return check(tls)

        # The route is the one timed: cold fills both caches, warm finds the known chain.
        assert cold() is policy
        assert len(cert_pins) == 3, "the cold call did not pin the 3 certificates"
        assert HOST in check._passed[1], "the cold call did not remember the passing chain"
        cert_pins.clear()
        assert warm() is policy
        assert not cert_pins, "the warm call evaluated the chain instead of recognising it"
        rows.append((f"pin check, 3-cert {name} chain, cold", per_call(cold, number=200)))
        rows.append((f"pin check, 3-cert {name} chain, warm", per_call(warm, number=20000)))
        cert_pins.clear()  # leave no benchmark certificates in the library's cache
    return rows


class _Timed:
    """Stands in for a pinned class's ``PinCheck``: times each call of the real one."""

    def __init__(self, check: _tls.PinCheck) -> None:
        self.check = check
        self.ns: list[int] = []

    def __call__(self, obj: ssl.SSLObject) -> PinPolicy:
        start = time.perf_counter_ns()
        try:
            return self.check(obj)
        finally:
            self.ns.append(time.perf_counter_ns() - start)


def pin_check_in_handshakes(count: int = 300) -> list[tuple[str, float]]:
    """The pin check as a new connection runs it: inside ``count`` real handshakes (memory
    BIOs, P-256 chain of 3, pinned on the root) of a context pinned by
    :func:`pinsdk.pinned_ssl_context`, with the caches as each handshake leaves them (the
    handshake's own work has pushed the check's code and data out). The first handshake,
    which fills the library's caches, is left out: a repeat connection to a known host,
    the usual case. Median of the calls."""
    import pinsdk

    client_context, server_context, root_pin = contexts("ec")
    policy = PinPolicy([DomainPins(HOST, [root_pin, _pin("backup")])])
    pinned = pinsdk.pinned_ssl_context(policy, verify=client_context)
    cls: Any = pinned.sslobject_class
    timed = _Timed(cls.pin_check)
    cls.pin_check = timed  # found before the checked class's own: the class is per context
    gc.collect()
    gc.disable()
    try:
        for _ in range(count + 1):
            connect(pinned, server_context)
    finally:
        gc.enable()
    if len(timed.ns) != count + 1:
        raise RuntimeError(f"the pin check ran {len(timed.ns)} times in {count + 1} handshakes")
    median = statistics.median(timed.ns[1:]) / 1e9
    return [("pin check in a real handshake (known host)", median)]


def realistic_policy(n: int, tag: str = "") -> tuple[PinPolicy, list[str]]:
    """n domains: 70 % exact, 20 % ``*.``, 10 % ``**.``; hosts that hit and miss.

    ``tag`` varies every host name, for a set of domains never seen before."""
    pins = [_pin("a"), _pin("b")]
    domains, hosts = [], []
    for i in range(n):
        kind = i % 10
        if kind < 7:
            domains.append(DomainPins(f"api{i}{tag}.svc{i % 97}.example.com", pins))
            hosts.append(f"api{i}{tag}.svc{i % 97}.example.com")
        elif kind < 9:
            domains.append(DomainPins(f"*.tenant{i}{tag}.example.net", pins))
            hosts.append(f"eu.tenant{i}{tag}.example.net")
        else:
            domains.append(DomainPins(f"**.cdn{i}{tag}.example.org", pins))
            hosts.append(f"a.b.cdn{i}{tag}.example.org")
    hosts += [f"unpinned{i}.example.io" for i in range(len(hosts) // 4)]
    return PinPolicy(domains), hosts


def lookup() -> list[tuple[str, float]]:
    rows = []
    for n in (10, 1_000, 10_000):
        built, hosts = realistic_policy(n)
        # As a signed document builds it (entries realised by the warm-up lookups).
        policy = PinPolicy.from_dict(built.to_dict())
        sample = (hosts * (2000 // len(hosts) + 1))[:2000]

        def run(policy: PinPolicy = policy, sample: list[str] = sample) -> None:
            match = policy.match_normalized  # the transport's path
            for host in sample:
                match(host)

        rows.append((f"store lookup, {n:,} domains", per_call(run, number=20) / len(sample)))
    return rows


def request_path() -> list[tuple[str, float]]:
    """The code pinsdk's transport adds to every request on a kept-alive connection: its
    ``handle_async_request`` (a scheme test, a dict probe, then the pool's own coroutine
    with a static policy, or a wrapper when failures are observed), against calling the
    pool directly. Each call's coroutine is created and closed, never run: the network
    part is the same in both and is what the request benchmarks time. (With DynamicPins,
    each read and write of a connection also compares one reference: not in this figure.)"""
    import httpx
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from pinsdk import DynamicPins, PinnedTransport

    policy = PinPolicy([DomainPins(HOST, [_pin("a"), _pin("b")])])
    request = httpx.Request("GET", f"https://{HOST}/")
    rows = []
    dynamic = DynamicPins(
        "https://127.0.0.1/pins.json",
        [ed25519.Ed25519PrivateKey.generate().public_key()],
        bootstrap=policy,
        auto_refresh=False,
    )
    for name, pins in (("static PinPolicy", policy), ("DynamicPins", dynamic)):
        transport = PinnedTransport(pins)
        inner = transport._inner

        def pinned(t: PinnedTransport = transport) -> None:
            t.handle_async_request(request).close()

        def plain(t: httpx.AsyncHTTPTransport = inner) -> None:
            t.handle_async_request(request).close()

        added = per_call(pinned, number=20000) - per_call(plain, number=20000)
        rows.append((f"added per request, {name}", added))
    return rows
