"""``TrustedPins``: the one door through which signed pins become the policy in force.

Modelled on python-tuf's ``TrustedMetadataSet``. Every input that can change the pins
in force goes through one object and is judged by the same rules: the bootstrap (a
:class:`PinPolicy` or a signed document), the cache file's JSON and every downloaded or
pushed document. The object does no I/O (the refresher reads and writes the files and
fetches; this module only judges bytes and JSON), reads its clock once per decision,
and keeps all it knows in one immutable value replaced by one assignment, so a TLS
handshake reading :attr:`TrustedPins.current` never locks and never sees half an update.

The rules, in one place:

- a document verifies against the keys in force (the app's, or those of the last key
  rotation), and a rotation is signed by the threshold of the old *and* the new keys;
- versions only go up: below the floor (the highest version ever accepted) is a rollback,
  the same number with other content is equivocation, the same content is "not modified";
- a downloaded document must not have expired nor claim to be issued in the future (with
  ``clock_leeway``); a bootstrap or cached one may have expired: it still holds the floor;
- the cache is replayed from the app's own keys, and used only if it holds a document
  newer than the one in force; a floor recorded in it must be that document's version;
- once the document in force expires it stays in force (``on_expiry="keep"``) or the
  bootstrap policy replaces it (``"unpin"``) until a newer one arrives;
- freshness: by default the last verified pins are enforced however old they get (TUF's
  rule: fail closed). With ``max_age``, pins stop being enforced once the newest verified
  document was issued more than ``max_age`` seconds ago (Chromium's rule for its static
  pins), loudly; the age counts from the document's signed ``issued_at``, so neither the
  cache file nor the network can stretch it, and a restart does not reset it.

A rejected input leaves everything exactly as it was.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from enum import Enum
from typing import Any, Literal

import attrs

from .envelope import DEFAULT_CLOCK_LEEWAY, VerifiedPayload, verify_envelope
from .errors import EquivocationError, PinConfigError, RollbackError, UpdateRejectedError
from .keys import KeySet
from .limits import DEFAULT_LIMITS, UpdateLimits
from .policy import PinPolicy

__all__ = [
    "CACHE_FORMAT",
    "MAX_VERSION",
    "CacheLoad",
    "CacheStatus",
    "Decision",
    "TrustFacts",
    "TrustedPins",
    "UpdateStatus",
]

CACHE_FORMAT = 1  # the "floor" field is optional, so older readers still load newer files
# The largest version a document can carry: its JSON integers have at most 19 digits.
MAX_VERSION = 10**19 - 1

logger = logging.getLogger("pinsdk")

Clock = Callable[[], float]
OnExpiry = Literal["keep", "unpin"]


class UpdateStatus(Enum):
    """The outcome of one update attempt."""

    UPDATED = "updated"  # a newer document was verified and is now in force
    NOT_MODIFIED = "not_modified"  # the server has the document already in force
    REJECTED = "rejected"  # a document was fetched but is not acceptable
    FAILED = "failed"  # network or HTTP trouble: nothing to judge


@attrs.frozen
class Decision:
    """What :meth:`TrustedPins.update` decided, and the floor after it."""

    status: UpdateStatus
    reason: str
    version: int


class CacheStatus(Enum):
    """What :meth:`TrustedPins.load_cache` did with a cache file's content."""

    LOADED = "loaded"  # its document is now in force
    NOT_NEWER = "not_newer"  # it verifies but holds nothing newer than the document in force
    CORRUPT = "corrupt"  # something in it does not verify: not trusted, nothing changed


@attrs.frozen
class CacheLoad:
    """The outcome of loading a cache file: ``status``, ``reason`` in words, the floor."""

    status: CacheStatus
    reason: str
    version: int


@attrs.frozen
class TrustFacts:
    """What is trusted now, read at one instant of the clock.

    ``version`` is the version of the policy in force (the document's, else the
    bootstrap policy's); ``floor`` the highest version ever accepted; ``stale`` whether
    the document in force has expired (it may still be in force: ``on_expiry``);
    ``enforcing`` False once ``max_age`` has passed since the document's ``issued_at``.
    """

    version: int
    floor: int
    expires: datetime | None
    stale: bool
    keyids: tuple[str, ...]
    threshold: int
    issued_at: datetime | None = None
    enforcing: bool = True


