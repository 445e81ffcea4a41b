"""`pinsdk pins` against loopback TLS servers with trustme chains, and offline files."""

from __future__ import annotations

import json
import ssl
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

import pinsdk
from pinsdk._cli import main
from pinsdk._core.pins import spki_pin_of_key
from pinsdk._demo.loopback import LoopbackTLSServer

from .signing import ed25519_key


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    path.write_bytes(ca.cert_pem.bytes())
    return str(path)


@pytest.fixture
def backup_pub(tmp_path: Path) -> tuple[str, str]:
    key = ed25519_key()
    path = tmp_path / "backup.pub"
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return str(path), spki_pin_of_key(key.public_key())


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_table_shows_the_verified_chain(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    ca_file: str,
    pins: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = serve(api_cert)
    code, out, err = run(["pins", f"localhost:{server.port}", "--cafile", ca_file], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == [
        "#",
        "role",
        "not",
        "after",
        "days",
        "key",
        "source",
        "verified",
        "pin",
    ]
    rows = [line.split() for line in lines if line[:1].isdigit()]
    assert [r[0] for r in rows] == ["0", "1", "2"]
    assert [r[1] for r in rows] == ["leaf", "intermediate", "root"]
    assert [r[-1] for r in rows] == [pins["leaf"], pins["intermediate"], pins["root"]]
    assert [r[-3] for r in rows] == ["server", "server", "store"]  # the root came from the store
    assert all(r[-2] == "yes" for r in rows)
    assert "subject: " in out
    assert "\x1b[" not in out  # no colours when not a terminal
    again = run(["pins", f"localhost:{server.port}", "--cafile", ca_file], capsys)[1]
    assert again == out  # stable enough to diff


@pytest.mark.parametrize("fmt", ["pinsdk", "okhttp", "android", "trustkit", "hpkp"])
def test_every_format_carries_the_pins(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    ca_file: str,
    pins: dict[str, str],
    backup_pub: tuple[str, str],
    fmt: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = serve(api_cert)
    path, backup_pin = backup_pub
    code, out, err = run(
        ["pins", f"localhost:{server.port}", "--cafile", ca_file, "--format", fmt, "--key", path],
        capsys,
    )
    assert code == 0, err
    assert err == ""  # three pins: no warning
    expected = [pins["leaf"], pins["intermediate"], backup_pin]
    for pin in expected:
        assert (pin if fmt in ("pinsdk", "okhttp") else pin[7:]) in out
    assert pins["root"][7:] not in out  # default: leaf and intermediate (plus backups)
    if fmt == "pinsdk":
        policy = pinsdk.PinPolicy.from_dict(json.loads(out))
        assert policy.pins_for("localhost") == set(expected)
        assert policy.domains[0].expires is not None
    elif fmt == "android":
        root = ET.fromstring(out)
        assert root.tag == "network-security-config"
        assert root.find("./domain-config/domain").text == "localhost"  # type: ignore[union-attr]
        pin_set = root.find("./domain-config/pin-set")
        assert pin_set is not None
        assert pin_set.get("expiration")
        assert [p.get("digest") for p in pin_set] == ["SHA-256"] * 3
        assert sorted(p.text for p in pin_set) == sorted(pin[7:] for pin in expected)  # type: ignore[type-var]
    elif fmt == "okhttp":
        assert out.count('.add("localhost", "sha256/') == 3
    elif fmt == "hpkp":
        assert out.startswith("Public-Key-Pins: ")
        assert out.count("pin-sha256=") == 3
    else:
        assert "kTSKPublicKeyHashes" in out
        assert '"localhost"' in out


def test_pin_choices_and_the_backup_warning(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    ca_file: str,
    pins: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = serve(api_cert)
    base = ["pins", f"localhost:{server.port}", "--cafile", ca_file, "--format", "pinsdk"]
    code, out, err = run([*base, "--pin", "leaf"], capsys)
    assert code == 0
    assert "only 1 pin would be emitted" in err
    assert "--key" in err
    assert json.loads(out)["domains"][0]["pins"] == [pins["leaf"]]
    code, out, _ = run([*base, "--pin", "all"], capsys)
    assert set(json.loads(out)["domains"][0]["pins"]) == set(pins.values())
    code, out, _ = run(
        [*base, "--pin", "root", "--include-subdomains", "--host", "api.example.com"], capsys
    )
    domain = json.loads(out)["domains"][0]
    assert domain["host"] == "api.example.com"
    assert domain["include_subdomains"] is True


def test_offline_certificates_and_keys(
    api_cert: trustme.LeafCert,
    ca: trustme.CA,
    pins: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bundle = tmp_path / "chain.pem"
    bundle.write_bytes(b"".join(p.bytes() for p in api_cert.cert_chain_pems) + ca.cert_pem.bytes())
    der = tmp_path / "leaf.der"
    der.write_bytes(ssl.PEM_cert_to_DER_cert(api_cert.cert_chain_pems[0].bytes().decode()))
    private = tmp_path / "backup.key"
    key = ed25519_key()
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    code, out, err = run(
        ["pins", "--cert", str(bundle), "--cert", str(der), "--key", str(private)], capsys
    )
    assert code == 0, err
    for pin in pins.values():
        assert pin in out
    assert out.count(pins["leaf"]) == 1  # the leaf is in both files: listed once
    assert spki_pin_of_key(key.public_key()) in out
    assert "backup" in out
    code, out, err = run(["pins", "--cert", str(bundle), "--format", "okhttp"], capsys)
    assert code == 0, err  # the hosts default to the leaf's DNS names
    assert '.add("api.pinsdk.test", "' in out
    assert '.add("localhost", "' in out
    code, out, _ = run(
        ["pins", "--cert", str(bundle), "--format", "hpkp", "--host", "a.example"], capsys
    )
    assert code == 0
    assert pins["leaf"][7:] in out


def test_errors_and_exit_codes(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import socket

    server = serve(api_cert)
    with socket.create_server(("127.0.0.1", 0)) as s:
        closed = s.getsockname()[1]
    code, _, err = run(["pins", f"127.0.0.1:{closed}"], capsys)
    assert code == 3
    assert "cannot connect to 127.0.0.1" in err
    code, _, err = run(["pins", f"localhost:{server.port}"], capsys)  # trustme CA not trusted
    assert code == 3
    assert "certificate verification failed" in err
    assert "--cafile" in err
    code, out, err = run(["pins", f"localhost:{server.port}", "--insecure"], capsys)
    assert code == 0
    assert "WARNING: --insecure" in err
    rows = [line.split() for line in out.splitlines() if line[:1].isdigit()]
    assert rows
    assert all(r[-2] == "server" for r in rows)  # no "verified" value: the column is blank
    code, _, err = run(
        ["pins", f"localhost:{server.port}", "--insecure", "--format", "pinsdk"], capsys
    )
    assert code == 2
    assert "only for inspecting" in err
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    code, _, err = run(["pins", "--cert", str(bad)], capsys)
    assert code == 2
    assert "'not a certificate'), not PEM or DER, not a certificate" in err
    code, _, err = run(["pins", "--key", str(bad)], capsys)
    assert code == 2
    assert "not a readable public or private key" in err
    code, _, err = run(["pins"], capsys)
    assert code == 2
    with pytest.raises(SystemExit) as info:
        main(["pins", "--cert", str(bad), "--format", "xml"])
    assert info.value.code == 2
    assert "invalid choice: 'xml'" in capsys.readouterr().err
    code, _, err = run(["pins", "host:notaport"], capsys)
    assert code == 2
