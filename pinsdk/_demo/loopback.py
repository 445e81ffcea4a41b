"""A small TLS HTTP server on loopback, for the demo, the tests and the benchmarks.

It runs in threads (so it serves asyncio and trio clients alike), speaks HTTP/1.1 and,
when ``h2`` is installed and the client offers it, HTTP/2. It records every byte it
receives *after* a completed handshake, which is how the tests prove that a rejected
connection delivered nothing. It binds to 127.0.0.1 (or ::1) only.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from types import TracebackType

__all__ = ["Handler", "LoopbackTLSServer", "Reply"]

# (status, headers, body); a body that is an iterable of chunks is streamed without a
# Content-Length and the connection is closed after it (slow or endless bodies).
Reply = tuple[int, list[tuple[str, str]], "bytes | Iterable[bytes]"]
Handler = Callable[[dict[str, str]], Reply]

_IO_TIMEOUT = 10.0  # bounds every blocking read, so no thread can hang a test run


class LoopbackTLSServer:
    """A threaded TLS server on ``127.0.0.1`` answering every request with ``body``."""

    def __init__(
        self,
        context: ssl.SSLContext,
        *,
        body: bytes = b"hello from loopback\n",
        http2: bool = True,
        name: str = "server",
        handler: Handler | None = None,
        bind: str = "127.0.0.1",
    ) -> None:
        if bind not in ("127.0.0.1", "::1"):
            raise ValueError("the loopback server binds to 127.0.0.1 or ::1 only")
        self.context = context
        self.body = body
        self.handler = handler
        self.name = name
        protocols = ["h2", "http/1.1"] if http2 and _have_h2() else ["http/1.1"]
        context.set_alpn_protocols(protocols)
        family = socket.AF_INET6 if bind == "::1" else socket.AF_INET
        self._sock = socket.create_server((bind, 0), family=family)
        self._sock.settimeout(0.2)  # lets the accept loop notice stop()
        self.port: int = self._sock.getsockname()[1]
        self._lock = threading.Lock()
        self._received = bytearray()
        self.requests: list[dict[str, str]] = []
        self.handshakes_completed = 0
        self.handshakes_failed = 0
        self.connections = 0
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._open: set[socket.socket] = set()
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def received(self) -> bytes:
        """Every byte received after a completed handshake, on all connections."""
        with self._lock:
            return bytes(self._received)

    def url(self, host: str = "127.0.0.1", path: str = "/") -> str:
        """The ``https://`` URL of this server under ``host``."""
        return f"https://{host}:{self.port}{path}"

    def start(self) -> LoopbackTLSServer:
        """Start accepting connections."""
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close open connections, wait (bounded) for their threads."""
        self._stopping.set()
        self._acceptor.join(timeout=5)
        self._sock.close()
        with self._lock:
            still_open = list(self._open)
        for conn in still_open:  # kept-alive clients would otherwise hold a thread
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self.wait_idle()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until every connection accepted so far has ended; False on timeout."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=timeout)
        return not any(t.is_alive() for t in threads)

    def __enter__(self) -> LoopbackTLSServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._lock:  # started under the lock: wait_idle never sees it unstarted
                self.connections += 1
                thread.start()
                self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self._open.add(conn)
        try:
            self._serve_tls(conn)
        finally:
            with self._lock:
                self._open.discard(conn)

    def _serve_tls(self, conn: socket.socket) -> None:
        conn.settimeout(_IO_TIMEOUT)
        # Without it, Nagle's algorithm holds the response behind the session tickets
        # until the client's delayed ACK (~40 ms): noise that is not the client's.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError):
            with self._lock:
                self.handshakes_failed += 1
            conn.close()
            return
        with self._lock:
            self.handshakes_completed += 1
            self._open.discard(conn)  # wrap_socket detached it; track the TLS socket
            self._open.add(tls)
        try:
            if tls.selected_alpn_protocol() == "h2":
                self._serve_h2(tls)
            else:
                self._serve_http1(tls)
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            with self._lock:
                self._open.discard(tls)
            tls.close()

    def _recv(self, tls: ssl.SSLSocket) -> bytes:
        data = tls.recv(65536)
        with self._lock:
            self._received += data
        return data

    def _serve_http1(self, tls: ssl.SSLSocket) -> None:
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                data = self._recv(tls)
                if not data:
                    return
                buffer += data
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {
                k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])
            }
            length = int(headers.get("content-length", "0"))
            while len(buffer) < length:
                data = self._recv(tls)
                if not data:
                    return
                buffer += data
            content, buffer = buffer[:length], buffer[length:]
            request = {
                ":method": method,
                ":path": path,
                ":body": content.decode("utf-8", "replace"),
                **headers,
            }
            with self._lock:
                self.requests.append(request)
            if self.handler is None:
                reply: Reply = (200, [("Content-Type", "text/plain")], self.body)
            else:
                reply = self.handler(request)
            if not self._send_reply(tls, reply):
                return
            if headers.get("connection", "").lower() == "close":
                return  # the client reads to the end: close now, not at the read timeout

    def _send_reply(self, tls: ssl.SSLSocket, reply: Reply) -> bool:
        """Send an HTTP/1.1 response; False when the connection must close after it."""
        status, headers, body = reply
        head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers)
        if isinstance(body, bytes):
            if status != 304:
                head += f"Content-Length: {len(body)}\r\n"
            tls.sendall(head.encode("latin-1") + b"\r\n" + body)
            return True
        tls.sendall(head.encode("latin-1") + b"Connection: close\r\n\r\n")
        for chunk in body:
            if self._stopping.is_set():
                break
            tls.sendall(chunk)
        return False

    def _serve_h2(self, tls: ssl.SSLSocket) -> None:
        import h2.config
        import h2.connection
        import h2.events

        h2conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        h2conn.initiate_connection()
        tls.sendall(h2conn.data_to_send())
        pending: dict[int, dict[str, str]] = {}
        while True:
            data = self._recv(tls)
            if not data:
                return
            for event in h2conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    pending[event.stream_id] = {
                        _text(k): _text(v) for k, v in (event.headers or [])
                    }
                elif isinstance(event, h2.events.DataReceived):
                    h2conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    with self._lock:
                        self.requests.append(pending.pop(event.stream_id, {}))
                    h2conn.send_headers(
                        event.stream_id,
                        [
                            (":status", "200"),
                            ("content-type", "text/plain"),
                            ("content-length", str(len(self.body))),
                        ],
                    )
                    h2conn.send_data(event.stream_id, self.body, end_stream=True)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    tls.sendall(h2conn.data_to_send())
                    return
            tls.sendall(h2conn.data_to_send())


_REASONS = {
    200: "OK",
    301: "Moved Permanently",
    302: "Found",
    304: "Not Modified",
    404: "Not Found",
    500: "Internal Server Error",
}


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _have_h2() -> bool:
    try:
        import h2  # noqa: F401
    except ImportError:
        return False
    return True
