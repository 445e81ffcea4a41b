"""Issue 12, item 2: a host spelt another way must find the same pins.

One normaliser serves policies, the handshake lookup, the plaintext guard and reports.
Here it is pitted against independent implementations (``ipaddress``, the C library's
``inet_aton``, a label-by-label reference matcher) on generated spellings, and the
spellings that reached a rogue server before are replayed on real TLS (127.0.0.1, ::1).
"""

from __future__ import annotations

import base64
import ipaddress
import socket
import ssl
from collections.abc import Callable

import httpx
import pytest
import trustme
from hypothesis import assume, given
from hypothesis import strategies as st

import pinsdk
from pinsdk._core.hosts import HostPattern, normalize_host
from pinsdk._demo.loopback import LoopbackTLSServer

from ..conftest import TOKEN

A = "sha256/" + base64.b64encode(b"a" * 32).decode()
B = "sha256/" + base64.b64encode(b"b" * 32).decode()

# -- IPv6: every spelling of an address normalises to ipaddress's compressed form -------


@st.composite
def ipv6_spellings(draw: st.DrawFn) -> tuple[str, str]:
    """(a spelling of an IPv6 address, what ipaddress says it is)."""
    address = ipaddress.IPv6Address(draw(st.integers(0, 2**128 - 1)))
    if draw(st.booleans()):
        address = ipaddress.IPv6Address(draw(st.sampled_from(["::1", "::", "fe80::1"])))
    groups = address.exploded.split(":")
    style = draw(st.sampled_from(["exploded", "short-groups", "compressed", "upper", "zero-run"]))
    if style == "exploded":
        text = address.exploded
    elif style == "short-groups":
        text = ":".join(g.lstrip("0") or "0" for g in groups)
    elif style == "upper":
        text = address.compressed.upper()
    elif style == "zero-run":
        # "0::1"-style: compress a run of zero groups that is not the longest, or none.
        text = ":".join(("0" * draw(st.integers(1, 4))) if g == "0000" else g for g in groups)
    else:
        text = address.compressed
    if draw(st.booleans()):
        text = f"[{text}]"
    mapped = address.ipv4_mapped
    expected = address.compressed if mapped is None else str(mapped)
    return text, expected


@given(ipv6_spellings())
def test_ipv6_spellings_normalise_like_ipaddress(case: tuple[str, str]) -> None:
    text, expected = case
    assert normalize_host(text) == expected
    policy = pinsdk.PinPolicy([pinsdk.DomainPins(text, [A, B])])
    assert policy.lookup(expected) == policy.match_fast(text) == policy.lookup(text)
    assert len(policy.lookup(text)) == 1


# -- IPv4: every spelling a resolver reads as an address ---------------------------------


@st.composite
def ipv4_spellings(draw: st.DrawFn) -> str:
    def part(value: int) -> str:
        form = draw(st.sampled_from(["dec", "hex", "HEX", "oct"]))
        if form == "hex":
            return hex(value)
        if form == "HEX":
            return "0X" + format(value, "X")
        if form == "oct" and value:
            return "0" + format(value, "o")
        return str(value)

    count = draw(st.integers(1, 4))
    head = [draw(st.integers(0, 300)) for _ in range(count - 1)]
    last = draw(st.integers(0, 2 ** (8 * (5 - count)) + 3))
    return ".".join(part(v) for v in [*head, last])


def _inet_aton(text: str) -> str | None:
    try:
        return socket.inet_ntoa(socket.inet_aton(text))
    except OSError:
        return None


@given(ipv4_spellings())
def test_ipv4_spellings_normalise_like_inet_aton(text: str) -> None:
    expected = _inet_aton(text)
    try:
        ours: str | None = normalize_host(text)
    except pinsdk.PinConfigError:
        ours = None
    assert ours == expected


@given(st.text(alphabet="0123456789abcdefxX.", min_size=1, max_size=20))
def test_numeric_looking_names_are_addresses_or_refused(text: str) -> None:
    """A name whose last label is a number is an address to the resolver; pinsdk must
    read it as the same address, or refuse it, never treat it as another name."""
    assume(not text.startswith(".") and ".." not in text)
    stripped = text.rstrip(".")
    assume(stripped)
    last = stripped.rsplit(".", 1)[-1].lower()
    numeric = last.isdigit() or (
        last.startswith("0x") and len(last) > 2 and all(c in "0123456789abcdef" for c in last[2:])
    )
    try:
        ours: str | None = normalize_host(text)
    except pinsdk.PinConfigError:
        ours = None
    if numeric:
        assert ours == _inet_aton(stripped)
    elif ours is not None:
        assert ours == stripped.lower()


