"""Issue 12, item 1: certificates that a lax DER walk reads as a pinned key.

A CA the device trusts signs a certificate for the attacker's own key with the victim's
SubjectPublicKeyInfo planted where a walk that misreads a high-tag-number tag looks for
the key. OpenSSL verifies it; the pin must still be the hash of the key OpenSSL uses, so
the connection is refused before a request byte is written.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Callable

import httpx
import pytest
import trustme
from cryptography import x509

import pinsdk
from pinsdk._core.pins import pin_of_der
from pinsdk._demo.loopback import LoopbackTLSServer

from ..conftest import API_HOSTS, TOKEN
from .forgery import ForgedServer, Forger, forged_intermediate, forged_leaf, spki_of

FORGERIES = [
    pytest.param(forged_leaf, "serial", "leaf", id="leaf-serial"),
    pytest.param(forged_leaf, "signature", "leaf", id="leaf-signature"),
    pytest.param(forged_intermediate, "serial", "intermediate", id="intermediate-serial"),
    pytest.param(forged_intermediate, "signature", "intermediate", id="intermediate-signature"),
]


@pytest.fixture(scope="module")
def victim_spkis(api_cert: trustme.LeafCert, intermediate: trustme.CA) -> dict[str, bytes]:
    leaf = x509.load_pem_x509_certificate(api_cert.cert_chain_pems[0].bytes())
    mid = x509.load_pem_x509_certificate(intermediate.cert_pem.bytes())
    return {"leaf": spki_of(leaf), "intermediate": spki_of(mid)}


def _start(forged: ForgedServer) -> LoopbackTLSServer:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    forged.configure(ctx)
    return LoopbackTLSServer(ctx, http2=False).start()


def _policy(pins: dict[str, str], which: str) -> pinsdk.PinPolicy:
    # The victim's pin and a backup: the forgery plants exactly the pinned key.
    return pinsdk.PinPolicy(
        [pinsdk.DomainPins(host, [pins[which], pins["root"]]) for host in API_HOSTS]
    )


@pytest.mark.parametrize(("forger", "field", "which"), FORGERIES)
def test_the_forgery_fools_a_lax_walk(
    forger: Forger,
    field: str,
    which: str,
    rogue_ca: trustme.CA,
    victim_spkis: dict[str, bytes],
    pins: dict[str, str],
) -> None:
    """The attack as built is the real one: a walk that takes the byte after a tag's first
    byte for a length finds the victim's key (this is what pinsdk did before)."""
    forged = forger(rogue_ca, API_HOSTS, victim_spkis[which], field)
    lax = _lax_walk(forged.forged_der)
    assert lax == victim_spkis[which]
    with pytest.raises(ValueError):
        x509.load_der_x509_certificate(forged.forged_der)  # strict DER refuses it
    with pytest.raises(ValueError, match="not strict DER"):
        pin_of_der(forged.forged_der)
    assert pins[which]  # the planted key is the one the policy pins


@pytest.mark.anyio
@pytest.mark.parametrize(("forger", "field", "which"), FORGERIES)
async def test_forged_certificate_is_refused_before_any_byte(
    forger: Forger,
    field: str,
    which: str,
    rogue_ca: trustme.CA,
    victim_spkis: dict[str, bytes],
    pins: dict[str, str],
    device_trust: Callable[[], ssl.SSLContext],
) -> None:
    server = _start(forger(rogue_ca, API_HOSTS, victim_spkis[which], field))
    try:
        async with pinsdk.AsyncClient(pins=_policy(pins, which), verify=device_trust()) as client:
            with pytest.raises(pinsdk.PinValidationError) as caught:
                await client.get(server.url(), headers={"Authorization": TOKEN})
        assert "not strict DER" in str(caught.value)
        assert caught.value.served_pins == ()
        assert server.received == b""
    finally:
        server.stop()


@pytest.mark.parametrize(("forger", "field", "which"), FORGERIES)
def test_forged_certificate_is_refused_by_the_sync_client(
    forger: Forger,
    field: str,
    which: str,
    rogue_ca: trustme.CA,
    victim_spkis: dict[str, bytes],
    pins: dict[str, str],
    device_trust: Callable[[], ssl.SSLContext],
) -> None:
    server = _start(forger(rogue_ca, API_HOSTS, victim_spkis[which], field))
    try:
        ctx = pinsdk.pinned_ssl_context(_policy(pins, which), verify=device_trust())
        with httpx.Client(verify=ctx) as client, pytest.raises(pinsdk.PinValidationError):
            client.get(server.url(), headers={"Authorization": TOKEN})
        assert server.received == b""
    finally:
        server.stop()


@pytest.mark.anyio
async def test_forged_certificate_on_an_unpinned_host_with_a_deny_list_is_refused(
    rogue_ca: trustme.CA,
    victim_spkis: dict[str, bytes],
    device_trust: Callable[[], ssl.SSLContext],
) -> None:
    """A deny list applies to every host: a certificate whose key cannot be read strictly
    might hold a denied key, so it fails closed even where nothing is pinned."""
    server = _start(forged_leaf(rogue_ca, API_HOSTS, victim_spkis["leaf"], "serial"))
    other = pinsdk.spki_pin(trustme.CA().cert_pem.bytes())
    try:
        policy = pinsdk.PinPolicy([], deny=[other])
        async with pinsdk.AsyncClient(pins=policy, verify=device_trust()) as client:
            with pytest.raises(pinsdk.PinValidationError):
                await client.get(server.url(), headers={"Authorization": TOKEN})
        assert server.received == b""
    finally:
        server.stop()


def test_spki_pin_and_the_cli_refuse_a_forged_certificate(
    rogue_ca: trustme.CA, victim_spkis: dict[str, bytes], tmp_path: object
) -> None:
    import pathlib

    forged = forged_intermediate(rogue_ca, API_HOSTS, victim_spkis["intermediate"], "serial")
    with pytest.raises(pinsdk.PinConfigError):
        pinsdk.spki_pin(forged.forged_der)
    path = pathlib.Path(str(tmp_path)) / "forged.pem"
    path.write_bytes(forged.chain_pem)
    out = subprocess.run(
        [sys.executable, "-m", "pinsdk", "pins", "--cert", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert "sha256/" not in out.stdout


def test_cli_pins_of_a_live_forged_chain_says_why(
    rogue_ca: trustme.CA, victim_spkis: dict[str, bytes], tmp_path: object
) -> None:
    import pathlib

    server = _start(forged_leaf(rogue_ca, API_HOSTS, victim_spkis["leaf"], "serial"))
    cafile = pathlib.Path(str(tmp_path)) / "rogue.pem"
    cafile.write_bytes(rogue_ca.cert_pem.bytes())
    try:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "pinsdk",
                "pins",
                f"127.0.0.1:{server.port}",
                "--cafile",
                str(cafile),
                "--timeout",
                "10",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        server.stop()
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert "not strict DER" in out.stderr


# -- a lax walk, as pinsdk had it: kept here only to show the forgeries work ---------------


def _lax_tlv(der: bytes, pos: int) -> tuple[int, int, int]:
    tag, length = der[pos], der[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(der[pos : pos + count], "big")
        pos += count
    return tag, pos, pos + length


def _lax_walk(der: bytes) -> bytes:
    _, start, _ = _lax_tlv(der, 0)
    _, pos, _ = _lax_tlv(der, start)
    tag, _, end = _lax_tlv(der, pos)
    if tag == 0xA0:
        pos = end
    for _ in range(5):
        _, _, pos = _lax_tlv(der, pos)
    _, _, end = _lax_tlv(der, pos)
    return der[pos:end]
