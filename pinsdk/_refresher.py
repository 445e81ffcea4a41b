"""``DynamicPins``: pins fetched from an update URL as signed documents, swapped live.

A thin anyio shell around the pure trust rules in :mod:`pinsdk.trust`: it fetches
(through a client pinned by itself), hands the bytes to :func:`~pinsdk.trust.accept`,
and on success swaps one reference. Readers (every TLS handshake) never lock.
"""

from __future__ import annotations

import logging
import os
import random
import time
import zlib
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from types import TracebackType
from typing import Literal

import anyio
import attrs
import httpx

from ._background import BackgroundTask
from ._cache import cache_lock, read_cache, remove_legacy_floor, unsafe_directory, write_cache
from ._core.envelope import DEFAULT_CLOCK_LEEWAY
from ._core.errors import PinConfigError, UpdateRejectedError
from ._core.keys import KeySet, PublicKeyLike
from ._core.policy import PinPolicy
from ._core.trust import Decision, TrustState, UpdateStatus, accept, restore, to_cache
from ._reporting import FailureCallback, Monitor, run_hook
from ._tls import VerifyTypes, pinned_ssl_context

__all__ = ["DynamicPins", "UpdateResult", "UpdateState", "UpdateStatus"]

logger = logging.getLogger("pinsdk")

MIN_SUGGESTED_INTERVAL = 60.0
MAX_SUGGESTED_INTERVAL = 7 * 24 * 3600.0
_ACCEPTED_CONTENT_TYPES = (
    "application/json",
    "application/octet-stream",
    "application/vnd.pinsdk.pinset+json",
    "application/vnd.dsse.envelope.v1+json",
    "text/plain",
)


@attrs.frozen
class UpdateResult:
    """The outcome of one fetch: ``status``, ``reason`` in words, and what is in force."""

    status: UpdateStatus
    reason: str
    version: int
    at: datetime
    http_status: int | None = None


@attrs.frozen
class UpdateState:
    """A snapshot of the refresher: last result, last success, and staleness."""

    last_result: UpdateResult | None
    last_success: datetime | None
    version: int
    expires: datetime | None
    stale: bool
    consecutive_failures: int
    keyids: tuple[str, ...]
    threshold: int
    floor: int = 0  # the highest version ever accepted: lower ones are refused


_STAT_FOR = {
    UpdateStatus.UPDATED: "updates_accepted",
    UpdateStatus.REJECTED: "updates_rejected",
    UpdateStatus.NOT_MODIFIED: "updates_not_modified",
    UpdateStatus.FAILED: "updates_failed",
}


@attrs.frozen
class _Live:
    """What handshakes read: swapped as one reference."""

    policy: PinPolicy
    expires_at: float | None
    fallback: PinPolicy


def _now() -> datetime:
    return datetime.now(timezone.utc)