@attrs.frozen(init=False)
class _State:
    """Everything trusted, as one immutable value (swapped by one assignment).

    Only this module builds one (:func:`_state`): the constructor refuses, so no code
    elsewhere can hand the trusted set a state that did not pass its rules.
    """

    keys: KeySet
    document: VerifiedPayload | None
    envelope: bytes | None  # the document's signed bytes, for the cache
    rotations: tuple[bytes, ...]  # the key rotations that led to ``keys``, oldest first
    floor: int  # the highest version ever accepted
    fallback: PinPolicy  # the bootstrap policy: in force without a (live) document
    policy: PinPolicy  # the document's policy, else the fallback
    expires_at: float | None  # the document's expiry as a POSIX time
    issued_at: float | None  # the document's issued_at as a POSIX time
    # In force once the document is older than max_age: no pins, the deny list kept (a
    # known-compromised key stays refused; that bricks nothing).
    unenforced: PinPolicy

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("trust states are built by TrustedPins only")


def _state(
    keys: KeySet,
    fallback: PinPolicy,
    document: VerifiedPayload | None = None,
    envelope: bytes | None = None,
    rotations: tuple[bytes, ...] = (),
    floor: int = 0,
) -> _State:
    state = object.__new__(_State)
    state.__attrs_init__(
        keys,
        document,
        envelope,
        rotations,
        floor,
        fallback,
        fallback if document is None else document.policy,
        None if document is None else document.expires.timestamp(),
        None if document is None else document.issued_at.timestamp(),
        PinPolicy(
            deny=() if document is None else document.policy.deny,
            version=fallback.version if document is None else document.version,
        ),
    )
    return state


