"""Signing keys named by URI (pinsdk[signers]): a real PKCS#11 token (SoftHSM2)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import pinsdk
from pinsdk._cli import main
from pinsdk._signers import PIN_ENV, is_signer_uri

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
LABEL = "pinsdk-test"
USER_PIN = "1234"
URI = f"hsm:2?label={LABEL}"


def _missing() -> str | None:
    """Why the PKCS#11 test cannot run here, in plain words (None: it can)."""
    if shutil.which("softhsm2-util") is None or not os.path.exists(SOFTHSM_MODULE):
        return (
            "SoftHSM2 is not installed (Debian: apt-get install softhsm2; `make test` "
            "installs it when run as root)"
        )
    try:
        import pkcs11  # noqa: F401
        import securesystemslib  # noqa: F401
    except ModuleNotFoundError as exc:
        return f"the signers extra is not installed ({exc.name}): pip install -e '.[signers]'"
    return None


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private SoftHSM2 token holding one ECDSA P-256 key pair (CKA_ID 2)."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    import pkcs11
    import pkcs11.util.ec

    home = tmp_path_factory.mktemp("softhsm")
    (home / "tokens").mkdir()
    conf = home / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {home / 'tokens'}\nobjectstore.backend = file\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOFTHSM2_CONF", str(conf))
        mp.setenv("PYKCS11LIB", SOFTHSM_MODULE)
        init = ["softhsm2-util", "--init-token", "--free", "--label", LABEL]
        subprocess.run(
            [*init, "--pin", USER_PIN, "--so-pin", USER_PIN],
            check=True,
            capture_output=True,
            timeout=60,
        )
        lib = pkcs11.lib(SOFTHSM_MODULE)
        with lib.get_token(token_label=LABEL).open(rw=True, user_pin=USER_PIN) as session:
            curve = pkcs11.util.ec.encode_named_curve_parameters("secp256r1")
            params = session.create_domain_parameters(
                pkcs11.KeyType.EC, {pkcs11.Attribute.EC_PARAMS: curve}, local=True
            )
            params.generate_keypair(store=True, id=pkcs11.util.biginteger(2), label="signing")
        yield home


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    a, b = ("sha256/" + base64.b64encode(c * 32).decode() for c in (b"a", b"b"))
    Path("policy.json").write_text(
        json.dumps({"domains": [{"host": "api.example.com", "pins": [a, b]}]})
    )
    return tmp_path


@pytest.fixture
def on_token(token: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test token's module and configuration in the environment, as a user sets them."""
    monkeypatch.setenv("SOFTHSM2_CONF", str(token / "softhsm2.conf"))
    monkeypatch.setenv("PYKCS11LIB", SOFTHSM_MODULE)
    return workdir


@pytest.fixture
def document(workdir: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """doc.json, signed by the key file k."""
    assert main(["keygen", "--out", "k"]) == 0
    assert main(["sign", "policy.json", "--key", "k", "--version", "1", "--expires", "1d",
                 "--out", "doc.json"]) == 0  # fmt: skip
    capsys.readouterr()
    return workdir / "doc.json"


def test_pkcs11_key_signs_and_cosigns_and_clients_verify_with_cryptography(
    on_token: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(PIN_ENV, USER_PIN)
    # Enrolment: the token's public key, to ship in apps.
    assert main(["public-key", "--key", URI]) == 0
    out = capsys.readouterr().out
    Path("hsm.pub").write_text(out.split("keyid:")[0])
    hsm_keyid = out.split("keyid: ")[1].strip()
    assert main(["keygen", "--out", "offline"]) == 0
    # The token signs first; the offline key co-signs on "another machine".
    assert main(["sign", "policy.json", "--key", URI, "--version", "3", "--expires", "7d",
                 "--out", "doc.json"]) == 0  # fmt: skip
    assert main(["cosign", "doc.json", "--key", "offline"]) == 0
    assert main(["cosign", "doc.json", "--key", URI]) == 0  # signed already: nothing added
    assert "nothing added" in capsys.readouterr().err
    data = Path("doc.json").read_bytes()
    assert len(json.loads(data)["signatures"]) == 2
    # Verified by the client's own code: cryptography only.
    keys = [Path("hsm.pub").read_bytes(), Path("offline.pub").read_bytes()]
    verified = pinsdk.verify_envelope(data, keys, threshold=2)
    assert hsm_keyid in verified.signed_by
    assert json.loads(data)["signatures"][0]["keyid"] == hsm_keyid


def test_pkcs11_pin_missing_is_a_clear_error(
    on_token: Path,
    document: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv(PIN_ENV, raising=False)
    monkeypatch.setattr("sys.stdin", None)
    assert main(["cosign", "doc.json", "--key", URI]) == 2
    assert f"set {PIN_ENV}" in capsys.readouterr().err


def test_kms_uris_need_their_public_key(document: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Cloud KMS schemes are documented, not exercised: without --public-key the command
    says what is missing before anything reaches a network."""
    uri = "gcpkms:projects/p/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1"
    assert main(["cosign", "doc.json", "--key", uri]) == 2
    err = capsys.readouterr().err
    assert "--public-key" in err or "pinsdk[signers]" in err


def test_what_counts_as_a_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert is_signer_uri("hsm:2?label=x")
    assert is_signer_uri("awskms:arn:aws:kms:eu-west-1:123:key/abc")
    assert not is_signer_uri("keys/signing.key")
    assert not is_signer_uri("C:/keys/signing.key")  # a drive letter is not a scheme
    Path("hsm:odd").write_text("a file wins over a URI")
    assert not is_signer_uri("hsm:odd")


def test_without_the_extra_the_error_says_how_to_get_it(
    document: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def missing() -> None:
        raise ModuleNotFoundError("No module named 'securesystemslib'", name="securesystemslib")

    monkeypatch.setattr("pinsdk._signers._sslib", missing)
    assert main(["cosign", "doc.json", "--key", URI]) == 2
    assert "needs the optional extra: pip install 'pinsdk[signers]'" in capsys.readouterr().err
