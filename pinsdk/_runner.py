"""An event loop in a thread of its own: how sync owners run pinsdk's async machinery.

``pinsdk.Client`` (its report sender) and ``DynamicPins`` used from sync code (its
refresher, self-healing refreshes) run the very code the async clients run, on one loop
in one thread per owner: an anyio primitive (a lock, an event) is then only ever used
from the loop it belongs to, whichever thread asks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal

__all__ = ["LoopThread"]


class LoopThread:
    """A loop thread started by the first :meth:`call` and stopped by :meth:`close`.

    Thread-safe: any thread may call or close. After :meth:`close`, :meth:`call` raises
    ``RuntimeError``; closing twice is fine.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._manager: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self.closed = False

    @property
    def started(self) -> bool:
        """Whether the thread runs (a call started it and no close stopped it)."""
        return self._portal is not None

    def call(self, func: Callable[..., Any], *args: Any) -> Any:
        """Run ``func(*args)`` (sync or async) on the loop; wait for and return its result."""
        with self._lock:
            if self.closed:
                raise RuntimeError(f"{self.name} is closed")
            if self._portal is None:
                manager = start_blocking_portal()
                self._portal = manager.__enter__()
                self._manager = manager
            portal = self._portal
        return portal.call(func, *args)

    def close(self) -> None:
        """Stop the loop (tasks still running on it are cancelled) and join the thread."""
        with self._lock:
            self.closed = True
            manager, self._manager, self._portal = self._manager, None, None
        if manager is not None:
            manager.__exit__(None, None, None)
