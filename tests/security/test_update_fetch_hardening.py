"""The update fetch: compressed bodies stay under max_size, and only an asked-for 304 succeeds.

Real HTTPS on loopback (the servers of ``tests/updates.py``), asyncio and trio.
"""

from __future__ import annotations

import base64
import hashlib
import os
import ssl
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import pinsdk
from pinsdk import PinPolicy, UpdateStatus
from pinsdk._demo.loopback import Reply

from ..signing import payload, public_pem
from ..updates import UpdateServer

pytestmark = pytest.mark.anyio

BACKUP = "sha256/" + base64.b64encode(hashlib.sha256(b"backup").digest()).decode()
MAX_SIZE = 262144  # set on the clients here: a bomb need not inflate to the 64 MB default
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """64 MiB of zeros in about 64 KB of gzip: under max_size on the wire, far over it inflated."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MIB)
    bomb = b"".join(packer.compress(zeros) for _ in range(64)) + packer.flush()
    assert len(bomb) < MAX_SIZE // 2
    return bomb


def doc(signer: Any, version: int, pins: list[str], **kw: Any) -> bytes:
    return pinsdk.sign_envelope(
        payload(version, [{"host": "127.0.0.1", "pins": pins}], **kw), signer
    )


def dynamic(
    updates: UpdateServer, signer: Any, trust: ssl.SSLContext, **kw: Any
) -> pinsdk.DynamicPins:
    kw.setdefault("auto_refresh", False)
    kw.setdefault("self_heal_interval", None)
    kw.setdefault("max_size", MAX_SIZE)
    return pinsdk.DynamicPins(updates.url, [public_pem(signer)], verify=trust, **kw)


def encode(coding: str, data: bytes) -> bytes:
    if coding == "gzip":
        packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    elif coding == "deflate":  # zlib-wrapped, as RFC 9110 says
        packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS)
    else:  # "raw deflate": what some servers send as deflate
        packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


async def _held(
    updates: UpdateServer, signer: Any, trust: ssl.SSLContext, pins: dict[str, str]
) -> pinsdk.DynamicPins:
    """A client holding version 5, to show that a bad body leaves it exactly as it was."""
    pinned = dynamic(updates, signer, trust)
    updates.publish(doc(signer, 5, [pins["leaf"], BACKUP]))
    assert (await pinned.refresh()).status is UpdateStatus.UPDATED
    return pinned


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
async def test_gzip_bomb_is_stopped_at_max_size(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    gzip_bomb: bytes,
    streamed: bool,
) -> None:
    """A 64 KB gzip body that inflates to 64 MiB: the memory held while reading it stays within
    a few MiB of max_size, the update is rejected and the pins in force are untouched."""
    pinned = await _held(updates, signer, device_trust(), pins)
    before = pinned.current
    headers = [("Content-Type", "application/json"), ("Content-Encoding", "gzip")]
    body: bytes | Iterator[bytes] = gzip_bomb
    if streamed:  # no Content-Length: nothing to refuse up front
        body = iter([gzip_bomb[i : i + 8192] for i in range(0, len(gzip_bomb), 8192)])
    updates.reply = (200, headers, body)
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = await pinned.refresh()
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    assert peak < MAX_SIZE + 2 * MIB, f"peak {peak / MIB:.1f} MiB while reading the body"
    assert result.status is UpdateStatus.REJECTED, result
    assert "larger than max_size (262144 bytes) once gzip is decoded" in result.reason
    assert pinned.current is before
    assert pinned.state.version == 5
    assert updates.server.requests[-1]["accept-encoding"] == "identity"


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw deflate"])
async def test_a_compressed_document_sent_anyway_is_decoded(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    coding: str,
) -> None:
    """Identity is asked for; a host that compresses anyway (a pre-compressed object) works."""
    pinned = dynamic(updates, signer, device_trust())
    document = doc(signer, 3, [pins["root"], BACKUP])
    wire = "deflate" if coding == "raw deflate" else coding
    updates.reply = (
        200,
        [("Content-Type", "application/json"), ("Content-Encoding", wire)],
        encode(coding, document),
    )
    result = await pinned.refresh()
    assert result.status is UpdateStatus.UPDATED, result.reason
    assert pinned.current.pins_for("127.0.0.1") == {pins["root"], BACKUP}
    assert updates.server.requests[-1]["accept-encoding"] == "identity"


def _bad_bodies(document: bytes) -> dict[str, tuple[Reply, str]]:
    gz = encode("gzip", document)
    json_type = ("Content-Type", "application/json")

    def coded(coding: str, body: bytes | Iterator[bytes]) -> Reply:
        return (200, [json_type, ("Content-Encoding", coding)], body)

    return {
        "br": (coded("br", document), "Content-Encoding 'br' is not accepted"),
        "zstd": (coded("zstd", document), "Content-Encoding 'zstd' is not accepted"),
        "gzip twice": (
            coded("gzip, gzip", encode("gzip", gz)),
            "Content-Encoding 'gzip, gzip' is not accepted",
        ),
        "truncated gzip": (coded("gzip", gz[: len(gz) // 2]), "gzip body is truncated"),
        "corrupt gzip": (coded("gzip", gz[:10] + bytes(40) + gz[50:]), "gzip body is corrupt"),
        "trailing data": (coded("gzip", gz + b"{}"), "data follows the end of the gzip stream"),
        "compressed past max_size": (  # streamed: no Content-Length to refuse up front
            coded("deflate", iter([encode("raw deflate", os.urandom(300_000))])),
            "deflate body is larger than max_size (262144 bytes)",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "br",
        "zstd",
        "gzip twice",
        "truncated gzip",
        "corrupt gzip",
        "trailing data",
        "compressed past max_size",
    ],
)
async def test_unsupported_or_broken_encodings_are_rejected(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    case: str,
) -> None:
    pinned = await _held(updates, signer, device_trust(), pins)
    before = pinned.current
    reply, reason = _bad_bodies(doc(signer, 9, [pins["root"], BACKUP]))[case]
    updates.reply = reply
    result = await pinned.refresh()
    assert result.status is UpdateStatus.REJECTED, result
    assert reason in result.reason
    assert pinned.current is before
    assert pinned.state.version == 5


async def test_an_unasked_for_304_is_a_failure(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    """The document in force came with the app (no ETag, no date): a 304 to a plain GET says
    nothing about it, so it is FAILED and does not count as a successful check."""
    stale = doc(signer, 4, [pins["leaf"], BACKUP], expires_in=-60, issued_ago=3600)
    pinned = dynamic(updates, signer, device_trust(), bootstrap=stale)
    updates.reply = (304, [("ETag", '"whatever"')], b"")
    result = await pinned.refresh()
    assert "if-none-match" not in updates.server.requests[-1]
    assert "if-modified-since" not in updates.server.requests[-1]
    assert result.status is UpdateStatus.FAILED
    assert "HTTP 304 to a request that was not conditional" in result.reason
    assert result.http_status == 304
    state = pinned.state
    assert state.last_success is None
    assert state.consecutive_failures == 1
    assert state.stale
    assert pinned.current.version == 4


@pytest.mark.parametrize("validator", ["etag", "last-modified"])
async def test_a_304_to_a_conditional_request_is_not_modified(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    validator: str,
) -> None:
    document = doc(signer, 2, [pins["leaf"], BACKUP])
    stamp = "Wed, 21 Oct 2026 07:28:00 GMT"
    header, asked = (
        ("ETag", "if-none-match") if validator == "etag" else ("Last-Modified", "if-modified-since")
    )
    value = '"v2"' if validator == "etag" else stamp

    def handle(request: dict[str, str]) -> Reply:
        if request.get(asked) == value:
            return (304, [(header, value)], b"")
        return (200, [("Content-Type", "application/json"), (header, value)], document)

    updates.server.handler = handle
    pinned = dynamic(updates, signer, device_trust())
    assert (await pinned.refresh()).status is UpdateStatus.UPDATED
    result = await pinned.refresh()
    assert updates.server.requests[-1][asked] == value
    assert result.status is UpdateStatus.NOT_MODIFIED, result.reason
    assert result.http_status == 304
    assert pinned.state.last_success == result.at
    assert pinned.state.consecutive_failures == 0
    assert pinned.current != PinPolicy()


async def test_a_304_while_the_document_in_force_has_expired_is_a_failure(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Red-team finding: an attacker on the update path answers every conditional request
    with 304, forever. Once the document in force has expired that cannot count as a
    successful check: the server has nothing fresh."""
    import time

    document = doc(signer, 2, [pins["leaf"], BACKUP])

    def handle(request: dict[str, str]) -> Reply:
        if request.get("if-none-match") == '"v2"':
            return (304, [("ETag", '"v2"')], b"")
        return (200, [("Content-Type", "application/json"), ("ETag", '"v2"')], document)

    updates.server.handler = handle
    pinned = dynamic(updates, signer, device_trust())
    assert (await pinned.refresh()).status is UpdateStatus.UPDATED
    success = pinned.state.last_success
    later = time.time() + 400 * 86400  # past the document's expiry and any leeway
    # The trusted set's injectable clock: the document in force is now past its expiry.
    monkeypatch.setattr(pinned._trust, "_clock", lambda: later)
    assert pinned.state.stale
    result = await pinned.refresh()
    assert updates.server.requests[-1]["if-none-match"] == '"v2"'
    assert result.status is UpdateStatus.FAILED, result.reason
    assert "expired" in result.reason
    assert pinned.state.last_success == success
    assert pinned.state.consecutive_failures == 1
    assert pinned.current.version == 2  # the pins in force stay