# -- what httpx puts on the wire: the same name ----------------------------------------

# Letters whose lower case depends on their context (a word-final capital sigma) or
# differs from UTS46's mapping, in the positions where that matters; and any text.
_CASED_LABELS = st.builds(
    "".join,
    st.lists(
        st.text(alphabet="aAbäÄéİıK", min_size=1, max_size=3)
        | st.sampled_from(["Σ", "ẞ", "σ", "ς", "ß"]),
        min_size=1,
        max_size=4,
    ),
).map(lambda label: label + ("" if label[-1:] in "Σσςẞß" else "Σ"))
_ANY_LABELS = st.text(st.characters(min_codepoint=0x2D, max_codepoint=0x2FFF), max_size=6)
UNICODE_HOSTS = st.lists(
    st.tuples(_CASED_LABELS | _ANY_LABELS, st.sampled_from(["", "1", "-x"])).map("".join),
    min_size=1,
    max_size=3,
).map(".".join)


@given(UNICODE_HOSTS)
def test_unicode_names_normalise_to_what_httpx_sends(text: str) -> None:
    """httpx encodes a URL's host (lower-cased, IDNA) and the TLS layer sends that; a policy
    written with the same text must name the same host (red-team finding: "aΣ1.test")."""
    try:
        wire = httpx.URL(f"https://{text}/").raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeError, ValueError):
        return
    assume(wire and wire == wire.strip("."))
    try:
        ours = normalize_host(text)
    except pinsdk.PinConfigError:
        return  # refused outright: nothing matches it, and httpx-only names fail closed
    assert ours == normalize_host(wire)


def test_word_final_capital_sigma_names_the_host_httpx_sends() -> None:
    assert normalize_host("aΣ1.test") == httpx.URL("https://aΣ1.test/").raw_host.decode()


# -- names: a reference matcher, and hosts that end with a base without a dot ------------

LABELS = st.sampled_from(["api", "evil", "evilapi", "x", "a-b", "_srv", "www", "example"])


@st.composite
def pattern_and_host(draw: st.DrawFn) -> tuple[str, bool, str]:
    base_labels = [*draw(st.lists(LABELS, min_size=1, max_size=3)), "example", "com"]
    base = ".".join(base_labels)
    kind = draw(st.sampled_from(["", "*.", "**."]))
    sub = draw(st.booleans()) if kind != "**." else False
    shape = draw(st.sampled_from(["same", "child", "grandchild", "glued", "glued-child", "other"]))
    label = draw(LABELS)
    host = {
        "same": base,
        "child": f"{label}.{base}",
        "grandchild": f"{label}.{draw(LABELS)}.{base}",
        # Ends with the base but not on a label boundary: never a match.
        "glued": f"{label}{base}",
        "glued-child": f"{label}.{draw(LABELS)}{base}",
        "other": ".".join([*draw(st.lists(LABELS, min_size=1, max_size=4)), "com"]),
    }[shape]
    # Spelling noise that must not matter: case and a trailing dot.
    if draw(st.booleans()):
        host = host.upper()
    if draw(st.booleans()):
        host += "."
    return kind + base, sub, host


def _reference(pattern: str, sub: bool, host: str) -> bool:
    """Label lists, no string suffix tricks: an independent reading of the rules."""
    host_labels = host.lower().rstrip(".").split(".")
    kind = "**" if pattern.startswith("**.") else "*" if pattern.startswith("*.") else ""
    base_labels = pattern.split(".")[1:] if kind else pattern.split(".")
    n = len(base_labels)
    if len(host_labels) < n or host_labels[len(host_labels) - n :] != base_labels:
        return False
    extra = len(host_labels) - n
    if kind == "":
        return extra == 0 or (sub and extra >= 1)
    if kind == "**":
        return True
    return extra == 1 or (sub and extra >= 1)


