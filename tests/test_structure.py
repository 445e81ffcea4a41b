"""Architecture rules and the version-dependent verified-chain fallback."""

from __future__ import annotations

import ast
import socket
import ssl
import sys
from pathlib import Path

import pytest
import trustme

import pinsdk
from pinsdk import sslhook
from pinsdk.loopback import LoopbackTLSServer

PACKAGE = Path(pinsdk.__file__).parent
SANS_IO = [
    "errors",
    "pins",
    "hosts",
    "policy",
    "schema",
    "check",
    "timeutil",
    "keys",
    "envelope",
    "trust",
]


@pytest.mark.parametrize("module", SANS_IO)
def test_core_modules_do_no_io(module: str) -> None:
    """The core imports neither httpx nor anyio (nor sockets): it is testable pure code."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            assert node.module in SANS_IO, f"{module} imports the I/O module {node.module}"
    assert not imported & {"httpx", "httpcore", "anyio", "trio", "socket", "ssl", "asyncio"}


def test_public_names_have_docstrings() -> None:
    for name in pinsdk.__all__:
        obj = getattr(pinsdk, name)
        if name.startswith("__"):
            continue
        assert obj.__doc__, name


def _handshake_chain(ca: trustme.CA, cert: trustme.LeafCert) -> tuple[list[bytes], list[bytes]]:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    with (
        LoopbackTLSServer(server_ctx, http2=False) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        public = tls.get_verified_chain() if sys.version_info >= (3, 13) else []
        return sslhook._verified_chain_private(tls), public


def test_verified_chain_fallback_returns_der(
    ca: trustme.CA, api_cert: trustme.LeafCert, pins: dict[str, str]
) -> None:
    private, public = _handshake_chain(ca, api_cert)
    assert [pinsdk.spki_pin(d) for d in private] == [
        pins["leaf"],
        pins["intermediate"],
        pins["root"],
    ]
    assert all(d[:1] == b"\x30" for d in private)  # DER SEQUENCE, not PEM text
    if sys.version_info >= (3, 13):
        assert public == private


def test_every_public_name_is_in_the_api_reference() -> None:
    api = (PACKAGE.parent / "docs" / "api.md").read_text()
    missing = [n for n in pinsdk.__all__ if not n.startswith("__") and f"`{n}" not in api]
    assert missing == []


def test_docs_site_has_every_required_page() -> None:
    nav = (PACKAGE.parent / "mkdocs.yml").read_text()
    for page in (
        "index.md",
        "quickstart.md",
        "concepts.md",
        "static-pinning.md",
        "dynamic-pinning.md",
        "update-format.md",
        "key-rotation.md",
        "reporting.md",
        "cli.md",
        "benchmarks.md",
        "security.md",
        "api.md",
    ):
        assert page in nav, page
        assert (PACKAGE.parent / "docs" / page).exists(), page
