"""SPKI SHA-256 pins: computing, validating and caching them (pure code)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .errors import PinConfigError

__all__ = [
    "CertificateLike",
    "ChainPinCache",
    "NotDERError",
    "parse_pin",
    "pin_of_der",
    "spki_pin",
    "spki_pin_of_key",
]

PIN_PREFIX = "sha256/"
_PIN_LENGTH = len(PIN_PREFIX) + 44  # 32 bytes of SHA-256 in padded base64

CertificateLike = bytes | bytearray | memoryview | str | x509.Certificate


def _load_certificate(cert: CertificateLike) -> x509.Certificate:
    if isinstance(cert, x509.Certificate):
        return cert
    if isinstance(cert, str):
        if "-----BEGIN" not in cert:
            raise PinConfigError(
                f"spki_pin() got the string {cert[:60]!r}, which is no PEM certificate; to pin "
                "a certificate file, pass its contents: spki_pin(open(path, 'rb').read())"
            )
        try:
            data = cert.encode("ascii", "strict")
        except UnicodeEncodeError:
            raise PinConfigError("spki_pin() got a PEM string with non-ASCII text") from None
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
    return _pin_of_spki(spki)


class NotDERError(ValueError):
    """A certificate is not strict DER: the strict parser refuses it, so it has no pin."""


def _header(der: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    """(content start, element end) of the element at ``pos``: it must have the
    single-byte tag ``tag`` and a definite minimal length (at most 3 bytes), and fit
    before ``end``."""
    if pos + 2 > end or der[pos] != tag:
        raise NotDERError("unexpected tag")
    n = der[pos + 1]
    pos += 2
    if n >= 0x80:
        if n == 0x81:
            n = der[pos] if pos < end else 0
            pos += 1
            if n < 0x80:  # the short form could hold it (or the byte is missing)
                raise NotDERError("not a minimal definite length")
        elif n == 0x82:
            n = (der[pos] << 8 | der[pos + 1]) if pos + 1 < end else 0
            pos += 2
            if n < 0x100:
                raise NotDERError("not a minimal definite length")
        elif n == 0x83:
            n = (der[pos] << 16 | der[pos + 1] << 8 | der[pos + 2]) if pos + 2 < end else 0
            pos += 3
            if n < 0x10000:
                raise NotDERError("not a minimal definite length")
        else:  # indefinite (0x80), or a length no certificate needs
            raise NotDERError("not a minimal definite length")
    stop = pos + n
    if stop > end:
        raise NotDERError("element overruns its parent")
    return pos, stop


def spki_der_of(cert_der: bytes) -> bytes:
    """The SubjectPublicKeyInfo element exactly as encoded in a DER certificate.

    A short, strict walk (no full parse, so a cold pin costs microseconds): every
    element it passes must have exactly the expected single-byte tag and a definite
    minimal length inside its parent; the certificate, the TBSCertificate and the
    SubjectPublicKeyInfo must be filled exactly by the elements expected there. Anything else
    raises :class:`NotDERError`: a lax walk of BER (say a tag in high-tag-number form,
    which OpenSSL accepts) could be steered onto a key the signer planted elsewhere.
    (:func:`pin_of_der` also has cryptography's strict parser read the whole
    certificate, the extensions included.)
    """
    der = cert_der
    end = len(der)
    body, stop = _header(der, 0, end, 0x30)  # Certificate
    if stop != end:
        raise NotDERError("trailing bytes after the certificate")
    pos, tbs_end = _header(der, body, end, 0x30)  # TBSCertificate
    after = _header(der, tbs_end, end, 0x30)[1]  # signatureAlgorithm
    if _header(der, after, end, 0x03)[1] != end:  # signatureValue, then nothing
        raise NotDERError("unexpected element after the signature")
    if pos < tbs_end and der[pos] == 0xA0:  # [0] EXPLICIT version
        pos = _header(der, pos, tbs_end, 0xA0)[1]
    pos = _header(der, pos, tbs_end, 0x02)[1]  # serialNumber
    for _ in range(4):  # signature, issuer, validity, subject
        pos = _header(der, pos, tbs_end, 0x30)[1]
    inner, spki_end = _header(der, pos, tbs_end, 0x30)  # subjectPublicKeyInfo
    key_at = _header(der, inner, spki_end, 0x30)[1]  # algorithm
    if _header(der, key_at, spki_end, 0x03)[1] != spki_end:  # subjectPublicKey
        raise NotDERError("unexpected element in the SubjectPublicKeyInfo")
    rest = spki_end
    for tag in (0xA1, 0xA2, 0xA3):  # issuerUniqueID, subjectUniqueID, extensions
        if rest < tbs_end and der[rest] == tag:
            rest = _header(der, rest, tbs_end, tag)[1]
    if rest != tbs_end:
        raise NotDERError("unexpected element in the TBSCertificate")
    return der[pos:spki_end]


def _pin_of_spki(spki: bytes) -> str:
    return PIN_PREFIX + base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def pin_of_der(cert_der: bytes) -> str:
    """The pin of a DER certificate: SHA-256 of its SubjectPublicKeyInfo as a strict DER
    parser sees it. The one place a certificate becomes a pin (the handshake check,
    :func:`spki_pin`, the CLI and the configuration generator all come here).

    Two strict parsers must both accept the certificate: cryptography's (which reads
    the whole certificate, as OpenSSL does when it verifies, but refuses BER) and our
    walk (which finds the SubjectPublicKeyInfo without building the key). Raises
    :class:`NotDERError` when either refuses: such a certificate has no pin.
    """
    try:
        x509.load_der_x509_certificate(cert_der)
    except ValueError as exc:
        raise NotDERError(f"the certificate is not strict DER: {exc}") from None
    return _pin_of_spki(spki_der_of(cert_der))


def spki_pin(cert: CertificateLike) -> str:
    """Return ``"sha256/" + base64(SHA-256(SubjectPublicKeyInfo DER))`` of a certificate.

    ``cert`` is DER bytes, PEM (``str`` or ``bytes``) or a
    ``cryptography.x509.Certificate``.
    """
    certificate = _load_certificate(cert)
    return pin_of_der(certificate.public_bytes(serialization.Encoding.DER))


_HEX = frozenset("0123456789abcdefABCDEF")
_HPKP = "pin-sha256="


def _unwrap(pin: str) -> str:
    """The ``sha256/…`` spelling of the accepted alternative forms, or ``pin`` unchanged.

    Accepted (each names SHA-256 and base64 with nothing left to guess): surrounding
    whitespace, the prefix in any case (``SHA256/``), and HPKP's ``pin-sha256="…"``.
    """
    text = pin.strip()
    if text[: len(_HPKP)].lower() == _HPKP and len(text) > len(_HPKP) + 1:
        quoted = text[len(_HPKP) :]
        if quoted[0] == quoted[-1] == '"':
            return PIN_PREFIX + quoted[1:-1]
    if text[: len(PIN_PREFIX)].lower() == PIN_PREFIX:
        return PIN_PREFIX + text[len(PIN_PREFIX) :]
    return text


def _missing_prefix_hint(pin: str) -> str:
    """What a pin without the ``sha256/`` prefix probably is, and what to do instead."""
    text = pin.strip()
    bare = text.replace(":", "")
    if len(bare) == 64 and set(bare) <= _HEX:
        return (
            "a hex SHA-256 digest; pins are base64, and a hex digest is usually a certificate's "
            "fingerprint (a hash of the whole certificate, which changes at every renewal), not "
            "of its public key: compute the pin with pinsdk.spki_pin() or `pinsdk pins --cert`"
        )
    if text[:7].lower() == "sha256:":
        return "write 'sha256/' (a slash), followed by the base64 SHA-256 of the public key"
    if text[: len(_HPKP)].lower() == _HPKP:
        return 'HPKP\'s form is pin-sha256="<base64>" with double quotes'
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == 32:
        return (
            "a bare base64 digest (as Android and TrustKit write pins): if it is the SHA-256 "
            "of the SubjectPublicKeyInfo, write it as 'sha256/" + text + "'"
        )
    if "/" in text:
        algorithm = text.split("/", 1)[0]
        return f"algorithm {algorithm!r} is not supported; pins are SHA-256"
    return "expected 'sha256/' and 44 base64 characters"


def parse_pin(pin: object) -> str:
    """Validate a pin and return it in canonical form; raise :class:`PinConfigError` naming it
    and what was expected if bad.

    The canonical form is ``sha256/<44 base64 chars>`` (SHA-256 of the SubjectPublicKeyInfo,
    standard padded base64). Also accepted, and returned canonical: surrounding whitespace,
    ``SHA256/`` in any case, and HPKP's ``pin-sha256="<base64>"``. Everything else is refused
    with a hint (a hex digest, ``sha256:``, a bare digest, another algorithm), so a typo can
    never silently disable pinning.
    """
    if not isinstance(pin, str):
        raise PinConfigError(f"pin must be a string like 'sha256/<base64>', not {pin!r}")
    candidate = _unwrap(pin)
    if not candidate.startswith(PIN_PREFIX):
        hint = _missing_prefix_hint(pin)
        raise PinConfigError(f"pin {pin!r} does not start with 'sha256/' ({hint})")
    encoded = candidate[len(PIN_PREFIX) :]
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PinConfigError(
            f"pin {pin!r} is not valid base64 ({exc}); expected 'sha256/' and 44 standard "
            "base64 characters (A-Z a-z 0-9 + /, '=' padded)"
        ) from None
    if len(raw) != 32:
        raise PinConfigError(f"pin {pin!r} decodes to {len(raw)} bytes; a SHA-256 pin has 32")
    if len(candidate) != _PIN_LENGTH or base64.b64encode(raw).decode("ascii") != encoded:
        raise PinConfigError(f"pin {pin!r} is not in canonical padded base64 form")
    return candidate


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


def _der(cert: Any) -> bytes:
    return cert  # type: ignore[no-any-return]


class ChainPinCache:
    """A bounded map from a certificate to its SPKI pin: the one pin cache.

    The key is the certificate's DER bytes, or (with ``der_of``) any object that hashes
    and compares by content, such as the TLS layer's own certificate objects, and
    ``der_of`` gives its DER on a miss. Handshakes with the same server repeat the same
    chain, so a hit costs one dict lookup instead of a parse and a hash. When full, the
    oldest half is dropped (cheap, and good enough for a working set of a few chains).
    """

    def __init__(self, max_entries: int = 1024, *, der_of: Callable[[Any], bytes] = _der) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max = max_entries
        self._der_of = der_of
        self._pins: dict[Any, str] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._pins)

    def pin(self, cert: Any) -> str:
        """Return the pin of one certificate, computing it on a miss."""
        pin = self._pins.get(cert)
        if pin is None:
            pin = pin_of_der(self._der_of(cert))
            with self._lock:
                if len(self._pins) >= self._max:
                    for key in list(self._pins)[: max(1, self._max // 2)]:
                        del self._pins[key]
                self._pins[cert] = pin
        return pin

    def chain_pins(self, chain: Sequence[Any]) -> tuple[str, ...]:
        """Return the pins of a chain of certificates, in chain order."""
        get = self._pins.get
        return tuple(get(cert) or self.pin(cert) for cert in chain)


DEFAULT_CACHE = ChainPinCache()
