"""The end-to-end demo on 127.0.0.1: ``pinsdk demo`` (what ``make demo`` runs).

1. an API server with a certificate from a CA the device trusts;
2. a pinned client (pins from a signed document, version 1) calls it: success;
3. an attacker with a certificate from another CA the device also trusts intercepts:
   the pinned client is blocked and the attacker receives 0 bytes, while a plain httpx
   client hands it the ``Authorization`` header;
4. the API rotates to a new key; the operator signs pin document version 2; the
   client's background refresher picks it up and requests succeed again without a
   restart; version 1, replayed by the attacker, is rejected;
5. the failure report of step 3 arrives at a local collector;
6. a summary, and exit status 0 only if every step behaved as expected.

The certificate authorities are ``trustme``'s (the ``demo`` extra: ``pip install
'pinsdk[demo]'``); ``pinsdk demo`` says so in one line when it is missing.
"""

from __future__ import annotations

import argparse
import json
import logging
import ssl
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import httpx
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from .._client import AsyncClient
from .._core.envelope import sign_envelope
from .._core.errors import PinningError
from .._core.pins import spki_pin, spki_pin_of_key
from .._core.timeutil import format_datetime
from .._core.trusted import UpdateStatus
from .._refresher import DynamicPins, UpdateResult
from .._reporting import Reporting
from .loopback import LoopbackTLSServer, Reply

__all__ = ["main", "run_demo"]

TOKEN = "Bearer demo-secret-token"  # noqa: S105 (a demo value, shown leaking)
WAIT = 15.0  # seconds any single step may wait for something to happen


def _ca(name: str, parent: trustme.CA | None = None) -> trustme.CA:
    """A throw-away CA (an intermediate when ``parent`` is given), named for the demo."""
    return trustme.CA(
        parent_cert=parent, organization_name="pinsdk demo", organization_unit_name=name
    )


def _server_context(leaf: trustme.LeafCert) -> ssl.SSLContext:
    """A server-side context presenting ``leaf`` and its intermediates."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    return context


def _pin(ca: trustme.CA) -> str:
    return spki_pin(ca.cert_pem.bytes())


class _Collector:
    """Receives pin failure reports (an ordinary HTTPS endpoint)."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        self.arrived = threading.Event()

    def handle(self, request: dict[str, str]) -> Reply:
        self.reports.append(json.loads(request[":body"]))
        self.arrived.set()
        return (204, [], b"")


class _UpdateHost:
    """Serves whichever signed document is published (a static file on a CDN)."""

    def __init__(self) -> None:
        self.document = b""

    def handle(self, request: dict[str, str]) -> Reply:
        return (200, [("Content-Type", "application/json")], self.document)


def _document(key: ed25519.Ed25519PrivateKey, version: int, pins: list[str], report: str) -> bytes:
    now = datetime.now(timezone.utc)
    payload = {
        "spec_version": 1,
        "version": version,
        "issued_at": format_datetime(now - timedelta(minutes=1)),
        "expires": format_datetime(now + timedelta(days=30)),
        "report_uri": report,
        "domains": [{"host": "127.0.0.1", "pins": pins}],
    }
    return sign_envelope(payload, key)


async def run_demo(write: Callable[[str], object]) -> bool:
    """Run every step, writing a readable log line by line; True if all behaved."""
    results: list[tuple[str, bool]] = []

    def step(title: str, ok: bool, detail: str) -> None:
        results.append((title, ok))
        write(f"  [{'ok' if ok else 'UNEXPECTED'}] {detail}")

    started = time.perf_counter()
    write("pinsdk demo: everything runs on 127.0.0.1\n")
    # The API's certificates come from an intermediate (the pinned key), the others straight
    # from their roots.
    api_root, new_api_root = _ca("Demo API Root CA"), _ca("Demo API 2027 Root CA")
    api_ca = _ca("Demo API Intermediate CA", api_root)
    new_api_ca = _ca("Demo API 2027 Intermediate CA", new_api_root)
    attacker_ca = _ca("Attacker proxy CA")
    ops_ca = _ca("Demo operations CA")

    def device_trust() -> ssl.SSLContext:
        # The device trusts every root here: the attacker's was installed as a "corporate proxy".
        ctx = ssl.create_default_context()
        for root in (api_root, new_api_root, attacker_ca, ops_ca):
            root.configure_trust(ctx)
        return ctx

    signing_key = ed25519.Ed25519PrivateKey.generate()
    backup_pin = spki_pin_of_key(ed25519.Ed25519PrivateKey.generate().public_key())
    trusted = signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    ops_cert = ops_ca.issue_cert("localhost")
    collector, update_host = _Collector(), _UpdateHost()
    updated = anyio.Event()

    async def on_update(result: UpdateResult) -> None:
        if result.status is UpdateStatus.UPDATED and result.version == 2:
            updated.set()

    with (
        LoopbackTLSServer(
            _server_context(ops_cert), http2=False, handler=collector.handle
        ) as reports,
        LoopbackTLSServer(
            _server_context(ops_cert), http2=False, handler=update_host.handle
        ) as cdn,
    ):
        report_uri = reports.url("localhost", "/pin-reports")
        v1 = _document(signing_key, 1, [_pin(api_ca), backup_pin], report_uri)
        update_host.document = v1
        write("1. The operator signs pin document version 1 (the API's intermediate CA plus an")
        write("   offline backup key); the app ships it and the operator's public key.")
        pins = DynamicPins(
            cdn.url("localhost", "/pins.json"),
            [trusted],
            bootstrap=v1,
            refresh_interval=0.2,
            verify=device_trust(),
            on_update=on_update,
        )
        client = AsyncClient(
            pins=pins, verify=device_trust(), reporting=Reporting(verify=device_trust())
        )
        async with pins, client:
            await _steps_2_and_3(
                client, api_ca.issue_cert("127.0.0.1"), attacker_ca, device_trust, step, write
            )
            await _step_4(
                client,
                pins,
                signing_key,
                new_api_ca,
                api_ca,
                backup_pin,
                report_uri,
                update_host,
                v1,
                updated,
                step,
                write,
            )
            await _step_5(client, collector, step, write)

    elapsed = time.perf_counter() - started
    write("\n6. Summary")
    width = max(len(title) for title, _ in results)
    for title, ok in results:
        write(f"  {title.ljust(width)}  {'as expected' if ok else 'NOT AS EXPECTED'}")
    all_ok = all(ok for _, ok in results)
    verdict = "All steps behaved as expected" if all_ok else "Some steps failed"
    write(f"\n{verdict} ({elapsed:.1f} s).")
    return all_ok


