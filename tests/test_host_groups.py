"""Host groups: many hosts sharing one pin list, in policies and signed documents."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

import pinsdk
from pinsdk._cli import main

from .signing import payload

A = "sha256/" + base64.b64encode(hashlib.sha256(b"a").digest()).decode()
B = "sha256/" + base64.b64encode(hashlib.sha256(b"b").digest()).decode()
KEY = ed25519.Ed25519PrivateKey.generate()


def _policy(**doc: Any) -> pinsdk.PinPolicy:
    return pinsdk.PinPolicy.from_dict({"domains": [], **doc})


def test_a_group_host_is_the_entry_its_group_describes() -> None:
    policy = _policy(
        domains=[{"host": "first.example", "pins": [A, B]}],
        host_groups=[
            {"hosts": ["a.example", "*.b.example"], "pins": [A, B]},
            {"hosts": ["c.example"], "pins": [B, A], "include_subdomains": True, "mode": "report"},
        ],
    )
    assert [d.host for d in policy.domains] == [
        "first.example",
        "a.example",
        "*.b.example",
        "c.example",
    ]
    assert policy.domains[3] == pinsdk.DomainPins(
        "c.example", [A, B], include_subdomains=True, mode="report"
    )
    assert policy.lookup("x.b.example") == (policy.domains[2],)
    assert policy.lookup("deep.x.c.example") == (policy.domains[3],)


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ({"hosts": ["a.example"]}, "a host group is missing 'pins'"),
        ({"pins": [A, B]}, "a host group is missing 'hosts'"),
        ({"hosts": ["a.example"], "pins": [A], "host": "x"}, "'host' is a key of a domain entry"),
        ({"hosts": ["a.example"], "pins": [A], "mdoe": "report"}, "did you mean 'mode'?"),
        ({"hosts": [], "pins": [A, B]}, "must be a non-empty list"),
        ({"hosts": "a.example", "pins": [A, B]}, "must be a non-empty list"),
        ({"hosts": ["a.example"], "pins": []}, "host group of 'a.example' has no pins"),
        ({"hosts": ["a.example"], "pins": ["sha1/x"]}, "algorithm 'sha1' is not supported"),
        ({"hosts": ["a.example"], "pins": [A], "mode": "x"}, "must be 'enforce' or 'report'"),
        ({"hosts": ["a.example"], "pins": [A], "include_subdomains": 1}, "true or false"),
        ({"hosts": ["a.example", "b..example"], "pins": [A, B]}, "'b..example' is invalid"),
        ({"hosts": ["a.example", 3], "pins": [A, B]}, "must be a non-empty string, not 3"),
        ({"hosts": ["1.2.3.4"], "pins": [A, B], "include_subdomains": True}, "IP address"),
    ],
)
def test_a_bad_group_is_an_error_naming_what_is_wrong(groups: Any, message: str) -> None:
    with pytest.raises(pinsdk.PinConfigError, match=message.replace("?", r"\?")):
        _policy(host_groups=[groups])


def test_host_groups_must_be_a_list_of_objects() -> None:
    with pytest.raises(pinsdk.PinConfigError, match="'host_groups' must be a list"):
        _policy(host_groups={"hosts": ["a.example"], "pins": [A, B]})
    with pytest.raises(pinsdk.PinConfigError, match="a host group must be an object"):
        _policy(host_groups=["a.example"])


def test_signed_groups_count_against_the_limits() -> None:
    limits = pinsdk.UpdateLimits(max_domains=3, max_pins_per_domain=2)
    three = [{"hosts": ["a.example", "b.example"], "pins": [A, B]}]
    ok = payload(1, [{"host": "c.example", "pins": [A, B]}], host_groups=three)
    verified = pinsdk.verify_envelope(
        pinsdk.sign_envelope(ok, KEY, limits=limits), [KEY.public_key()], limits=limits
    )
    assert len(verified.policy.domains) == 3
    four = payload(1, [{"host": "c.example", "pins": [A, B]}], host_groups=[*three, *three[:1]])
    with pytest.raises(pinsdk.PinConfigError, match="5 domains; at most 3"):
        pinsdk.sign_envelope(four, KEY, limits=limits)
    pins = [A, B, "sha256/" + base64.b64encode(bytes(32)).decode()]
    wide = payload(1, [], host_groups=[{"hosts": ["a.example"], "pins": pins}])
    with pytest.raises(pinsdk.PinConfigError, match="has 3 pins; at most 2"):
        pinsdk.sign_envelope(wide, KEY, limits=limits)


def test_pinsdk_sign_host_groups_makes_a_smaller_document_with_the_same_pins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    domains = [{"host": f"h{i}.example.com", "pins": [A, B]} for i in range(200)]
    domains.append({"host": "late.example.com", "pins": [A, B], "expires": "2099-01-01T00:00:00Z"})
    Path("policy.json").write_text(json.dumps({"domains": domains}))
    main(["keygen", "--out", "k"])
    sign = ["sign", "policy.json", "--key", "k", "--version", "1", "--expires", "1d"]
    assert main([*sign, "--out", "plain.json"]) == 0
    assert main([*sign, "--host-groups", "--out", "grouped.json"]) == 0
    plain, grouped = Path("plain.json").read_bytes(), Path("grouped.json").read_bytes()
    assert len(grouped) < len(plain) / 3
    body = json.loads(base64.b64decode(json.loads(grouped)["payload"]))
    assert [d["host"] for d in body["domains"]] == ["late.example.com"]  # expires: not grouped
    assert len(body["host_groups"]) == 1
    keys = [Path("k.pub").read_bytes()]
    a = pinsdk.verify_envelope(plain, keys).policy
    b = pinsdk.verify_envelope(grouped, keys).policy
    assert set(a.domains) == set(b.domains)
    assert main(["verify", "grouped.json", "--trusted-key", "k.pub"]) == 0
