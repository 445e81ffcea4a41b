"""The micro-benchmark that times the pin check inside real handshakes."""

from __future__ import annotations

from benchmarks import micro


def test_the_check_is_timed_once_in_each_real_handshake() -> None:
    rows = micro.pin_check_in_handshakes(count=5)
    assert [name for name, _ in rows] == ["pin check in a real handshake (known host)"]
    seconds = rows[0][1]
    # The real check ran (a stand-in returning at once would take well under a µs; a
    # missing call makes the function raise); a generous ceiling for a slow machine.
    assert 1e-6 < seconds < 0.01
