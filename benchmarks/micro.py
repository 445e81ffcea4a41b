"""Micro-benchmarks of the sans-IO hot path: the pin check and the policy lookup."""

from __future__ import annotations

import base64
import functools
import gc
import hashlib
import statistics
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import serialization

from pinsdk import DomainPins, PinPolicy
from pinsdk._core.check import evaluate
from pinsdk._core.pins import ChainPinCache, spki_pin
from pinsdk._demo.localca import LocalCA


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


def chain_of(key_type: str) -> tuple[list[bytes], str]:
    ca = LocalCA(f"bench-{key_type}", key_type=key_type)
    leaf = ca.issue("api.bench.test")
    certs = [leaf.cert, *leaf.chain, ca.root]
    ders = [c.public_bytes(serialization.Encoding.DER) for c in certs]
    return ders, spki_pin(ca.root)


def pin_check() -> list[tuple[str, float]]:
    """A 3-certificate verified chain to a verdict, cold (empty cache) and warm."""
    rows = []
    for key_type in ("rsa", "ec"):
        chain, root_pin = chain_of(key_type)
        policy = PinPolicy([DomainPins("api.bench.test", [root_pin, _pin("backup")])])

        def cold(chain: list[bytes] = chain, policy: PinPolicy = policy) -> object:
            return evaluate(policy, "api.bench.test", chain, cache=ChainPinCache())

        warm = functools.partial(evaluate, policy, "api.bench.test", chain, cache=ChainPinCache())
        assert warm() is None
        name = "RSA-2048" if key_type == "rsa" else "P-256"
        rows.append((f"pin check, 3-cert {name} chain, cold", per_call(cold, number=200)))
        rows.append((f"pin check, 3-cert {name} chain, warm", per_call(warm, number=20000)))
    return rows


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
            match = policy.match_fast
            for host in sample:
                match(host)

        rows.append((f"store lookup, {n:,} domains", per_call(run, number=20) / len(sample)))
    return rows
