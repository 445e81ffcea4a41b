"""Host normalisation and patterns, including OkHttp's CertificatePinner cases."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pinsdk import DomainPins, PinConfigError, PinPolicy, normalize_host
from pinsdk._core.hosts import _KEYS, _MEMO, _MEMO_MAX, HostPattern, host_keys


def pin(seed: str) -> str:
    return "sha256/" + base64.b64encode(hashlib.sha256(seed.encode()).digest()).decode()


A, B = pin("a"), pin("b")


def pinned(pattern: str, host: str, **kw: bool) -> bool:
    return bool(PinPolicy([DomainPins(pattern, [A, B], **kw)]).pins_for(host))


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("EXAMPLE.com", "example.com"),
        ("example.com.", "example.com"),
        ("σkhttp.com", "xn--khttp-fde.com"),
        ("ΣKHTTP.COM", "xn--khttp-fde.com"),
        ("xn--khttp-fde.com", "xn--khttp-fde.com"),
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("0:0:0:0:0:0:0:1", "::1"),
    ],
)
def test_normalize_host(host: str, expected: str) -> None:
    assert normalize_host(host) == expected


@pytest.mark.parametrize("host", ["", "a..b", "-a.com", "a b.com", "x" * 64 + ".com", "a/b"])
def test_invalid_hosts_are_named(host: str) -> None:
    with pytest.raises(PinConfigError) as info:
        normalize_host(host)
    assert repr(host) in str(info.value)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("a.example.com", True),
        ("example.com", False),
        ("a.b.example.com", False),
        ("a.example.com.notexample.com", False),
        ("notexample.com", False),
        ("A.EXAMPLE.COM.", True),
    ],
)
def test_single_star(host: str, expected: bool) -> None:
    assert pinned("*.example.com", host) is expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("example.com", True),
        ("a.example.com", True),
        ("a.b.example.com", True),
        ("xample.com", False),
        ("dexample.com", False),
        ("example.com.evil.test", False),
    ],
)
def test_double_star(host: str, expected: bool) -> None:
    assert pinned("**.example.com", host) is expected


def test_exact_and_include_subdomains() -> None:
    assert pinned("example.com", "example.com")
    assert not pinned("example.com", "a.example.com")
    assert pinned("example.com", "a.b.example.com", include_subdomains=True)
    assert not pinned("example.com", "badexample.com", include_subdomains=True)
    assert pinned("*.example.com", "a.b.example.com", include_subdomains=True)
    assert not pinned("*.example.com", "example.com", include_subdomains=True)


def test_case_and_unicode_forms_match_the_same_pattern() -> None:
    assert pinned("EXAMPLE.com", "example.com")
    assert pinned("*.σkhttp.com", "www.xn--khttp-fde.com")
    assert pinned("*.xn--khttp-fde.com", "www.σkhttp.com")


def test_pins_of_all_matching_patterns_combine() -> None:
    policy = PinPolicy(
        [DomainPins("*.example.com", [A, B]), DomainPins("a.example.com", [pin("c"), pin("d")])]
    )
    assert policy.pins_for("a.example.com") == {A, B, pin("c"), pin("d")}
    assert policy.pins_for("b.example.com") == {A, B}


@pytest.mark.parametrize(
    "pattern",
    ["example.*", "*example.com", "a.*.example.com", "*", "**", "*.", "e*xample.com", "***.a.com"],
)
def test_bad_patterns_are_rejected(pattern: str) -> None:
    with pytest.raises(PinConfigError) as info:
        HostPattern.parse(pattern)
    assert repr(pattern) in str(info.value)


def test_wildcard_on_ip_is_rejected() -> None:
    with pytest.raises(PinConfigError, match="wildcard on an IP"):
        HostPattern.parse("*.127.0.0.1")
    with pytest.raises(PinConfigError, match="include_subdomains makes no sense"):
        DomainPins("10.0.0.1", [A, B], include_subdomains=True)


def test_reference_model_agrees_with_index() -> None:
    """The indexed lookup gives the same answer as matching each pattern one by one."""
    patterns = ["a.com", "*.a.com", "**.b.a.com", "c.com", "*.d.c.com"]
    for sub in (False, True):
        domains = [DomainPins(p, [A, B], include_subdomains=sub) for p in patterns]
        policy = PinPolicy(domains)
        hosts = [
            "a.com",
            "x.a.com",
            "b.a.com",
            "x.b.a.com",
            "y.x.a.com",
            "c.com",
            "q.c.com",
            "e.d.c.com",
            "d.c.com",
            "f.e.d.c.com",
            "zz.com",
            "com",
        ]
        for host in hosts:
            expected = {d for d in domains if d.matches(host)}
            assert set(policy.lookup(host)) == expected, (host, sub)


# host_keys: the suffixes a lookup probes with, remembered per host name.

_label = st.text(alphabet="abcXYZ09-", min_size=1, max_size=5).filter(
    lambda s: not s.startswith("-") and not s.endswith("-")
)


@given(st.lists(_label, min_size=1, max_size=6), st.booleans())
def test_host_keys_are_the_suffixes_by_dot_count(labels: list[str], dot: bool) -> None:
    """Against labels split and joined again (no find loop): item d has d dots."""
    host = ".".join(labels) + ("." if dot else "")
    try:
        name = normalize_host(host)
    except PinConfigError:
        with pytest.raises(PinConfigError):
            host_keys(host)
        return
    parts = name.split(".")
    want = tuple(".".join(parts[len(parts) - 1 - d :]) for d in range(len(parts)))
    assert host_keys(host) == want
    assert host_keys(host) is host_keys(host)  # remembered
    assert [k.count(".") for k in want] == list(range(len(parts)))


def test_host_keys_of_other_spellings_are_the_normalised_name() -> None:
    assert host_keys("WWW.Example.COM.") == ("com", "example.com", "www.example.com")
    assert host_keys("[::1]") == ("::1",)
    assert host_keys("127.1")[-1] == "127.0.0.1"
    with pytest.raises(PinConfigError, match=r"a\.\.b"):
        host_keys("a..b")


def test_host_keys_never_answer_for_a_str_subclass_from_the_memo() -> None:
    """A subclass equal to (and hashing as) a remembered name is normalised itself."""

    class Liar(str):
        def __eq__(self, other: object) -> bool:
            return True

        def __hash__(self) -> int:
            return hash("pinned.example")

    host_keys("pinned.example")
    assert host_keys(Liar("other.example"))[-1] == "other.example"


def test_the_memo_of_host_keys_is_bounded() -> None:
    for i in range(_MEMO_MAX + 10):
        host_keys(f"h{i}.bound.example")
    assert 0 < len(_KEYS) <= _MEMO_MAX
    policy = PinPolicy([DomainPins("*.bound.example", [A, B])])
    assert policy.pins_for(f"h{_MEMO_MAX + 20}.bound.example") == {A, B}


class _Poison(str):
    """Characters "unpinned.example", but equal to anything and hashed as "bank.example"."""

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return hash("bank.example")


def test_a_str_subclass_never_plants_an_answer_for_a_plain_name() -> None:
    """Found by a red-team pass (2026-12-03): a subclass was normalised without the memo,
    but its answer was then stored under the object itself, where a later lookup of the
    plain name it hashes as found it: a pin bypass for code that passes such an object."""
    policy = PinPolicy([DomainPins("bank.example", [A, B])])
    _KEYS.clear()
    _MEMO.clear()
    assert host_keys(_Poison("unpinned.example"))[-1] == "unpinned.example"
    assert normalize_host(_Poison("unpinned.example")) == "unpinned.example"
    assert all(type(k) is str for k in [*_KEYS, *_MEMO])
    assert host_keys("bank.example") == ("example", "bank.example")
    assert policy.pins_for("bank.example") == {A, B}


def test_a_str_subclass_is_read_as_its_characters() -> None:
    class Lying(str):
        def lower(self) -> str:
            return "x.y.z"

        def find(self, *args: object) -> int:  # type: ignore[override]
            return -1

    assert host_keys(Lying("A.B.C")) == ("c", "b.c", "a.b.c")
    assert normalize_host(Lying("A.B.C")) == "a.b.c"


class _Hostile(str):
    """Every method a normaliser might call answers something else."""

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0

    def lower(self) -> str:
        return "evil.example"

    def find(self, *args: object) -> int:  # type: ignore[override]
        return -1

    def isascii(self) -> bool:
        return False

    def endswith(self, *args: object) -> bool:  # type: ignore[override]
        return True

    def rpartition(self, sep: str) -> tuple[str, str, str]:
        return ("", "", "")


@given(st.lists(_label, min_size=1, max_size=6), st.booleans())
def test_a_hostile_str_subclass_gets_what_its_characters_get(labels: list[str], dot: bool) -> None:
    """Against the same characters as a plain str: the same keys and name, or the same
    refusal; and nothing but plain str is remembered."""
    host = ".".join(labels) + ("." if dot else "")
    try:
        want = host_keys(host)
    except PinConfigError:
        with pytest.raises(PinConfigError):
            host_keys(_Hostile(host))
        with pytest.raises(PinConfigError):
            normalize_host(_Hostile(host))
        return
    _KEYS.clear()
    _MEMO.clear()
    assert host_keys(_Hostile(host)) == want
    assert normalize_host(_Hostile(host)) == want[-1]
    assert all(type(k) is str for k in [*_KEYS, *_MEMO])
