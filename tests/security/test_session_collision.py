"""A resumed session is judged on the chain of the session object offered, never of another
session that happens to share its id.

TLS 1.2 session ids are chosen by the server and travel in clear in its ServerHello (and a
ticket, whose SHA-256 OpenSSL uses as the id, in clear before ChangeCipherSpec). An
impostor holding a device-trusted certificate for another, unpinned name copies the id of
a pinned server's session into its own session. A client that offers the impostor's session
on a connection to the pinned name (a session cache keyed by address, say) resumes it with
no verified chain; looking the chain up by (server name, session id) found the pinned
server's chain, and the impostor received the request.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import os
import socket
import ssl
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
import trustme

import pinsdk
from pinsdk import DomainPins, PinPolicy
from tests.conftest import pin_of
from tests.tlsbio import handshake_over

COPIED_ID = bytes(range(1, 33))
BACKUP = "sha256/" + base64.b64encode(hashlib.sha256(b"backup").digest()).decode()


def _libssl() -> Any:
    """The libssl this interpreter's ssl module runs on (from the process's own maps)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/libssl" in line}
    except OSError:
        paths = set()
    if len(paths) != 1 or sys.implementation.name != "cpython":
        pytest.skip("needs CPython's ssl linked to one libssl, found through /proc")
    return ctypes.CDLL(paths.pop())


_GENERATE = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_ubyte), ctypes.POINTER(ctypes.c_uint)
)
_keep: list[Any] = []


def _first_session_id(context: ssl.SSLContext, session_id: bytes) -> None:
    """Make the server context give its first session ``session_id`` (random ones after):
    what an impostor does with the id it read off the pinned server's ServerHello."""
    libssl = _libssl()
    calls: list[int] = []

    @_GENERATE
    def generate(_ssl: int, buffer: Any, length: Any) -> int:
        calls.append(1)
        chosen = session_id if len(calls) == 1 else os.urandom(32)
        for i, byte in enumerate(chosen):
            buffer[i] = byte
        length[0] = len(chosen)
        return 1

    _keep.append(generate)
    libssl.SSL_CTX_set_generate_session_id.argtypes = [ctypes.c_void_p, _GENERATE]
    # PySSLContext: PyObject_HEAD, then the SSL_CTX pointer.
    ctx_pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    libssl.SSL_CTX_set_generate_session_id(ctx_pointer, generate)


class _SessionServer:
    """A loopback TLS 1.2 server that resumes by session id: it ends each connection with
    close_notify, without which OpenSSL drops the session from its cache."""

    def __init__(self, cert: trustme.LeafCert, connections: int) -> None:
        self.connections = connections
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(self.context)
        self.context.maximum_version = ssl.TLSVersion.TLSv1_2
        self.context.options |= ssl.OP_NO_TICKET  # session-id resumption
        _first_session_id(self.context, COPIED_ID)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]
        self.paths: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _SessionServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()
        self.thread.join(10)

    def _run(self) -> None:
        for _ in range(self.connections):
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            conn.settimeout(10)
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    data = b""
                    while b"\r\n\r\n" not in data and len(data) < 65536:
                        chunk = tls.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    if b"\r\n\r\n" not in data:
                        continue
                    self.paths.append(data.split(b" ", 2)[1].decode())
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    tls.unwrap()
            except (OSError, ssl.SSLError):
                conn.close()


def _get(
    context: ssl.SSLContext, port: int, host: str, path: str, session: ssl.SSLSession | None
) -> tuple[ssl.SSLSession | None, bool]:
    with context.wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=10),
        server_hostname=host,
        session=session,
    ) as tls:
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        assert tls.recv(65536).startswith(b"HTTP/1.1 200")
        return tls.session, tls.session_reused


@pytest.mark.parametrize("transport", ["socket", "bio"])
def test_session_of_another_name_with_a_copied_id_is_refused(
    ca: trustme.CA,
    rogue_ca: trustme.CA,
    device_trust: Callable[[], ssl.SSLContext],
    transport: str,
) -> None:
    legit = ca.issue_cert("pinned.example")
    impostor = rogue_ca.issue_cert("other.example")  # trusted by the device, name unpinned
    leaf = pin_of(legit.cert_chain_pems[0].bytes())
    policy = PinPolicy([DomainPins("pinned.example", [leaf, BACKUP])])
    context = pinsdk.pinned_ssl_context(policy, verify=device_trust())
    with _SessionServer(legit, 2) as real, _SessionServer(impostor, 2) as attacker:
        pinned_session, _ = _get(context, real.port, "pinned.example", "/", None)
        other_session, _ = _get(context, attacker.port, "other.example", "/", None)
        assert pinned_session is not None
        assert other_session is not None
        assert pinned_session.id == other_session.id == COPIED_ID  # the copied id

        # The network sends pinned.example to the impostor, which resumes its own session.
        attack = _get if transport == "socket" else _bio_get
        with pytest.raises(pinsdk.PinCertVerificationError) as info:
            attack(context, attacker.port, "pinned.example", "/secret", other_session)
        assert "no verified chain" in str(info.value)
        assert "/secret" not in attacker.paths

        # The pinned server's own session still resumes under its name.
        _, reused = _get(context, real.port, "pinned.example", "/again", pinned_session)
        assert reused
    assert real.paths == ["/", "/again"]
    assert attacker.paths == ["/"]


def _bio_get(
    context: ssl.SSLContext, port: int, host: str, path: str, session: ssl.SSLSession | None
) -> None:
    """wrap_bio(session=...): the path of asyncio-style TLS, which hands the session to C."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=host, session=session)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        handshake_over(tls, raw, incoming, outgoing)
        tls.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        raw.sendall(outgoing.read())
