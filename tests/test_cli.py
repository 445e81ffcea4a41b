"""The pinsdk command: keygen, sign, verify (run in-process on temporary files)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

import pinsdk
from pinsdk._cli import main

A = "sha256/" + base64.b64encode(hashlib.sha256(b"a").digest()).decode()
B = "sha256/" + base64.b64encode(hashlib.sha256(b"b").digest()).decode()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "policy.json").write_text(
        json.dumps({"domains": [{"host": "api.example.com", "pins": [A, B]}], "deny": []})
    )
    return tmp_path


@pytest.mark.parametrize("alg", ["ed25519", "p256"])
def test_keygen_writes_0600_private_and_public(
    workdir: Path, capsys: pytest.CaptureFixture[str], alg: str
) -> None:
    assert main(["keygen", "--alg", alg, "--out", "signing.key"]) == 0
    mode = stat.S_IMODE(os.stat("signing.key").st_mode)
    assert mode == 0o600
    out = capsys.readouterr().out
    public = pinsdk._core.keys.TrustedKey.load(Path("signing.key.pub").read_bytes())
    assert f"keyid: {public.keyid}" in out
    assert public.algorithm == ("ed25519" if alg == "ed25519" else "ecdsa-p256")
    assert main(["keygen", "--out", "signing.key"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err


def test_sign_and_verify_with_threshold(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["keygen", "--out", "k1"])
    main(["keygen", "--alg", "p256", "--out", "k2"])
    args = ["sign", "policy.json", "--key", "k1", "--key", "k2", "--version", "4"]
    assert main([*args, "--expires", "30d", "--refresh-interval", "600", "--out", "doc.json"]) == 0
    verified = pinsdk.verify_envelope(
        Path("doc.json").read_bytes(),
        [Path("k1.pub").read_bytes(), Path("k2.pub").read_bytes()],
        threshold=2,
    )
    assert verified.version == 4
    assert verified.refresh_interval == 600
    assert verified.policy.pins_for("api.example.com") == {A, B}
    assert 29 * 86400 < (verified.expires - verified.issued_at).total_seconds() <= 30 * 86400
    capsys.readouterr()
    ok = ["verify", "doc.json", "--trusted-key", "k1.pub", "--trusted-key", "k2.pub"]
    assert main([*ok, "--threshold", "2"]) == 0
    assert "OK: version 4, 1 domains" in capsys.readouterr().out
    main(["keygen", "--out", "k3"])
    capsys.readouterr()
    assert main(["verify", "doc.json", "--trusted-key", "k3.pub"]) == 1
    assert "REJECTED: signed by 0 of the current trusted keys" in capsys.readouterr().out


def test_sign_to_stdout_and_rotation(
    workdir: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    main(["keygen", "--out", "old"])
    main(["keygen", "--out", "new"])
    capsysbinary.readouterr()
    code = main(
        [
            "sign",
            "policy.json",
            "--key",
            "old",
            "--key",
            "new",
            "--version",
            "2",
            "--expires",
            "2h",
            "--new-key",
            "new.pub",
        ]
    )
    assert code == 0
    envelope = capsysbinary.readouterr().out
    verified = pinsdk.verify_envelope(envelope, [Path("old.pub").read_bytes()])
    assert verified.rotated_keys is not None
    assert [k.keyid for k in verified.rotated_keys.keys] == [
        pinsdk._core.keys.TrustedKey.load(Path("new.pub").read_bytes()).keyid
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["sign", "missing.json", "--key", "k", "--version", "1", "--expires", "1d"],
            "cannot read policy",
        ),
        (
            ["sign", "policy.json", "--key", "k", "--version", "1", "--expires", "soon"],
            "neither a duration",
        ),
        (["sign", "policy.json", "--key", "k", "--version", "0", "--expires", "1d"], "at least 1"),
        (
            ["sign", "policy.json", "--key", "policy.json", "--version", "1", "--expires", "1d"],
            "'policy.json' is an unsigned pin policy (JSON with 'domains'), not a private key",
        ),
        (["sign", "bad.json", "--key", "k", "--version", "1", "--expires", "1d"], "'md5/x'"),
        (
            ["verify", "policy.json", "--trusted-key", "nope.pub"],
            "cannot read --trusted-key file 'nope.pub'",
        ),
    ],
)
def test_errors_exit_2_with_a_message(
    workdir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    main(["keygen", "--out", "k"])
    (workdir / "bad.json").write_text(
        json.dumps({"domains": [{"host": "a.com", "pins": ["md5/x"]}]})
    )
    capsys.readouterr()
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_expired_documents_and_allow_expired(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["keygen", "--out", "k"])
    past = "2020-01-02T00:00:00Z"
    assert main(["sign", "policy.json", "--key", "k", "--version", "1", "--expires", past]) == 2
    from pinsdk._core.keys import load_private_key

    key = load_private_key(Path("k").read_bytes())
    old = pinsdk.sign_envelope(
        {
            "spec_version": 1,
            "version": 1,
            "issued_at": "2020-01-01T00:00:00Z",
            "expires": past,
            "domains": [],
        },
        key.key,
    )
    Path("old.json").write_bytes(old)
    capsys.readouterr()
    assert main(["verify", "old.json", "--trusted-key", "k.pub"]) == 1
    assert "expired at 2020-01-02" in capsys.readouterr().out
    assert main(["verify", "old.json", "--trusted-key", "k.pub", "--allow-expired"]) == 0
    out = capsys.readouterr().out
    assert "EXPIRED: the document expired" in out
    assert "clients refuse it (checked anyway because of --allow-expired)" in out


def test_demo_subcommand_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--help"])
    assert info.value.code == 0
    assert "pinsdk demo" in capsys.readouterr().out
