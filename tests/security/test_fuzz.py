"""Property tests of every parser: only PinningError subclasses may escape.

Default runs are quick; ``make fuzz`` runs the same properties much longer
(HYPOTHESIS_PROFILE=fuzz).
"""

from __future__ import annotations

import base64
import contextlib
import json
import string
from typing import Any

import attrs
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import pinsdk
from pinsdk._core.envelope import PAYLOAD_TYPE, pae, parse_envelope
from pinsdk._core.hosts import (
    _COMMON_LINES,
    HostPattern,
    _plainly_common,
    is_ip_literal,
    normalize_host,
)
from pinsdk._core.pins import parse_pin

from ..signing import ed25519_key

KEY = ed25519_key()
A = "sha256/" + base64.b64encode(b"a" * 32).decode()
B = "sha256/" + base64.b64encode(b"b" * 32).decode()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.text(max_size=80) | st.sampled_from([A, B, "sha256/", "sha1/abc", A[:-1], A + "="]))
def test_pin_parsing_only_raises_pinconfigerror(text: str) -> None:
    with contextlib.suppress(pinsdk.PinConfigError):
        assert parse_pin(text) == text


@given(st.text(max_size=60))
def test_host_normalisation_only_raises_pinconfigerror(text: str) -> None:
    try:
        name = normalize_host(text)
    except pinsdk.PinConfigError:
        return
    assert name == name.lower()
    assert not name.endswith(".")
    assert normalize_host(name) == name  # idempotent


labels = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=5)
names = st.lists(labels, min_size=1, max_size=5)


def _numeric(label: str) -> bool:
    return label.isdigit() or (
        label[:2] == "0x" and len(label) > 2 and all(c in string.hexdigits for c in label[2:])
    )


def reference_match(kind: str, base: list[str], host: list[str], sub: bool) -> bool:
    """An independent model on label lists (no string suffix tricks)."""
    extra = len(host) - len(base)
    if extra < 0 or host[extra:] != base:
        return False
    if kind == "exact":
        return extra == 0 or (sub and extra >= 1)
    if kind == "*":
        return extra == 1 or (sub and extra >= 1)
    return extra >= 0  # "**"


@given(st.sampled_from(["exact", "*", "**"]), names, names, st.booleans(), st.booleans())
def test_host_matching_agrees_with_a_reference_model(
    kind: str, base: list[str], prefix: list[str], sub: bool, related: bool
) -> None:
    host = prefix + base if related else prefix
    # A name whose last label is a number is an IPv4 address (or invalid): keep them out.
    assume(not _numeric(base[-1]))
    assume(not _numeric(host[-1]))
    pattern = {"exact": "", "*": "*.", "**": "**."}[kind] + ".".join(base)
    policy = pinsdk.PinPolicy([pinsdk.DomainPins(pattern, [A, B], include_subdomains=sub)])
    expected = reference_match(kind, base, host, sub)
    assert bool(policy.pins_for(".".join(host))) is expected
    assert HostPattern.parse(pattern).matches(".".join(host), include_subdomains=sub) is expected


@given(json_values)
def test_policy_json_only_raises_pinconfigerror(doc: Any) -> None:
    with contextlib.suppress(pinsdk.PinConfigError):
        pinsdk.PinPolicy.from_dict(doc)


@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "host": st.text(max_size=20) | st.just("a.example"),
                "pins": st.lists(st.sampled_from([A, B]) | json_values, max_size=3),
            },
            optional={
                "include_subdomains": json_values,
                "mode": st.sampled_from(["enforce", "report"]) | json_values,
                "expires": st.just("2030-01-01T00:00:00Z") | json_values,
                "report_uri": st.just("https://r.example/x") | json_values,
            },
        ),
        max_size=4,
    ),
    json_values,
)
def test_policy_domains_only_raise_pinconfigerror(domains: list[dict[str, Any]], deny: Any) -> None:
    try:
        policy = pinsdk.PinPolicy.from_dict({"domains": domains, "deny": deny})
    except pinsdk.PinConfigError:
        return
    assert pinsdk.PinPolicy.from_dict(policy.to_dict()) == policy


hosts_of_every_shape = st.tuples(
    st.sampled_from(["", "*.", "**.", "*", "***."]),
    names.map(".".join)
    | st.sampled_from(["1.2.3.4", "a-.b", "A.Example", "ex.com.", "σ.example", "a..b", "x" * 70]),
    st.sampled_from(["", "", "\n", ".", "-", "1"]),
).map("".join) | st.text(max_size=12)


def _outcome(build: Any) -> Any:
    try:
        return ("built", build())
    except pinsdk.PinConfigError:
        return ("refused",)