async def _steps_2_and_3(
    client: httpx.AsyncClient,
    api_cert: trustme.LeafCert,
    attacker_ca: trustme.CA,
    device_trust: Callable[[], ssl.SSLContext],
    step: Callable[[str, bool, str], None],
    write: Callable[[str], object],
) -> None:
    with LoopbackTLSServer(_server_context(api_cert), body=b'{"user": "alice"}') as api:
        write(f"\n2. Pinned request to {api.url(path='/v1/me')}")
        response = await client.get(api.url(path="/v1/me"), headers={"Authorization": TOKEN})
        step(
            "pinned request",
            response.status_code == 200,
            f"HTTP {response.status_code}: {response.text}",
        )

    attacker_cert = attacker_ca.issue_cert("127.0.0.1")
    with LoopbackTLSServer(_server_context(attacker_cert), body=b"intercepted") as attacker:
        write("\n3. An attacker intercepts with a certificate from another trusted CA")
        try:
            await client.get(attacker.url(path="/v1/me"), headers={"Authorization": TOKEN})
            step("pinned client blocked", False, "the pinned request went through")
        except PinningError as exc:
            step("pinned client blocked", True, f"blocked: {str(exc).splitlines()[0]}")
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


async def _step_4(
    client: httpx.AsyncClient,
    pins: DynamicPins,
    signing_key: ed25519.Ed25519PrivateKey,
    new_api_ca: trustme.CA,
    api_ca: trustme.CA,
    backup_pin: str,
    report_uri: str,
    update_host: _UpdateHost,
    v1: bytes,
    updated: anyio.Event,
    step: Callable[[str, bool, str], None],
    write: Callable[[str], object],
) -> None:
    write("\n4. The API rotates to a key from a new CA")
    rotated = _server_context(new_api_ca.issue_cert("127.0.0.1"))
    with LoopbackTLSServer(rotated, body=b"v2 ok") as api:
        try:
            await client.get(api.url(path="/v1/me"))
            step("new key refused before the update", False, "accepted before any update")
        except PinningError:
            step(
                "new key refused before the update",
                True,
                "refused: version 1 does not pin the new key (a refresh found nothing newer)",
            )
        v2 = _document(
            signing_key,
            2,
            [_pin(new_api_ca), _pin(api_ca), backup_pin],
            report_uri,
        )
        update_host.document = v2
        write("   The operator signs version 2 and uploads it; the background refresher polls...")
        with anyio.move_on_after(WAIT):
            await updated.wait()
        step(
            "refresher picked up version 2",
            pins.current.version == 2,
            f"pins in force: version {pins.current.version}",
        )
        response = await client.get(api.url(path="/v1/me"))
        step(
            "request succeeds after rotation",
            response.status_code == 200,
            f"HTTP {response.status_code} from the rotated server, no restart",
        )
        update_host.document = v1
        write("   The attacker replays the old version 1 document at the update URL...")
        result = await pins.refresh()
        step(
            "rolled-back document rejected",
            result.status is UpdateStatus.REJECTED,
            f"{result.status.value}: {result.reason}",
        )
        update_host.document = v2


async def _step_5(
    client: Any,
    collector: _Collector,
    step: Callable[[str, bool, str], None],
    write: Callable[[str], object],
) -> None:
    write("\n5. The pin failure report of step 3 at the operator's collector")
    await client.flush_reports(WAIT)
    arrived = await anyio.to_thread.run_sync(collector.arrived.wait, WAIT)
    interception = [r for r in collector.reports if r.get("enforced") and r["known-pins"]]
    if arrived and interception:
        report = interception[0]
        detail = (
            f"report: {report['hostname']}:{report['port']}, enforced={report['enforced']}, "
            f"policy-version={report['policy-version']}, validated chain ends in "
            f"{report['validated-certificate-chain'][-1].splitlines()[1][:24]}..."
        )
    else:
        detail = "no report arrived"
    step("failure report delivered", bool(arrived and interception), detail)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``pinsdk demo``."""
    parser = argparse.ArgumentParser(
        prog="pinsdk demo",
        description="Show pinning at work on 127.0.0.1 in under a minute: a pinned call, a "
        "blocked MitM that receives 0 bytes while an unpinned client leaks its token, a key "
        "rotation picked up from a signed pin document, a replayed old document rejected, and "
        "the failure report at a local collector. Exit status 0 if every step behaved.",
    )
    parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stdout, level=logging.WARNING, format="     log: %(levelname)s %(message)s"
    )

    def write(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    return 0 if anyio.run(run_demo, write) else 1


if __name__ == "__main__":
    raise SystemExit(main())
