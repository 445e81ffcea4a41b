"""The scale benchmark's lookup floor: the index probes a lookup makes, made bare."""

from __future__ import annotations

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
    assert set(out) == {"lookup", "probes", "probe_count"}
    for kind in scale.KINDS:
        assert out["lookup"][kind] > 0
        assert out["probes"][kind] > 0
    # This set's names: exact names and include_subdomains bases have 3 dots, "*." and
    # "**." bases 2, so each kind but a miss makes two probes.
    assert out["probe_count"] == {
        "exact": 2.0,
        "*.": 2.0,
        "**.": 2.0,
        "include_subdomains": 2.0,
        "miss": 1.0,
    }
