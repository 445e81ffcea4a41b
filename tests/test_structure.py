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
from pinsdk import _tls as sslhook
from pinsdk._demo.loopback import LoopbackTLSServer

PACKAGE = Path(pinsdk.__file__).parent
CORE = PACKAGE / "_core"
IO_LIBRARIES = {"httpx", "httpcore", "anyio", "trio", "sniffio", "socket", "ssl", "asyncio"}


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (``pinsdk._core.pins``)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path) -> tuple[set[str], set[str]]:
    """(pinsdk modules imported, anywhere in the file; top-level foreign packages)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    ours: set[str] = set()
    foreign: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                (ours if alias.name.startswith("pinsdk") else foreign).add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                module = node.module or ""
                if module.startswith("pinsdk"):
                    ours.add(module)
                else:
                    foreign.add(module.split(".")[0])
                continue
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)]
            target = ".".join([*base, node.module] if node.module else base)
            modules = _modules()
            if node.module is None or target not in modules:
                # "from . import x" or "from .m import f": the module is target.x or target
                for alias in node.names:
                    candidate = f"{target}.{alias.name}"
                    ours.add(candidate if candidate in modules else target)
            else:
                ours.add(target)
    return ours, {f.split(".")[0] for f in foreign}


@pytest.mark.parametrize("name", [n for n in _modules() if n.startswith("pinsdk._core")])
def test_core_modules_do_no_io(name: str) -> None:
    """The core imports neither httpx nor anyio (nor sockets, nor ssl), and nothing of the
    shell: it is pure code, tested without a network."""
    ours, foreign = _imports(name, _modules()[name])
    assert not foreign & IO_LIBRARIES, name
    outside = {m for m in ours if not m.startswith("pinsdk._core")}
    assert outside == set(), f"{name} imports the shell: {outside}"


def test_import_graph_has_no_cycle() -> None:
    modules = _modules()
    graph = {
        name: {m for m in _imports(name, path)[0] if m in modules and m != name}
        for name, path in modules.items()
    }
    # The package's __init__ imports everything: leave it out, as nothing may import it.
    graph.pop("pinsdk")
    for name, deps in graph.items():
        assert "pinsdk" not in deps, f"{name} imports the package itself"
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path, node, dep]))
            if dep not in state:
                visit(dep, [*path, node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_every_module_but_the_package_is_private() -> None:
    for name in _modules():
        if name == "pinsdk":
            continue
        last = name.split(".")[1]
        assert last.startswith("_"), f"{name} is a public module; only pinsdk/__init__.py is"


def test_exported_members() -> None:
    """As httpx does: ``__all__`` is sorted, and every public attribute of the package is
    exported and comes from one of its own private modules."""
    assert pinsdk.__all__ == sorted(pinsdk.__all__)
    public = {n for n in dir(pinsdk) if not n.startswith("_")}
    assert public == {n for n in pinsdk.__all__ if not n.startswith("_")}
    for name in public:
        module = getattr(getattr(pinsdk, name), "__module__", None)
        if module is not None:
            assert module.startswith("pinsdk._"), (name, module)


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
