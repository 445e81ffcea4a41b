"""Instructions per ``PinPolicy.lookup``, counted by valgrind: a figure no other load disturbs.

``python -m benchmarks.instructions 1000 100000`` runs, for each count and kind, a child that
builds the scale benchmark's policy and looks up 200 hosts 50 times, and the same child
looking up none, both under ``valgrind --tool=callgrind`` with ``PYTHONHASHSEED=0``; the
difference divided by 10,000 is printed. Needs valgrind; takes minutes.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys

REPEAT = 50
HOSTS = 200


def _child(n: int, kind: str, repeat: int) -> None:
    import pinsdk

    from .scale import domains_and_hosts, grouped

    domains, hosts = domains_and_hosts(n)
    rest, groups = grouped(domains)
    policy = pinsdk.PinPolicy.from_dict({"domains": rest, "host_groups": groups})
    sample = random.Random(1).sample(hosts[kind], min(HOSTS, len(hosts[kind])))
    sample = (sample * (HOSTS // len(sample) + 1))[:HOSTS]
    for host in sample:
        policy.lookup(host)
    for _ in range(repeat):
        for host in sample:
            policy.lookup(host)


def _count(n: int, kind: str, repeat: int) -> int:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    run = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-m",
            "benchmarks.instructions",
            "--child",
            str(n),
            kind,
            str(repeat),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", run.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from valgrind: {run.stderr[-500:]}")
    return int(found.group(1))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        _child(int(argv[1]), argv[2], int(argv[3]))
        return 0
    from .scale import KINDS

    counts = [int(a) for a in argv] or [1_000, 100_000]
    print(f"instructions per PinPolicy.lookup ({HOSTS} hosts x {REPEAT}, callgrind):")
    print(f"  {'domains':>9}  " + "  ".join(f"{k:>18}" for k in KINDS))
    for n in counts:
        per = [(_count(n, kind, REPEAT) - _count(n, kind, 0)) / (HOSTS * REPEAT) for kind in KINDS]
        print(f"  {n:>9,}  " + "  ".join(f"{p:18,.0f}" for p in per), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
