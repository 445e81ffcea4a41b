"""Judging an update server's answer: status and headers first, then the body under a cap.

Pure code: the fetcher hands over the status, the headers and the raw (undecoded) body
chunks; this module says whether a body is worth reading and collects it without ever
holding more than ``max_size`` (+1) bytes, decoded or not.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

from .trusted import UpdateStatus

__all__ = ["ACCEPTED_CONTENT_TYPES", "BodyReader", "BodyRefused", "judge_headers"]

ACCEPTED_CONTENT_TYPES = (
    "application/json",
    "application/octet-stream",
    "application/vnd.pinsdk.pinset+json",
    "application/vnd.dsse.envelope.v1+json",
    "text/plain",
)
_DECODED_CODINGS = ("gzip", "x-gzip", "deflate")

Outcome = tuple[UpdateStatus, str]


def judge_headers(
    status_code: int,
    headers: Mapping[str, str],
    *,
    conditional: bool,
    holds_document: bool,
    version: int,
    max_size: int,
) -> Outcome | None:
    """The outcome decided by the status and headers alone, or ``None``: read the body.

    ``headers`` is case-insensitive (as httpx's) or has lower-case keys; ``conditional``
    says whether the request sent ``If-None-Match`` or ``If-Modified-Since``.
    """
    code = status_code
    if code == 304:
        if not holds_document:
            return UpdateStatus.FAILED, "HTTP 304 but no document is held"
        if not conditional:
            # "Not modified" since nothing: it says nothing about the document in force,
            # which may have expired, so it must not count as a successful check.
            return (
                UpdateStatus.FAILED,
                "HTTP 304 to a request that was not conditional (no If-None-Match or "
                "If-Modified-Since was sent)",
            )
        return UpdateStatus.NOT_MODIFIED, f"HTTP 304: version {version} is current"
    if 300 <= code < 400:
        location = headers.get("location", "?")
        return UpdateStatus.FAILED, f"HTTP {code} redirect to {location} is not followed"
    if code != 200:
        return UpdateStatus.FAILED, f"HTTP {code} from the update server"
    ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype and ctype not in ACCEPTED_CONTENT_TYPES:
        return UpdateStatus.REJECTED, f"unexpected Content-Type {ctype!r} for a pin document"
    length = headers.get("content-length")
    if length and length.isdigit() and int(length) > max_size:
        return UpdateStatus.REJECTED, (
            f"document is {length} bytes; max_size is {max_size} (raise DynamicPins(max_size=...))"
        )
    return None


class BodyRefused(Exception):
    """The body cannot be taken: the message is the rejection reason."""


class BodyReader:
    """Collects a raw response body, never holding more than ``max_size`` (+1) of it.

    ``identity`` is read as is. ``gzip`` and ``deflate``, if a server sends them
    although identity was asked for, are inflated in steps capped at what ``max_size``
    still allows, so a compression bomb stops at the cap. Any other coding is refused.
    """

    def __init__(self, content_encoding: str, max_size: int) -> None:
        codings = [c.strip().lower() for c in content_encoding.split(",")]
        codings = [c for c in codings if c and c != "identity"]
        if len(codings) > 1 or (codings and codings[0] not in _DECODED_CODINGS):
            raise BodyRefused(
                f"Content-Encoding {', '.join(codings)!r} is not accepted (the request asked "
                "for identity; gzip and deflate are decoded): serve the document uncompressed"
            )
        self.coding = codings[0] if codings else None
        self.max_size = max_size
        self.raw = 0
        self.head = b""  # deflate: the first bytes say whether a zlib header is there
        self.body = bytearray()
        self.decoder: zlib._Decompress | None = None
        if self.coding in ("gzip", "x-gzip"):
            self.decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def _too_large(self) -> BodyRefused:
        if self.coding is None:
            return BodyRefused(
                f"document is larger than max_size ({self.max_size} bytes); download aborted "
                "(raise DynamicPins(max_size=...) if the document is genuine)"
            )
        return BodyRefused(
            f"document is larger than max_size ({self.max_size} bytes) once {self.coding} "
            "is decoded (a compression bomb?); download aborted"
        )

    def feed(self, data: bytes) -> None:
        """Take the next raw chunk; raises :class:`BodyRefused` past the cap."""
        self.raw += len(data)
        if self.coding is None:
            self.body += data
            if len(self.body) > self.max_size:
                raise self._too_large()
            return
        if self.raw > self.max_size:
            raise BodyRefused(
                f"{self.coding} body is larger than max_size ({self.max_size} bytes); "
                "download aborted"
            )
        if self.decoder is None:  # deflate: zlib-wrapped as the RFC says, or raw as some send
            self.head += data
            if len(self.head) < 2:
                return
            data, self.head = self.head, b""
            zlib_header = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self.decoder = zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
        self._inflate(self.decoder, data)

    def _inflate(self, decoder: zlib._Decompress, data: bytes) -> None:
        try:
            while data:  # bounded: every pass adds output, and output past the cap stops it
                if decoder.eof:
                    raise BodyRefused(f"data follows the end of the {self.coding} stream")
                room = self.max_size - len(self.body) + 1
                out = decoder.decompress(data, room)
                self.body += out
                if len(self.body) > self.max_size:
                    raise self._too_large()
                data = decoder.unconsumed_tail
                if data and not out:
                    raise BodyRefused(f"{self.coding} body does not decode")
            if decoder.unused_data:
                raise BodyRefused(f"data follows the end of the {self.coding} stream")
        except zlib.error as exc:
            raise BodyRefused(f"{self.coding} body is corrupt ({exc})") from None

    def finish(self) -> bytes:
        """The whole body; raises :class:`BodyRefused` if a compressed one is truncated."""
        if self.coding is not None:
            if self.head:  # deflate bodies shorter than two bytes
                raise BodyRefused(f"{self.coding} body is truncated")
            if self.decoder is None or not self.decoder.eof:
                raise BodyRefused(f"{self.coding} body is truncated")
        return bytes(self.body)
