"""Signed pin documents: DSSE v1 envelopes, their payload, signing and verification.

Pure code. ``verify_envelope`` is the one door through which signed pins are accepted;
the refresher, the cache loader, the bootstrap and the CLI all go through it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gc
import json
import math
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

import attrs

from .errors import (
    EnvelopeFormatError,
    ExpiredDocumentError,
    PinConfigError,
    SignatureError,
)
from .keys import KeySet, PrivateKeyLike, PublicKeyLike, Signer, load_private_key
from .limits import DEFAULT_LIMITS, UpdateLimits, too_large, too_many_domains
from .policy import PinPolicy
from .schema import DOCUMENT, KEYS, POLICY, check_keys
from .timeutil import parse_datetime, to_timestamp

__all__ = [
    "PAYLOAD_TYPE",
    "VerifiedPayload",
    "pae",
    "parse_envelope",
    "sign_envelope",
    "verify_envelope",
]

PAYLOAD_TYPE = "application/vnd.pinsdk.pinset+json"
SPEC_VERSION = 1
DEFAULT_CLOCK_LEEWAY = 600.0  # seconds of clock skew tolerated on expires/issued_at
MAX_SIGNATURES = 16
# The document limits are settings: see UpdateLimits (these are their defaults).
MAX_DOMAINS = DEFAULT_LIMITS.max_domains
MAX_PINS_PER_DOMAIN = DEFAULT_LIMITS.max_pins_per_domain
MAX_DENY = DEFAULT_LIMITS.max_deny
MAX_TRUSTED_KEYS = 32
_LARGE_PAYLOAD = 256 * 1024  # about 1,000 domains: parsed with the collector paused
_MAX_INT_DIGITS = 19  # JSON integers beyond int64 are refused before int() sees them


def pae(payload_type: str | bytes, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what a signature covers."""
    ptype = payload_type.encode("utf-8") if isinstance(payload_type, str) else payload_type
    return b"DSSEv1 %d %b %d %b" % (len(ptype), ptype, len(payload), payload)


def b64decode_lenient(text: object, what: str) -> bytes:
    """Standard or URL-safe base64, padded or not."""
    if not isinstance(text, str):
        raise EnvelopeFormatError(f"{what} must be a base64 string, not {type(text).__name__}")
    cleaned = text.strip()
    if "-" in cleaned or "_" in cleaned or len(cleaned) % 4:
        cleaned = cleaned.rstrip("=").replace("-", "+").replace("_", "/")
        cleaned += "=" * (-len(cleaned) % 4)
    try:
        if sys.version_info >= (3, 11):  # C-level validation; 3.10 checks with a regex
            return binascii.a2b_base64(cleaned, strict_mode=True)
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeFormatError(f"{what} is not valid base64") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise EnvelopeFormatError(f"duplicate JSON key {key!r}")
            seen.add(key)
    return out


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise EnvelopeFormatError(f"JSON integer with {len(text)} digits is too large")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise EnvelopeFormatError(f"JSON number {text[:40]!r} is out of range")
    return value


def _reject_constant(name: str) -> Any:
    raise EnvelopeFormatError(f"JSON constant {name} is not allowed")


def loads_strict(data: bytes, what: str) -> Any:
    """UTF-8 JSON with duplicate keys, NaN/Infinity and oversized integers refused."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise EnvelopeFormatError(f"{what} is not UTF-8") from None
    try:
        return json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_reject_constant,
        )
    except EnvelopeFormatError as exc:
        raise EnvelopeFormatError(f"{what}: {exc.reason}") from None
    except RecursionError:
        raise EnvelopeFormatError(f"{what} is nested too deeply") from None
    except ValueError as exc:
        raise EnvelopeFormatError(f"{what} is not valid JSON: {exc}") from None


@attrs.frozen
class Envelope:
    """A parsed (not yet verified) DSSE envelope."""

    payload_type: str
    payload: bytes
    signatures: tuple[tuple[str, bytes], ...]


def parse_envelope(data: bytes | str) -> Envelope:
    """Parse DSSE envelope JSON; raise :class:`EnvelopeFormatError` naming the problem."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    doc = loads_strict(raw, "envelope")
    if not isinstance(doc, dict):
        raise EnvelopeFormatError("envelope must be a JSON object")
    payload_type = doc.get("payloadType")
    if payload_type != PAYLOAD_TYPE:
        raise EnvelopeFormatError(f"payloadType is {payload_type!r}, expected {PAYLOAD_TYPE!r}")
    payload = b64decode_lenient(doc.get("payload"), "payload")
    sigs = doc.get("signatures")
    if not isinstance(sigs, list) or not sigs:
        raise EnvelopeFormatError("signatures must be a non-empty list")
    if len(sigs) > MAX_SIGNATURES:
        raise EnvelopeFormatError(f"{len(sigs)} signatures; at most {MAX_SIGNATURES} are read")
    signatures = []
    for i, entry in enumerate(sigs):
        if not isinstance(entry, dict):
            raise EnvelopeFormatError(f"signatures[{i}] must be an object")
        keyid = entry.get("keyid", "")
        if keyid is None:
            keyid = ""
        if not isinstance(keyid, str):
            raise EnvelopeFormatError(f"signatures[{i}].keyid must be a string")
        signatures.append(
            (keyid.lower(), b64decode_lenient(entry.get("sig"), f"signatures[{i}].sig"))
        )
    return Envelope(payload_type=payload_type, payload=payload, signatures=tuple(signatures))


