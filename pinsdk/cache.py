"""The on-disk cache of the last accepted pin document: atomic writes, careful reads."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from typing import Any

__all__ = ["FLOOR_SUFFIX", "read_cache", "read_floor", "write_cache", "write_floor"]

FLOOR_SUFFIX = ".floor"

logger = logging.getLogger("pinsdk")

MAX_CACHE_BYTES = 16 * 1024 * 1024

# Indirection so tests can simulate a crash between writing and renaming.
_replace = os.replace


def write_cache(path: str, content: dict[str, Any]) -> None:
    """Write JSON atomically: a temp file in the same directory, fsync, ``os.replace``.

    A crash at any point leaves either the old file or the new one, never a mix.
    """
    data = json.dumps(content, separators=(",", ":")).encode("utf-8")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".pinsdk-cache-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
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


def read_cache(path: str) -> Any | None:
    """Return the cache's JSON, or ``None`` if there is none; unreadable is a warning."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CACHE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        logger.warning("pin cache %s cannot be read (%s); ignoring it", path, exc)
        return None
    if len(data) > MAX_CACHE_BYTES:
        logger.warning("pin cache %s is larger than %d bytes; ignoring it", path, MAX_CACHE_BYTES)
        return None
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        logger.warning("pin cache %s is corrupt (%s); ignoring it", path, exc)
        return None


def write_floor(path: str, version: int) -> None:
    """Record the highest accepted version in its own small file (atomically)."""
    write_cache(path, {"pinsdk_floor": 1, "version": version})


def read_floor(path: str) -> int:
    """The recorded floor, or 0 when there is none or it is unreadable (logged)."""
    content = read_cache(path)
    if content is None:
        return 0
    version = content.get("version") if isinstance(content, dict) else None
    if type(version) is not int or version < 0:
        logger.warning("rollback floor file %s is malformed; ignoring it", path)
        return 0
    return version