def _judge(
    state: _State,
    data: bytes,
    *,
    now: float,
    leeway: float,
    max_size: int | None,
    expiry: bool,
    limits: UpdateLimits = DEFAULT_LIMITS,
) -> tuple[UpdateStatus, str, _State]:
    """The next state after ``data``, or :class:`UpdateRejectedError` saying why not."""
    payload = verify_envelope(
        data,
        state.keys,
        now=now,
        clock_leeway=leeway,
        check_expiry=expiry,
        max_size=max_size,
        limits=limits,
    )
    current = state.document
    if payload.version < state.floor:
        where = "in force" if current and current.version == state.floor else "accepted before"
        raise RollbackError(
            f"version {payload.version} is older than version {state.floor} {where}"
        )
    if current is not None and payload.version == current.version:
        if payload.payload == current.payload:
            return UpdateStatus.NOT_MODIFIED, f"version {payload.version} already in force", state
        raise EquivocationError(
            f"a document numbered version {payload.version}, like the one in force, but with "
            "different content (equivocation: one version number must name one document)"
        )
    rotated = payload.rotated_keys is not None and payload.rotated_keys != state.keys
    keys = payload.rotated_keys or state.keys
    reason = f"accepted version {payload.version}"
    if rotated:
        reason += f" with a new key set ({len(keys.keys)} keys, threshold {keys.threshold})"
    return (
        UpdateStatus.UPDATED,
        reason,
        _state(
            keys,
            state.fallback,
            payload,
            bytes(data),
            (*state.rotations, bytes(data)) if rotated else state.rotations,
            max(state.floor, payload.version),
        ),
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


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


def _replay(
    keys: KeySet,
    fallback: PinPolicy,
    cached: object,
    leeway: float,
    limits: UpdateLimits = DEFAULT_LIMITS,
) -> _State:
    """The state a cache file's JSON describes, replayed from the app's own ``keys``.

    Every envelope is verified again, rotations first, so a tampered file cannot
    introduce a key; expiry is not checked (an expired document still holds the floor).
    Raises :class:`UpdateRejectedError` if anything does not verify.
    """
    if not isinstance(cached, dict) or cached.get("pinsdk_cache") != CACHE_FORMAT:
        raise UpdateRejectedError("not a pinsdk cache file of a known format")
    rotations = cached.get("rotations", [])
    document = cached.get("document")
    if not isinstance(rotations, list) or not (document is None or isinstance(document, str)):
        raise UpdateRejectedError("cache file fields have the wrong types")
    state = _state(keys, fallback)
    for blob in [*rotations, *([document] if document else [])]:
        if not isinstance(blob, str):
            raise UpdateRejectedError("cache file holds a non-string envelope")
        try:
            data = base64.b64decode(blob, validate=True)
        except (binascii.Error, ValueError):
            raise UpdateRejectedError("cache file holds invalid base64") from None
        try:
            _, _, state = _judge(
                state, data, now=0.0, leeway=leeway, max_size=None, expiry=False, limits=limits
            )
        except UpdateRejectedError as exc:
            raise UpdateRejectedError(f"cached document does not verify: {exc.reason}") from None
    _check_floor(cached.get("floor"), state.document)
    return state


class TrustedPins:
    """The trusted keys and pins, and the only way to change them.

    ``keys`` are the app's own (shipped with it); ``bootstrap`` is what is in force
    before any document: a :class:`PinPolicy` (the fallback), or a signed document
    judged like any other except for expiry (an expired one still holds the floor;
    one that does not verify is a :class:`PinConfigError`). ``clock`` returns POSIX
    seconds (default ``time.time``); ``limits`` bound what a document holds, ``max_size``
    (default ``limits.max_size``) a downloaded document's bytes.
    ``max_age`` (seconds, default ``None``: never) stops enforcing the pins of a document
    issued longer ago than that; see the module's rules.

    Readers (:attr:`current`, :attr:`document`, :meth:`facts`) never lock. Writers
    (:meth:`update`, :meth:`load_cache`) are serialised among themselves.
    """

    __slots__ = (
        "_alarmed",
        "_clock",
        "_keys",
        "_leeway",
        "_limits",
        "_max_age",
        "_max_size",
        "_on_expiry",
        "_state",
        "_writing",
    )

    def __init__(
        self,
        keys: KeySet,
        bootstrap: PinPolicy | bytes | None = None,
        *,
        on_expiry: OnExpiry = "keep",
        clock_leeway: float = DEFAULT_CLOCK_LEEWAY,
        max_size: int | None = None,
        clock: Clock = time.time,
        max_age: float | None = None,
        limits: UpdateLimits = DEFAULT_LIMITS,
    ) -> None:
        if max_age is not None and (
            isinstance(max_age, bool)
            or not isinstance(max_age, (int, float))
            or not max_age > 0  # NaN too
        ):
            raise PinConfigError(
                f"max_age must be a positive number of seconds or None, not {max_age!r}"
            )
        if on_expiry not in ("keep", "unpin"):
            raise PinConfigError(f"on_expiry must be 'keep' or 'unpin', not {on_expiry!r}")
        if (
            isinstance(clock_leeway, bool)
            or not isinstance(clock_leeway, (int, float))
            or clock_leeway < 0
        ):
            raise PinConfigError(f"clock_leeway must be >= 0 seconds, not {clock_leeway!r}")
        self._keys = keys
        self._on_expiry = on_expiry
        self._leeway = float(clock_leeway)
        self._max_size = max_size
        self._limits = limits
        self._clock = clock
        self._max_age = None if max_age is None else float(max_age)
        self._alarmed: int | None = None  # the version whose unenforcement was logged
        self._writing = threading.Lock()
        if bootstrap is None or isinstance(bootstrap, PinPolicy):
            self._state = _state(keys, bootstrap or PinPolicy())
            return
        if not isinstance(bootstrap, (bytes, bytearray)):
            raise PinConfigError(
                "bootstrap must be a PinPolicy or signed envelope bytes, "
                f"not {type(bootstrap).__name__}"
            )
        blank = _state(keys, PinPolicy())
        try:
            _, _, self._state = _judge(
                blank,
                bytes(bootstrap),
                now=0.0,
                leeway=self._leeway,
                max_size=None,
                expiry=False,
                limits=limits,
            )
        except UpdateRejectedError as exc:
            raise PinConfigError(f"bootstrap document does not verify: {exc.reason}") from None

    # -- readers: one read of self._state each ------------------------------------------

    @property
    def current(self) -> PinPolicy:
        """The policy in force: the document's, the bootstrap's without one, and the
        bootstrap's again once the document expired if ``on_expiry="unpin"``; no pins
        (the deny list only) once it is older than ``max_age``."""
        state = self._state
        max_age = self._max_age
        if (
            max_age is not None
            and state.issued_at is not None
            and self._clock() >= state.issued_at + max_age
        ):
            self._alarm(state)
            return state.unenforced
        at = state.expires_at
        if at is not None and self._on_expiry == "unpin" and self._clock() >= at:
            return state.fallback
        return state.policy

    def _alarm(self, state: _State) -> None:
        """Log once per document that its pins are no longer enforced (a benign race
        between two readers logs it twice)."""
        if self._alarmed == state.floor:
            return
        self._alarmed = state.floor
        logger.error("%s", self.unenforced_reason())

    def unenforced_reason(self) -> str:
        """Why pins are not enforced (for logs), or ``""`` while they are."""
        state = self._state
        if self._max_age is None or state.issued_at is None or state.document is None:
            return ""
        age = self._clock() - state.issued_at
        if age < self._max_age:
            return ""
        return (
            f"PINS ARE NOT ENFORCED: the newest verified pin document (version "
            f"{state.document.version}) was issued {age / 86400:.1f} days ago, more than "
            f"max_age ({self._max_age / 86400:g} days); connections are not pinned until a "
            "newer document is verified. Check the update URL and the signing schedule."
        )

    @property
    def document(self) -> VerifiedPayload | None:
        """The verified document in force (expired or not), if any."""
        return self._state.document

    @property
    def floor(self) -> int:
        """The highest version ever accepted (0 before any): lower ones are refused."""
        return self._state.floor

    @property
    def bootstrap(self) -> PinPolicy:
        """The policy in force without a document (empty if none was given)."""
        return self._state.fallback

    def facts(self) -> TrustFacts:
        """Versions, expiry, staleness and the keys in force, at one reading of the clock."""
        state = self._state
        doc = state.document
        now = self._clock()
        return TrustFacts(
            version=state.policy.version,
            floor=state.floor,
            expires=None if doc is None else doc.expires,
            stale=state.expires_at is not None and now >= state.expires_at,
            keyids=tuple(k.keyid for k in state.keys.keys),
            threshold=state.keys.threshold,
            issued_at=None if doc is None else doc.issued_at,
            enforcing=self._max_age is None
            or state.issued_at is None
            or now < state.issued_at + self._max_age,
        )

    # -- writers ---------------------------------------------------------------------------

    def update(self, data: bytes) -> Decision:
        """Judge a signed document (downloaded or pushed) and put it in force if it passes.

        Never raises for bad data: a rejection is a :class:`Decision` whose ``reason``
        says why, and it leaves everything exactly as it was.
        """
        with self._writing:
            state = self._state
            try:
                status, reason, new = _judge(
                    state,
                    bytes(data),
                    now=self._clock(),
                    leeway=self._leeway,
                    max_size=self._max_size,
                    limits=self._limits,
                    expiry=True,
                )
            except UpdateRejectedError as exc:
                return Decision(UpdateStatus.REJECTED, exc.reason, state.floor)
            self._state = new  # the last step: readers see the old state or the new one
            return Decision(status, reason, new.floor)

    def load_cache(self, cached: object) -> CacheLoad:
        """Replay a cache file's JSON and put its document in force if it is newer than
        the one in force (a bootstrap document, usually). Never raises for bad data."""
        with self._writing:
            state = self._state
            try:
                restored = _replay(self._keys, state.fallback, cached, self._leeway, self._limits)
            except UpdateRejectedError as exc:
                return CacheLoad(CacheStatus.CORRUPT, exc.reason, state.floor)
            if restored.document is None or restored.floor <= state.floor:
                held = "no document" if restored.document is None else f"version {restored.floor}"
                return CacheLoad(
                    CacheStatus.NOT_NEWER,
                    f"it holds {held}, not newer than version {state.floor} in force",
                    state.floor,
                )
            self._state = restored
            return CacheLoad(CacheStatus.LOADED, f"version {restored.floor}", restored.floor)

    # -- the cache file's content ------------------------------------------------------------

    def cached_version(self, cached: object) -> int | None:
        """The version of the verified document in a cache file's JSON, if it holds one."""
        if cached is None:
            return None
        try:
            held = _replay(self._keys, self._state.fallback, cached, self._leeway, self._limits)
        except UpdateRejectedError:
            return None  # corrupt or foreign
        return None if held.document is None else held.floor

    def to_cache(
        self, extra: Mapping[str, Any] | None = None, *, replacing: object = None
    ) -> dict[str, Any] | None:
        """The cache file's JSON: raw envelopes, so loading re-verifies everything, and the
        floor, which is the version of the document written with it: one file, one atomic
        write, so the two cannot disagree. ``extra`` fields (HTTP validators) ride along.

        ``None`` when ``replacing`` (what the file holds now, read under the writers'
        lock) already holds a verified document at least as new: whichever process
        writes last, the cache never goes down.
        """
        state = self._state
        held = self.cached_version(replacing)
        if held is not None and held >= state.floor:
            return None
        content: dict[str, Any] = {
            **(extra or {}),
            "pinsdk_cache": CACHE_FORMAT,
            "rotations": [_b64(r) for r in state.rotations],
            "document": None if state.envelope is None else _b64(state.envelope),
        }
        if state.document is not None:
            content["floor"] = state.document.version
        return content