def signed_by(envelope: Envelope, keys: KeySet) -> frozenset[str]:
    """The keyids of the trusted keys with a valid signature; each key counts once."""
    message = pae(envelope.payload_type, envelope.payload)
    by_id = {k.keyid: k for k in keys.keys}
    valid: set[str] = set()
    for keyid, sig in envelope.signatures:
        candidates = [by_id[keyid]] if keyid in by_id else ([] if keyid else list(by_id.values()))
        for key in candidates:
            if key.keyid not in valid and key.verify(sig, message):
                valid.add(key.keyid)
                break
    return frozenset(valid)


def _require_threshold(envelope: Envelope, keys: KeySet, which: str) -> frozenset[str]:
    valid = signed_by(envelope, keys)
    if len(valid) < keys.threshold:
        raise SignatureError(
            f"signed by {len(valid)} of the {which} trusted keys; {keys.threshold} required"
        )
    return valid


@attrs.frozen(eq=False, init=False)
class VerifiedPayload(Mapping[str, Any]):
    """A pin document whose signatures verified: read it as a mapping or by attributes.

    ``policy`` is the :class:`PinPolicy` it describes (with the document's
    ``version``); ``rotated_keys`` is the new key set when the document rotates keys.
    The mapping (``data``) is decoded again from ``payload`` on first use: the policy
    is what a client keeps, not tens of thousands of JSON objects it never reads.

    This type has no public constructor: :func:`verify_envelope` returns one. (Nothing
    accepts one as input either: the trusted state takes signed bytes only.)
    """

    payload: bytes
    version: int
    issued_at: datetime
    expires: datetime
    refresh_interval: float | None
    policy: PinPolicy
    rotated_keys: KeySet | None
    signed_by: frozenset[str]
    _decoded: list[Mapping[str, Any]] = attrs.field(factory=list, init=False, repr=False)

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("VerifiedPayload has no public constructor: verify_envelope returns one")

    @classmethod
    def _verified(cls, **fields: Any) -> VerifiedPayload:
        """Only :func:`verify_envelope` calls this, once every check passed."""
        payload = object.__new__(cls)
        payload.__attrs_init__(**fields)
        return payload

    @property
    def data(self) -> Mapping[str, Any]:
        """The payload's JSON object (verified; decoded on first use)."""
        if not self._decoded:
            self._decoded.append(loads_strict(self.payload, "payload"))
        return self._decoded[0]

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, VerifiedPayload):
            return self.payload == other.payload
        return Mapping.__eq__(self, other)

    def __hash__(self) -> int:
        return hash(self.payload)

    def is_expired(self, now: float | None = None, leeway: float = 0.0) -> bool:
        """Whether ``expires`` (plus ``leeway`` seconds) has passed."""
        at = time.time() if now is None else now
        return at >= self.expires.timestamp() + leeway


def _check_spec_version(value: object) -> None:
    major: object = value
    if isinstance(value, str):
        major = value.split(".", 1)[0]
        major = int(major) if major.isdigit() else major
    if isinstance(major, bool) or major != SPEC_VERSION:
        raise EnvelopeFormatError(
            f"spec_version {value!r} is not supported (this client reads {SPEC_VERSION})"
        )


def _parse_keys(value: object) -> KeySet:
    if isinstance(value, dict):
        check_keys(value, KEYS, "'keys'", EnvelopeFormatError)
    if not isinstance(value, dict) or not isinstance(value.get("trusted"), list):
        raise EnvelopeFormatError('\'keys\' must be {"trusted": [PEM...], "threshold": k}')
    trusted = value["trusted"]
    if len(trusted) > MAX_TRUSTED_KEYS:
        raise EnvelopeFormatError(f"'keys' lists {len(trusted)} keys; at most {MAX_TRUSTED_KEYS}")
    if not all(isinstance(k, str) for k in trusted):
        raise EnvelopeFormatError("'keys.trusted' must hold PEM strings")
    try:
        return KeySet.build(trusted, value.get("threshold", 1))
    except PinConfigError as exc:
        raise EnvelopeFormatError(f"'keys' is invalid: {exc}") from None


