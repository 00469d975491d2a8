"""A loopback HTTP proxy in front of a plain-http registry that injects faults into bodies.

This extends the idea of ``registry_fixtures.FaultProxy`` (tests/integration), which cannot
be extended from outside (its handler class is built inside ``__init__``) and only acts on
whole bodies: here faults act at byte offsets of a response *or of a request body* (a cut or a
stall in the middle of an upload), a stall keeps the connection open and silent longer than
the client's read timeout, a truncated body is a well-formed short answer (its
``Content-Length`` says so), and storms answer several statuses in a row.

The proxy listens on 127.0.0.1 only; every wait is bounded and ends when it stops.
"""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from registry_fixtures import free_port

__all__ = ["ACTIONS", "ChaosProxy", "Fault", "Seen"]

#: What a fault may do:
#:
#: - ``status``: answer ``status`` (with ``headers``) without forwarding.
#: - ``cut``: forward, send the headers (with the full length) and ``at`` of the body, close.
#: - ``stall``: like ``cut``, but stay silent for ``stall`` seconds before closing.
#: - ``truncate``: forward, answer only ``at`` of the body with a matching Content-Length.
#: - ``corrupt``: forward, flip the byte at ``at`` of the body (same length, wrong digest).
#: - ``substitute``: forward, answer ``body`` instead (a plausible but wrong body).
#: - ``cut_request``: read ``at`` of the request body, then close; nothing is forwarded.
#: - ``stall_request``: read ``at`` of the request body, stay silent ``stall`` s, close.
#: - ``drop``: forward the whole request, then close without answering (answer lost).
ACTIONS = frozenset(
    {
        "status",
        "cut",
        "stall",
        "truncate",
        "corrupt",
        "substitute",
        "cut_request",
        "stall_request",
        "drop",
    }
)


@dataclass
class Fault:
    """What the proxy does to the next ``times`` requests matching method and path.

    ``at`` is a fraction of the body (0 <= at < 1) where a cut, stall, truncation or corruption
    happens, so one seeded value fits blobs of any size.
    """

    method: str
    path_contains: str
    action: str
    at: float = 0.5
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    stall: float = 2.0
    body: bytes = b""
    times: int = 1
    #: How many requests this fault was applied to.
    applied: int = 0

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}")
        if not 0 <= self.at < 1:
            raise ValueError("at is a fraction of the body: 0 <= at < 1")

    def offset(self, length: int) -> int:
        return min(int(length * self.at), max(length - 1, 0))


@dataclass
class Seen:
    """A request the proxy received, and what it did to it."""

    method: str
    path: str
    headers: dict[str, str]
    time: float
    fault: str = ""


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # The registry client opens many connections at once during a copy.
    request_queue_size = 64

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # connection resets are what these tests cause


class ChaosProxy:
    """The proxy: ``add`` faults, point a ``docker://`` reference at :attr:`host`."""

    def __init__(self, upstream: str, host: str = "127.0.0.1") -> None:
        self.upstream = upstream
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.port = free_port(host)
        self.host = f"{host}:{self.port}"
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _read_body(self, limit: int | None = None) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                    data = b"".join(parts)
                    return data if limit is None else data[:limit]
                length = int(self.headers.get("Content-Length", "0") or 0)
                if limit is not None:
                    length = min(length, limit)
                return self.rfile.read(length) if length else b""

            def _close(self) -> None:
                self.close_connection = True
                try:
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            def _handle(self) -> None:
                fault = proxy._take(self.command, self.path)
                headers = dict(self.headers.items())
                proxy._record(self.command, self.path, headers, fault)
                if fault is not None and fault.action in ("cut_request", "stall_request"):
                    length = int(self.headers.get("Content-Length", "0") or 0)
                    self._read_body(fault.offset(length))
                    if fault.action == "stall_request":
                        proxy._stopping.wait(fault.stall)
                    self._close()
                    return
                body = self._read_body()
                if fault is not None and fault.action == "status":
                    payload = json.dumps(
                        {"errors": [{"code": "UNKNOWN", "message": "injected fault"}]}
                    ).encode()
                    self.send_response(fault.status)
                    for k, v in fault.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                if any(k.lower() == "transfer-encoding" for k in headers):
                    # The body was de-chunked above: forward it with its length instead.
                    headers = {k: v for k, v in headers.items() if k.lower() != "transfer-encoding"}
                    headers["Content-Length"] = str(len(body))
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                try:
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    upstream = conn.getresponse()
                    data = upstream.read()
                    length_header = upstream.getheader("Content-Length")
                    if fault is not None and fault.action == "drop":
                        self._close()
                        return
                    if fault is not None and fault.action == "truncate" and data:
                        data = data[: fault.offset(len(data))]
                    elif fault is not None and fault.action == "corrupt" and data:
                        at = fault.offset(len(data))
                        data = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
                    elif fault is not None and fault.action == "substitute":
                        data = fault.body
                    self.send_response(upstream.status)
                    for k, v in upstream.getheaders():
                        if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                            self.send_header(k, v)
                    if self.command == "HEAD":
                        self.send_header("Content-Length", length_header or "0")
                        self.end_headers()
                        return
                    self.send_header("Content-Length", str(len(data)))
                    if fault is not None and fault.action in ("cut", "stall"):
                        self.send_header("Connection", "close")
                        self.end_headers()
                        self.wfile.write(data[: fault.offset(len(data))])
                        self.wfile.flush()
                        if fault.action == "stall":
                            proxy._stopping.wait(fault.stall)
                        self._close()
                        return
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

        self._httpd = _Server((host, self.port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def add(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def clear(self) -> None:
        """Forget the faults not yet applied and the requests seen."""
        with self._lock:
            self.faults.clear()
            self.seen.clear()

    def applied(self) -> int:
        """How many requests were faulted since the last :meth:`clear`."""
        with self._lock:
            return sum(f.applied for f in self.faults)

    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.method == method and fault.path_contains in path and fault.times > 0:
                    fault.times -= 1
                    fault.applied += 1
                    return fault
        return None

    def _record(self, method: str, path: str, headers: dict[str, str], f: Fault | None) -> None:
        with self._lock:
            self.seen.append(Seen(method, path, headers, time.monotonic(), f.action if f else ""))

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
