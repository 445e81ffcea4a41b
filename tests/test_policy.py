"""PinPolicy and DomainPins: construction, JSON, expiry, deny, backup pins (pure code)."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pinsdk import DomainPins, PinConfigError, PinPolicy


def pin(seed: str) -> str:
    return "sha256/" + base64.b64encode(hashlib.sha256(seed.encode()).digest()).decode()


A, B, C = pin("a"), pin("b"), pin("c")

DOC = {
    "version": 3,
    "domains": [
        {
            "host": "api.example.com",
            "pins": [A, B],
            "include_subdomains": False,
            "mode": "enforce",
            "expires": "2027-06-01T00:00:00Z",
        },
        {"host": "*.cdn.example.com", "pins": [C, A], "mode": "report"},
    ],
    "deny": [C],
}


def test_from_dict_to_dict_roundtrip() -> None:
    policy = PinPolicy.from_dict(DOC)
    assert policy.version == 3
    assert policy.deny == {C}
    assert policy.domains[0].expires == datetime(2027, 6, 1, tzinfo=timezone.utc)
    assert policy.domains[1].mode == "report"
    again = PinPolicy.from_dict(json.loads(json.dumps(policy.to_dict())))
    assert again == policy
    assert hash(again) == hash(policy)
    assert policy.to_dict()["domains"][0]["expires"] == "2027-06-01T00:00:00Z"


def test_equal_by_value_not_order_of_pins() -> None:
    assert PinPolicy([DomainPins("a.com", [A, B])]) == PinPolicy([DomainPins("A.com.", [B, A])])
    assert PinPolicy([DomainPins("a.com", [A, B])]) != PinPolicy([DomainPins("a.com", [A, C])])


def test_load(tmp_path: Path) -> None:
    path = tmp_path / "pins.json"
    path.write_text(json.dumps(DOC))
    assert PinPolicy.load(path) == PinPolicy.from_dict(DOC)
    path.write_text("{not json")
    with pytest.raises(PinConfigError, match=r"pins\.json' is not valid JSON"):
        PinPolicy.load(path)
    with pytest.raises(PinConfigError, match="cannot read pin policy"):
        PinPolicy.load(tmp_path / "missing.json")
    bad = dict(DOC, domains=[{"host": "a.com", "pins": ["sha256/nope"]}])
    path.write_text(json.dumps(bad))
    with pytest.raises(PinConfigError, match=r"pins.json': a.com: pin 'sha256/nope'"):
        PinPolicy.load(path)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "must be a JSON object"),
        ({"domains": {}}, "'domains' must be a list"),
        ({"domains": [], "deny": "sha256/x"}, "'deny' must be a list"),
        ({"domains": [{"host": "a.com"}]}, "needs 'host' and 'pins'"),
        ({"domains": [{"host": "a.com", "pins": A}]}, "must be a list"),
        ({"domains": [{"host": "a.com", "pins": []}]}, "has no pins"),
        ({"domains": [{"host": "a.com", "pins": [A, B], "mode": "audit"}]}, "'audit'"),
        ({"domains": [{"host": "a.com", "pins": [A, B], "include_subdomains": "no"}]}, "'no'"),
        ({"domains": [{"host": "a.com", "pins": [A, B], "expires": "2027-06-01"}]}, "RFC 3339"),
        ({"domains": [{"host": "a.com", "pins": [A, B], "expires": 5}]}, "RFC 3339"),
        ({"domains": ["a.com"]}, "must be an object"),
        ({"domains": [], "version": -1}, "non-negative integer"),
        ({"domains": [], "version": True}, "non-negative integer"),
        ({"domains": [], "version": "1"}, "non-negative integer"),
        ({"domains": [], "deny": ["md5/abc"]}, "'md5/abc'"),
    ],
)
def test_bad_json_names_what_is_wrong(doc: object, message: str) -> None:
    with pytest.raises(PinConfigError, match=message):
        PinPolicy.from_dict(doc)  # type: ignore[arg-type]


def test_extension_keys_are_ignored_and_unknown_keys_refused() -> None:
    doc = {"x-future": 1, "domains": [{"host": "a.com", "pins": [A, B], "x-colour": "red"}]}
    assert PinPolicy.from_dict(doc).pins_for("a.com") == {A, B}
    with pytest.raises(PinConfigError, match="unknown key 'future' in the pin policy"):
        PinPolicy.from_dict({**doc, "future": 1})
    entry = {"host": "a.com", "pins": [A, B], "colour": "red"}
    with pytest.raises(PinConfigError, match=r"unknown key 'colour' in domain 'a\.com'"):
        PinPolicy.from_dict({"domains": [entry]})


def test_expiry_turns_pinning_off_for_that_domain_only() -> None:
    now = datetime(2027, 1, 1, tzinfo=timezone.utc)
    policy = PinPolicy(
        [
            DomainPins("a.com", [A, B], expires=now + timedelta(days=1)),
            DomainPins("**.a.com", [C, B], expires="2026-12-31T23:59:59+00:00"),
        ]
    )
    assert policy.pins_for("a.com", now=now) == {A, B}
    assert policy.pins_for("a.com", now=now + timedelta(days=2)) == frozenset()
    assert policy.pins_for("a.com", now=now - timedelta(days=1)) == {A, B, C}
    assert policy.domains[0].is_expired(now + timedelta(days=1))
    assert not policy.domains[0].is_expired(now.timestamp())


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(PinConfigError, match="has no time zone"):
        DomainPins("a.com", [A, B], expires=datetime(2027, 1, 1))


def test_rfc3339_forms() -> None:
    for text in (
        "2027-06-01T02:00:00+02:00",
        "2027-06-01t00:00:00z",
        "2027-06-01 00:00:00.123456789Z",
    ):
        d = DomainPins("a.com", [A, B], expires=text)
        assert d.expires is not None
        assert (
            abs(d.expires.timestamp() - datetime(2027, 6, 1, tzinfo=timezone.utc).timestamp()) < 1
        )


def test_single_pin_warns_and_require_backup_refuses(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pinsdk"):
        PinPolicy([DomainPins("a.com", [A])])
    assert "single pin and no backup" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pinsdk"):
        PinPolicy([DomainPins("a.com", [A], mode="report")])
        PinPolicy([DomainPins("a.com", [A, B])], require_backup=True)
    assert caplog.text == ""
    with pytest.raises(PinConfigError, match=r"'a\.com' is enforced with a single pin"):
        PinPolicy([DomainPins("a.com", [A])], require_backup=True)


def test_policy_constructor_type_errors() -> None:
    with pytest.raises(PinConfigError, match="domains must hold DomainPins"):
        PinPolicy([{"host": "a.com"}])  # type: ignore[list-item]
    with pytest.raises(PinConfigError, match="list of pins, not a single string"):
        DomainPins("a.com", A)
    with pytest.raises(PinConfigError, match="require_backup"):
        PinPolicy(require_backup=1)  # type: ignore[arg-type]


def test_static_policy_is_its_own_source() -> None:
    policy = PinPolicy([DomainPins("a.com", [A, B])])
    assert policy.current is policy


def test_single_pin_rule_holds_for_documents_too(caplog: pytest.LogCaptureFixture) -> None:
    """The bulk path of from_dict (rows) warns and refuses like the constructor."""
    PinPolicy([DomainPins("warm.example", [A])])  # A is a known pin: the bulk path
    shape = {"domains": [{"host": "*.b.com", "pins": [A]}]}
    with caplog.at_level(logging.WARNING, logger="pinsdk"):
        PinPolicy.from_dict(shape)
    assert "'*.b.com' is enforced with a single pin" in caplog.text
    with pytest.raises(PinConfigError, match=r"'\*\.b\.com' is enforced with a single pin"):
        PinPolicy.from_dict({**shape, "require_backup": True})
