"""The physical floor: how fast this machine hashes, copies files and moves bytes over loopback.

Every copy must hash each byte once (sha256) and write it (a local copy: to a file, fsync'ed;
a push: over HTTP). The rates measured here turn a row's byte count into the least time any
tool could take on this machine, whatever language it is written in.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import statistics
import subprocess
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Floor", "measure_floor"]

MiB = 1024 * 1024
_BUFFER = 1 * MiB


@dataclass(frozen=True)
class Floor:
    """Rates in MiB/s (``None``: not measured) and the size of the sample they came from."""

    sample_bytes: int
    sha256: float
    file_copy_fsync: float
    file_write_fsync: float
    gunzip_stored: float
    zstd_compress: float | None
    http_get: float | None
    http_put: float | None
    python_startup: float
    imagetypes_startup: float

    def seconds(self, nbytes: int, *parts: str) -> float | None:
        """Time to pass ``nbytes`` through every named stage in turn; None if one is unknown."""
        total = 0.0
        for part in parts:
            rate = getattr(self, part)
            if rate is None:
                return None
            total += nbytes / MiB / rate
        return total


def _median_rate(nbytes: int, fn: Callable[[], None], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return nbytes / MiB / statistics.median(times)


def _hash_file(path: Path) -> None:
    h = hashlib.sha256()
    buf = bytearray(_BUFFER)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])


def _copy_file(source: Path, target: Path) -> None:
    """Read/write through one reused buffer, then fsync: what a streaming copy must do."""
    buf = bytearray(_BUFFER)
    view = memoryview(buf)
    with open(source, "rb", buffering=0) as f, open(target, "wb", buffering=0) as g:
        while n := f.readinto(buf):
            g.write(view[:n])
        os.fsync(g.fileno())
    target.unlink()


def _write_file(data: bytes, target: Path) -> None:
    """Write bytes already in memory, then fsync: the write half of a copy alone."""
    with open(target, "wb", buffering=0) as g:
        for offset in range(0, len(data), _BUFFER):
            g.write(data[offset : offset + _BUFFER])
        os.fsync(g.fileno())
    target.unlink()


def _gunzip(path: Path) -> None:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    with open(path, "rb") as f:
        while chunk := f.read(_BUFFER):
            d.decompress(chunk)


def _zstd_rate(data: bytes, repeat: int) -> float | None:
    try:
        from backports import zstd  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        try:
            from compression import zstd  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ImportError:
            return None

    def run() -> None:
        c = zstd.ZstdCompressor(level=3)
        for offset in range(0, len(data), _BUFFER):
            c.compress(data[offset : offset + _BUFFER])
        c.flush()

    return _median_rate(len(data), run, repeat)


def _startup(argv: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _http_rates(host: str, data: bytes, repeat: int) -> tuple[float, float]:
    """Upload ``data`` as one blob (POST + monolithic PUT), then download it, over loopback.

    With the registry as server, as in every registry row: its own cost is part of the floor.
    """
    digest = "sha256:" + hashlib.sha256(data).hexdigest()

    def put() -> None:
        conn = http.client.HTTPConnection(host, timeout=120)
        try:
            conn.request("POST", "/v2/floor/blobs/uploads/")
            response = conn.getresponse()
            response.read()
            location = response.getheader("Location") or ""
            if response.status != 202 or not location:
                raise RuntimeError(f"upload start: HTTP {response.status}")
            path = location.split(host, 1)[-1]
            sep = "&" if "?" in path else "?"
            conn.request(
                "PUT",
                f"{path}{sep}digest={digest}",
                body=data,
                headers={"Content-Type": "application/octet-stream"},
            )
            response = conn.getresponse()
            response.read()
            if response.status != 201:
                raise RuntimeError(f"upload: HTTP {response.status}")
        finally:
            conn.close()

    def get() -> None:
        conn = http.client.HTTPConnection(host, timeout=120)
        try:
            conn.request("GET", f"/v2/floor/blobs/{digest}")
            response = conn.getresponse()
            buf = bytearray(_BUFFER)
            total = 0
            while n := response.readinto(buf):
                total += n
            if response.status != 200 or total != len(data):
                raise RuntimeError(f"download: HTTP {response.status}, {total} bytes")
        finally:
            conn.close()

    put_rate = _median_rate(len(data), put, repeat)
    get_rate = _median_rate(len(data), get, repeat)
    return get_rate, put_rate


def measure_floor(
    sample: Path, scratch: Path, registry_host: str | None, python: str, repeat: int = 3
) -> Floor:
    """Measure the rates on ``sample`` (a gzip layer file, already in the page cache)."""
    data = sample.read_bytes()
    target = scratch / "floor-copy"
    _hash_file(sample)  # warm the page cache
    sha = _median_rate(len(data), lambda: _hash_file(sample), repeat)
    copy = _median_rate(len(data), lambda: _copy_file(sample, target), repeat)
    write = _median_rate(len(data), lambda: _write_file(data, target), repeat)
    gunzip = _median_rate(len(data), lambda: _gunzip(sample), repeat)
    zstd_rate = _zstd_rate(data, repeat)
    get = put = None
    if registry_host is not None:
        get, put = _http_rates(registry_host, data, repeat)
    python_startup = _startup([python, "-c", "pass"], 5)
    imagetypes_startup = _startup([python, "-m", "imagetypes", "--version"], 5)
    return Floor(
        sample_bytes=len(data),
        sha256=sha,
        file_copy_fsync=copy,
        file_write_fsync=write,
        gunzip_stored=gunzip,
        zstd_compress=zstd_rate,
        http_get=get,
        http_put=put,
        python_startup=python_startup,
        imagetypes_startup=imagetypes_startup,
    )
