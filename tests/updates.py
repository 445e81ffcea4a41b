"""A real HTTPS update server on loopback for DynamicPins tests."""

from __future__ import annotations

import threading
from collections.abc import Callable

import trustme

from pinsdk._demo.loopback import LoopbackTLSServer, Reply


class UpdateServer:
    """Serves whatever ``reply`` holds; honours If-None-Match against ``etag``."""

    def __init__(self, server_factory: Callable[..., LoopbackTLSServer], cert: trustme.LeafCert):
        self.reply: Reply = (500, [], b"not set")
        self.etag: str | None = None
        self.gate: threading.Event | None = None
        self.server = server_factory(cert, http2=False, handler=self.handle)

    def publish(
        self, document: bytes, *, etag: str | None = None, ctype: str = "application/json"
    ) -> None:
        self.etag = etag
        headers = [("Content-Type", ctype)] + ([("ETag", etag)] if etag else [])
        self.reply = (200, headers, document)

    def handle(self, request: dict[str, str]) -> Reply:
        if self.gate is not None:
            self.gate.wait(10)
        if self.etag and request.get("if-none-match") == self.etag:
            return (304, [("ETag", self.etag)], b"")
        return self.reply

    @property
    def url(self) -> str:
        return self.server.url("localhost", "/pins.json")
