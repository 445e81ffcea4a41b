"""``DynamicPins``: pins fetched from an update URL as signed documents, swapped live.

A thin anyio shell around :class:`~pinsdk._core.trusted.TrustedPins`, which alone decides
what is in force (bootstrap, cache, documents, expiry). This module does the I/O: it
fetches (through a client pinned by itself), schedules, reads and writes the cache file,
logs and runs callbacks. Readers (every TLS handshake) never lock.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, Literal

import anyio
import attrs
import httpx

from ._background import BackgroundTask
from ._cache import cache_lock, read_cache, remove_legacy_floor, unsafe_directory, write_cache
from ._core.envelope import DEFAULT_CLOCK_LEEWAY
from ._core.errors import PinConfigError
from ._core.keys import KeySet, PublicKeyLike
from ._core.limits import DEFAULT_LIMITS, UpdateLimits
from ._core.policy import PinPolicy
from ._core.response import BodyReader, BodyRefused, judge_headers
from ._core.trusted import CacheStatus, Decision, TrustedPins, UpdateStatus
from ._fetch import Fetcher, HttpxFetcher
from ._reporting import FailureCallback, Monitor, run_hook
from ._runner import LoopThread
from ._tls import VerifyTypes, pinned_ssl_context

__all__ = ["DynamicPins", "UpdateResult", "UpdateState", "UpdateStatus"]

logger = logging.getLogger("pinsdk")

MIN_SUGGESTED_INTERVAL = 60.0
MAX_SUGGESTED_INTERVAL = 7 * 24 * 3600.0


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
    """A snapshot of the refresher: last result, last success, staleness and freshness.

    ``enforcing`` is False once ``max_age`` has passed since the ``issued_at`` of the
    document in force: its pins are then not enforced (always True without ``max_age``).
    """

    last_result: UpdateResult | None
    last_success: datetime | None
    version: int
    expires: datetime | None
    stale: bool
    consecutive_failures: int
    keyids: tuple[str, ...]
    threshold: int
    floor: int = 0  # the highest version ever accepted: lower ones are refused
    issued_at: datetime | None = None  # the document in force's signed issued_at
    enforcing: bool = True
    max_age: float | None = None


_STAT_FOR = {
    UpdateStatus.UPDATED: "updates_accepted",
    UpdateStatus.REJECTED: "updates_rejected",
    UpdateStatus.NOT_MODIFIED: "updates_not_modified",
    UpdateStatus.FAILED: "updates_failed",
}


_WARN_AFTER_FAILURES = 3  # consecutive network failures before they are logged as WARNING


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
    every :class:`UpdateResult` of the refresher; its errors are logged. ``limits``
    (an :class:`UpdateLimits`, default ``UpdateLimits()``) bounds what a document may
    hold, as the signer checks it; ``max_size`` is ``limits.max_size`` given on its own.

    From sync code (with :class:`~pinsdk.Client`), ``with`` (or :meth:`close`) does the
    same on an event loop in a thread of its own, which also runs self-healing refreshes;
    a ``Client`` given pins nobody started starts them itself and stops them when it
    closes (the last user to close stops the thread). Use one ``DynamicPins`` from async
    code or from sync code, not both.
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
        max_size: int | None = None,
        on_expiry: Literal["keep", "unpin"] = "keep",
        max_age: float | None = None,
        clock_leeway: float = DEFAULT_CLOCK_LEEWAY,
        trust_env: bool = True,
        on_update: Callable[[UpdateResult], object] | None = None,
        on_pin_failure: FailureCallback | None = None,
        self_heal_interval: float | None = 60.0,
        fetcher: Fetcher | None = None,
        clock: Callable[[], float] | None = None,
        limits: UpdateLimits | None = None,
    ) -> None:
        url = httpx.URL(update_url)
        if url.scheme != "https":
            raise PinConfigError(f"update_url must be an https:// URL, not {update_url!r}")
        for name, value in (("refresh_interval", refresh_interval), ("timeout", timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise PinConfigError(f"{name} must be a positive number of seconds, not {value!r}")
        if limits is None:
            limits = DEFAULT_LIMITS
        elif not isinstance(limits, UpdateLimits):
            raise PinConfigError(f"limits must be an UpdateLimits, not {limits!r}")
        if max_size is not None:
            if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1024:
                raise PinConfigError(
                    f"max_size must be an integer of at least 1024, not {max_size!r}"
                )
            # max_size is limits.max_size, given on its own.
            limits = attrs.evolve(limits, max_size=max_size)
        self.limits = limits
        max_size = limits.max_size
        self.update_url = str(url)
        self.app_keys = KeySet.build(trusted_keys, threshold)  # type: ignore[arg-type]
        self.cache_path = None if cache_path is None else os.fspath(cache_path)
        self.refresh_interval = float(refresh_interval)
        self.auto_refresh = auto_refresh
        self.timeout = float(timeout)
        self.max_size = max_size
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

        # Bootstrap, cache and documents all become pins through this one object.
        self._trust = TrustedPins(
            self.app_keys,
            bootstrap,
            on_expiry=on_expiry,
            clock_leeway=clock_leeway,
            max_size=max_size,
            max_age=max_age,
            clock=clock or time.time,
            limits=limits,
        )
        self.on_expiry = on_expiry
        self.max_age = max_age
        self.clock_leeway = float(clock_leeway)
        self._fallback = self._trust.bootstrap
        self._etag: str | None = None
        self._last_modified: str | None = None
        self._last_result: UpdateResult | None = None
        self._last_success: datetime | None = None
        self._failures = 0
        self._lock = anyio.Lock()
        # Sync use: the loop thread the refresher runs on, and how many users hold it.
        self._sync_lock = threading.Lock()
        self._sync_users = 0
        self._sync_runner: LoopThread | None = None
        # The update host may itself be pinned by the document: it is fetched through us.
        self._ssl_context = pinned_ssl_context(self, verify=verify, trust_env=trust_env)
        self._fetcher: Fetcher = fetcher or HttpxFetcher(
            self._ssl_context, timeout=self.timeout, trust_env=trust_env
        )

    # -- what handshakes read ------------------------------------------------------

    @property
    def current(self) -> PinPolicy:
        """The :class:`PinPolicy` in force (its ``version`` is the document's)."""
        return self._trust.current

    @property
    def state(self) -> UpdateState:
        """A frozen snapshot: last result, time of last success, staleness, keys in force."""
        facts = self._trust.facts()
        return UpdateState(
            last_result=self._last_result,
            last_success=self._last_success,
            version=facts.version,
            expires=facts.expires,
            stale=facts.stale,
            consecutive_failures=self._failures,
            keyids=facts.keyids,
            threshold=facts.threshold,
            floor=facts.floor,
            issued_at=facts.issued_at,
            enforcing=facts.enforcing,
            max_age=self.max_age,
        )

    # -- lifecycle -------------------------------------------------------------------

    # The refresher loop: started by __aenter__ (auto_refresh), stopped by aclose().
    _refresher: BackgroundTask | None = None

    _warned_idle = False

    def warn_if_idle(self) -> None:
        """Log a WARNING (once per object) if nothing refreshes these pins: a client uses them
        while the background refresher was never started (``async with`` was not used)."""
        if self._warned_idle or not self.auto_refresh:
            return
        refresher = self._refresher
        if refresher is None and not self._entered:
            self._warned_idle = True
            logger.warning(
                "DynamicPins for %s is used by a client but was never entered: nothing "
                "refreshes these pins (the bootstrap stays in force). Use `async with "
                "pins:` (or await pins.__aenter__()), or auto_refresh=False and call refresh()",
                self.update_url,
            )

    _entered = False

    async def __aenter__(self) -> DynamicPins:
        self._entered = True
        if self.cache_path is not None:
            await anyio.to_thread.run_sync(self._load_cache)
        unenforced = self._trust.unenforced_reason()
        if unenforced:
            logger.error("%s", unenforced)
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

    def __enter__(self) -> DynamicPins:
        """Sync code's ``async with``: load the cache and start the refresher (with
        ``auto_refresh``) on a loop thread of these pins."""
        self._acquire_sync()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Leave the sync use started by ``with`` (the thread stops with its last user).
        The pins in force stay in force."""
        self._release_sync()

    def _acquire_sync(self) -> None:
        with self._sync_lock:
            if self._sync_users == 0:
                if self._refresher is not None and not self._refresher.closed:
                    raise PinConfigError(
                        "these DynamicPins run on an event loop (async with): use them with "
                        "pinsdk.AsyncClient there, and another DynamicPins for pinsdk.Client"
                    )
                runner = LoopThread("pinsdk refresher")
                try:
                    runner.call(self.__aenter__)
                except BaseException:
                    runner.close()
                    raise
                self._sync_runner = runner
            self._sync_users += 1

    def _release_sync(self) -> None:
        with self._sync_lock:
            if self._sync_users == 0:
                return
            self._sync_users -= 1
            if self._sync_users:
                return
            runner, self._sync_runner = self._sync_runner, None
            if runner is not None:
                try:
                    runner.call(self.aclose)
                finally:
                    runner.close()

    def refresh_blocking(self) -> UpdateResult:
        """:meth:`refresh` from sync code, on the loop thread of the sync use (``with pins:``
        or a :class:`~pinsdk.Client`); ``RuntimeError`` outside sync use."""
        result: UpdateResult = self._in_sync_use(self.refresh)
        return result

    def apply_document_blocking(self, document: bytes) -> UpdateResult:
        """:meth:`apply_document` from sync code, as :meth:`refresh_blocking`."""
        result: UpdateResult = self._in_sync_use(self.apply_document, document)
        return result

    def _in_sync_use(self, func: Callable[..., Any], *args: object) -> Any:
        runner = self._sync_runner
        if runner is None:
            raise RuntimeError(
                "these DynamicPins are not in sync use: enter them with `with pins:` (or give "
                "them to a pinsdk.Client) first, or await the async method"
            )
        return runner.call(func, *args)

    def heal_blocking(self, host: str, expected: frozenset[str]) -> bool:
        """:meth:`heal` for sync clients, run on the loop thread of the sync use (``False``
        when these pins are not in sync use)."""
        runner = self._sync_runner
        if runner is None:
            return False
        try:
            return bool(runner.call(self.heal, host, expected))
        except RuntimeError:  # closed meanwhile by its last user
            return False

    def _load_cache(self) -> None:
        assert self.cache_path is not None
        problem = unsafe_directory(self.cache_path)
        if problem is not None:
            logger.warning("pin cache %s is not used: %s", self.cache_path, problem)
            return
        cached = read_cache(self.cache_path)
        if cached is None:
            return
        outcome = self._trust.load_cache(cached)
        if outcome.status is CacheStatus.CORRUPT:
            logger.warning(
                "pin cache %s is corrupt and not trusted (%s); the bootstrap and the update "
                "server decide",
                self.cache_path,
                outcome.reason,
            )
        elif outcome.status is CacheStatus.NOT_NEWER:
            logger.info("pin cache %s is not used: %s", self.cache_path, outcome.reason)
        else:
            etag, modified = cached.get("etag"), cached.get("last_modified")
            self._etag = etag if isinstance(etag, str) else None
            self._last_modified = modified if isinstance(modified, str) else None
            logger.info("loaded pin document version %d from %s", outcome.version, self.cache_path)

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
        if result.status is UpdateStatus.FAILED and (
            result.http_status is not None or self._failures >= _WARN_AFTER_FAILURES
        ):
            # The server answered with an error (a wrong URL's 404, a 500): someone must
            # act. A network error may be a blip: it warns once it repeats.
            level = logging.WARNING
        if result.status is UpdateStatus.NOT_MODIFIED:
            level = logging.DEBUG
        logger.log(level, "pin update from %s: %s: %s", origin, result.status.value, result.reason)
        unenforced = self._trust.unenforced_reason()
        if unenforced:  # repeated at every refresh until a fresh document arrives
            logger.error("%s", unenforced)
        return result

    def _result(self, status: UpdateStatus, reason: str, http_status: int | None) -> UpdateResult:
        return UpdateResult(status, reason, self._trust.floor, _now(), http_status)

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
                async with self._fetcher.stream(self.update_url, headers) as response:
                    status_code = response.status_code
                    early = judge_headers(
                        status_code,
                        response.headers,
                        conditional=conditional,
                        holds_document=self._trust.document is not None,
                        version=self._trust.floor,
                        max_size=self.max_size,
                    )
                    if early is not None:
                        return self._early(early, status_code)
                    try:
                        reader = BodyReader(
                            response.headers.get("content-encoding", ""), self.max_size
                        )
                        async for chunk in response.aiter_raw():
                            reader.feed(chunk)
                        body = reader.finish()
                    except BodyRefused as refused:
                        return self._result(UpdateStatus.REJECTED, str(refused), status_code)
                    etag = response.headers.get("etag")
                    modified = response.headers.get("last-modified")
        except TimeoutError:
            return self._result(
                UpdateStatus.FAILED, f"fetch did not finish within {limit:g} s", status_code
            )
        except Exception as exc:  # any fetcher's trouble is a failed fetch, never a crash
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
        """Hand the bytes to the trusted set; a large document is verified off the event
        loop (the swap is one assignment wherever it runs)."""
        if len(body) > 32 * 1024:
            return await anyio.to_thread.run_sync(self._trust.update, body)
        return self._trust.update(body)

    def _early(self, outcome: tuple[UpdateStatus, str], code: int) -> UpdateResult:
        status, reason = outcome
        if status is UpdateStatus.NOT_MODIFIED and self.state.stale:
            # "Not modified" while the document in force has expired: the server has
            # nothing fresh, and answering 304 forever must not pass for a check.
            status = UpdateStatus.FAILED
            reason = (
                f"HTTP 304, but version {self._trust.floor} in force has expired: the "
                "update server has no fresh document"
            )
        return self._result(status, reason, code)

    async def _save(self) -> None:
        if self.cache_path is None:
            return
        path = self.cache_path
        extra = {"etag": self._etag, "last_modified": self._last_modified}
        try:
            kept = await anyio.to_thread.run_sync(self._write_cache, path, extra)
        except OSError as exc:
            logger.warning("could not write pin cache %s: %s", path, exc)
            return
        if kept:
            logger.debug(
                "pin cache %s already holds a version at least as new (another process); kept",
                path,
            )

    def _write_cache(self, path: str, extra: dict[str, str | None]) -> bool:
        """Write the trusted state unless the file already holds a verified document at
        least as new (then return True). Under the lock, so the floor on disk never goes
        down whichever process writes last."""
        problem = unsafe_directory(path)
        if problem is not None:
            raise OSError(problem)
        with cache_lock(path):
            content = self._trust.to_cache(extra, replacing=read_cache(path, quiet=True))
            if content is None:
                return True
            write_cache(path, content)
            remove_legacy_floor(path)
        return False

    def stats(self) -> dict[str, int]:
        """Counters: updates by outcome, handshakes and pin failures with these pins."""
        policy = self.current
        out = self.monitor.stats.as_dict(policy.version, policy)
        out["pins_enforced"] = int(self._trust.facts().enforcing)
        return out

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
        state = self.state
        if state.stale or not state.enforcing:  # expired or too old: retry eagerly
            delay = min(delay, min(interval, 60.0) * random.uniform(0.5, 1.0))  # noqa: S311
        return delay

    async def _run(self) -> None:
        while True:
            result = await self.refresh()
            await self._notify(result)
            await anyio.sleep(self.next_delay(result))

    async def _notify(self, result: UpdateResult) -> None:
        await run_hook(self.on_update, result, "on_update")
