"""One background task owned by one object (a report sender, a refresher).

The task is not a child of a task group entered in ``__aenter__``: a group entered by
hand in one place and left in another is a cancel scope stack the caller does not see,
and closing two owners first-in-first-out then crashes ("cancel scope that isn't the
current task's" on asyncio, "Nursery misnesting" on trio). Here the task belongs to the
event loop (an asyncio task, a trio system task), holds its own cancel scope inside its
own body, and ``aclose()`` cancels that scope and waits for the end: any task may start
it, any task may stop it, owners close in any order, and an owner that is never closed
is stopped when the event loop ends (``asyncio.run`` cancels the task; trio cancels
system tasks when the main task returns).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import anyio

__all__ = ["BackgroundTask"]

logger = logging.getLogger("pinsdk")

# How long aclose() waits for a cancelled task to finish its cleanup (closing its
# connections): the cleanup is short and shielded by httpcore, but an owner's close must
# never hang on it.
CLOSE_TIMEOUT = 5.0


def _current_library() -> str:
    # The same test httpcore makes: sniffio is installed with trio, and without it only
    # asyncio can be running.
    try:
        import sniffio
    except ImportError:  # pragma: no cover (trio brings sniffio)
        return "asyncio"
    try:
        return sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        raise RuntimeError("a pinsdk background task needs a running event loop") from None


class BackgroundTask:
    """Runs ``func`` in the background from the first :meth:`start` to :meth:`aclose`.

    ``start()`` is synchronous (a callback may call it) and does nothing while a run is
    going on; a run that ended by itself (``func`` returned or raised, or its event loop
    ended) is started again by the next ``start()``. Exceptions of ``func`` are logged,
    never raised into the event loop. After ``aclose()`` nothing starts again.
    """

    def __init__(self, func: Callable[[], Awaitable[None]], name: str) -> None:
        self._func = func
        self.name = name
        self.closed = False
        self._scope: anyio.CancelScope | None = None
        self._done: anyio.Event | None = None
        # The asyncio task: the loop keeps only a weak reference to it.
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether a run was started and has not finished."""
        if self._task is not None:
            # An asyncio task cancelled before its first step never runs its body (and
            # never sets _done): the task object knows it ended.
            return not self._task.done()
        return self._done is not None and not self._done.is_set()

    def start(self) -> None:
        """Start a run from the current event loop, unless one runs or this is closed."""
        if self.closed or self.running:
            return
        library = _current_library()
        done = anyio.Event()
        if library == "trio":
            import trio

            self._task = None
            self._done = done
            # A system task: not a child of the caller's nursery, cancelled at run end.
            trio.lowlevel.spawn_system_task(self._body, done, name=self.name)
        elif library == "asyncio":
            self._done = done
            self._task = asyncio.get_running_loop().create_task(self._body(done), name=self.name)
        else:
            raise RuntimeError(f"pinsdk runs on asyncio or trio, not {library}")

    async def _body(self, done: anyio.Event) -> None:
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                if not self.closed:  # closed before this run got its first step: no run
                    await self._func()
        except Exception:
            # Never into the event loop: on trio a system task's exception ends the run.
            logger.exception("pinsdk background task %r failed; it stopped", self.name)
        finally:
            self._scope = None
            done.set()

    async def aclose(self) -> None:
        """Stop the run (if any) and wait for it to end; nothing starts afterwards."""
        self.closed = True
        if not self.running:
            return
        if self._scope is not None:
            self._scope.cancel()
        done = self._done
        assert done is not None
        # Shielded: an owner closed from a cancelled task still leaves nothing running.
        with anyio.move_on_after(CLOSE_TIMEOUT, shield=True) as waited:
            await done.wait()
        if waited.cancelled_caught:
            logger.warning(
                "pinsdk background task %r did not stop within %g s", self.name, CLOSE_TIMEOUT
            )
