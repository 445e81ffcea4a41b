"""Every ```python, ```bash, ```sh and ```console block of docs/ and README.md runs as written.

Per page, the blocks run in order in one fresh temporary directory, like a reader following
the page: files a block writes are there for the next, and the Python blocks of a page share
one namespace. Python runs in this process (top-level ``await`` and ``async with`` allowed,
run on asyncio); shell blocks run with ``bash -euo pipefail`` with this interpreter's
``bin`` first on ``PATH`` (so ``pinsdk`` and ``python`` are the ones under test); in a
``console`` block, the lines starting with ``$ `` are the commands.

Each page's directory starts with the files the pages take as given: ``pins.json`` (a
policy pinning ``api.example.com``), ``api-cert.pem`` (that host's certificate, also valid for
``localhost``) and ``ca.pem`` (its CA). A loopback HTTPS server presents that certificate on
``localhost:$PORT`` (``PORT`` in the environment of shell blocks, and a variable of Python
blocks). Nothing may reach beyond loopback: in-process name resolution answers only
``localhost`` and loopback addresses, so a block that would contact a real host fails.

A block that cannot run (it needs a real remote host, is a fragment, runs the test suite
itself …) is preceded directly by ``<!-- docs-test: skip: REASON -->``; the reason is
required. See docs/development.md.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import os
import re
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trustme

import pinsdk
from pinsdk._demo.loopback import LoopbackTLSServer

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([*(ROOT / "docs").rglob("*.md"), ROOT / "README.md"])
RUN = {"python": "python", "py": "python", "bash": "shell", "sh": "shell", "console": "console"}
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
MARKER = re.compile(r"^\s*<!--\s*docs-test\b(.*?)-->\s*$")
SKIP = re.compile(r"^:\s*skip\s*:(.*)$")
SHELL_TIMEOUT = 120.0


@attrs.frozen
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    skip: str | None  # the reason, when marked

    @property
    def where(self) -> str:
        return f"{_name(self.page)}:{self.line}"


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else str(page)


def blocks_of(page: Path) -> list[Block]:
    """The fenced blocks of a page; raises ValueError for a malformed docs-test marker."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, language = match.groups()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        skip = None
        marker = MARKER.match(lines[start - 1]) if start else None
        if marker:
            rule = SKIP.match(marker.group(1).strip())
            reason = rule.group(1).strip() if rule else ""
            if not reason:
                raise ValueError(
                    f"{_name(page)}:{start}: a docs-test marker must read "
                    "'<!-- docs-test: skip: REASON -->' with a reason"
                )
            skip = reason
        found.append(Block(page, start + 1, language.lower(), "\n".join(body) + "\n", skip))
    return found


def runnable(page: Path) -> list[Block]:
    return [b for b in blocks_of(page) if b.language in RUN]


def run_python(block: Block, namespace: dict[str, object]) -> None:
    code = compile(block.code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    if code.co_flags & inspect.CO_COROUTINE:
        asyncio.run(eval(code, namespace))  # a coroutine: the block awaits at top level
    else:
        exec(code, namespace)


# Python started by a shell block (pinsdk, python) resolves only loopback names too.
_GUARD = """
import socket

_real = socket.getaddrinfo


def _loopback_only(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if name not in ("localhost", "::1", None) and not str(name).startswith("127."):
        raise OSError(f"docs test: {name!r} is not loopback; mark the block skip")
    return _real(host, *args, **kwargs)


socket.getaddrinfo = _loopback_only
"""


def run_shell(block: Block, cwd: Path) -> None:
    script = block.code
    if block.language == "console":
        script = "\n".join(line[2:] for line in block.code.splitlines() if line.startswith("$ "))
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    guard = cwd.parent / f"{cwd.name}-guard"
    guard.mkdir(exist_ok=True)
    (guard / "sitecustomize.py").write_text(_GUARD)
    env["PYTHONPATH"] = os.pathsep.join([str(guard), str(ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=SHELL_TIMEOUT,
        check=False,
    )
    if done.returncode:
        pytest.fail(
            f"{block.where}: the {block.language} block exited {done.returncode}\n"
            f"--- script\n{script}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}",
            pytrace=False,
        )


LOOPBACK = {"localhost", "127.0.0.1", "::1", None}


@pytest.fixture(scope="module")
def seed() -> Iterator[dict[str, bytes]]:
    ca = trustme.CA()
    leaf = ca.issue_cert("api.example.com", "localhost", "127.0.0.1")
    backup = trustme.CA().issue_cert("api.example.com")  # stands in for an offline backup key
    leaf_pem = leaf.cert_chain_pems[0].bytes()
    policy = pinsdk.PinPolicy(
        [
            pinsdk.DomainPins(
                "api.example.com",
                [pinsdk.spki_pin(leaf_pem), pinsdk.spki_pin(backup.cert_chain_pems[0].bytes())],
            )
        ]
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    server = LoopbackTLSServer(context, http2=False).start()
    try:
        yield {
            "pins.json": (json.dumps(policy.to_dict(), indent=2) + "\n").encode(),
            "api-cert.pem": leaf_pem,
            "ca.pem": ca.cert_pem.bytes(),
            "PORT": str(server.port).encode(),
        }
    finally:
        server.stop()


def _loopback_only(real: Callable[..., Any]) -> Callable[..., Any]:
    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in LOOPBACK and not str(name).startswith("127."):
            raise OSError(f"docs test: {name!r} is not loopback; mark the block skip")
        return real(host, *args, **kwargs)

    return resolve


def test_every_marker_gives_a_reason() -> None:
    for page in PAGES:
        blocks_of(page)  # raises on a marker without a reason


def test_a_marker_without_reason_is_refused(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- docs-test: skip: -->\n```python\nprint(1)\n```\n")
    with pytest.raises(ValueError, match="with a reason"):
        blocks_of(page)
    page.write_text("<!-- docs-test: skip -->\n```python\nprint(1)\n```\n")
    with pytest.raises(ValueError, match="with a reason"):
        blocks_of(page)
    page.write_text(
        "<!-- docs-test: skip: needs a host -->\n```sh\nfalse\n```\n\n```sh\ntrue\n```\n"
    )
    assert [b.skip for b in blocks_of(page)] == ["needs a host", None]


def _pages_with_blocks() -> list[Path]:
    return [p for p in PAGES if runnable(p)]


@pytest.mark.parametrize("page", _pages_with_blocks(), ids=_name)
def test_blocks_run(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: dict[str, bytes]
) -> None:
    for name, data in seed.items():
        if name != "PORT":
            (tmp_path / name).write_bytes(data)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PORT", seed["PORT"].decode())
    monkeypatch.setattr(socket, "getaddrinfo", _loopback_only(socket.getaddrinfo))
    namespace: dict[str, object] = {"__name__": "__docs__", "PORT": int(seed["PORT"])}
    ran = 0
    for block in runnable(page):
        if block.skip:
            continue
        kind = RUN[block.language]
        if kind == "python":
            try:
                run_python(block, namespace)
            except Exception as exc:
                pytest.fail(
                    f"{block.where}: the python block raised {type(exc).__name__}: {exc}\n"
                    f"{block.code}",
                    pytrace=False,
                )
        else:
            run_shell(block, tmp_path)
        ran += 1
    if not ran:
        pytest.skip("every block of this page is marked skip")
