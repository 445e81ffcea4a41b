"""The host table (one dict of base names, built lazily) against a brute-force reference.

Every entry of a policy is matched one by one against the host with a model on label
lists (no suffix tricks, no index); the answer must be the same entries, in the same
order: the host's own entries, then its parent's, then deeper ancestors' (nearest first),
each in document order. Policies are generated to be hostile to an index: bases that
repeat (with other kinds, flags and pins), bases that are suffixes of each other, hosts
that are prefixes of bases, and entries that are objects (an expiry) among rows.
"""

from __future__ import annotations

import base64
import threading
from typing import Any
from unittest import mock

from hypothesis import given
from hypothesis import strategies as st

import pinsdk
from benchmarks.scale import probes_of  # the keys one lookup probes, recorded
from pinsdk._core import hosttable

A = "sha256/" + base64.b64encode(b"a" * 32).decode()
B = "sha256/" + base64.b64encode(b"b" * 32).decode()
C = "sha256/" + base64.b64encode(b"c" * 32).decode()

# Few labels, so bases collide, nest and repeat.
labels = st.sampled_from(["a", "b", "ab", "x-y", "c1", "q"])
names = st.lists(labels, min_size=1, max_size=4)
entries = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["", "*.", "**."]),
        "base": names,
        "sub": st.booleans(),
        "mode": st.sampled_from(["enforce", "report"]),
        "pins": st.sampled_from([[A, B], [B, C], [A, C]]),
        "expires": st.sampled_from([None, None, None, "2999-01-01T00:00:00Z"]),
    }
)


def _distance(kind: str, base: list[str], host: list[str], sub: bool) -> int | None:
    """How many labels ``host`` has below ``base`` if the entry matches it, else None."""
    extra = len(host) - len(base)
    if extra < 0 or host[extra:] != base:
        return None
    if kind == "":
        ok = extra == 0 or (sub and extra >= 1)
    elif kind == "*.":
        ok = extra == 1 or (sub and extra >= 1)
    else:
        ok = True
    return extra if ok else None