@contextlib.contextmanager
def _collector_paused(size: int) -> Iterator[None]:
    """Pause the cyclic garbage collector while a large payload becomes a policy.

    Every object built here is kept (it is the new policy) or freed by reference
    counting; none is cyclic garbage. Yet the tens of thousands of new objects trigger
    collections that each scan them, and the whole heap, again: tens of milliseconds,
    at random. The pause lasts as long as the parse; the previous state is restored.
    """
    if size < _LARGE_PAYLOAD or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def parse_payload(payload: bytes, limits: UpdateLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Parse and check the payload's fields; returns the parsed values (the JSON objects
    are dropped before the collector resumes: only the policy outlives the parse)."""
    with _collector_paused(len(payload)):
        return _parse_payload(payload, limits)


def _parse_payload(payload: bytes, limits: UpdateLimits) -> dict[str, Any]:
    doc = loads_strict(payload, "payload")
    if not isinstance(doc, dict):
        raise EnvelopeFormatError("payload must be a JSON object")
    # A later major version may add keys: say that it is unsupported, not that a key is.
    if "spec_version" in doc:
        _check_spec_version(doc["spec_version"])
    check_keys(doc, DOCUMENT, "the payload", EnvelopeFormatError)
    version = doc["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise EnvelopeFormatError(f"version must be an integer >= 1, not {version!r}")
    try:
        issued_at = parse_datetime(doc["issued_at"], what="issued_at")
        expires = parse_datetime(doc["expires"], what="expires")
    except PinConfigError as exc:
        raise EnvelopeFormatError(str(exc)) from None
    if expires <= issued_at:
        raise EnvelopeFormatError("expires is not after issued_at")
    refresh = doc.get("refresh_interval")
    if refresh is not None and (
        isinstance(refresh, bool) or not isinstance(refresh, (int, float)) or refresh <= 0
    ):
        raise EnvelopeFormatError(f"refresh_interval must be a positive number, not {refresh!r}")
    domains = doc["domains"]
    deny = doc.get("deny", [])
    if not isinstance(domains, list) or not isinstance(deny, list):
        raise EnvelopeFormatError("'domains' and 'deny' must be lists")
    count = len(domains) + _grouped_hosts(doc.get("host_groups"))
    if count > limits.max_domains:
        raise EnvelopeFormatError(too_many_domains(count, limits))
    if len(deny) > limits.max_deny:
        raise EnvelopeFormatError(
            f"{len(deny)} deny pins; at most {limits.max_deny} are accepted (max_deny)"
        )
    try:
        # Every policy key the document may carry goes to the policy: none is dropped.
        shape = {key: doc[key] for key in POLICY.keys if key in doc}
        policy = PinPolicy.from_dict(
            {**shape, "version": version, "deny": deny},
            max_pins_per_domain=limits.max_pins_per_domain,
        )
    except PinConfigError as exc:
        raise EnvelopeFormatError(f"payload pins are invalid: {exc}") from None
    keys = _parse_keys(doc["keys"]) if doc.get("keys") is not None else None
    return {
        "version": version,
        "issued_at": issued_at,
        "expires": expires,
        "refresh_interval": None if refresh is None else float(refresh),
        "policy": policy,
        "rotated_keys": keys,
    }


def _grouped_hosts(groups: object) -> int:
    """How many domains the host groups hold (each host is one; the parser judges the rest)."""
    if not isinstance(groups, list):
        return 0
    return sum(
        len(g["hosts"]) if isinstance(g, dict) and isinstance(g.get("hosts"), list) else 1
        for g in groups
    )


def as_keyset(
    trusted_keys: KeySet | Iterable[PublicKeyLike] | PublicKeyLike, threshold: int
) -> KeySet:
    """Accept a :class:`KeySet` as is, or build one from keys and a threshold."""
    if isinstance(trusted_keys, KeySet):
        return trusted_keys
    return KeySet.build(trusted_keys, threshold)  # type: ignore[arg-type]


def verify_envelope(
    data: bytes | str,
    trusted_keys: KeySet | Iterable[PublicKeyLike] | PublicKeyLike,
    *,
    threshold: int = 1,
    now: datetime | float | None = None,
    clock_leeway: float = DEFAULT_CLOCK_LEEWAY,
    check_expiry: bool = True,
    max_size: int | None = None,
    limits: UpdateLimits | None = None,
) -> VerifiedPayload:
    """Verify a signed pin document and return its payload.

    Checks, in order: size, envelope shape and ``payloadType``; that at least
    ``threshold`` distinct trusted keys signed the PAE; the payload's fields, pins and
    caps; for a key rotation (``"keys"`` in the payload), that the threshold of the new
    keys signed too; and, unless ``check_expiry=False``, that ``expires`` has not passed
    and ``issued_at`` is not in the future (both with ``clock_leeway`` seconds of slack).
    Raises an :class:`~pinsdk.UpdateRejectedError` subclass whose ``reason`` says why.
    Version rules (rollback, equivocation) need the trusted state: see ``DynamicPins``.
    ``limits`` (default :class:`UpdateLimits()`) bounds the document's domains, pins and
    bytes; ``max_size``, when given, replaces ``limits.max_size``.
    """
    limits = _limits(limits)
    cap = limits.max_size if max_size is None else max_size
    if len(data) > cap:
        raise EnvelopeFormatError(too_large(len(data), cap))
    keys = as_keyset(trusted_keys, threshold)
    envelope = parse_envelope(data)
    valid = _require_threshold(envelope, keys, "current")
    parsed = parse_payload(envelope.payload, limits)
    new_keys: KeySet | None = parsed["rotated_keys"]
    if new_keys is not None:
        valid |= _require_threshold(envelope, new_keys, "new")
    if check_expiry:
        at = to_timestamp(now)
        at = time.time() if at is None else at
        if at >= parsed["expires"].timestamp() + clock_leeway:
            raise ExpiredDocumentError(
                f"document version {parsed['version']} expired at {parsed['expires'].isoformat()}"
            )
        if parsed["issued_at"].timestamp() > at + clock_leeway:
            raise ExpiredDocumentError(
                f"document version {parsed['version']} claims to be issued in the future "
                f"({parsed['issued_at'].isoformat()})"
            )
    return VerifiedPayload._verified(payload=envelope.payload, signed_by=valid, **parsed)


def _limits(limits: UpdateLimits | None) -> UpdateLimits:
    if limits is None:
        return DEFAULT_LIMITS
    if not isinstance(limits, UpdateLimits):
        raise PinConfigError(f"limits must be an UpdateLimits, not {limits!r}")
    return limits


def sign_envelope(
    payload: Mapping[str, Any],
    private_keys: Iterable[PrivateKeyLike | Signer] | PrivateKeyLike | Signer,
    *,
    limits: UpdateLimits | None = None,
) -> bytes:
    """Serialise ``payload`` (compact, sorted keys, UTF-8) and sign it with every key.

    Returns the DSSE envelope as UTF-8 JSON bytes, base64 standard with padding. A payload
    that every client would refuse (an unknown key, a missing field, a bad pin, more
    domains or bytes than ``limits`` allow: the same :class:`UpdateLimits` the clients
    apply, default ``UpdateLimits()``) raises :class:`PinConfigError` naming the problem:
    nothing is signed. Time is not judged here: an expired document can be signed (and is
    then refused by clients).
    """
    limits = _limits(limits)
    if isinstance(private_keys, (str, bytes)) or not isinstance(private_keys, Iterable):
        private_keys = [private_keys]
    # A hardware or KMS signer (anything with ``public`` and ``sign``) signs as it is.
    signers: list[Signer] = [
        k if hasattr(k, "sign") and hasattr(k, "public") else load_private_key(k)  # type: ignore[misc]
        for k in private_keys
    ]
    if not signers:
        raise PinConfigError("sign_envelope needs at least one private key")
    body = json.dumps(dict(payload), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    payload_bytes = body.encode("utf-8")
    try:
        parse_payload(payload_bytes, limits)
    except EnvelopeFormatError as exc:
        raise PinConfigError(
            f"refusing to sign a payload every client would reject: {exc.reason}"
        ) from None
    message = pae(PAYLOAD_TYPE, payload_bytes)
    envelope = {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload_bytes).decode("ascii"),
        "signatures": [
            {"keyid": s.public.keyid, "sig": base64.b64encode(s.sign(message)).decode("ascii")}
            for s in signers
        ],
    }
    signed = json.dumps(envelope, indent=2).encode("utf-8") + b"\n"
    if len(signed) > limits.max_size:
        reason = too_large(len(signed), limits.max_size)
        raise PinConfigError(f"refusing to sign a document clients would reject: {reason}")
    return signed