canonical_hosts = st.tuples(
    st.sampled_from(["", "*.", "**."]), names.map(".".join).filter(lambda n: n[-1].isalpha())
).map("".join)


common_entries = st.fixed_dictionaries(
    {"host": canonical_hosts, "pins": st.sampled_from([[A, B], [B, A], [A, B, A]])},
    optional={
        "include_subdomains": st.booleans(),
        "mode": st.sampled_from(["enforce", "report"]),
    },
)
odd_entries = st.fixed_dictionaries(
    {
        "host": hosts_of_every_shape,
        "pins": st.sampled_from([[A, B], [A], ["sha256/x"], [3], []]),
    },
    optional={
        "include_subdomains": st.sampled_from([True, False, 1, None]),
        "mode": st.sampled_from(["enforce", "report", "x"]),
        "expires": st.sampled_from([None, "2030-01-01T00:00:00Z"]),
        "report_uri": st.sampled_from([None, "https://r.example/x"]),
    },
)


@given(
    st.lists(common_entries, max_size=6),
    st.none() | st.none() | odd_entries,
    st.integers(min_value=0, max_value=6),
)
def test_bulk_domain_path_builds_what_the_general_path_builds(
    entries: list[dict[str, Any]], odd: dict[str, Any] | None, where: int
) -> None:
    """The fast path for large documents agrees with DomainPins.from_dict, entry by entry:
    the same values (every field) and the same lookups, or a refusal where the general
    path refuses. Lookups run first, so entries are realised bucket by bucket."""
    if odd is not None:  # now and then one entry of another shape, or a wrong one
        entries.insert(where, odd)
    pinsdk.PinPolicy([pinsdk.DomainPins("warm.example", [A, B])])  # A and B are known pins
    general = _outcome(lambda: [pinsdk.DomainPins.from_dict(e) for e in entries])
    bulk = _outcome(lambda: pinsdk.PinPolicy.from_dict({"domains": entries}))
    assert bulk[0] == general[0]
    if bulk[0] != "built":
        return
    lazy, eager = bulk[1], pinsdk.PinPolicy(general[1])
    probes = {p for d in general[1] for p in _probes(d.pattern.base)}
    for host in sorted(probes):
        # A probe can be no host at all ("x." before an address): both refuse it alike.
        assert _outcome(lambda h=host: lazy.lookup(h)) == _outcome(lambda h=host: eager.lookup(h))
    _assert_same_entries(lazy.domains, general[1])
    assert lazy == eager
    assert hash(lazy) == hash(eager)


group_hosts = st.lists(hosts_of_every_shape | canonical_hosts | canonical_hosts, max_size=5)
groups = st.fixed_dictionaries(
    {
        "hosts": group_hosts,
        "pins": st.sampled_from([[A, B], [B, A], [A], ["sha256/x"], []]),
    },
    optional={
        "include_subdomains": st.sampled_from([True, False, False, 1]),
        "mode": st.sampled_from(["enforce", "enforce", "report", "x"]),
    },
)


@given(st.lists(common_entries | odd_entries, max_size=4), st.lists(groups, max_size=3))
def test_host_groups_build_what_their_entries_written_out_build(
    entries: list[dict[str, Any]], host_groups: list[dict[str, Any]]
) -> None:
    """Each host of a group is the entry its group describes, after ``domains``: the same
    policy (every field of every entry, the same lookups), or a refusal where writing the
    entries out is refused."""
    pinsdk.PinPolicy([pinsdk.DomainPins("warm.example", [A, B])])  # A and B are known pins
    written_out = entries + [
        {
            "host": host,
            "pins": g["pins"],
            **{k: g[k] for k in ("include_subdomains", "mode") if k in g},
        }
        for g in host_groups
        for host in g["hosts"]
    ]
    empty_group = any(not g["hosts"] for g in host_groups)  # a group must list a host
    grouped = _outcome(
        lambda: pinsdk.PinPolicy.from_dict({"domains": entries, "host_groups": host_groups})
    )
    expected = _outcome(lambda: pinsdk.PinPolicy.from_dict({"domains": written_out}))
    if empty_group:
        assert grouped[0] == "refused"
        return
    assert grouped[0] == expected[0]
    if grouped[0] != "built":
        return
    policy, reference = grouped[1], expected[1]
    probes = {p for d in reference.domains for p in _probes(d.pattern.base)}
    for host in sorted(probes):
        assert _outcome(lambda h=host: policy.lookup(h)) == _outcome(
            lambda h=host: reference.lookup(h)
        )
    _assert_same_entries(policy.domains, reference.domains)
    assert policy == reference
    regrouped = pinsdk.PinPolicy.from_dict(policy.to_dict(host_groups=True))
    assert set(regrouped.domains) == set(policy.domains)
    for host in sorted(probes):
        assert _outcome(lambda h=host: set(regrouped.lookup(h))) == _outcome(
            lambda h=host: set(policy.lookup(h))
        )


