"""Issue 16: the command line as a newcomer meets it. Every input error names the file and what
it holds (never a parser's traceback), summaries count what they say, and ``pinsdk pins``
understands URLs, certificate files in any order and wildcard hosts per format."""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme

import pinsdk
from pinsdk._cli import build_parser, main
from pinsdk._demo.loopback import LoopbackTLSServer

from .signing import ed25519_key, payload

A = "sha256/" + base64.b64encode(hashlib.sha256(b"a").digest()).decode()
B = "sha256/" + base64.b64encode(hashlib.sha256(b"b").digest()).decode()
LEAKS = ("Traceback", "ParseError", "MalformedFraming", "asn1", "payloadType is None")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "policy.json").write_text(
        json.dumps({"domains": [{"host": "api.example.com", "pins": [A, B]}]})
    )
    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "blob.bin").write_bytes(b"\x30\x03\x02\x01\x05")
    for name in ("k1", "k2"):
        assert main(["keygen", "--out", name]) == 0
    return tmp_path


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    for leak in LEAKS:
        assert leak not in out + err
    return code, out, err


def test_version_and_python_dash_m() -> None:
    for argv in ([sys.executable, "-m", "pinsdk", "--version"],):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"pinsdk {pinsdk.__version__}"


def test_every_subcommand_has_a_description_and_every_option_help() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subparsers.choices) >= {"keygen", "sign", "verify", "pins", "demo"}
    for name, sub in subparsers.choices.items():
        assert sub.description, name
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"pinsdk {name} {action.dest} has no help"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["verify", "policy.json", "--trusted-key", "k1.pub"],
            "'policy.json' is an unsigned pin policy",
        ),
        (["verify", "policy.json", "--trusted-key", "k1.pub"], "sign it first: pinsdk sign"),
        (
            ["verify", "doc.json", "--trusted-key", "k1"],
            "'k1' is a PEM private key, not a public key",
        ),
        (["verify", "doc.json", "--trusted-key", "k1"], "the KEY.pub file"),
        (["verify", "doc.json", "--trusted-key", "notes.txt"], "'notes.txt' is text ('hello')"),
        (
            ["verify", "k1.pub", "--trusted-key", "k1.pub"],
            "'k1.pub' is a PEM public key, not a signed",
        ),
        (["verify", "doc.json", "--trusted-key", "empty"], "'empty' is an empty file"),
        (
            ["sign", "policy.json", "--key", "k1.pub", "--version", "1", "--expires", "1d"],
            "'k1.pub' is a PEM public key, not a private key; --key takes the private key",
        ),
        (
            [
                "sign",
                "policy.json",
                "--key",
                "k1",
                "--version",
                "2",
                "--expires",
                "1d",
                "--new-key",
                "k2",
            ],
            "'k2' is a PEM private key, not a public key; --new-key takes the public key",
        ),
        (["pins", "--cert", "k1.pub"], "'k1.pub' is a PEM public key, not a certificate"),
        (["pins", "--cert", "k1.pub"], "use --key"),
        (["pins", "--cert", "policy.json"], "'policy.json' is an unsigned pin policy"),
        (["pins", "--cert", "blob.bin"], "'blob.bin' is binary data that is no DER certificate"),
        (["pins", "--key", "policy.json"], "'policy.json' is an unsigned pin policy"),
        (["pins", "https://localhost:99999/"], "is not a usable URL"),
        (["pins", "http://localhost/"], "only https:// URLs"),
        (["pins", "localhost", "--cert", "ca.pem"], "not both"),
    ],
)
def test_input_errors_name_the_file_and_what_it_is(
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    ca: trustme.CA,
    argv: list[str],
    expected: str,
) -> None:
    ca.cert_pem.write_to_path(str(workdir / "ca.pem"))
    (workdir / "doc.json").write_bytes(
        pinsdk.sign_envelope(payload(1, [{"host": "a.example", "pins": [A, B]}]), [ed25519_key()])
    )
    capsys.readouterr()
    code, _, err = run(argv, capsys)
    assert code == 2
    assert expected in err


def test_a_certificate_given_as_a_key(
    workdir: Path, ca: trustme.CA, capsys: pytest.CaptureFixture[str]
) -> None:
    ca.cert_pem.write_to_path(str(workdir / "ca.pem"))
    code, _, err = run(["pins", "--key", "ca.pem"], capsys)
    assert code == 2
    assert "'ca.pem' is a PEM certificate, not a key; use --cert" in err


