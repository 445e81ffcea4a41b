"""Pin failure callbacks, counters and the report sender (the I/O shell of events.py).

Nothing here runs inside a request: failures are queued and a background task posts
them, so a slow or dead collector never delays or fails the request that failed. The
task starts with the first report queued (whether or not its owner was entered with
``async with``) and stops when the owner closes.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import ssl
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any

import anyio
import attrs
import httpx

from ._background import BackgroundTask
from ._core.errors import PinConfigError
from ._core.events import Deduplicator, PinFailure, Stats, build_report, dedup_key
from ._core.policy import PinPolicy
from ._runner import LoopThread
from ._tls import PinCheck, PinSource, VerifyTypes, pinned_ssl_context

__all__ = ["Monitor", "Observed", "ObservedSync", "Reporter", "Reporting"]

logger = logging.getLogger("pinsdk")

FailureCallback = Callable[[PinFailure], object]


def _positive(name: str) -> Callable[[object, object, float], None]:
    def check(instance: object, attribute: object, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise PinConfigError(f"Reporting.{name} must be a positive number, not {value!r}")

    return check


@attrs.frozen
class Reporting:
    """How pin failure reports are sent to a policy's ``report_uri``.

    ``verify`` is the report channel's trust (an ordinary TLS client); ``pins`` pins it
    with a policy of its own (never the failing one). Identical reports go out once per
    ``dedup_interval`` seconds; at most ``queue_size`` wait to be sent (more are dropped
    and counted); each POST gets ``timeout`` seconds. ``enabled=False`` sends nothing.
    """

    enabled: bool = True
    verify: VerifyTypes = True
    pins: PinPolicy | None = None
    dedup_interval: float = attrs.field(default=86400.0, validator=_positive("dedup_interval"))
    queue_size: int = attrs.field(default=100, validator=_positive("queue_size"))
    timeout: float = attrs.field(default=5.0, validator=_positive("timeout"))


class Reporter:
    """A bounded queue of reports and the background task that drains it.

    The task starts with the first report queued, from whichever task queued it, and
    :meth:`aclose` stops it; reports queued after that are dropped (and counted).
    """

    def __init__(self, config: Reporting, stats: Stats, sdk_version: str) -> None:
        self.config = config
        self.stats = stats
        self.sdk_version = sdk_version
        self._queue: deque[PinFailure] = deque()
        self._dedup = Deduplicator(config.dedup_interval)
        self._wake: anyio.Event | None = None
        self._sending = False
        self._idle: anyio.Event | None = None
        self._task = BackgroundTask(self.run, "pinsdk report sender")
        self.failed_since_flush = 0  # reports not delivered since the last flush()

    def enqueue(self, failure: PinFailure) -> None:
        """Queue a report unless it is a duplicate or the queue is full (never blocks)."""
        if self._task.closed:
            self.stats.add("reports_dropped")
            logger.info("pin failure report for %s dropped: its client is closed", failure.host)
            return
        if not self._dedup.first_in_interval(dedup_key(failure), time.monotonic()):
            self.stats.add("reports_deduplicated")
            return
        if len(self._queue) >= self.config.queue_size:
            self.stats.add("reports_dropped")
            logger.info("pin failure report queue full; report for %s dropped", failure.host)
            return
        self._queue.append(failure)
        if self._wake is not None:
            self._wake.set()
        self._task.start()

    async def aclose(self) -> None:
        """Stop the sender; reports still queued are not sent."""
        await self._task.aclose()

    def _client(self) -> httpx.AsyncClient:
        timeout = httpx.Timeout(self.config.timeout)
        if self.config.pins is None:
            # A plain TLS client: a report is never subject to the policy that just failed.
            return httpx.AsyncClient(verify=_plain_verify(self.config.verify), timeout=timeout)
        # The report channel's own pins, checked by a plain client on a pinned context:
        # no observers, reports or self-healing of its own (never a report about a report).
        pinned = pinned_ssl_context(self.config.pins, verify=self.config.verify)
        return httpx.AsyncClient(verify=pinned, timeout=timeout)

    async def run(self) -> None:
        """Post queued reports until cancelled."""
        try:
            async with self._client() as client:
                while True:
                    self._wake = anyio.Event()
                    while self._queue:
                        self._sending = True
                        try:
                            await self._send(client, self._queue.popleft())
                        finally:
                            self._sending = False
                    if self._idle is not None:
                        self._idle.set()
                    await self._wake.wait()
        finally:
            self._wake = None
            if self._idle is not None:  # a flush waiting on a run that ended
                self._idle.set()

    @property
    def pending(self) -> int:
        """Reports queued or being sent."""
        return len(self._queue) + int(self._sending)

    async def flush(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until every queued report was attempted; True
        only if all of them, and every report attempted since the last flush, were delivered."""
        done = False
        with anyio.move_on_after(timeout):
            while self.pending and not self._task.closed:
                idle = self._idle
                if idle is None or idle.is_set():  # one event for every waiting flush
                    self._idle = idle = anyio.Event()
                self._task.start()  # nothing while it runs; again if a run ended
                await idle.wait()
            done = not self.pending
        failed, self.failed_since_flush = self.failed_since_flush, 0
        return done and not failed

    async def _send(self, client: httpx.AsyncClient, failure: PinFailure) -> None:
        assert failure.report_uri is not None
        body = json.dumps(build_report(failure, sdk_version=self.sdk_version)).encode("utf-8")
        try:
            with anyio.fail_after(self.config.timeout):
                response = await client.post(
                    failure.report_uri,
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
            ok = 200 <= response.status_code < 300
            detail = f"HTTP {response.status_code}"
        except (httpx.HTTPError, TimeoutError) as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        self.stats.add("reports_sent" if ok else "reports_failed")
        if not ok:
            self.failed_since_flush += 1
        log = logger.debug if ok else logger.warning
        log(
            "pin failure report for %s to %s: %s",
            failure.host,
            failure.report_uri,
            detail if ok else f"not delivered: {detail}",
        )


def _plain_verify(verify: VerifyTypes) -> ssl.SSLContext | bool:
    if isinstance(verify, (str, os.PathLike)):
        path = os.fspath(verify)
        if os.path.isdir(path):
            return ssl.create_default_context(capath=path)
        return ssl.create_default_context(cafile=path)
    return verify


async def run_hook(hook: Callable[[Any], object] | None, value: object, name: str) -> None:
    """Call a user callback, sync or async; its exceptions are logged, never raised."""
    if hook is None:
        return
    try:
        outcome = hook(value)
        if inspect.isawaitable(outcome):
            await outcome
    except Exception:
        logger.exception("%s callback failed (ignored)", name)


def run_hook_blocking(hook: Callable[[Any], object] | None, value: object, name: str) -> None:
    """:func:`run_hook` from sync code: an async callback runs on a loop of its own."""
    if hook is None:
        return
    try:
        outcome = hook(value)
        if inspect.isawaitable(outcome):
            anyio.run(_awaited, outcome)
    except Exception:
        logger.exception("%s callback failed (ignored)", name)


async def _awaited(outcome: Any) -> None:
    await outcome


class Monitor:
    """Counters, ``on_pin_failure`` callbacks and (optionally) a reporter for one owner.

    A sync owner (``pinsdk.Client``) passes ``runner``: the reporter then lives on that
    loop thread, and :meth:`dispatch_blocking` and :meth:`release_blocking` are used.
    """

    def __init__(
        self,
        *,
        on_pin_failure: FailureCallback | None = None,
        reporting: Reporting | None = None,
        sdk_version: str = "",
        runner: LoopThread | None = None,
    ) -> None:
        if on_pin_failure is not None and not callable(on_pin_failure):
            raise PinConfigError(f"on_pin_failure must be callable, not {on_pin_failure!r}")
        self.stats = Stats()
        self.on_pin_failure = on_pin_failure
        enabled = reporting is not None and reporting.enabled
        self.reporter = Reporter(reporting, self.stats, sdk_version) if enabled else None  # type: ignore[arg-type]
        self.runner = runner

    async def dispatch(self, failure: PinFailure) -> None:
        """Run the callback (sync or async) and queue the report; errors are logged."""
        await run_hook(self.on_pin_failure, failure, "on_pin_failure")
        if self.reporter is not None and failure.report_uri is not None:
            self.reporter.enqueue(failure)

    def dispatch_blocking(self, failure: PinFailure) -> None:
        """:meth:`dispatch` from a sync owner's thread: the callback runs here, the report
        is queued on the owner's loop thread (started by the first report)."""
        run_hook_blocking(self.on_pin_failure, failure, "on_pin_failure")
        if self.reporter is not None and failure.report_uri is not None:
            if self.runner is None:  # pragma: no cover (sync owners always pass one)
                raise RuntimeError("internal: a sync monitor without a loop thread")
            try:
                self.runner.call(self.reporter.enqueue, failure)
            except RuntimeError:  # closed meanwhile by another thread
                self.stats.add("reports_dropped")

    def flush_blocking(self, timeout: float) -> bool:
        """:meth:`Reporter.flush` for a sync owner."""
        if self.reporter is None or self.runner is None or not self.runner.started:
            return True  # nothing was ever queued
        try:
            return bool(self.runner.call(self.reporter.flush, timeout))
        except RuntimeError:  # closed
            return not self.reporter.pending

    def release_blocking(self, checks: Iterable[PinCheck]) -> None:
        """:meth:`release` for a sync owner: also stops its loop thread."""
        for check in checks:
            check.remove_monitors([self])
        runner = self.runner
        if runner is None:
            return
        if self.reporter is not None and runner.started:
            with contextlib.suppress(RuntimeError):  # closed by another thread meanwhile
                runner.call(self.reporter.aclose)
        runner.close()

    async def release(self, checks: Iterable[PinCheck]) -> None:
        """The owner closed: stop counting into ``checks`` (a shared context keeps nothing
        of a closed client) and stop the report sender."""
        for check in checks:
            check.remove_monitors([self])
        if self.reporter is not None:
            await self.reporter.aclose()


class Counted:
    """What every pinsdk client and transport has: its counters."""

    monitor: Monitor
    pins: PinSource

    def stats(self) -> dict[str, int]:
        """Counters: handshakes checked and passed, pin failures, reports, policy version."""
        current = self.pins.current
        return self.monitor.stats.as_dict(current.version, current)


class ObservedSync(Counted):
    """What Client and PinnedSyncTransport share: counters, flushing, ``with``."""

    # Each owner's own: it closes its pools and leaves its pin checks.
    close: Callable[[], None]

    def flush_reports(self, timeout: float = 5.0) -> bool:
        """Wait until queued pin failure reports were sent (or failed); False on timeout
        or if the owner closed with reports unsent."""
        return self.monitor.flush_blocking(timeout)

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.close()


class Observed(Counted):
    """What AsyncClient and PinnedTransport share: counters and flushing their reports."""

    # Each owner's own: it closes its pools and leaves its pin checks.
    aclose: Callable[[], Coroutine[Any, Any, None]]

    async def flush_reports(self, timeout: float = 5.0) -> bool:
        """Wait until queued pin failure reports were sent (or failed). True only if every
        report attempted since the last flush was delivered (a 2xx answer); False if one
        failed (logged as a WARNING), on timeout, or if the owner closed with reports unsent.
        Works with or without ``async with``."""
        reporter = self.monitor.reporter
        return True if reporter is None else await reporter.flush(timeout)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        # httpx's __aexit__ closes what aclose closes: one path, so nothing is left behind
        # whichever way the owner is closed, and in any order with other owners.
        await self.aclose()
