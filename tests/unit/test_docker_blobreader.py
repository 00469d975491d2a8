"""BlobReader against a real loopback HTTP/1.1 server: reads at odd sizes, readinto, the direct
socket path for large plain-HTTP bodies, resumes after cuts and stalls, and the shared SSL
contexts of registry clients."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import random
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from imagetypes import Digest, RetryPolicy, TransportOptions, VerifyingReader
from imagetypes.digest import copy_to_fd
from imagetypes_transports.docker import BlobReader, RegistryClient, RegistryConnectionError
from imagetypes_transports.docker._tls import make_ssl_context

BLOB = random.Random(7).randbytes(3 * 1024 * 1024 + 12345)
DIGEST = Digest("sha256", hashlib.sha256(BLOB).hexdigest())
REPO = "lib/blob"
FAST = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.02)


@dataclass
class Served:
    """What the server does with the next blob GETs, and what it saw."""

    #: Per request, in order: cut the body after this many bytes (None: send it all).
    cuts: list[int | None] = field(default_factory=list)
    #: Per request, in order: stop sending after this many bytes and wait (a stall).
    stalls: list[int | None] = field(default_factory=list)
    ignore_range: bool = False
    gzip: bool = False
    ranges: list[str | None] = field(default_factory=list)
    connections: set[int] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # socketserver's 5 resets bursts of parallel clients

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the cuts the tests make


@pytest.fixture
def server() -> Iterator[tuple[str, Served]]:
    served = Served()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            served.connections.add(self.client_address[1])
            if self.path == "/v2/":
                self._answer(200, b"{}", {"Content-Type": "application/json"})
                return
            if self.path != f"/v2/{REPO}/blobs/{DIGEST}":
                self._answer(404, b"{}", {})
                return
            asked = self.headers.get("Range")
            served.ranges.append(asked)
            start = 0
            if asked and not served.ignore_range:
                start = int(asked.removeprefix("bytes=").rstrip("-"))
            body = BLOB[start:]
            headers = {"Content-Type": "application/octet-stream"}
            if start:
                headers["Content-Range"] = f"bytes {start}-{len(BLOB) - 1}/{len(BLOB)}"
            if served.gzip:
                body = gzip.compress(body)
                headers["Content-Encoding"] = "gzip"
            cut = served.cuts.pop(0) if served.cuts else None
            stall = served.stalls.pop(0) if served.stalls else None
            self.send_response(206 if start else 200)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if stall is not None:
                self.wfile.write(body[:stall])
                self.wfile.flush()
                served.stop.wait(5)
                self.close_connection = True
                return
            if cut is not None:
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(body)

        def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = _Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}", served
    finally:
        served.stop.set()
        httpd.shutdown()
        httpd.server_close()


def client_for(host: str, **extra: object) -> RegistryClient:
    options = TransportOptions(tls_verify=False, retry=FAST, extra=dict(extra))
    return RegistryClient(host, options, sleep=lambda _: None)


def read_all(reader: BlobReader, sizes: list[int]) -> bytes:
    """Read with read() in the given sizes, cycling, to the end."""
    out = bytearray()
    i = 0
    while data := reader.read(sizes[i % len(sizes)]):
        assert len(data) <= sizes[i % len(sizes)]
        out += data
        i += 1
    return bytes(out)


def readinto_all(reader: BlobReader, sizes: list[int]) -> bytes:
    """Read with readinto() into buffers of the given sizes, cycling, to the end."""
    out = bytearray()
    i = 0
    while True:
        buf = bytearray(sizes[i % len(sizes)])
        n = reader.readinto(buf)
        if not n:
            return bytes(out)
        out += buf[:n]
        i += 1


ODD = [1, 7, 4093, 65537, 1024 * 1024 + 3, 300_001]


@pytest.mark.parametrize("direct", [True, False])
def test_read_at_odd_sizes(server: tuple[str, Served], direct: bool) -> None:
    host, _ = server
    with client_for(host, **{"docker.direct_read_min": 0 if direct else -1}) as client:
        reader = client.blob_reader(REPO, DIGEST, len(BLOB))
        assert read_all(reader, ODD) == BLOB
        assert reader.position == len(BLOB)
        assert reader.read(10) == b""
        assert (reader.direct_bytes > 0) is direct


@pytest.mark.parametrize("direct", [True, False])
def test_readinto_at_odd_sizes(server: tuple[str, Served], direct: bool) -> None:
    host, _ = server
    with client_for(host, **{"docker.direct_read_min": 0 if direct else -1}) as client:
        reader = client.blob_reader(REPO, DIGEST, len(BLOB))
        assert readinto_all(reader, ODD) == BLOB
        assert reader.readinto(bytearray(5)) == 0
        assert (reader.direct_bytes > 0) is direct


def test_read_and_readinto_mixed_with_a_memoryview(server: tuple[str, Served]) -> None:
    host, _ = server
    with client_for(host) as client:
        reader = client.blob_reader(REPO, DIGEST, len(BLOB))
        out = bytearray()
        big = bytearray(1 << 20)
        while True:
            data = reader.read(12_345)
            out += data
            n = reader.readinto(memoryview(big)[3:70_000])
            out += big[3 : 3 + n]
            if not data and not n:
                break
        assert bytes(out) == BLOB
        # The default threshold (1 MiB) is below this blob: the direct path was taken.
        assert reader.direct_bytes > len(BLOB) // 2


def test_direct_reads_through_a_verifying_copy(server: tuple[str, Served], tmp_path: Path) -> None:
    """What an OCI destination does with a registry blob: verified, readinto, one buffer."""
    host, _ = server
    target = tmp_path / "blob"
    with client_for(host) as client:
        reader = VerifyingReader(client.blob_reader(REPO, DIGEST), DIGEST, len(BLOB))
        with reader, target.open("wb") as f:
            assert copy_to_fd(reader, f.fileno()) == len(BLOB)
        assert reader.digest == DIGEST
    assert target.read_bytes() == BLOB


@pytest.mark.parametrize("use_readinto", [False, True])
@pytest.mark.parametrize("cut", [10, 70_000, 2_000_001])
def test_a_cut_direct_download_resumes_with_a_range(
    server: tuple[str, Served], use_readinto: bool, cut: int
) -> None:
    host, served = server
    served.cuts = [cut]
    with client_for(host, **{"docker.direct_read_min": 0}) as client:
        reader = client.blob_reader(REPO, DIGEST, len(BLOB))
        data = readinto_all(reader, [65_536]) if use_readinto else read_all(reader, [65_536])
        assert data == BLOB
        assert reader.resumes == 1
    assert served.ranges == [None, f"bytes={cut}-"]


def test_cuts_on_every_attempt_fail_after_the_budget(server: tuple[str, Served]) -> None:
    host, served = server
    served.cuts = [100_000] * 5  # FAST: the first GET and three resumes
    with client_for(host) as client:
        reader = client.blob_reader(REPO, DIGEST, len(BLOB))
        with pytest.raises(RegistryConnectionError, match="broke at byte 400000"):
            read_all(reader, [1 << 20])


def test_a_stalled_direct_download_times_out_and_resumes(server: tuple[str, Served]) -> None:
    host, served = server
    served.stalls = [1_500_000]
    with client_for(host, **{"docker.timeout": 0.3}) as client:
        reader = client.blob_reader(REPO, DIGEST, len(BLOB))
        assert readinto_all(reader, [1 << 20]) == BLOB
        assert reader.resumes == 1
    assert served.ranges[1] is not None
    assert int(served.ranges[1].removeprefix("bytes=").rstrip("-")) >= 1_000_000


def test_a_server_ignoring_the_range_is_skipped_forward(server: tuple[str, Served]) -> None:
    host, served = server
    served.cuts = [1_234_567]
    served.ignore_range = True
    with client_for(host) as client:
        reader = client.blob_reader(REPO, DIGEST, len(BLOB))
        assert read_all(reader, [100_000]) == BLOB
        assert reader.resumes == 1


def test_an_encoded_body_is_decoded_and_not_read_directly(server: tuple[str, Served]) -> None:
    host, served = server
    served.gzip = True
    with client_for(host, **{"docker.direct_read_min": 0}) as client:
        reader = client.blob_reader(REPO, DIGEST, len(BLOB))
        assert read_all(reader, [1 << 20]) == BLOB
        assert reader.direct_bytes == 0


def test_the_client_goes_on_after_a_direct_read(server: tuple[str, Served]) -> None:
    """The connection a body was read from directly is closed, never reused mid-stream."""
    host, served = server
    with client_for(host) as client:
        for _ in range(3):
            reader = client.blob_reader(REPO, DIGEST, len(BLOB))
            assert read_all(reader, [1 << 20]) == BLOB
            assert reader.direct_bytes > 0
    assert served.ranges == [None, None, None]
    # The ping's connection carries the first blob; each later blob needs a new one.
    assert len(served.connections) == 3


def test_a_small_body_keeps_its_connection(server: tuple[str, Served]) -> None:
    host, served = server
    with client_for(host, **{"docker.direct_read_min": len(BLOB) + 1}) as client:
        for _ in range(3):
            reader = client.blob_reader(REPO, DIGEST, len(BLOB))
            assert read_all(reader, [1 << 20]) == BLOB
            assert reader.direct_bytes == 0
    assert len(served.connections) == 1


# -- SSL contexts ------------------------------------------------------------------------------
def test_clients_share_one_ssl_context_per_setting(tmp_path: Path) -> None:
    insecure = TransportOptions(tls_verify=False)
    a = make_ssl_context("reg.example:5000", insecure)
    assert make_ssl_context("reg.example:5000", insecure) is a
    assert a.verify_mode == ssl.CERT_NONE
    assert not a.check_hostname
    verified = make_ssl_context("reg.example:5000", TransportOptions(cert_dir=str(tmp_path)))
    assert verified is not a
    assert verified.verify_mode == ssl.CERT_REQUIRED
    assert verified.check_hostname
    assert make_ssl_context("other.example", insecure) is not a


def test_a_changed_cert_dir_makes_a_new_context(tmp_path: Path) -> None:
    options = TransportOptions(cert_dir=str(tmp_path))
    first = make_ssl_context("reg.example", options)
    (tmp_path / "ca.crt").write_text("not a certificate")
    from imagetypes_transports.docker import TLSConfigError

    with pytest.raises(TLSConfigError, match=r"ca\.crt"):
        make_ssl_context("reg.example", options)
    (tmp_path / "ca.crt").unlink()
    assert make_ssl_context("reg.example", options) is first
