"""The update trust rules: which signed document may replace the one in force (pure code).

Modelled on python-tuf's trusted metadata set: an immutable :class:`TrustState` and a
function that, given new bytes, returns a decision and the next state. Nothing else
creates a state holding a document, so every pin that goes live passed
:func:`~pinsdk.envelope.verify_envelope` and the version rules here.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

import attrs

from .envelope import DEFAULT_CLOCK_LEEWAY, VerifiedPayload, verify_envelope
from .errors import EquivocationError, RollbackError, UpdateRejectedError
from .keys import KeySet

__all__ = ["CACHE_FORMAT", "MAX_VERSION", "TrustState", "UpdateStatus", "accept", "restore"]

CACHE_FORMAT = 1  # the "floor" field is optional, so older readers still load newer files
# The largest version a document can carry: its JSON integers have at most 19 digits.
MAX_VERSION = 10**19 - 1


class UpdateStatus(Enum):
    """The outcome of one update attempt."""

    UPDATED = "updated"  # a newer document was verified and is now in force
    NOT_MODIFIED = "not_modified"  # the server has the document already in force
    REJECTED = "rejected"  # a document was fetched but is not acceptable
    FAILED = "failed"  # network or HTTP trouble: nothing to judge


@attrs.frozen
class TrustState:
    """The trusted keys, the document in force and the key rotations that led to them."""

    keys: KeySet
    document: VerifiedPayload | None = None
    envelope: bytes | None = None
    rotations: tuple[bytes, ...] = ()
    floor: int = 0  # the highest version ever accepted, even if its document is gone

    @property
    def version(self) -> int:
        """The rollback floor: the highest version accepted (0 before any)."""
        return max(self.floor, 0 if self.document is None else self.document.version)


@attrs.frozen
class Decision:
    """What :func:`accept` decided, and the state to keep."""

    status: UpdateStatus
    reason: str
    state: TrustState


def accept(
    state: TrustState,
    data: bytes,
    *,
    now: float | None = None,
    clock_leeway: float = DEFAULT_CLOCK_LEEWAY,
    max_size: int | None = None,
    check_expiry: bool = True,
) -> Decision:
    """Judge a signed document against the state in force.

    Rejected, the returned state is ``state`` itself: bad input never changes trust.
    """
    try:
        payload = verify_envelope(
            data,
            state.keys,
            now=now,
            clock_leeway=clock_leeway,
            check_expiry=check_expiry,
            max_size=max_size,
        )
        current = state.document
        if payload.version < state.version:
            where = (
                "in force" if current and current.version == state.version else "accepted before"
            )
            raise RollbackError(
                f"version {payload.version} is older than version {state.version} {where}"
            )
        if current is not None:
            if payload.version < current.version:
                raise RollbackError(
                    f"version {payload.version} is older than version {current.version} in force"
                )
            if payload.version == current.version:
                if payload.payload == current.payload:
                    return Decision(
                        UpdateStatus.NOT_MODIFIED,
                        f"version {payload.version} already in force",
                        state,
                    )
                raise EquivocationError(
                    f"version {payload.version} differs from the version {current.version} "
                    "in force with the same number (equivocation)"
                )
    except UpdateRejectedError as exc:
        return Decision(UpdateStatus.REJECTED, exc.reason, state)
    rotated = payload.rotated_keys is not None and payload.rotated_keys != state.keys
    new_state = TrustState(
        keys=payload.rotated_keys or state.keys,
        document=payload,
        envelope=bytes(data),
        rotations=(*state.rotations, bytes(data)) if rotated else state.rotations,
        floor=max(state.floor, payload.version),
    )
    reason = f"accepted version {payload.version}"
    if rotated:
        reason += f" with a new key set ({len(new_state.keys.keys)} keys, threshold "
        reason += f"{new_state.keys.threshold})"
    return Decision(UpdateStatus.UPDATED, reason, new_state)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def to_cache(state: TrustState, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The cache file's JSON: raw envelopes, so loading re-verifies everything, and the floor.

    The floor written is the version of the document written with it: one file, one
    atomic write, so the two cannot disagree.
    """
    content: dict[str, Any] = {
        **(extra or {}),
        "pinsdk_cache": CACHE_FORMAT,
        "rotations": [_b64(r) for r in state.rotations],
        "document": None if state.envelope is None else _b64(state.envelope),
    }
    if state.document is not None:
        content["floor"] = state.document.version
    return content


def _check_floor(floor: object, document: VerifiedPayload | None) -> None:
    """A recorded floor must be the cached document's own version, or absent.

    A floor above it would refuse every update up to that number on the word of an
    unsigned field; one below it means the file was not written by pinsdk.
    """
    if floor is None:
        return  # derived from the document (files written before the floor moved here)
    if isinstance(floor, bool) or not isinstance(floor, int) or not 1 <= floor <= MAX_VERSION:
        raise UpdateRejectedError(
            f"cache file floor {str(floor)[:40]!r} is not a version (an integer from 1 to "
            f"{MAX_VERSION})"
        )
    if document is None:
        raise UpdateRejectedError(f"cache file holds floor {floor} but no document")
    if floor != document.version:
        raise UpdateRejectedError(
            f"cache file floor {floor} does not match its document's version {document.version}"
        )


def restore(
    app_keys: KeySet, cached: object, *, clock_leeway: float = DEFAULT_CLOCK_LEEWAY
) -> TrustState:
    """Rebuild a state from cache JSON by replaying it through :func:`accept`.

    The key rotations are replayed from the app's own keys, so a tampered file cannot
    introduce a key; expiry is not checked (an expired document still holds the
    rollback floor). The floor is the verified document's version: a recorded ``floor``
    that is not exactly that makes the file corrupt. Raises
    :class:`UpdateRejectedError` if anything does not verify.
    """
    if not isinstance(cached, dict) or cached.get("pinsdk_cache") != CACHE_FORMAT:
        raise UpdateRejectedError("not a pinsdk cache file of a known format")
    rotations = cached.get("rotations", [])
    document = cached.get("document")
    if not isinstance(rotations, list) or not (document is None or isinstance(document, str)):
        raise UpdateRejectedError("cache file fields have the wrong types")
    state = TrustState(keys=app_keys)
    blobs: Sequence[object] = [*rotations, *([document] if document else [])]
    for blob in blobs:
        if not isinstance(blob, str):
            raise UpdateRejectedError("cache file holds a non-string envelope")
        try:
            data = base64.b64decode(blob, validate=True)
        except (binascii.Error, ValueError):
            raise UpdateRejectedError("cache file holds invalid base64") from None
        decision = accept(state, data, clock_leeway=clock_leeway, check_expiry=False)
        if decision.status is UpdateStatus.REJECTED:
            raise UpdateRejectedError(f"cached document does not verify: {decision.reason}")
        state = decision.state
    _check_floor(cached.get("floor"), state.document)
    return state
