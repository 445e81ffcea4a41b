"""The on-disk pin cache: one file, written atomically, under a lock, in a private directory.

The file holds the raw envelopes and the rollback floor together (see
``TrustedPins.to_cache`` in ``pinsdk/_core/trusted.py``), so the two can never disagree.
What is *in* it is judged by ``TrustedPins.load_cache``; this module only moves bytes
safely. Locking and the ownership checks are POSIX only; elsewhere writes are still atomic
but not serialised.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from typing import Any

__all__ = [
    "LEGACY_FLOOR_SUFFIX",
    "LOCK_SUFFIX",
    "cache_lock",
    "read_cache",
    "remove_legacy_floor",
    "unsafe_directory",
    "write_cache",
]

# Before the floor moved into the cache file it was kept in "<cache>.floor": no longer
# read (it could disagree with the cache); deleted by the next write.
LEGACY_FLOOR_SUFFIX = ".floor"
LOCK_SUFFIX = ".lock"

logger = logging.getLogger("pinsdk")

MAX_CACHE_BYTES = 16 * 1024 * 1024
LOCK_TIMEOUT = 10.0
_MAX_INT_DIGITS = 20  # the cache holds versions (19 digits at most) and base64 strings

# Indirection so tests can simulate a crash between writing and renaming.
_replace = os.replace

try:
    import fcntl
except ImportError:  # pragma: no cover (not POSIX)
    fcntl = None  # type: ignore[assignment]


def unsafe_directory(path: str) -> str | None:
    """Why the directory holding ``path`` must not be trusted, or ``None`` if it may be.

    Another user who can write the directory can swap the cache and lock files at will,
    so a directory writable by group or others, or owned by another user (than this
    process's or root), is refused. A missing directory is fine: it is created 0700.
    """
    if not hasattr(os, "geteuid"):  # pragma: no cover (not POSIX: no uid to compare)
        return None
    directory = os.path.dirname(os.path.abspath(path))
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"its directory {directory} cannot be inspected ({exc})"
    if not stat.S_ISDIR(st.st_mode):
        return f"{directory} is not a directory"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (
            f"its directory {directory} is writable by group or others (mode "
            f"{stat.S_IMODE(st.st_mode):04o}), so another user could replace the cache; "
            "use a directory only this user can write (0700)"
        )
    if st.st_uid not in (os.geteuid(), 0):
        return (
            f"its directory {directory} is owned by uid {st.st_uid}, not by this process's "
            f"uid {os.geteuid()}"
        )
    return None


@contextlib.contextmanager
def cache_lock(path: str, timeout: float | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<path>.lock`` (0600) while a writer reads and writes.

    The wait is bounded: past ``timeout`` seconds (default ``LOCK_TIMEOUT``) an
    :class:`OSError` says the lock is busy. Without ``fcntl`` (not POSIX) nothing is locked.
    """
    if timeout is None:
        timeout = LOCK_TIMEOUT
    if fcntl is None:  # pragma: no cover (not POSIX)
        yield
        return
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd = os.open(path + LOCK_SUFFIX, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        deadline = time.monotonic() + timeout
        pause = 0.001
        while True:  # bounded by the deadline
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise OSError(
                        f"pin cache lock {path + LOCK_SUFFIX} is held by another process for "
                        f"more than {timeout:g} s"
                    ) from None
                # A retry, not a wait for a test's state: flock has no timeout of its own.
                time.sleep(pause)
                pause = min(pause * 2, 0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def write_cache(path: str, content: dict[str, Any]) -> None:
    """Write JSON atomically: a 0600 temp file in the same directory, fsync, ``os.replace``.

    A crash at any point leaves either the old file or the new one, never a mix. A
    directory that does not exist yet is created 0700.
    """
    data = json.dumps(content, separators=(",", ":")).encode("utf-8")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".pinsdk-cache-", suffix=".tmp")  # 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable; not possible on every platform
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def remove_legacy_floor(path: str) -> None:
    """Delete a ``<path>.floor`` file left by an older pinsdk (the cache file holds the floor)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path + LEGACY_FLOOR_SUFFIX)


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits")
    return int(text)


def read_cache(path: str, *, quiet: bool = False) -> Any | None:
    """Return the cache's JSON, or ``None`` if there is none or it cannot be used.

    Unreadable, oversized, undecodable or group/other-writable files are a WARNING
    (DEBUG with ``quiet``, for a writer about to replace them).
    """
    level = logging.DEBUG if quiet else logging.WARNING
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            data = f.read(MAX_CACHE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        logger.log(level, "pin cache %s cannot be read (%s); not trusted", path, exc)
        return None
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        logger.log(
            level,
            "pin cache %s is writable by group or others (mode %04o); not trusted",
            path,
            stat.S_IMODE(st.st_mode),
        )
        return None
    if len(data) > MAX_CACHE_BYTES:
        logger.log(
            level, "pin cache %s is larger than %d bytes; not trusted", path, MAX_CACHE_BYTES
        )
        return None
    try:
        return json.loads(data.decode("utf-8"), parse_int=_bounded_int)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        logger.log(level, "pin cache %s is corrupt (%s); not trusted", path, exc)
        return None
