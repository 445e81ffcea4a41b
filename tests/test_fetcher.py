"""The refresher through an injected fetcher: no network, the same rules as over TLS."""

from __future__ import annotations

import base64
import gzip
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest

import pinsdk
from pinsdk import UpdateStatus

from .signing import ed25519_key, payload, public_pem

A = "sha256/" + base64.b64encode(b"a" * 32).decode()
B = "sha256/" + base64.b64encode(b"b" * 32).decode()


@attrs.define
class Canned:
    """One answer: status, headers (lower-case keys), body chunks."""

    status_code: int
    headers: Mapping[str, str]
    chunks: list[bytes]

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


@attrs.define
class MemoryFetcher:
    """Serves canned answers in turn and records the requests' headers."""

    answers: list[Canned | Exception]
    seen: list[dict[str, str]] = attrs.Factory(list)

    @asynccontextmanager
    async def stream(self, url: str, headers: Mapping[str, str]) -> AsyncIterator[Canned]:
        self.seen.append(dict(headers))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        yield answer


KEY = ed25519_key()


def _pins(fetcher: MemoryFetcher, **kw: Any) -> pinsdk.DynamicPins:
    return pinsdk.DynamicPins(
        "https://updates.invalid/pins.json",
        [public_pem(KEY)],
        fetcher=fetcher,
        auto_refresh=False,
        self_heal_interval=None,
        **kw,
    )


def _document(version: int) -> bytes:
    return pinsdk.sign_envelope(payload(version, [{"host": "api.test", "pins": [A, B]}]), KEY)


JSON = {"content-type": "application/json"}


@pytest.mark.anyio
async def test_an_injected_fetcher_delivers_documents_under_the_same_rules() -> None:
    fetcher = MemoryFetcher(
        [
            Canned(200, {**JSON, "etag": '"v2"'}, [_document(2)]),
            Canned(304, {"etag": '"v2"'}, []),
            Canned(200, JSON, [_document(1)]),  # a rollback
            OSError("network unreachable"),
        ]
    )
    pins = _pins(fetcher)
    assert (await pins.refresh()).status is UpdateStatus.UPDATED
    assert pins.current.pins_for("api.test") == {A, B}
    assert fetcher.seen[0]["Accept-Encoding"] == "identity"
    assert (await pins.refresh()).status is UpdateStatus.NOT_MODIFIED
    assert fetcher.seen[1]["If-None-Match"] == '"v2"'
    rolled = await pins.refresh()
    assert rolled.status is UpdateStatus.REJECTED
    assert "older" in rolled.reason
    failed = await pins.refresh()
    assert failed.status is UpdateStatus.FAILED
    assert "network unreachable" in failed.reason
    assert pins.current.version == 2


@pytest.mark.anyio
async def test_an_injected_fetcher_cannot_bypass_the_size_cap_or_the_304_rule() -> None:
    bomb = gzip.compress(b" " * (8 * 1024 * 1024))
    fetcher = MemoryFetcher(
        [
            Canned(304, {}, []),
            Canned(200, {**JSON, "content-encoding": "gzip"}, [bomb]),
            Canned(200, {"content-type": "text/html"}, [b"<html>"]),
        ]
    )
    pins = _pins(fetcher, max_size=65536)
    unasked = await pins.refresh()
    assert unasked.status is UpdateStatus.FAILED
    bombed = await pins.refresh()
    assert bombed.status is UpdateStatus.REJECTED
    assert "max_size" in bombed.reason
    html = await pins.refresh()
    assert html.status is UpdateStatus.REJECTED
    assert pins.current == pinsdk.PinPolicy()
