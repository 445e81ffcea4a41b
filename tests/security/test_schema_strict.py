"""A typo must not turn pinning off: one strict schema for policies and signed documents.

Issue 12, item 3. A misspelt key ("domian", "expire", "mdoe") used to be ignored with a
warning, so a policy or a signed update could pin nothing, or lose an expiry or a mode,
and still be signed, verified and installed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

import pinsdk
from pinsdk import DomainPins, PinConfigError, PinPolicy, UpdateStatus
from pinsdk._cli import main
from pinsdk._core.envelope import PAYLOAD_TYPE, pae
from pinsdk._core.schema import DOCUMENT, DOMAIN, HOST_GROUP, KEYS, POLICY
from pinsdk._demo.loopback import LoopbackTLSServer

from ..conftest import TOKEN
from ..signing import ed25519_key, payload, public_pem
from ..updates import UpdateServer

A = "sha256/" + base64.b64encode(hashlib.sha256(b"a").digest()).decode()
B = "sha256/" + base64.b64encode(hashlib.sha256(b"b").digest()).decode()
BACKUP = "sha256/" + base64.b64encode(hashlib.sha256(b"backup").digest()).decode()
ENTRY = {"host": "api.example.com", "pins": [A, B]}
DOCS = Path(__file__).parent.parent.parent / "docs"


def signed_as_is(body: dict[str, Any], key: Any) -> bytes:
    """What a careless (or hostile) signer publishes: any payload, validly signed."""
    data = json.dumps(body).encode()
    sig = key.sign(pae(PAYLOAD_TYPE, data))
    return json.dumps(
        {
            "payloadType": PAYLOAD_TYPE,
            "payload": base64.b64encode(data).decode(),
            "signatures": [{"sig": base64.b64encode(sig).decode()}],
        }
    ).encode()


# (policy JSON, the key it misspells, the key suggested)
TYPOS = [
    ({"domian": [ENTRY]}, "domian", "domains"),
    ({"Domains": [ENTRY]}, "Domains", "domains"),
    ({"domains": [{**ENTRY, "expire": "2030-01-01T00:00:00Z"}]}, "expire", "expires"),
    ({"domains": [{**ENTRY, "mdoe": "report"}]}, "mdoe", "mode"),
    (
        {"domains": [{**ENTRY, "include_subdomain": True}]},
        "include_subdomain",
        "include_subdomains",
    ),
    ({"domains": [ENTRY], "require_bakup": True}, "require_bakup", "require_backup"),
]


@pytest.mark.parametrize(("doc", "typo", "meant"), TYPOS, ids=[t[1] for t in TYPOS])
def test_a_misspelt_key_is_an_error_naming_it_and_the_key_meant(
    doc: dict[str, Any], typo: str, meant: str
) -> None:
    with pytest.raises(PinConfigError) as info:
        PinPolicy.from_dict(doc)
    assert f"unknown key {typo!r}" in str(info.value)
    assert f"did you mean {meant!r}?" in str(info.value)


def test_a_typo_in_one_entry_of_a_bulk_document_is_found() -> None:
    """The fast path for large documents refuses it too, naming the key and the host."""
    entries: list[dict[str, Any]] = [
        {"host": f"h{i}.example.com", "pins": [A, B]} for i in range(2_000)
    ]
    entries[1_234] = {**entries[1_234], "expire": "2030-01-01T00:00:00Z"}
    with pytest.raises(
        PinConfigError, match=r"unknown key 'expire' in domain 'h1234\.example\.com'"
    ):
        PinPolicy.from_dict({"domains": entries})


def test_domains_is_required_and_an_explicit_empty_list_is_deliberate() -> None:
    with pytest.raises(PinConfigError, match="the pin policy is missing 'domains'"):
        PinPolicy.from_dict({"version": 3, "deny": []})
    assert PinPolicy.from_dict({"domains": []}) == PinPolicy()
    assert PinPolicy().domains == ()  # built in Python: no file, no typo


def test_a_key_of_another_level_says_where_it_belongs() -> None:
    with pytest.raises(PinConfigError, match="'spec_version' is a key of a pin document"):
        PinPolicy.from_dict({"domains": [], "spec_version": 1})
    with pytest.raises(PinConfigError, match="'deny' is a key of a pin policy"):
        PinPolicy.from_dict({"domains": [{**ENTRY, "deny": []}]})


def test_extension_keys_are_allowed_at_every_level_and_others_are_not() -> None:
    key = ed25519_key()
    rotation = {"trusted": [public_pem(key)], "threshold": 1, "x-note": "ok"}
    body = payload(3, [{**ENTRY, "x-team": "api"}], keys=rotation, **{"x-build": 7})
    verified = pinsdk.verify_envelope(signed_as_is(body, key), [key.public_key()])
    assert verified.policy.pins_for("api.example.com") == {A, B}
    assert PinPolicy.from_dict({"domains": [{**ENTRY, "x-a": 1}], "x-b": 2}).domains == (
        DomainPins("api.example.com", [A, B]),
    )
    for level, bad in [
        ("the payload", {**body, "build": 7}),
        ("domain 'api.example.com'", {**body, "domains": [{**ENTRY, "team": "api"}]}),
        ("'keys'", {**body, "keys": {**rotation, "note": "ok"}}),
    ]:
        with pytest.raises(pinsdk.EnvelopeFormatError) as info:
            pinsdk.verify_envelope(signed_as_is(bad, key), [key.public_key()])
        assert re.search(rf"unknown key '\w+' in {re.escape(level)}", info.value.reason), level


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"domian": [ENTRY], "domains": None}, "unknown key 'domian' in the payload"),
        ({"domains": [{**ENTRY, "mdoe": "report"}]}, "unknown key 'mdoe'"),
        ({"domains": None}, "the payload is missing 'domains'"),
    ],
    ids=["top level", "entry", "missing domains"],
)
def test_a_signed_document_with_an_unknown_or_missing_key_is_rejected(
    change: dict[str, Any], reason: str
) -> None:
    key = ed25519_key()
    body = {k: v for k, v in {**payload(4), **change}.items() if v is not None}
    with pytest.raises(pinsdk.EnvelopeFormatError) as info:
        pinsdk.verify_envelope(signed_as_is(body, key), [key.public_key()])
    assert reason in info.value.reason


def test_sign_envelope_refuses_what_every_client_would_refuse() -> None:
    key = ed25519_key()
    with pytest.raises(PinConfigError, match=r"refusing to sign.*unknown key 'domian'"):
        pinsdk.sign_envelope({**payload(2), "domian": [ENTRY]}, key)
    envelope = json.loads(pinsdk.sign_envelope(payload(2, [ENTRY]), key))
    with pytest.raises(
        PinConfigError, match="is a key of a signed envelope, not of a pin document"
    ):
        pinsdk.sign_envelope(envelope, key)


@pytest.mark.anyio
async def test_a_client_rejects_an_update_with_a_misspelt_key_and_stays_pinned(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    """The update would pin nothing ("domian"); it is REJECTED naming the key, the pins in
    force stay exactly as they were, and an impostor is still refused in the handshake."""
    signer = ed25519_key()
    updates = UpdateServer(serve, api_cert)
    source = pinsdk.DynamicPins(
        updates.url, [public_pem(signer)], verify=device_trust(), auto_refresh=False
    )
    first = signed_as_is(
        payload(1, [{"host": "127.0.0.1", "pins": [pins["leaf"], BACKUP]}]), signer
    )
    assert (await source.apply_document(first)).status is UpdateStatus.UPDATED
    before = source.current
    typo = {**payload(2), "domian": [{"host": "127.0.0.1", "pins": [A, B]}]}
    del typo["domains"]
    result = await source.apply_document(signed_as_is(typo, signer))
    assert result.status is UpdateStatus.REJECTED
    assert "unknown key 'domian'" in result.reason
    assert "did you mean 'domains'?" in result.reason
    assert source.current is before
    assert source.state.version == 1
    rogue = serve(rogue_cert)
    async with pinsdk.AsyncClient(pins=source, verify=device_trust()) as client:
        with pytest.raises(pinsdk.PinValidationError):
            await client.get(rogue.url(), headers={"Authorization": TOKEN})
    assert rogue.wait_idle()
    assert rogue.received == b""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    assert main(["keygen", "--out", "k"]) == 0
    return tmp_path


SIGN = ["sign", "policy.json", "--key", "k", "--version", "5", "--expires", "30d"]


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"domian": [ENTRY]}, "unknown key 'domian' in the pin policy; did you mean 'domains'?"),
        ({"domains": [{**ENTRY, "expire": "2030-01-01T00:00:00Z"}]}, "did you mean 'expires'?"),
        ({"deny": []}, "the pin policy is missing 'domains'"),
        ({"domains": []}, "--allow-empty"),
    ],
    ids=["top-level typo", "entry typo", "no domains", "empty domains"],
)
def test_pinsdk_sign_refuses_a_policy_that_pins_nothing_by_mistake(
    workdir: Path, capsys: pytest.CaptureFixture[str], policy: dict[str, Any], message: str
) -> None:
    (workdir / "policy.json").write_text(json.dumps(policy))
    capsys.readouterr()
    assert main([*SIGN, "--out", "doc.json"]) == 2
    assert message in capsys.readouterr().err
    assert not (workdir / "doc.json").exists()


def test_pinsdk_sign_allow_empty_signs_a_deliberate_unpin_all(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "policy.json").write_text(json.dumps({"domains": []}))
    assert main([*SIGN, "--allow-empty", "--out", "doc.json"]) == 0
    verified = pinsdk.verify_envelope(
        (workdir / "doc.json").read_bytes(), [Path("k.pub").read_bytes()]
    )
    assert verified.policy.domains == ()


def test_pinsdk_sign_refuses_an_envelope_as_input(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "policy.json").write_text(json.dumps({"domains": [ENTRY]}))
    assert main([*SIGN, "--out", "doc.json"]) == 0
    capsys.readouterr()
    resign = ["sign", "doc.json", "--key", "k", "--version", "6", "--expires", "30d"]
    assert main([*resign, "--out", "again.json"]) == 2
    assert "'doc.json' is a signed envelope, not a policy" in capsys.readouterr().err
    assert not (workdir / "again.json").exists()


def test_pinsdk_sign_keeps_require_backup(workdir: Path) -> None:
    """A policy key the document can carry is not dropped on the way."""
    (workdir / "policy.json").write_text(json.dumps({"domains": [ENTRY], "require_backup": True}))
    assert main([*SIGN, "--out", "doc.json"]) == 0
    verified = pinsdk.verify_envelope(
        (workdir / "doc.json").read_bytes(), [Path("k.pub").read_bytes()]
    )
    assert verified.policy.require_backup is True


def _documented_keys(page: str, heading: str) -> set[str]:
    """The first column of the first table under ``heading`` in docs/``page``."""
    text = (DOCS / page).read_text()
    section = text.split(heading, 1)[1]
    rows = re.findall(r"^\| `([^`]+)` \|", section.split("\n\n|", 1)[1].split("\n\n", 1)[0], re.M)
    return set(rows)


def test_the_docs_key_tables_list_exactly_the_schema_keys() -> None:
    policy = _documented_keys("static-pinning.md", "## The policy JSON")
    assert {k for k in policy if "." not in k} == POLICY.keys
    assert {k.removeprefix("domains[].") for k in policy if "." in k} == DOMAIN.keys
    groups = _documented_keys("static-pinning.md", "### Host groups")
    assert {k.removeprefix("host_groups[].") for k in groups} == HOST_GROUP.keys
    assert _documented_keys("update-format.md", "## Payload") == DOCUMENT.keys
    keys = _documented_keys("update-format.md", "### The `keys` object")
    assert {k.removeprefix("keys.") for k in keys} == KEYS.keys