def test_summaries_count_each_key_once(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    code, _, err = run(
        [
            "sign",
            "policy.json",
            "--key",
            "k1",
            "--key",
            "./k1",
            "--version",
            "1",
            "--expires",
            "1d",
            "--out",
            "doc.json",
        ],
        capsys,
    )
    assert code == 0, err
    assert "repeats a key already given: counted once" in err
    assert "with 1 key(s)" in err
    code, out, err = run(
        ["verify", "doc.json", "--trusted-key", "k1.pub", "--trusted-key", "k1.pub"], capsys
    )
    assert code == 0
    assert "given twice: counted once" in err
    assert "signed by 1 of 1 trusted keys (threshold 1)" in out


def test_rotation_does_not_count_the_new_key_as_trusted(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new_id = pinsdk._core.keys.TrustedKey.load(Path("k2.pub").read_bytes()).keyid
    old_id = pinsdk._core.keys.TrustedKey.load(Path("k1.pub").read_bytes()).keyid
    capsys.readouterr()
    code, _, err = run(
        [
            "sign",
            "policy.json",
            "--key",
            "k1",
            "--key",
            "k2",
            "--version",
            "2",
            "--expires",
            "1d",
            "--new-key",
            "k2.pub",
            "--out",
            "rot.json",
        ],
        capsys,
    )
    assert code == 0, err
    code, out, _ = run(["verify", "rot.json", "--trusted-key", "k1.pub"], capsys)
    assert code == 0
    assert f"signed by 1 of 1 trusted keys (threshold 1)\n  signed:  {old_id}\n" in out
    assert f"also signed by 1 new key(s): {new_id}" in out


@pytest.mark.parametrize(
    ("interval", "warned"), [(5, True), (59, True), (60, False), (3600, False), (10**7, True)]
)
def test_refresh_interval_outside_the_clamp_warns(
    workdir: Path, capsys: pytest.CaptureFixture[str], interval: int, warned: bool
) -> None:
    capsys.readouterr()
    code, _, err = run(
        [
            "sign",
            "policy.json",
            "--key",
            "k1",
            "--version",
            "1",
            "--expires",
            "1d",
            "--refresh-interval",
            str(interval),
            "--out",
            "doc.json",
        ],
        capsys,
    )
    assert code == 0
    assert ("outside what clients honour" in err) is warned


def test_verify_says_when_a_document_expired_within_the_leeway(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = ed25519_key()
    Path("k.pub").write_text(pinsdk._core.keys.TrustedKey.load(key.public_key()).pem)
    doc = payload(1, [{"host": "a.example", "pins": [A, B]}], expires_in=-120, issued_ago=3600)
    Path("late.json").write_bytes(pinsdk.sign_envelope(doc, [key]))
    Path("fresh.json").write_bytes(pinsdk.sign_envelope(payload(2, doc["domains"]), [key]))
    code, out, _ = run(["verify", "late.json", "--trusted-key", "k.pub"], capsys)
    assert code == 0
    assert "OK: version 1" in out
    assert "EXPIRED WITHIN LEEWAY: the document expired 12" in out  # ~120 s ago
    code, out, _ = run(["verify", "fresh.json", "--trusted-key", "k.pub"], capsys)
    assert code == 0
    assert "LEEWAY" not in out


@pytest.fixture
def chain_files(tmp_path: Path) -> dict[str, str]:
    root = trustme.CA()
    middle = root.create_child_ca()
    leaf = middle.issue_cert("example.com", "*.example.com", "api.other.test")
    paths = {}
    for name, pem in (
        ("leaf", leaf.cert_chain_pems[0].bytes()),
        ("intermediate", middle.cert_pem.bytes()),
        ("root", root.cert_pem.bytes()),
    ):
        path = tmp_path / f"{name}.pem"
        path.write_bytes(pem)
        paths[name] = str(path)
    return paths


def test_roles_follow_the_chain_not_the_file_order(
    chain_files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        [
            "pins",
            "--cert",
            chain_files["root"],
            "--cert",
            chain_files["leaf"],
            "--cert",
            chain_files["intermediate"],
        ],
        capsys,
    )
    assert code == 0
    rows = [line.split() for line in out.splitlines() if line[:1].isdigit()]
    assert [(r[0], r[1]) for r in rows] == [("0", "leaf"), ("1", "intermediate"), ("2", "root")]
    pins = {name: pinsdk.spki_pin(Path(p).read_bytes()) for name, p in chain_files.items()}
    assert [r[-1] for r in rows] == [pins["leaf"], pins["intermediate"], pins["root"]]


def test_hosts_default_to_the_certificate_dns_names(
    chain_files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        [
            "pins",
            "--cert",
            chain_files["intermediate"],
            "--cert",
            chain_files["leaf"],
            "--format",
            "pinsdk",
        ],
        capsys,
    )
    assert code == 0, err
    policy = pinsdk.PinPolicy.from_dict(json.loads(out))
    assert [d.host for d in policy.domains] == ["example.com", "*.example.com", "api.other.test"]
    code, out, _ = run(
        [
            "pins",
            "--cert",
            chain_files["leaf"],
            "--cert",
            chain_files["intermediate"],
            "--format",
            "okhttp",
            "--host",
            "only.example.com",
        ],
        capsys,
    )
    assert '"only.example.com"' in out
    assert "api.other.test" not in out


@pytest.mark.parametrize("fmt", ["android", "trustkit"])
def test_wildcards_are_translated_where_the_format_has_none(
    chain_files: dict[str, str], capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    code, out, err = run(
        [
            "pins",
            "--cert",
            chain_files["leaf"],
            "--cert",
            chain_files["intermediate"],
            "--format",
            fmt,
        ],
        capsys,
    )
    assert code == 0
    assert "*" not in out
    assert "has no wildcard hosts: '*.example.com' is written as 'example.com'" in err
    if fmt == "android":
        domains = ET.fromstring(out).findall("./domain-config/domain")
        assert [(d.text, d.get("includeSubdomains")) for d in domains] == [
            ("example.com", "true"),
            ("api.other.test", "false"),
        ]
    else:
        assert out.count("kTSKIncludeSubdomains: true") == 1
        assert '"example.com": [' in out


def test_okhttp_keeps_wildcards(
    chain_files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        [
            "pins",
            "--cert",
            chain_files["leaf"],
            "--cert",
            chain_files["intermediate"],
            "--format",
            "okhttp",
        ],
        capsys,
    )
    assert code == 0
    assert '.add("*.example.com", "sha256/' in out
    assert "wildcard" not in err


def test_a_url_is_a_target(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    ca: trustme.CA,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = serve(api_cert)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    code, out, err = run(
        [
            "pins",
            f"https://localhost:{server.port}/v1/me?x=1",
            "--cafile",
            str(ca_file),
            "--format",
            "pinsdk",
            "--pin",
            "all",
        ],
        capsys,
    )
    assert code == 0, err
    assert [d.host for d in pinsdk.PinPolicy.from_dict(json.loads(out)).domains] == ["localhost"]
