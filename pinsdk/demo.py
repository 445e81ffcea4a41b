"""The end-to-end demo on 127.0.0.1: ``python -m pinsdk.demo`` (what ``make demo`` runs).

1. an API server with a certificate from a CA the device trusts;
2. a pinned client calls it: success;
3. an attacker with a certificate from another CA the device also trusts intercepts:
   the pinned client is blocked and the attacker receives 0 bytes, while a plain
   httpx client hands it the ``Authorization`` header.

Exit status 0 only if every step behaved as expected.
"""

from __future__ import annotations

import argparse
import logging
import ssl
import sys
import time
from collections.abc import Callable

import anyio
import httpx

from .errors import PinningError
from .localca import LocalCA
from .loopback import LoopbackTLSServer
from .pins import spki_pin
from .policy import DomainPins, PinPolicy

__all__ = ["main", "run_demo"]

TOKEN = "Bearer demo-secret-token"  # noqa: S105 (a demo value, shown leaking)


async def run_demo(write: Callable[[str], object]) -> bool:
    """Run every step, writing a readable log line by line; True if all behaved."""
    results: list[tuple[str, bool]] = []

    def step(title: str, ok: bool, detail: str) -> None:
        results.append((title, ok))
        write(f"  [{'ok' if ok else 'UNEXPECTED'}] {detail}")

    started = time.perf_counter()
    write("pinsdk demo: everything runs on 127.0.0.1\n")
    api_ca = LocalCA("Demo API")
    attacker_ca = LocalCA("Attacker proxy", intermediate=False)
    api_cert = api_ca.issue("127.0.0.1")
    attacker_cert = attacker_ca.issue("127.0.0.1")

    def device_trust() -> ssl.SSLContext:
        # The device trusts both CAs: the attacker's was installed as a "corporate proxy".
        ctx = ssl.create_default_context()
        api_ca.trust(ctx)
        attacker_ca.trust(ctx)
        return ctx

    from .client import AsyncClient

    pins = [spki_pin(api_ca.intermediates[0]), spki_pin(api_ca.root)]
    policy = PinPolicy([DomainPins("127.0.0.1", pins)])
    write("1. API server up; the app pins the API's intermediate CA and, as backup, its root:")
    for pin in pins:
        write(f"     {pin}")

    with LoopbackTLSServer(api_cert.server_context(), body=b'{"user": "alice"}') as api:
        write(f"\n2. Pinned request to {api.url('127.0.0.1', '/v1/me')}")
        async with AsyncClient(pins=policy, verify=device_trust()) as client:
            response = await client.get(api.url(path="/v1/me"), headers={"Authorization": TOKEN})
        step(
            "pinned request",
            response.status_code == 200,
            f"HTTP {response.status_code}: {response.text}",
        )

    with LoopbackTLSServer(attacker_cert.server_context(), body=b"intercepted") as attacker:
        write("\n3. An attacker intercepts with a certificate from another trusted CA")
        try:
            async with AsyncClient(pins=policy, verify=device_trust()) as client:
                await client.get(attacker.url(path="/v1/me"), headers={"Authorization": TOKEN})
            step("pinned client blocked", False, "the pinned request went through")
        except PinningError as exc:
            first_line = str(exc).splitlines()[0]
            step("pinned client blocked", True, f"blocked: {first_line}")
        attacker.wait_idle()
        leaked = attacker.received
        step(
            "attacker got 0 bytes",
            leaked == b"",
            f"attacker received {len(leaked)} bytes from the pinned client",
        )
        async with httpx.AsyncClient(verify=device_trust()) as plain:
            await plain.get(attacker.url(path="/v1/me"), headers={"Authorization": TOKEN})
        stolen = TOKEN.encode() in attacker.received
        step(
            "unpinned client leaks",
            stolen,
            "a plain httpx client sent it the Authorization header"
            if stolen
            else "the plain client did not leak (unexpected)",
        )

    elapsed = time.perf_counter() - started
    write("\nSummary")
    width = max(len(title) for title, _ in results)
    for title, ok in results:
        write(f"  {title.ljust(width)}  {'as expected' if ok else 'NOT AS EXPECTED'}")
    all_ok = all(ok for _, ok in results)
    write(
        f"\n{'All steps behaved as expected' if all_ok else 'Some steps failed'} ({elapsed:.1f} s)."
    )
    return all_ok


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m pinsdk.demo``."""
    parser = argparse.ArgumentParser(
        prog="pinsdk demo",
        description="Show pinning at work on 127.0.0.1: a pinned call, a blocked MitM, "
        "and the leak an unpinned client suffers. Exit status 0 if every step behaved.",
    )
    parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stdout,
        level=logging.WARNING,
        format="     log: %(levelname)s %(name)s: %(message)s",
    )

    def write(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    return 0 if anyio.run(run_demo, write) else 1


if __name__ == "__main__":
    raise SystemExit(main())