class DynamicPins:
    """Pins from a signed update document, refreshed in the background.

    Pass it as ``pins=`` to :class:`~pinsdk.AsyncClient` or
    :class:`~pinsdk.PinnedTransport`; ``current`` is the :class:`PinPolicy` in force,
    read at every handshake. Use it as an async context manager: entering loads the
    cache and, with ``auto_refresh=True``, starts the refresher (its first fetch begins
    at once; entering does not wait); leaving, or :meth:`aclose`, stops it. The
    refresher is a task of the event loop, not of the caller's task group: any number of
    ``DynamicPins`` close in any order. ``on_update`` (sync or async) is called with
    every :class:`UpdateResult` of the refresher; its errors are logged.
    """

    def __init__(
        self,
        update_url: str,
        trusted_keys: Iterable[PublicKeyLike] | PublicKeyLike,
        *,
        threshold: int = 1,
        bootstrap: PinPolicy | bytes | None = None,
        cache_path: str | os.PathLike[str] | None = None,
        refresh_interval: float = 3600.0,
        auto_refresh: bool = True,
        verify: VerifyTypes = True,
        timeout: float = 10.0,
        max_size: int = 262144,
        on_expiry: Literal["keep", "unpin"] = "keep",
        clock_leeway: float = DEFAULT_CLOCK_LEEWAY,
        trust_env: bool = True,
        on_update: Callable[[UpdateResult], object] | None = None,
        on_pin_failure: FailureCallback | None = None,
        self_heal_interval: float | None = 60.0,
    ) -> None:
        url = httpx.URL(update_url)
        if url.scheme != "https":
            raise PinConfigError(f"update_url must be an https:// URL, not {update_url!r}")
        for name, value in (("refresh_interval", refresh_interval), ("timeout", timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise PinConfigError(f"{name} must be a positive number of seconds, not {value!r}")
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1024:
            raise PinConfigError(f"max_size must be an integer of at least 1024, not {max_size!r}")
        if on_expiry not in ("keep", "unpin"):
            raise PinConfigError(f"on_expiry must be 'keep' or 'unpin', not {on_expiry!r}")
        if not isinstance(clock_leeway, (int, float)) or clock_leeway < 0:
            raise PinConfigError(f"clock_leeway must be >= 0 seconds, not {clock_leeway!r}")
        self.update_url = str(url)
        self.app_keys = KeySet.build(trusted_keys, threshold)  # type: ignore[arg-type]
        self.cache_path = None if cache_path is None else os.fspath(cache_path)
        self.refresh_interval = float(refresh_interval)
        self.auto_refresh = auto_refresh
        self.timeout = float(timeout)
        self.max_size = max_size
        self.on_expiry = on_expiry
        self.clock_leeway = float(clock_leeway)
        self._trust_env = trust_env
        self.on_update = on_update
        if self_heal_interval is not None and (
            isinstance(self_heal_interval, bool)
            or not isinstance(self_heal_interval, (int, float))
            or self_heal_interval < 0
        ):
            raise PinConfigError(
                f"self_heal_interval must be >= 0 seconds or None, not {self_heal_interval!r}"
            )
        self.self_heal_interval = self_heal_interval
        # Counts every handshake made with these pins, and runs on_pin_failure; reports
        # are sent by the clients (the owners of the requests), not here.
        self.monitor = Monitor(on_pin_failure=on_pin_failure, reporting=None)
        self._last_heal: float | None = None
        self._heal_inflight: anyio.Event | None = None

        fallback = PinPolicy()
        self._trust = TrustState(keys=self.app_keys)
        if isinstance(bootstrap, PinPolicy):
            fallback = bootstrap
        elif isinstance(bootstrap, (bytes, bytearray)):
            decision = accept(
                self._trust, bytes(bootstrap), clock_leeway=self.clock_leeway, check_expiry=False
            )
            if decision.status is not UpdateStatus.UPDATED:
                raise PinConfigError(f"bootstrap document does not verify: {decision.reason}")
            self._trust = decision.state
        elif bootstrap is not None:
            raise PinConfigError(
                "bootstrap must be a PinPolicy or signed envelope bytes, "
                f"not {type(bootstrap).__name__}"
            )
        self._fallback = fallback
        self._live = self._live_for(self._trust)
        self._etag: str | None = None
        self._last_modified: str | None = None
        self._last_result: UpdateResult | None = None
        self._last_success: datetime | None = None
        self._failures = 0
        self._lock = anyio.Lock()
        # The update host may itself be pinned by the document: it is fetched through us.
        self._ssl_context = pinned_ssl_context(self, verify=verify, trust_env=trust_env)

    # -- what handshakes read ------------------------------------------------------

    @property
    def current(self) -> PinPolicy:
        """The :class:`PinPolicy` in force (its ``version`` is the document's)."""
        live = self._live
        if (
            live.expires_at is not None
            and self.on_expiry == "unpin"
            and time.time() >= live.expires_at
        ):
            return live.fallback
        return live.policy

    def _live_for(self, trust: TrustState) -> _Live:
        doc = trust.document
        if doc is None:
            return _Live(policy=self._fallback, expires_at=None, fallback=self._fallback)
        return _Live(policy=doc.policy, expires_at=doc.expires.timestamp(), fallback=self._fallback)

    @property
    def state(self) -> UpdateState:
        """A frozen snapshot: last result, time of last success, staleness, keys in force."""
        trust, live = self._trust, self._live
        doc = trust.document
        return UpdateState(
            last_result=self._last_result,
            last_success=self._last_success,
            version=live.policy.version if doc is None else doc.version,
            expires=None if doc is None else doc.expires,
            stale=live.expires_at is not None and time.time() >= live.expires_at,
            consecutive_failures=self._failures,
            keyids=tuple(k.keyid for k in trust.keys.keys),
            threshold=trust.keys.threshold,
            floor=trust.version,
        )

    # -- lifecycle -------------------------------------------------------------------

    # The refresher loop: started by __aenter__ (auto_refresh), stopped by aclose().
    _refresher: BackgroundTask | None = None

    async def __aenter__(self) -> DynamicPins:
        if self.cache_path is not None:
            await anyio.to_thread.run_sync(self._load_cache)
        if self._trust.document is None and not self._fallback.domains:
            logger.warning(
                "DynamicPins for %s starts with no pins: nothing is pinned until the first "
                "update is accepted (ship a bootstrap policy or document)",
                self.update_url,
            )
        if self.auto_refresh:
            refresher = self._refresher
            if refresher is None or refresher.closed:
                refresher = self._refresher = BackgroundTask(self._run, "pinsdk refresher")
            refresher.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the background refresher. The pins in force stay in force (a client still
        using them keeps pinning); entering again starts a new refresher."""
        refresher, self._refresher = self._refresher, None
        if refresher is not None:
            await refresher.aclose()

    def _load_cache(self) -> None:
        assert self.cache_path is not None
        problem = unsafe_directory(self.cache_path)
        if problem is not None:
            logger.warning("pin cache %s is not used: %s", self.cache_path, problem)
            return
        cached = read_cache(self.cache_path)
        if cached is None:
            return
        try:
            restored = restore(self.app_keys, cached, clock_leeway=self.clock_leeway)
        except UpdateRejectedError as exc:
            logger.warning(
                "pin cache %s is corrupt and not trusted (%s); the bootstrap and the update "
                "server decide",
                self.cache_path,
                exc.reason,
            )
            return
        if restored.document is None or (
            self._trust.document is not None and restored.version <= self._trust.document.version
        ):
            logger.info("pin cache %s is not newer than the bootstrap; not used", self.cache_path)
            return
        self._install(restored)
        if isinstance(cached, dict):
            etag, modified = cached.get("etag"), cached.get("last_modified")
            self._etag = etag if isinstance(etag, str) else None
            self._last_modified = modified if isinstance(modified, str) else None
        logger.info("loaded pin document version %d from %s", restored.version, self.cache_path)

    def _install(self, trust: TrustState) -> None:
        # Two plain assignments: handshakes read self._live only, never a half-built value.
        self._trust = trust
        self._live = self._live_for(trust)

    # -- fetching ----------------------------------------------------------------------

    async def refresh(self) -> UpdateResult:
        """Fetch the update URL once now and apply what it returns.

        Never raises for remote or bad data: the outcome is the returned result.
        """
        async with self._lock:
            result = await self._refresh_locked()
        return self._record(result, self.update_url)

    def _record(self, result: UpdateResult, origin: str) -> UpdateResult:
        """Counters, state and one log line for every outcome, fetched or applied."""
        self.monitor.stats.add(_STAT_FOR[result.status])
        self._last_result = result
        if result.status in (UpdateStatus.UPDATED, UpdateStatus.NOT_MODIFIED):
            self._last_success = result.at
            self._failures = 0
        else:
            self._failures += 1
        level = logging.WARNING if result.status is UpdateStatus.REJECTED else logging.INFO
        if result.status is UpdateStatus.NOT_MODIFIED:
            level = logging.DEBUG
        logger.log(level, "pin update from %s: %s: %s", origin, result.status.value, result.reason)
        return result

    def _result(self, status: UpdateStatus, reason: str, http_status: int | None) -> UpdateResult:
        return UpdateResult(status, reason, self._trust.version, _now(), http_status)

    async def _refresh_locked(self) -> UpdateResult:
        headers = {
            "Accept": "application/vnd.pinsdk.pinset+json, application/json",
            # Compression would let a small body inflate past max_size before it is
            # counted; anything sent compressed anyway is decoded under the cap.
            "Accept-Encoding": "identity",
        }
        if self._trust.document is not None:
            if self._etag:
                headers["If-None-Match"] = self._etag
            if self._last_modified:
                headers["If-Modified-Since"] = self._last_modified
        conditional = "If-None-Match" in headers or "If-Modified-Since" in headers
        limit = 3 * self.timeout
        status_code: int | None = None
        try:
            with anyio.fail_after(limit):
                async with (
                    _client(self) as client,
                    client.stream("GET", self.update_url, headers=headers) as response,
                ):
                    status_code = response.status_code
                    early = self._check_response(response, conditional=conditional)
                    if early is not None:
                        return early
                    try:
                        reader = _BodyReader(response.headers, self.max_size)
                        async for chunk in response.aiter_raw():
                            reader.feed(chunk)
                        body = reader.finish()
                    except _BodyRefused as refused:
                        return self._result(UpdateStatus.REJECTED, str(refused), status_code)
                    etag = response.headers.get("ETag")
                    modified = response.headers.get("Last-Modified")
        except TimeoutError:
            return self._result(
                UpdateStatus.FAILED, f"fetch did not finish within {limit:g} s", status_code
            )
        except httpx.HTTPError as exc:
            return self._result(
                UpdateStatus.FAILED, f"{type(exc).__name__}: {exc or 'no detail'}", status_code
            )
        decision = await self._apply(body)
        if decision.status is not UpdateStatus.REJECTED:
            self._etag, self._last_modified = etag, modified
            if decision.status is UpdateStatus.UPDATED:
                await self._save()
        return self._result(decision.status, decision.reason, status_code)

    async def apply_document(self, document: bytes) -> UpdateResult:
        """Apply a signed document obtained another way (a push message, a bundle).

        The same verification and version rules as a fetched one; never raises for bad
        data. An accepted document is cached like a fetched one.
        """
        async with self._lock:
            decision = await self._apply(bytes(document))
            if decision.status is UpdateStatus.UPDATED:
                await self._save()
            result = self._result(decision.status, decision.reason, None)
        return self._record(result, "an applied document")

    async def _apply(self, body: bytes) -> Decision:
        decision = await self._decide(body)
        if decision.status is UpdateStatus.UPDATED:
            self._install(decision.state)
        return decision

    def _check_response(
        self, response: httpx.Response, *, conditional: bool
    ) -> UpdateResult | None:
        code = response.status_code
        if code == 304:
            if self._trust.document is None:
                return self._result(UpdateStatus.FAILED, "HTTP 304 but no document is held", code)
            if not conditional:
                # "Not modified" since nothing: it says nothing about the document in force,
                # which may have expired, so it must not count as a successful check.
                return self._result(
                    UpdateStatus.FAILED,
                    "HTTP 304 to a request that was not conditional (no If-None-Match or "
                    "If-Modified-Since was sent)",
                    code,
                )
            return self._result(
                UpdateStatus.NOT_MODIFIED,
                f"HTTP 304: version {self._trust.version} is current",
                code,
            )
        if 300 <= code < 400:
            location = response.headers.get("Location", "?")
            return self._result(
                UpdateStatus.FAILED, f"HTTP {code} redirect to {location} is not followed", code
            )
        if code != 200:
            return self._result(UpdateStatus.FAILED, f"HTTP {code} from the update server", code)
        ctype = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if ctype and ctype not in _ACCEPTED_CONTENT_TYPES:
            return self._result(
                UpdateStatus.REJECTED, f"unexpected Content-Type {ctype!r} for a pin document", code
            )
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > self.max_size:
            return self._result(
                UpdateStatus.REJECTED,
                f"document is {length} bytes; max_size is {self.max_size}",
                code,
            )
        return None

    async def _decide(self, body: bytes) -> Decision:
        def judge() -> Decision:
            return accept(self._trust, body, clock_leeway=self.clock_leeway, max_size=self.max_size)

        if len(body) > 32 * 1024:  # a large document: verify off the event loop
            return await anyio.to_thread.run_sync(judge)
        return judge()

    async def _save(self) -> None:
        if self.cache_path is None:
            return
        path, trust = self.cache_path, self._trust
        extra = {"etag": self._etag, "last_modified": self._last_modified}
        try:
            kept = await anyio.to_thread.run_sync(self._write_cache, path, trust, extra)
        except OSError as exc:
            logger.warning("could not write pin cache %s: %s", path, exc)
            return
        if kept is not None:
            logger.debug(
                "pin cache %s already holds version %d (another process); kept", path, kept
            )

    def _write_cache(
        self, path: str, trust: TrustState, extra: dict[str, str | None]
    ) -> int | None:
        """Write ``trust`` unless the file already holds a verified document at least as new
        (then return that version). Under the lock, so the floor on disk never goes down
        whichever process writes last."""
        problem = unsafe_directory(path)
        if problem is not None:
            raise OSError(problem)
        with cache_lock(path):
            held = self._cached_version(path)
            if held is not None and held >= trust.version:
                return held
            write_cache(path, to_cache(trust, extra))
            remove_legacy_floor(path)
        return None

    def _cached_version(self, path: str) -> int | None:
        """The version of the verified document in the cache file, if it holds one."""
        cached = read_cache(path, quiet=True)
        if cached is None:
            return None
        try:
            held = restore(self.app_keys, cached, clock_leeway=self.clock_leeway)
        except UpdateRejectedError:
            return None  # corrupt or foreign: replaced by ours
        return None if held.document is None else held.version

    def stats(self) -> dict[str, int]:
        """Counters: updates by outcome, handshakes and pin failures with these pins."""
        policy = self.current
        return self.monitor.stats.as_dict(policy.version, policy)

    async def heal(self, host: str, expected: frozenset[str]) -> bool:
        """After an enforced pin failure on ``host``: refresh out of schedule (at most once
        per ``self_heal_interval``, shared by concurrent callers) and say whether the pins
        for ``host`` now differ from ``expected`` (then one retry is worth it)."""
        if self.self_heal_interval is None:
            return False
        owner = self._lock.statistics().owner
        if owner is not None and owner.id == anyio.get_current_task().id:
            # Called from inside this task's own refresh (its fetch failed pinning): a
            # refresh cannot wait for itself, and the outer one reports the failure.
            logger.debug("pin failure on %s during a refresh of these pins: no self-heal", host)
            return False
        inflight = self._heal_inflight
        if inflight is not None:
            await inflight.wait()
        elif self._last_heal is None or (
            time.monotonic() - self._last_heal >= self.self_heal_interval
        ):
            self._last_heal = time.monotonic()
            self._heal_inflight = done = anyio.Event()
            try:
                self.monitor.stats.add("self_heal_refreshes")
                logger.info("pin failure on %s: refreshing pins out of schedule", host)
                await self._notify(await self.refresh())
            finally:
                done.set()
                self._heal_inflight = None
        return self.current.pins_for(host, mode="enforce") != expected

    # -- schedule ----------------------------------------------------------------------

    def next_delay(self, result: UpdateResult) -> float:
        """Seconds until the next scheduled fetch after ``result``."""
        doc = self._trust.document
        interval = self.refresh_interval
        if doc is not None and doc.refresh_interval is not None:
            interval = min(
                max(doc.refresh_interval, MIN_SUGGESTED_INTERVAL), MAX_SUGGESTED_INTERVAL
            )
        jitter = random.uniform(0.9, 1.1)  # noqa: S311 (spreads a fleet; not security)
        delay = interval * jitter
        if result.status in (UpdateStatus.FAILED, UpdateStatus.REJECTED):
            base = min(interval, 5.0)
            backoff = base * 2 ** min(self._failures - 1, 20)
            delay = min(interval, backoff) * random.uniform(0.5, 1.0)  # noqa: S311
        if self.state.stale:  # the document in force expired: retry eagerly
            delay = min(delay, min(interval, 60.0) * random.uniform(0.5, 1.0))  # noqa: S311
        return delay

    async def _run(self) -> None:
        while True:
            result = await self.refresh()
            await self._notify(result)
            await anyio.sleep(self.next_delay(result))

    async def _notify(self, result: UpdateResult) -> None:
        await run_hook(self.on_update, result, "on_update")


class _BodyRefused(Exception):
    """The body cannot be taken: the message is the rejection reason."""


class _BodyReader:
    """Collects a raw response body, never holding more than ``max_size`` (+1) of it.

    ``identity`` is read as is. ``gzip`` and ``deflate``, if a server sends them
    although identity was asked for, are inflated in steps capped at what ``max_size``
    still allows, so a compression bomb stops at the cap. Any other coding is refused.
    """

    def __init__(self, headers: httpx.Headers, max_size: int) -> None:
        codings = [
            c.strip().lower() for c in headers.get_list("Content-Encoding", split_commas=True)
        ]
        codings = [c for c in codings if c and c != "identity"]
        if len(codings) > 1 or (codings and codings[0] not in _DECODED_CODINGS):
            raise _BodyRefused(
                f"Content-Encoding {', '.join(codings)!r} is not accepted (the request asked "
                "for identity; gzip and deflate are decoded): serve the document uncompressed"
            )
        self.coding = codings[0] if codings else None
        self.max_size = max_size
        self.raw = 0
        self.head = b""  # deflate: the first bytes say whether a zlib header is there
        self.body = bytearray()
        self.decoder: zlib._Decompress | None = None
        if self.coding in ("gzip", "x-gzip"):
            self.decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def _too_large(self) -> _BodyRefused:
        if self.coding is None:
            return _BodyRefused(
                f"document is larger than max_size ({self.max_size} bytes); download aborted"
            )
        return _BodyRefused(
            f"document is larger than max_size ({self.max_size} bytes) once {self.coding} "
            "is decoded (a compression bomb?); download aborted"
        )

    def feed(self, data: bytes) -> None:
        self.raw += len(data)
        if self.coding is None:
            self.body += data
            if len(self.body) > self.max_size:
                raise self._too_large()
            return
        if self.raw > self.max_size:
            raise _BodyRefused(
                f"{self.coding} body is larger than max_size ({self.max_size} bytes); "
                "download aborted"
            )
        if self.decoder is None:  # deflate: zlib-wrapped as the RFC says, or raw as some send
            self.head += data
            if len(self.head) < 2:
                return
            data, self.head = self.head, b""
            zlib_header = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self.decoder = zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
        self._inflate(self.decoder, data)

    def _inflate(self, decoder: zlib._Decompress, data: bytes) -> None:
        try:
            while data:  # bounded: every pass adds output, and output past the cap stops it
                if decoder.eof:
                    raise _BodyRefused(f"data follows the end of the {self.coding} stream")
                room = self.max_size - len(self.body) + 1
                out = decoder.decompress(data, room)
                self.body += out
                if len(self.body) > self.max_size:
                    raise self._too_large()
                data = decoder.unconsumed_tail
                if data and not out:
                    raise _BodyRefused(f"{self.coding} body does not decode")
            if decoder.unused_data:
                raise _BodyRefused(f"data follows the end of the {self.coding} stream")
        except zlib.error as exc:
            raise _BodyRefused(f"{self.coding} body is corrupt ({exc})") from None

    def finish(self) -> bytes:
        if self.coding is not None:
            if self.head:  # deflate bodies shorter than two bytes
                raise _BodyRefused(f"{self.coding} body is truncated")
            if self.decoder is None or not self.decoder.eof:
                raise _BodyRefused(f"{self.coding} body is truncated")
        return bytes(self.body)


_DECODED_CODINGS = ("gzip", "x-gzip", "deflate")


def _client(pins: DynamicPins) -> httpx.AsyncClient:
    # A plain client on the pinned context: the update host is pin-checked (the document
    # may pin it) but nothing registers observers or self-heals behind the user's back.
    return httpx.AsyncClient(
        verify=pins._ssl_context,
        timeout=pins.timeout,
        follow_redirects=False,
        trust_env=pins._trust_env,
    )