def _document(drawn: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for e in drawn:
        doc: dict[str, Any] = {
            "host": e["kind"] + ".".join(e["base"]),
            "pins": e["pins"],
            "include_subdomains": e["sub"],
            "mode": e["mode"],
        }
        if e["expires"]:
            doc["expires"] = e["expires"]
        out.append(doc)
    return out


def _expected(drawn: list[dict[str, Any]], host: list[str]) -> list[int]:
    """Entry positions matching ``host``, in the order a lookup must give them."""
    found = []
    for k, e in enumerate(drawn):
        d = _distance(e["kind"], e["base"], host, e["sub"])
        if d is not None:
            found.append((d, k))
    return [k for _, k in sorted(found)]


@given(
    st.lists(entries, min_size=1, max_size=12),
    st.lists(st.lists(labels, min_size=0, max_size=3), min_size=1, max_size=6),
    st.booleans(),
    st.booleans(),
)
def test_lookups_agree_with_matching_every_entry(
    drawn: list[dict[str, Any]],
    prefixes: list[list[str]],
    domains_first: bool,
    prune: bool,
) -> None:
    """With the bases' parents kept (a probe is skipped when its parent is none of
    them) and without (too many parents: every suffix at a listed dot count probed)."""
    document = _document(drawn)
    with mock.patch.object(hosttable, "_BASE_PARENTS_MAX", 4096 if prune else 0):
        policies = [
            pinsdk.PinPolicy.from_dict({"domains": document}),  # rows (and objects)
            pinsdk.PinPolicy([pinsdk.DomainPins.from_dict(d) for d in document]),  # objects
        ]
    assert all((p._table._base_parents is not None) is prune for p in policies)
    hosts = {tuple(p + e["base"]) for p in prefixes for e in drawn}
    hosts |= {tuple(e["base"][1:]) for e in drawn if len(e["base"]) > 1}
    for policy in policies:
        if domains_first:  # every entry built by `domains` before any lookup, or after
            assert [d.host for d in policy.domains] == [d["host"] for d in document]
        for host in sorted(hosts):
            got = policy.lookup(".".join(host))
            want = [policy.domains[k] for k in _expected(drawn, list(host))]
            assert list(got) == want, (host, document)
            # One object per entry, whichever of lookup and `domains` built it first.
            assert all(any(g is d for d in policy.domains) for g in got)
        assert [d.host for d in policy.domains] == [d["host"] for d in document]
        assert len(policy.domains) == len(document)


def test_a_repeated_base_keeps_document_order_everywhere() -> None:
    document = [
        {"host": "**.a.example", "pins": [A, B]},
        {"host": "b.example", "pins": [A, B]},
        {"host": "a.example", "pins": [B, C]},
        {"host": "*.a.example", "pins": [A, C], "include_subdomains": True},
        {"host": "a.example", "pins": [A, C], "mode": "report"},
    ]
    policy = pinsdk.PinPolicy.from_dict({"domains": document})
    assert [d.host for d in policy.lookup("a.example")] == [
        "**.a.example",
        "a.example",
        "a.example",
    ]
    assert [d.host for d in policy.lookup("x.a.example")] == ["**.a.example", "*.a.example"]
    assert [d.host for d in policy.domains] == [d["host"] for d in document]
    assert policy == pinsdk.PinPolicy.from_dict(policy.to_dict())


def test_threads_building_the_same_entries_agree() -> None:
    """Lookups on many threads build entries at once: each host gets its own entry,
    equal on every thread, and `domains` agrees with all of them."""
    document = [
        {"host": f"h{i}.example", "pins": [A, B], "include_subdomains": i % 2 == 0}
        for i in range(2000)
    ]
    policy = pinsdk.PinPolicy.from_dict({"domains": document})
    start = threading.Barrier(6)
    results: list[list[tuple[pinsdk.DomainPins, ...]]] = [[] for _ in range(6)]

    def worker(n: int) -> None:
        start.wait(10)
        hosts = [f"x.h{i}.example" if n % 2 else f"h{i}.example" for i in range(2000)]
        results[n] = [policy.lookup(h) for h in hosts]

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    domains = policy.domains
    for n, found in enumerate(results):
        assert len(found) == 2000
        for i, got in enumerate(found):
            if n % 2 and i % 2:  # x.hI.example, hI without include_subdomains
                assert got == ()
            else:
                assert got == (domains[i],)


def test_entries_of_a_subclass_are_kept_as_given() -> None:
    class Tagged(pinsdk.DomainPins):
        pass

    entry = Tagged("a.example", [A, B], include_subdomains=True)
    policy = pinsdk.PinPolicy([entry, pinsdk.DomainPins("b.example", [A, C])])
    assert policy.lookup("x.a.example")[0] is entry
    assert policy.domains[0] is entry


def test_a_suffix_whose_parent_is_no_bases_parent_is_not_probed() -> None:
    document = [
        {"host": "api.svc.example.com", "pins": [A, B]},
        {"host": "login.svc.example.com", "pins": [A, B], "include_subdomains": True},
        {"host": "*.tenant.example.net", "pins": [A, C]},
        {"host": "**.cdn.example.org", "pins": [B, C]},
    ]
    policy = pinsdk.PinPolicy.from_dict({"domains": document})
    assert policy._table._base_parents == {"svc.example.com", "example.net", "example.org"}
    # Each pinned host: one probe, of the base that pins it.
    assert probes_of(policy, "api.svc.example.com") == ["api.svc.example.com"]
    assert probes_of(policy, "x.login.svc.example.com") == ["login.svc.example.com"]
    assert probes_of(policy, "eu.tenant.example.net") == ["tenant.example.net"]
    assert probes_of(policy, "a.b.cdn.example.org") == ["cdn.example.org"]
    # A host nothing pins: none ("example.io" is no base's parent).
    assert probes_of(policy, "unpinned.example.io") == []
    # The same names at the same dot counts, with a parent that is a base's parent: probed.
    assert probes_of(policy, "web.svc.example.com") == ["web.svc.example.com"]
    assert policy.lookup("eu.tenant.example.net") == (policy.domains[2],)
    assert policy.lookup("a.b.cdn.example.org") == (policy.domains[3],)
    assert policy.lookup("unpinned.example.io") == ()

    with mock.patch.object(hosttable, "_BASE_PARENTS_MAX", 2):  # three parents: none kept
        unpruned = pinsdk.PinPolicy.from_dict({"domains": document})
    assert unpruned._table._base_parents is None
    assert probes_of(unpruned, "eu.tenant.example.net") == [
        "eu.tenant.example.net",
        "tenant.example.net",
    ]
    assert unpruned.lookup("eu.tenant.example.net") == (unpruned.domains[2],)


def test_a_set_of_many_parents_keeps_none_of_them() -> None:
    document = [{"host": f"api.t{i}.example", "pins": [A, B]} for i in range(5000)]
    policy = pinsdk.PinPolicy.from_dict({"domains": document})
    assert policy._table._base_parents is None
    assert policy.lookup("api.t4999.example") == (policy.domains[4999],)
    assert policy.lookup("web.t4999.example") == ()
