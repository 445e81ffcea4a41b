"""Report-mode failures waiting for the request that opened their connection.

The pin check runs inside the handshake, where no request is known; a report-mode
failure lets the connection go on, so it waits here (weakly tied to its TLS object) until
the transport that made the request claims it and hands it to callbacks and reports.
"""

from __future__ import annotations

import weakref
from collections import deque
from typing import Any

from ._core.events import PinFailure

__all__ = ["Unclaimed"]

_MAX = 64  # bounded: failures nobody claims are dropped oldest first


class Unclaimed(deque[tuple["weakref.ref[Any]", PinFailure]]):
    """A bounded queue of (weak reference to a TLS object, its report-mode failure)."""

    def __init__(self) -> None:
        super().__init__(maxlen=_MAX)

    def put(self, tls_object: object, failure: PinFailure) -> None:
        """Queue a failure seen on ``tls_object``."""
        self.append((weakref.ref(tls_object), failure))

    def claim(self, obj: object) -> tuple[list[PinFailure], list[PinFailure]]:
        """Take the failures seen on the TLS object ``obj``, and those whose connection is
        gone without a request claiming them (orphans)."""
        mine: list[PinFailure] = []
        orphans: list[PinFailure] = []
        for entry in list(self):
            owner = entry[0]()
            if owner is None:
                found = orphans
            elif obj is not None and owner is obj:
                found = mine
            else:
                continue  # another connection's, for its own request to claim
            try:
                self.remove(entry)
            except ValueError:  # claimed meanwhile by another thread
                continue
            found.append(entry[1])
        return mine, orphans
