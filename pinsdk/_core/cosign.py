"""Co-signing: one more signature on an existing envelope, payload untouched (pure code).

A k-of-n threshold then never needs the k private keys on one machine: each key holder
adds a signature on their own machine (a signing "event", as tuf-on-ci runs them). The
signature covers the PAE of the payload bytes already in the envelope; the payload's
base64 text is carried over character for character.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable

import attrs

from .envelope import MAX_SIGNATURES, loads_strict, pae, parse_envelope, parse_payload
from .errors import EnvelopeFormatError, PinConfigError
from .keys import KeySet, Signer

__all__ = ["Cosigned", "add_signature", "signer_summary"]


@attrs.frozen
class Cosigned:
    """The envelope after :func:`add_signature`; ``added`` is False when the key had
    signed already (then ``envelope`` is the input, unchanged)."""

    envelope: bytes
    added: bool
    keyid: str
    signatures: int


def add_signature(data: bytes, signer: Signer) -> Cosigned:
    """Add ``signer``'s signature to the DSSE envelope ``data``.

    Refuses (:class:`PinConfigError`) an envelope that is not pinsdk's, a payload every
    client would reject, and an envelope already holding the most signatures a client
    reads. A key that already signed adds nothing: thresholds count keys, not signatures.
    """
    try:
        envelope = parse_envelope(data)
        parse_payload(envelope.payload)
    except EnvelopeFormatError as exc:
        raise PinConfigError(f"refusing to co-sign: {exc.reason}") from None
    public = signer.public
    message = pae(envelope.payload_type, envelope.payload)
    if any(public.verify(sig, message) for _, sig in envelope.signatures):
        return Cosigned(bytes(data), False, public.keyid, len(envelope.signatures))
    if len(envelope.signatures) >= MAX_SIGNATURES:
        raise PinConfigError(
            f"the envelope holds {len(envelope.signatures)} signatures already, the most a "
            "client reads"
        )
    signature = signer.sign(message)
    if not public.verify(signature, message):
        # A hardware or KMS signer using another key than the one named: say so now,
        # not when a client finds one signature short of the threshold.
        raise PinConfigError(
            f"the signer produced a signature that does not verify with key {public.keyid}"
        )
    raw = loads_strict(bytes(data), "envelope")
    raw["signatures"].append(
        {"keyid": public.keyid, "sig": base64.b64encode(signature).decode("ascii")}
    )
    out = json.dumps(raw, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"
    return Cosigned(out, True, public.keyid, len(raw["signatures"]))


def signer_summary(keys: KeySet, signed: Iterable[str]) -> list[str]:
    """k of n in words: which trusted keys signed, which did not."""
    done = set(signed)
    count = sum(k.keyid in done for k in keys.keys)
    lines = [f"signed by {count} of {len(keys.keys)} trusted keys (threshold {keys.threshold})"]
    lines += [f"  {'signed: ' if k.keyid in done else 'missing:'} {k.keyid}" for k in keys.keys]
    return lines
