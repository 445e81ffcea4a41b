"""The scale benchmark's lookup floor: the index probes a lookup makes, made bare."""

from __future__ import annotations

import gc

import pinsdk
from benchmarks import scale


def test_the_probes_recorded_are_the_lookups_own() -> None:
    policy = pinsdk.PinPolicy.from_dict(
        {
            "domains": [
                {"host": "*.a.example", "pins": scale.PIN_SETS[0]},
                {"host": "b.a.example", "pins": scale.PIN_SETS[1]},
                {"host": "**.c.example", "pins": scale.PIN_SETS[2]},
            ]
        }
    )
    # The host itself (an exact name has its dot count), then its parent (a "*." base).
    assert scale.probes_of(policy, "X.a.example") == ["x.a.example", "a.example"]
    # Two dots below "c.example": no base at the host's count or its parent's, so only
    # the "**." ancestor is probed.
    assert scale.probes_of(policy, "p.q.c.example") == ["c.example"]
    assert policy._table._index.__class__ is dict  # the recorder is gone again
    assert policy.lookup("x.a.example") == (policy.domains[0],)


def test_lookups_report_the_floor_next_to_the_lookup() -> None:
    domains, hosts = scale.domains_and_hosts(1_000)
    policy = pinsdk.PinPolicy.from_dict({"domains": domains})
    out = scale.lookups(policy, hosts)
    assert set(out) == {"lookup", "probes", "probe_count", "lookup_cold", "probes_cold"}
    for part in ("lookup", "probes", "lookup_cold", "probes_cold"):
        assert all(out[part][kind] > 0 for kind in scale.KINDS), part
    # This set's bases have three parents: "svcN.example.com" (exact names, 97 of them),
    # "example.net" ("*.") and "example.org" ("**."). So a pinned host of each kind makes
    # one probe, of the base that pins it, and a miss ("unpinnedN.example.io") none.
    assert out["probe_count"] == {
        "exact": 1.0,
        "*.": 1.0,
        "**.": 1.0,
        "include_subdomains": 1.0,
        "miss": 0.0,
    }


def test_a_warm_timing_follows_an_untimed_call() -> None:
    calls: list[bool] = []

    def fn() -> None:
        calls.append(gc.isenabled())

    scale._best(fn, 3, warm=True)
    assert calls == [False] * 6  # each of 3 repeats: one untimed, one timed, GC paused
    calls.clear()
    scale._best(fn, 3)
    assert calls == [False] * 3
