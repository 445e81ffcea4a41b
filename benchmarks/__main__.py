"""Run the benchmarks and print a table: ``python -m benchmarks``."""

from __future__ import annotations

import platform
import sys

from . import micro


def main() -> int:
    print(f"pinsdk benchmarks on Python {platform.python_version()}, {platform.machine()}")
    rows = micro.pin_check() + micro.lookup()
    width = max(len(name) for name, _ in rows)
    for name, seconds in rows:
        print(f"  {name.ljust(width)}  {seconds * 1e6:9.2f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
