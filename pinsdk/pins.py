"""SPKI SHA-256 pins: computing, validating and caching them (pure code)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from collections.abc import Iterable, Mapping, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .errors import PinConfigError

__all__ = ["CertificateLike", "ChainPinCache", "parse_pin", "spki_pin", "spki_pin_of_key"]

PIN_PREFIX = "sha256/"
_PIN_LENGTH = len(PIN_PREFIX) + 44  # 32 bytes of SHA-256 in padded base64

CertificateLike = bytes | bytearray | memoryview | str | x509.Certificate


def _load_certificate(cert: CertificateLike) -> x509.Certificate:
    if isinstance(cert, x509.Certificate):
        return cert
    if isinstance(cert, str):
        data = cert.encode("ascii", "strict")
    elif isinstance(cert, (bytes, bytearray, memoryview)):
        data = bytes(cert)
    else:
        raise TypeError(
            "spki_pin() takes DER bytes, PEM (str or bytes) or a "
            f"cryptography x509.Certificate, not {type(cert).__name__}"
        )
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise PinConfigError(f"not a valid PEM or DER certificate: {exc}") from exc


def spki_pin_of_key(public_key: object) -> str:
    """Return the ``sha256/…`` pin of a cryptography public key object."""
    spki = public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return PIN_PREFIX + base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def _tlv(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, value start, value end) of the DER element at ``pos``."""
    tag, length = der[pos], der[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4:
            raise ValueError("unsupported DER length")
        length = int.from_bytes(der[pos : pos + count], "big")
        pos += count
    end = pos + length
    if end > len(der):
        raise ValueError("truncated DER")
    return tag, pos, end


def spki_der_of(cert_der: bytes) -> bytes:
    """The SubjectPublicKeyInfo element exactly as encoded in a DER certificate.

    A short walk of the TBSCertificate (version, serial, signature algorithm, issuer,
    validity, subject, then the SPKI): no full parse, so a cold pin costs microseconds.
    Raises ``ValueError`` (or ``IndexError``) on anything that is not such a certificate.
    """
    tag, start, _ = _tlv(cert_der, 0)
    if tag != 0x30:
        raise ValueError("not a DER certificate")
    tag, pos, _ = _tlv(cert_der, start)  # TBSCertificate
    if tag != 0x30:
        raise ValueError("not a DER certificate")
    tag, _, end = _tlv(cert_der, pos)
    if tag == 0xA0:  # explicit [0] version
        pos = end
    for _ in range(5):  # serialNumber, signature, issuer, validity, subject
        _, _, pos = _tlv(cert_der, pos)
    tag, _, end = _tlv(cert_der, pos)
    if tag != 0x30:
        raise ValueError("no SubjectPublicKeyInfo where expected")
    return cert_der[pos:end]


def _pin_of_spki(spki: bytes) -> str:
    return PIN_PREFIX + base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def pin_of_der(cert_der: bytes) -> str:
    """The pin of a DER certificate: hash of its SPKI as encoded, or via cryptography."""
    try:
        return _pin_of_spki(spki_der_of(cert_der))
    except (ValueError, IndexError):
        return spki_pin_of_key(x509.load_der_x509_certificate(cert_der).public_key())


def spki_pin(cert: CertificateLike) -> str:
    """Return ``"sha256/" + base64(SHA-256(SubjectPublicKeyInfo DER))`` of a certificate.

    ``cert`` is DER bytes, PEM (``str`` or ``bytes``) or a
    ``cryptography.x509.Certificate``.
    """
    certificate = _load_certificate(cert)
    return pin_of_der(certificate.public_bytes(serialization.Encoding.DER))


def parse_pin(pin: object) -> str:
    """Validate a pin string and return it; raise :class:`PinConfigError` naming it if bad.

    Only SHA-256 pins in the canonical ``sha256/<44 base64 chars>`` form are accepted, so a
    typo can never silently disable pinning.
    """
    if not isinstance(pin, str):
        raise PinConfigError(f"pin must be a string like 'sha256/<base64>', not {pin!r}")
    if not pin.startswith(PIN_PREFIX):
        algorithm = pin.split("/", 1)[0] if "/" in pin else ""
        hint = f" (algorithm {algorithm!r} is not supported)" if algorithm else ""
        raise PinConfigError(f"pin {pin!r} does not start with 'sha256/'{hint}")
    encoded = pin[len(PIN_PREFIX) :]
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PinConfigError(f"pin {pin!r} is not valid base64: {exc}") from None
    if len(raw) != 32:
        raise PinConfigError(f"pin {pin!r} decodes to {len(raw)} bytes; a SHA-256 pin has 32")
    if len(pin) != _PIN_LENGTH or base64.b64encode(raw).decode("ascii") != encoded:
        raise PinConfigError(f"pin {pin!r} is not in canonical padded base64 form")
    return pin


# Large policies repeat the same few pins (a CA's, a backup's) across many entries:
# remembering validated pins and pin sets makes parsing them cheap and shares the memory.
_VALID_PINS: dict[str, str] = {}
_PIN_SETS: dict[frozenset[str], frozenset[str]] = {}
_MAX_REMEMBERED = 65536


def parse_pins(pins: Iterable[object], *, what: str) -> frozenset[str]:
    """Validate every pin of an iterable (a lone string is refused: it is not a list)."""
    if isinstance(pins, (str, bytes)):
        raise PinConfigError(f"{what} must be a list of pins, not a single string {pins!r}")
    valid = []
    for pin in pins:
        known = _VALID_PINS.get(pin) if isinstance(pin, str) else None
        if known is None:
            known = parse_pin(pin)
            if len(_VALID_PINS) >= _MAX_REMEMBERED:
                _VALID_PINS.clear()
            _VALID_PINS[known] = known
        valid.append(known)
    result = frozenset(valid)
    if len(_PIN_SETS) >= _MAX_REMEMBERED:
        _PIN_SETS.clear()
    return _PIN_SETS.setdefault(result, result)


def known_pin_sets() -> Mapping[frozenset[str], frozenset[str]]:
    """Pin sets already validated, each mapped to its shared instance: the bulk path of
    large documents, which repeat a few pin sets across thousands of entries, looks up
    ``frozenset(pins)`` here instead of validating every pin again."""
    return _PIN_SETS


class ChainPinCache:
    """A bounded map from certificate DER bytes to its SPKI pin.

    Handshakes with the same server repeat the same chain, so a hit costs one dict
    lookup instead of a certificate parse and a hash. When full, the oldest half is
    dropped (cheap, and good enough for a working set of a few chains).
    """

    def __init__(self, max_entries: int = 1024) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max = max_entries
        self._pins: dict[bytes, str] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._pins)

    def pin(self, der: bytes) -> str:
        """Return the pin of one DER certificate, computing it on a miss."""
        pin = self._pins.get(der)
        if pin is None:
            pin = pin_of_der(der)
            with self._lock:
                if len(self._pins) >= self._max:
                    for key in list(self._pins)[: max(1, self._max // 2)]:
                        del self._pins[key]
                self._pins[der] = pin
        return pin

    def chain_pins(self, chain: Sequence[bytes]) -> tuple[str, ...]:
        """Return the pins of a chain of DER certificates, in chain order."""
        get = self._pins.get
        pins = tuple(get(der) or self.pin(der) for der in chain)
        return pins


DEFAULT_CACHE = ChainPinCache()
