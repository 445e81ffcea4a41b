"""Issue 16: the pin spellings people paste are accepted when unambiguous, refused with a hint
otherwise, and the one parser agrees with an independent reference on generated spellings.

Accepted: ``sha256/<canonical base64>`` with surrounding whitespace, the prefix in any case,
and HPKP's ``pin-sha256="<base64>"``. Everything else is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

import pinsdk
from pinsdk import PinConfigError, parse_pin

DIGEST = hashlib.sha256(b"spki").digest()
B64 = base64.b64encode(DIGEST).decode()
CANONICAL = "sha256/" + B64


def reference(text: str) -> str | None:
    """An independent reading of the accepted forms: the canonical pin, or None if refused."""
    match = re.fullmatch(
        r"[ \t\n\r\f\v]*"
        r'(?:(?i:sha256)/(?P<a>[^"\s]*)|(?i:pin-sha256)="(?P<b>[^"\s]*)")'
        r"[ \t\n\r\f\v]*",
        text,
    )
    # str.strip() also strips other Unicode spaces: the reference only knows ASCII ones, so
    # the generator below only produces those.
    if match is None:
        return None
    body = match.group("a") if match.group("a") is not None else match.group("b")
    if len(body) != 44 or not re.fullmatch(r"[A-Za-z0-9+/]{43}=", body):
        return None
    try:
        raw = binascii.a2b_base64(body)
    except binascii.Error:
        return None
    if len(raw) != 32 or base64.b64encode(raw).decode() != body:
        return None
    return "sha256/" + body


def subject(text: str) -> str | None:
    try:
        return parse_pin(text)
    except PinConfigError:
        return None


@pytest.mark.parametrize(
    "text",
    [
        CANONICAL,
        f"  {CANONICAL}\n",
        "SHA256/" + B64,
        "Sha256/" + B64,
        f'pin-sha256="{B64}"',
        f'PIN-SHA256="{B64}"',
        f' pin-sha256="{B64}" ',
    ],
)
def test_unambiguous_spellings_are_accepted_as_canonical(text: str) -> None:
    assert parse_pin(text) == CANONICAL
    policy = pinsdk.PinPolicy([pinsdk.DomainPins("api.example.com", [text, CANONICAL])])
    assert policy.pins_for("api.example.com") == {CANONICAL}


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        (B64, "a bare base64 digest"),
        ("sha256:" + B64, r"write 'sha256/' \(a slash\)"),
        (DIGEST.hex(), "usually a certificate's fingerprint"),
        (DIGEST.hex().upper(), "usually a certificate's fingerprint"),
        (":".join(f"{b:02X}" for b in DIGEST), "usually a certificate's fingerprint"),
        (f"pin-sha256={B64}", "with double quotes"),
        (f"pin-sha256='{B64}'", "with double quotes"),
        ("sha1/" + base64.b64encode(DIGEST[:20]).decode(), "algorithm 'sha1' is not supported"),
        ("sha256/" + B64.rstrip("="), "44 standard base64 characters"),
        ("sha256/ " + B64, "44 standard base64 characters"),
        ("sha256/" + base64.urlsafe_b64encode(b"\xfb" * 32).decode(), "not valid base64"),
    ],
)
def test_ambiguous_or_wrong_spellings_say_what_was_expected(text: str, hint: str) -> None:
    with pytest.raises(PinConfigError, match=hint) as info:
        parse_pin(text)
    assert repr(text) in str(info.value)


def test_a_file_path_given_to_spki_pin_says_to_pass_the_contents() -> None:
    with pytest.raises(PinConfigError, match=r"pass its contents: spki_pin\(open\(path, 'rb'\)"):
        pinsdk.spki_pin("certs/api.pem")


_PIECES = st.sampled_from(
    [
        "sha256/",
        "SHA256/",
        "sHa256/",
        "sha256:",
        "sha1/",
        "pin-sha256=",
        "PIN-SHA256=",
        '"',
        "'",
        " ",
        "\t",
        "\n",
        "=",
        "/",
        "+",
        "-",
        "_",
        B64,
        B64[:-1],
        B64.rstrip("="),
        base64.b64encode(DIGEST[:31]).decode(),
        base64.b64encode(bytes(32)).decode(),
        base64.urlsafe_b64encode(b"\xfb" * 32).decode(),
        DIGEST.hex(),
        "A",
        "é",
    ]
)


_SPACE = st.sampled_from(["", " ", "\t", "\n", " \r\n"])
_PREFIX = st.sampled_from(
    [
        "sha256/",
        "SHA256/",
        "Sha256/",
        "sha256:",
        "sha-256/",
        "sha1/",
        "",
        "pin-sha256=",
        "PIN-SHA256=",
        "Pin-Sha256=",
    ]
)
_QUOTES = st.sampled_from([("", ""), ('"', '"'), ('"', ""), ("'", "'")])
_VALID = st.binary(min_size=32, max_size=32).map(lambda b: base64.b64encode(b).decode())
_BODY = st.one_of(
    _VALID,
    st.binary(min_size=30, max_size=33).map(lambda b: base64.b64encode(b).decode()),
    st.binary(min_size=32, max_size=32).map(lambda b: base64.urlsafe_b64encode(b).decode()),
    st.binary(min_size=32, max_size=32).map(lambda b: base64.b64encode(b).decode().rstrip("=")),
    st.binary(min_size=32, max_size=32).map(bytes.hex),
    st.text(alphabet="AB+/=-_ é", max_size=46),
)


@given(_SPACE, _PREFIX, _QUOTES, st.one_of(_VALID, _BODY), _SPACE)
def test_structured_spellings_agree_with_the_reference(
    lead: str, prefix: str, quotes: tuple[str, str], body: str, trail: str
) -> None:
    text = lead + prefix + quotes[0] + body + quotes[1] + trail
    assert subject(text) == reference(text)


@given(st.lists(_PIECES, max_size=6))
def test_free_spellings_agree_with_the_reference(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert subject(text) == reference(text)


@given(st.binary(min_size=32, max_size=32), st.sampled_from(["", " ", "\n", "\t "]))
def test_every_digest_round_trips_in_every_accepted_form(digest: bytes, pad: str) -> None:
    body = base64.b64encode(digest).decode()
    for text in (f"sha256/{body}", f"SHA256/{body}", f'pin-sha256="{body}"'):
        assert parse_pin(pad + text + pad) == "sha256/" + body