odd_labels = st.sampled_from(
    ["0x1f", "0xg", "a-", "-a", "x" * 63, "x" * 64, "A", "é", "*", "**", "a_b", "9", "", "-"]
)
nearly_common = st.tuples(
    st.sampled_from(["", "", "*.", "**.", "*", "***.", "."]),
    st.lists(st.sampled_from(["a", "b-c", "x1", "com"]) | odd_labels, min_size=1, max_size=4),
).map(lambda t: t[0] + ".".join(t[1]))


@settings(max_examples=400)
@given(
    st.lists(
        st.sampled_from(["a.com", "*.b.com", "**.c.d"]) | nearly_common,
        min_size=1,
        max_size=4,
    )
    | st.lists(hosts_of_every_shape | st.sampled_from(["", "\n", "a.\nb"]), min_size=1)
)
def test_the_quick_shape_test_never_accepts_what_the_regular_expression_refuses(
    patterns: list[str],
) -> None:
    joined = "\n".join(patterns)
    if _plainly_common(joined, patterns):
        assert _COMMON_LINES.fullmatch(joined)


def _probes(base: str) -> list[str]:
    if is_ip_literal(base):  # "x.0.0.0.0" is no host name: only the address itself is probed
        return [base]
    return [base, "x." + base, "x.y." + base, base.partition(".")[2] or base]


def _assert_same_entries(built: Any, expected: Any) -> None:
    assert len(built) == len(expected)
    for fast, slow in zip(built, expected, strict=True):
        assert attrs.astuple(fast, recurse=False) == attrs.astuple(slow, recurse=False)
        assert attrs.astuple(fast.pattern) == attrs.astuple(slow.pattern)


@given(st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_envelope_bytes_only_raise_update_rejected(data: bytes) -> None:
    with contextlib.suppress(pinsdk.UpdateRejectedError):
        pinsdk.verify_envelope(data, [KEY.public_key()])


@given(json_values)
def test_envelope_shapes_only_raise_update_rejected(doc: Any) -> None:
    with contextlib.suppress(pinsdk.UpdateRejectedError):
        parse_envelope(json.dumps(doc))


@given(
    json_values,
    st.dictionaries(
        st.sampled_from(
            [
                "version",
                "spec_version",
                "issued_at",
                "expires",
                "domains",
                "deny",
                "keys",
                "refresh_interval",
                "require_backup",
                "report_uri",
                "domian",
            ]
        ),
        json_values,
    ),
)
def test_signed_payloads_only_raise_update_rejected(extra: Any, fields: dict[str, Any]) -> None:
    """Correctly signed, arbitrary payloads: the payload checks alone must hold the line."""
    # An x- key: an unknown one would stop every payload at the first check.
    body = json.dumps({"spec_version": 1, "version": 1, **fields, "x-extra": extra}).encode()
    sig = KEY.sign(pae(PAYLOAD_TYPE, body))
    envelope = json.dumps(
        {
            "payloadType": PAYLOAD_TYPE,
            "payload": base64.b64encode(body).decode(),
            "signatures": [{"sig": base64.b64encode(sig).decode()}],
        }
    )
    with contextlib.suppress(pinsdk.UpdateRejectedError):
        pinsdk.verify_envelope(envelope, [KEY.public_key()])


def test_bulk_domain_path_on_a_document_of_every_common_shape() -> None:
    pinsdk.PinPolicy([pinsdk.DomainPins("warm.example", [A, B])])
    entries = [
        {"host": f"{prefix}h{i}.example", "pins": [A, B], "include_subdomains": sub, "mode": mode}
        for i, (prefix, sub, mode) in enumerate(
            (p, s, m)
            for p in ("", "*.", "**.")
            for s in (True, False)
            for m in ("enforce", "report")
        )
    ]
    general = [pinsdk.DomainPins.from_dict(e) for e in entries]
    lazy = pinsdk.PinPolicy.from_dict({"domains": entries})
    assert lazy.pins_for("a.h5.example") == frozenset({A, B})  # *. with include_subdomains
    assert lazy.lookup("x.h0.example") == (lazy.domains[0],)  # exact, include_subdomains
    assert lazy.lookup("x.y.h4.example") == (lazy.domains[4],)  # *., include_subdomains
    assert lazy.lookup("x.y.h6.example") == ()  # *. without it: exactly one more label
    assert lazy.lookup("h8.example")[0] is lazy.domains[8]  # one object per entry
    _assert_same_entries(lazy.domains, general)
    assert lazy == pinsdk.PinPolicy(general)
    assert pinsdk.PinPolicy.from_dict(lazy.to_dict()) == lazy