@given(pattern_and_host())
def test_matching_agrees_with_a_reference_matcher(case: tuple[str, bool, str]) -> None:
    pattern, sub, host = case
    entry = pinsdk.DomainPins(pattern, [A, B], include_subdomains=sub)
    expected = _reference(pattern, sub, host)
    assert entry.matches(host) is expected
    assert HostPattern.parse(pattern).matches(normalize_host(host), include_subdomains=sub) is (
        expected
    )
    policy = pinsdk.PinPolicy([entry])
    assert (policy.lookup(host) == (entry,)) is expected
    assert policy.match_fast(host) == policy.lookup(host)
    bulk = pinsdk.PinPolicy.from_dict(
        {"domains": [{"host": pattern, "pins": [A, B], "include_subdomains": sub}]}
    )
    assert (len(bulk.lookup(host)) == 1) is expected


def test_glued_suffix_is_not_a_subdomain() -> None:
    entry = pinsdk.DomainPins("api.example.com", [A, B], include_subdomains=True)
    assert entry.matches("x.api.example.com")
    assert not entry.matches("evilapi.example.com")


# -- real TLS: the spellings that reached a rogue server before ----------------------------


@pytest.fixture(scope="module")
def rogue_everywhere(rogue_ca: trustme.CA) -> trustme.LeafCert:
    """A rogue certificate valid for loopback under every spelling tried here."""
    return rogue_ca.issue_cert("::1", "127.0.0.1", "127.1", "2130706433", "0x7f.1")


def _start(cert: trustme.LeafCert, bind: str) -> LoopbackTLSServer:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return LoopbackTLSServer(ctx, http2=False, bind=bind).start()


def _have_ipv6() -> bool:
    try:
        with socket.create_server(("::1", 0), family=socket.AF_INET6):
            return True
    except OSError:
        return False


IPV6 = pytest.mark.skipif(not _have_ipv6(), reason="no IPv6 loopback on this machine")


@IPV6
@pytest.mark.anyio
@pytest.mark.parametrize("policy_host", ["::1", "0:0:0:0:0:0:0:1", "[0::1]"])
@pytest.mark.parametrize("url_host", ["[::1]", "[0:0:0:0:0:0:0:1]", "[0::1]", "[0:0::0:1]"])
async def test_ipv6_spellings_are_pinned_on_real_tls(
    policy_host: str,
    url_host: str,
    pins: dict[str, str],
    rogue_everywhere: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
) -> None:
    server = _start(rogue_everywhere, "::1")
    policy = pinsdk.PinPolicy(
        [pinsdk.DomainPins(policy_host, [pins["intermediate"], pins["root"]])]
    )
    try:
        async with pinsdk.AsyncClient(pins=policy, verify=device_trust()) as client:
            with pytest.raises(pinsdk.PinValidationError) as caught:
                await client.get(
                    f"https://{url_host}:{server.port}/", headers={"Authorization": TOKEN}
                )
        assert caught.value.host == "::1"
        assert server.received == b""
    finally:
        server.stop()


@pytest.mark.anyio
@pytest.mark.parametrize("url_host", ["127.1", "2130706433", "0x7f.1"])
async def test_ipv4_spellings_are_pinned_on_real_tls(
    url_host: str,
    pins: dict[str, str],
    rogue_everywhere: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
) -> None:
    server = _start(rogue_everywhere, "127.0.0.1")
    policy = pinsdk.PinPolicy(
        [pinsdk.DomainPins("127.0.0.1", [pins["intermediate"], pins["root"]])]
    )
    try:
        async with pinsdk.AsyncClient(pins=policy, verify=device_trust()) as client:
            with pytest.raises(pinsdk.PinValidationError) as caught:
                await client.get(
                    f"https://{url_host}:{server.port}/", headers={"Authorization": TOKEN}
                )
        assert caught.value.host == "127.0.0.1"
        assert server.received == b""
    finally:
        server.stop()


@pytest.mark.anyio
@pytest.mark.parametrize(
    "url_host", ["[0:0:0:0:0:0:0:1]", "[0::1]", "127.1", "[::ffff:127.0.0.1]", "LOCALHOST."]
)
async def test_plaintext_guard_sees_every_spelling(
    url_host: str, device_trust: Callable[[], ssl.SSLContext]
) -> None:
    policy = pinsdk.PinPolicy(
        [
            pinsdk.DomainPins("::1", [A, B]),
            pinsdk.DomainPins("127.0.0.1", [A, B]),
            pinsdk.DomainPins("localhost", [A, B]),
        ]
    )
    async with pinsdk.AsyncClient(pins=policy, verify=device_trust()) as client:
        with pytest.raises(pinsdk.PlaintextRequestError):
            await client.get(f"http://{url_host}:9/")
