"""A threaded HTTP CONNECT proxy on loopback (optionally itself behind TLS)."""

from __future__ import annotations

import selectors
import socket
import ssl
import threading


class ConnectProxy:
    """Tunnels ``CONNECT host:port`` to 127.0.0.1 only; records what it was asked."""

    def __init__(self, tls_context: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self.tls_context = tls_context
        self.host = host  # the name in url (it listens on 127.0.0.1 whatever the name)
        self.connects: list[str] = []
        self.received = bytearray()  # what clients sent before the tunnel (after TLS)
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls_context else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def __enter__(self) -> ConnectProxy:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._acceptor.join(5)
        self._sock.close()
        for t in self._threads:
            t.join(5)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        client: socket.socket | ssl.SSLSocket = conn
        try:
            if self.tls_context is not None:
                client = self.tls_context.wrap_socket(conn, server_side=True)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                self.received += chunk
                head += chunk
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, target, _ = line.split(" ", 2)
            self.connects.append(target)
            host, port = target.rsplit(":", 1)
            if method != "CONNECT" or host not in ("127.0.0.1", "localhost", "api.pinsdk.test"):
                client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            upstream = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self._pump(client, upstream)
        except (OSError, ValueError):
            pass
        finally:
            client.close()

    def _pump(self, client: socket.socket | ssl.SSLSocket, upstream: socket.socket) -> None:
        # One thread for both directions: an SSLSocket must not be read and written
        # from two threads at once.
        peers = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as selector, upstream:
            for sock in peers:
                selector.register(sock, selectors.EVENT_READ)
            while not self._stop.is_set():
                ready = [key.fileobj for key, _ in selector.select(timeout=10)]
                if not ready:
                    return
                for src in ready:
                    while True:
                        data = src.recv(65536)  # type: ignore[union-attr]
                        if not data:
                            return
                        peers[src].sendall(data)  # type: ignore[index]
                        if not (isinstance(src, ssl.SSLSocket) and src.pending()):
                            break
