"""Measure ways of moving one blob file -> file (hash once, write, fsync), in this process.

    python benchmarks/blobpath.py FILE [--repeat 5] [--scratch DIR]

The per-byte path of a local copy is: read a chunk, hash it, write it, and fsync at the end.
This script times the candidate strategies on the same file, taking turns, and prints the
median of each, so that a change to the transports' write loops rests on a measurement:

- ``read+write``: ``read(n)`` a new bytes object per chunk, hash, buffered ``write``;
- ``readinto``: one reused buffer, hash a memoryview of it, ``os.write``;
- ``pipelined``: read + hash in one thread while another thread writes the previous chunks;
- ``pipelined+flush``: the same, the writer also starting write-back as it goes (``fdatasync``
  every 64 MiB), so the final fsync has less left to wait for;
- ``copy_file_range``: hash the source, then let the kernel copy it (reads the source twice);
- ``destination``: the real ``oci:`` destination's ``put_blob`` (what ``imagetypes copy`` runs).
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import hashlib
import os
import queue
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

MiB = 1024 * 1024


def read_write(src: Path, dst: Path, chunk: int) -> str:
    h = hashlib.sha256()
    with open(src, "rb") as f, open(dst, "wb") as g:
        while data := f.read(chunk):
            h.update(data)
            g.write(data)
        g.flush()
        os.fsync(g.fileno())
    return h.hexdigest()


def readinto(src: Path, dst: Path, chunk: int) -> str:
    h = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(src, "rb", buffering=0) as f, open(dst, "wb", buffering=0) as g:
        while n := f.readinto(buf):
            h.update(view[:n])
            g.write(view[:n])
        os.fsync(g.fileno())
    return h.hexdigest()


def pipelined(src: Path, dst: Path, chunk: int, flush_every: int = 0) -> str:
    h = hashlib.sha256()
    q: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
    errors: list[BaseException] = []
    with open(dst, "wb", buffering=0) as g:
        fd = g.fileno()

        def writer() -> None:
            pending = 0
            try:
                while (data := q.get()) is not None:
                    os.write(fd, data)
                    pending += len(data)
                    if flush_every and pending >= flush_every:
                        os.fdatasync(fd)
                        pending = 0
            except BaseException as e:  # reported by the reading side
                errors.append(e)
                while q.get() is not None:
                    pass

        t = threading.Thread(target=writer)
        t.start()
        try:
            with open(src, "rb") as f:
                while data := f.read(chunk):
                    h.update(data)
                    q.put(data)
        finally:
            q.put(None)
            t.join()
        if errors:
            raise errors[0]
        os.fsync(fd)
    return h.hexdigest()


_libc: ctypes.CDLL | None = None


def start_writeback(fd: int, offset: int, length: int) -> None:
    """``sync_file_range(SYNC_FILE_RANGE_WRITE)``: start write-back, do not wait for it."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.sync_file_range.argtypes = [
            ctypes.c_int,
            ctypes.c_int64,
            ctypes.c_int64,
            ctypes.c_uint,
        ]
    _libc.sync_file_range(fd, offset, length, 2)


def writeback(src: Path, dst: Path, chunk: int, every: int = 8 * MiB) -> str:
    """``readinto``, plus write-back started every ``every`` bytes (so fsync waits less)."""
    h = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(src, "rb", buffering=0) as f, open(dst, "wb", buffering=0) as g:
        fd = g.fileno()
        done = flushed = 0
        while n := f.readinto(buf):
            h.update(view[:n])
            g.write(view[:n])
            done += n
            if done - flushed >= every:
                start_writeback(fd, flushed, done - flushed)
                flushed = done
        os.fsync(fd)
    return h.hexdigest()


def copy_range(src: Path, dst: Path, chunk: int) -> str:
    h = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(src, "rb", buffering=0) as f, open(dst, "wb", buffering=0) as g:
        while n := f.readinto(buf):
            h.update(view[:n])
        size = os.fstat(f.fileno()).st_size
        offset = 0
        while offset < size:
            copied = os.copy_file_range(f.fileno(), g.fileno(), size - offset, offset, offset)
            if copied == 0:
                break
            offset += copied
        os.fsync(g.fileno())
    return h.hexdigest()


def destination(src: Path, dst: Path, chunk: int) -> str:
    """``put_blob`` + ``put_manifest`` + ``commit`` of the real OCI destination."""
    from imagetypes import Digest, VerifyingReader, parse_reference
    from imagetypes.descriptor import BlobInfo
    from imagetypes.types import TransportOptions

    digest = Digest("sha256", src.name)
    ref = parse_reference(f"oci:{dst}:bench")
    with ref.open_destination(TransportOptions()) as d:
        with open(src, "rb") as f:
            reader = VerifyingReader(f, digest, src.stat().st_size)
            d.put_blob(reader, BlobInfo("application/octet-stream", digest, src.stat().st_size))
        manifest = (
            b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
            b'"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"'
            + str(digest).encode()
            + b'","size":'
            + str(src.stat().st_size).encode()
            + b'},"layers":[]}'
        )
        d.put_manifest(manifest, "application/vnd.oci.image.manifest.v1+json")
        d.commit()
    return str(digest.hex)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("file", type=Path, help="a blob file (its name is its sha256)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--scratch", type=Path, default=None)
    args = parser.parse_args()
    src: Path = args.file
    scratch = Path(tempfile.mkdtemp(prefix="blobpath-", dir=args.scratch))
    size = src.stat().st_size
    strategies: list[tuple[str, Callable[[Path, Path], str]]] = []
    for chunk in (1 * MiB, 4 * MiB, 8 * MiB):
        mib = chunk // MiB
        strategies += [
            (f"read+write {mib} MiB", functools.partial(read_write, chunk=chunk)),
            (f"readinto {mib} MiB", functools.partial(readinto, chunk=chunk)),
            (f"pipelined {mib} MiB", functools.partial(pipelined, chunk=chunk)),
        ]
    strategies += [
        ("pipelined+flush 1 MiB", lambda s, d: pipelined(s, d, MiB, 64 * MiB)),
        ("readinto+writeback 1 MiB", lambda s, d: writeback(s, d, MiB)),
        ("copy_file_range", lambda s, d: copy_range(s, d, MiB)),
        ("destination (oci)", lambda s, d: destination(s, d, MiB)),
    ]
    times: dict[str, list[float]] = {name: [] for name, _ in strategies}
    cpu: dict[str, list[float]] = {name: [] for name, _ in strategies}
    try:
        with open(src, "rb") as f:  # into the page cache
            while f.read(8 * MiB):
                pass
        for _ in range(args.repeat):
            for name, fn in strategies:
                target = scratch / "out"
                before = resource.getrusage(resource.RUSAGE_SELF)
                start = time.perf_counter()
                result = fn(src, target)
                times[name].append(time.perf_counter() - start)
                after = resource.getrusage(resource.RUSAGE_SELF)
                cpu[name].append(
                    after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
                )
                if result != src.name:
                    raise RuntimeError(f"{name}: wrong digest {result}")
                if target.is_dir():
                    shutil.rmtree(target)
                else:
                    target.unlink()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{src.name[:12]}: {size / MiB:.0f} MiB, median of {args.repeat}")
    for name, ts in times.items():
        med = statistics.median(ts)
        spread = ", ".join(f"{t:.2f}" for t in ts)
        print(
            f"{name:24s} wall {med:6.3f} s {size / MiB / med:6.0f} MiB/s  "
            f"cpu {statistics.median(cpu[name]):6.3f} s   (wall: {spread})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
