"""imagetypes.compression: detection, streaming (de)compression, backends, media types."""

from __future__ import annotations

import gc
import gzip
import importlib
import io
import random
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import pytest

from imagetypes import compression
from imagetypes import mediatypes as mt
from imagetypes.compression import (
    GZIP_BLOCK_SIZE,
    ZSTD_JOB_SIZE,
    ZSTD_OVERLAP_LOG,
    ZSTD_PARALLEL_THRESHOLD,
    Compression,
    compressing_reader,
    decompressing_reader,
    detect_compression,
    gzip_backend,
    is_layer_media_type,
    layer_compression,
    with_compression,
    zstd_available,
)
from imagetypes.digest import CHUNK_SIZE, Digest, Readable, VerifyingReader
from imagetypes.errors import CompressionError, DigestMismatchError, UnsupportedError
from imagetypes.mediatypes import DOCKER_FOREIGN_UNCOMPRESSED_LAYER

BACKENDS = [
    "zlib",
    pytest.param(
        "isal", marks=pytest.mark.skipif(gzip_backend() != "isal", reason="isal is not installed")
    ),
]
needs_zstd = pytest.mark.skipif(not zstd_available(), reason="no zstd module installed")


def sample(size: int, seed: int = 1) -> bytes:
    """Half random, half repetitive: compressible, but not trivially."""
    rnd = random.Random(seed)
    return rnd.randbytes(size // 2) + b"layer data " * (size // 22) + b"x" * (size % 22)


def read_all(reader: Readable, chunk: int) -> bytes:
    parts = []
    while data := reader.read(chunk):
        assert len(data) <= chunk
        parts.append(data)
    return b"".join(parts)


# -- detection ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        (b"\x1f\x8b\x08\x00", Compression.GZIP),
        (b"\x1f\x8b", Compression.GZIP),
        (b"\x28\xb5\x2f\xfd", Compression.ZSTD),
        (b"\x28\xb5\x2f", Compression.NONE),  # too short to be zstd
        (b"", Compression.NONE),
        (b"ustar", Compression.NONE),
        (b"BZh9", Compression.NONE),
    ],
)
def test_detect_compression(prefix: bytes, expected: Compression) -> None:
    assert detect_compression(prefix) is expected


def test_compression_parse() -> None:
    assert Compression.parse("GZIP") is Compression.GZIP
    assert Compression.parse(Compression.ZSTD) is Compression.ZSTD
    with pytest.raises(UnsupportedError, match="unknown compression format 'lz4'"):
        Compression.parse("lz4")


# -- gzip --------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_gzip_round_trip(backend: Any) -> None:
    data = sample(3 * CHUNK_SIZE + 12345)
    compressed = read_all(
        compressing_reader(io.BytesIO(data), "gzip", gzip_backend=backend), 100_000
    )
    assert compressed[:2] == b"\x1f\x8b"
    assert len(compressed) < len(data)
    assert gzip.decompress(compressed) == data  # standard gzip reads what we write
    reader = decompressing_reader(io.BytesIO(compressed), gzip_backend=backend)
    assert reader.compression is Compression.GZIP
    assert read_all(reader, 7777) == data
    assert reader.bytes_out == len(data)
    assert reader.bytes_in == len(compressed)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gzip_output_is_deterministic(backend: Any) -> None:
    data = sample(200_000)
    one = compressing_reader(io.BytesIO(data), gzip_backend=backend).read()
    two = compressing_reader(io.BytesIO(data), gzip_backend=backend).read()
    assert one == two
    assert one[4:8] == b"\0\0\0\0"  # mtime 0: no timestamp leaks into a layer digest


@pytest.mark.parametrize("level", [1, 6, 9])
@pytest.mark.parametrize("backend", BACKENDS)
def test_gzip_levels(backend: Any, level: int) -> None:
    data = sample(300_000)
    out = compressing_reader(io.BytesIO(data), level=level, gzip_backend=backend).read()
    assert gzip.decompress(out) == data


@pytest.mark.parametrize("backend", BACKENDS)
def test_gzip_reads_concatenated_members(backend: Any) -> None:
    # pigz and `cat a.gz b.gz` make multi-member files; Go and gzip(1) read them whole.
    data = gzip.compress(b"first ", mtime=0) + gzip.compress(b"second", mtime=0)
    reader = decompressing_reader(io.BytesIO(data), gzip_backend=backend)
    assert reader.read() == b"first second"


@pytest.mark.parametrize("backend", BACKENDS)
def test_gzip_truncated_is_an_error(backend: Any) -> None:
    data = gzip.compress(sample(100_000))
    reader = decompressing_reader(io.BytesIO(data[:-20]), gzip_backend=backend)
    with pytest.raises(CompressionError, match="truncated"):
        reader.read()


@pytest.mark.parametrize("backend", BACKENDS)
def test_gzip_trailing_garbage_is_an_error(backend: Any) -> None:
    data = gzip.compress(b"payload") + b"garbage!"
    with pytest.raises(CompressionError, match="unexpected data after member 1"):
        decompressing_reader(io.BytesIO(data), gzip_backend=backend).read()


@pytest.mark.parametrize("backend", BACKENDS)
def test_gzip_corrupt_is_an_error(backend: Any) -> None:
    data = bytearray(gzip.compress(sample(50_000)))
    data[100:120] = b"\xff" * 20
    with pytest.raises(CompressionError, match="gzip"):
        decompressing_reader(io.BytesIO(bytes(data)), gzip_backend=backend).read()


def test_uncompressed_passes_through_unchanged() -> None:
    data = b"\x00plain tar bytes" * 1000
    reader = decompressing_reader(io.BytesIO(data))
    assert reader.compression is Compression.NONE
    assert read_all(reader, 3) == data
    empty = decompressing_reader(io.BytesIO(b""))
    assert empty.compression is Compression.NONE
    assert empty.read() == b""


def test_explicit_format_must_match() -> None:
    with pytest.raises(CompressionError, match="not gzip-compressed"):
        decompressing_reader(io.BytesIO(b"plain data"), "gzip")
    assert decompressing_reader(io.BytesIO(gzip.compress(b"x")), "gzip").read() == b"x"


def test_compress_none_passes_through() -> None:
    assert compressing_reader(io.BytesIO(b"abc"), "none").read() == b"abc"


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(UnsupportedError, match="unknown gzip backend"):
        compressing_reader(io.BytesIO(b""), gzip_backend="pigz")  # type: ignore[arg-type]


def test_memory_stays_bounded_on_a_decompression_bomb() -> None:
    # 256 MiB of zeros compress to ~250 KiB; reading it must not inflate it in memory.
    size = 256 * 1024 * 1024
    obj = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"\0" * CHUNK_SIZE
    bomb = b"".join(obj.compress(block) for _ in range(size // CHUNK_SIZE)) + obj.flush()
    tracemalloc.start()
    try:
        reader = decompressing_reader(io.BytesIO(bomb))
        total = 0
        while data := reader.read(CHUNK_SIZE):
            total += len(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == size
    assert peak < 8 * CHUNK_SIZE, f"peak {peak} bytes"


def test_memory_stays_bounded_when_compressing() -> None:
    size = 64 * 1024 * 1024

    class Zeros:
        left = size

        def read(self, n: int = -1) -> bytes:
            n = min(n if n >= 0 else self.left, self.left)
            self.left -= n
            return b"\0" * n

    tracemalloc.start()
    try:
        # Two threads (the pool starts after 4 MiB): a few blocks in flight, whatever the size.
        reader = compressing_reader(Zeros(), threads=2)
        out = 0
        while data := reader.read(CHUNK_SIZE):
            out += len(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 0 < out < size // 100
    assert peak < 8 * CHUNK_SIZE, f"peak {peak} bytes"


# -- gzip in blocks, on several threads -------------------------------------------------------
#: Sizes around the block size and past the size where the thread pool starts (4 MiB).
BLOCK_EDGES = [
    0,
    1,
    GZIP_BLOCK_SIZE - 1,
    GZIP_BLOCK_SIZE,
    GZIP_BLOCK_SIZE + 1,
    6 * GZIP_BLOCK_SIZE,
    6 * GZIP_BLOCK_SIZE + 12345,
]


class Trickle:
    """A stream that hands out at most ``step`` bytes per read, as a socket does."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = memoryview(data)
        self._step = step

    def read(self, size: int = -1, /) -> bytes:
        n = self._step if size < 0 else min(size, self._step)
        out, self._data = bytes(self._data[:n]), self._data[n:]
        return out


def gzip_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("imagetypes-gzip")]


def slots_used() -> int:
    from imagetypes import compression

    return compression._slots_used


@pytest.mark.parametrize("size", BLOCK_EDGES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_parallel_gzip_is_valid_and_the_same_for_any_thread_count(backend: Any, size: int) -> None:
    data = sample(size, seed=size)
    outputs = {
        threads: read_all(
            compressing_reader(io.BytesIO(data), gzip_backend=backend, threads=threads), CHUNK_SIZE
        )
        for threads in (1, 2, 3)
    }
    again = compressing_reader(io.BytesIO(data), gzip_backend=backend, threads=2).read()
    # The input handed out in small pieces is still cut in the same blocks.
    trickled = compressing_reader(Trickle(data, 100_003), gzip_backend=backend, threads=2).read()
    assert len(set(outputs.values()) | {again, trickled}) == 1
    out = outputs[1]
    assert out[:4] == b"\x1f\x8b\x08\x00"
    assert out[4:8] == b"\0\0\0\0"  # no timestamp
    assert gzip.decompress(out) == data
    assert zlib.decompress(out, 31) == data  # one member, no trailing bytes
    reader = decompressing_reader(io.BytesIO(out), gzip_backend=backend)
    assert read_all(reader, 65536) == data
    # The trailer: CRC-32 and size of the input.
    assert out[-8:] == zlib.crc32(data).to_bytes(4, "little") + len(data).to_bytes(4, "little")


@pytest.mark.parametrize("backend", BACKENDS)
def test_parallel_gzip_compresses_like_a_single_stream(backend: Any) -> None:
    data = sample(6 * GZIP_BLOCK_SIZE)
    ours = compressing_reader(io.BytesIO(data), gzip_backend=backend, threads=2).read()
    whole = gzip.compress(data, compresslevel=6)
    # Blocks primed with the 32 KiB before them lose almost nothing to one stream.
    assert len(ours) < len(whole) * 1.05


@pytest.mark.skipif(shutil.which("gzip") is None, reason="gzip(1) is not installed")
@pytest.mark.parametrize("backend", BACKENDS)
def test_gzip_1_reads_the_parallel_output(backend: Any, tmp_path: Path) -> None:
    data = sample(6 * GZIP_BLOCK_SIZE + 7)
    path = tmp_path / "layer.gz"
    path.write_bytes(compressing_reader(io.BytesIO(data), gzip_backend=backend, threads=2).read())
    check = subprocess.run(["gzip", "-t", str(path)], capture_output=True, check=False)
    assert check.returncode == 0, check.stderr
    out = subprocess.run(["gzip", "-dc", str(path)], capture_output=True, check=True, timeout=60)
    assert out.stdout == data


def test_parallel_gzip_uses_threads_only_for_large_streams() -> None:
    def threads_seen(size: int, threads: int) -> int:
        reader = compressing_reader(io.BytesIO(sample(size)), threads=threads)
        seen = 0
        while reader.read(CHUNK_SIZE):
            seen = max(seen, slots_used())  # blocks this stream has in the pool
        reader.close()
        return seen

    assert threads_seen(3 * GZIP_BLOCK_SIZE, 2) == 0
    assert threads_seen(12 * GZIP_BLOCK_SIZE, 1) == 0
    assert threads_seen(12 * GZIP_BLOCK_SIZE, 2) >= 1


def test_parallel_gzip_passes_errors_of_its_input_through() -> None:
    data = sample(10 * GZIP_BLOCK_SIZE)
    wrong = VerifyingReader(io.BytesIO(data), Digest.from_bytes(b"something else"))
    reader = compressing_reader(wrong, threads=2)
    with pytest.raises(DigestMismatchError):
        reader.read()
    reader.close()
    assert slots_used() == 0  # its blocks left the pool's budget


def test_closing_a_half_read_parallel_gzip_stream_frees_its_pool_slots() -> None:
    reader = compressing_reader(io.BytesIO(sample(20 * GZIP_BLOCK_SIZE)), threads=2)
    for _ in range(16):  # 8 MiB of output or so: the pool started at 4 MiB of input
        assert reader.read(CHUNK_SIZE)
    assert gzip_threads()
    assert slots_used() > 0
    reader.close()
    assert slots_used() == 0


def test_releasing_a_half_read_parallel_gzip_stream_frees_its_slots_but_not_its_input() -> None:
    raw = io.BytesIO(sample(20 * GZIP_BLOCK_SIZE))
    reader = compressing_reader(raw, threads=2)
    for _ in range(16):
        assert reader.read(CHUNK_SIZE)
    assert slots_used() > 0
    reader.release()
    assert slots_used() == 0
    assert not raw.closed  # the caller closes its own stream (after reading the rest, maybe)
    with pytest.raises(ValueError, match="released"):
        reader.read(10)
    # A stream read to its end stays at its end.
    done = compressing_reader(io.BytesIO(b"abc"), threads=2)
    out = done.read()
    done.release()
    assert gzip.decompress(out) == b"abc"
    assert done.read(10) == b""


def test_many_parallel_gzip_streams_at_once_share_the_pool_budget() -> None:
    from concurrent.futures import ThreadPoolExecutor

    data = sample(7 * GZIP_BLOCK_SIZE + 3)
    expected = compressing_reader(io.BytesIO(data), threads=1).read()

    def compress(i: int) -> bytes:
        reader = compressing_reader(io.BytesIO(data), threads=2)
        if i % 3 == 0:  # some are dropped half way
            for _ in range(12):
                reader.read(CHUNK_SIZE)
            reader.close()
            return expected
        return reader.read()

    with ThreadPoolExecutor(6) as pool:
        assert all(out == expected for out in pool.map(compress, range(12)))
    assert slots_used() == 0  # every slot was given back


def test_readinto_hands_out_the_same_bytes_as_read() -> None:
    data = sample(3 * CHUNK_SIZE + 5)
    expected = compressing_reader(io.BytesIO(data)).read()
    reader = compressing_reader(io.BytesIO(data))
    buffer = bytearray(300_001)
    parts = []
    while n := reader.readinto(buffer):
        parts.append(bytes(buffer[:n]))
    assert b"".join(parts) == expected
    assert reader.bytes_out == len(expected)
    assert reader.readinto(bytearray(10)) == 0


def test_threads_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        compressing_reader(io.BytesIO(b""), threads=0)


# -- zstd --------------------------------------------------------------------------------------
@needs_zstd
def test_zstd_round_trip_and_frames() -> None:
    data = sample(2 * CHUNK_SIZE + 99)
    compressed = compressing_reader(io.BytesIO(data), "zstd").read()
    assert detect_compression(compressed) is Compression.ZSTD
    reader = decompressing_reader(io.BytesIO(compressed + compressed))
    assert reader.compression is Compression.ZSTD
    assert read_all(reader, 50_000) == data + data
    with pytest.raises(CompressionError, match="truncated"):
        decompressing_reader(io.BytesIO(compressed[:-9])).read()
    with pytest.raises(CompressionError, match="unexpected data"):
        decompressing_reader(io.BytesIO(compressed + b"junk")).read()


@needs_zstd
@pytest.mark.parametrize("size", [0, 1, 3 * CHUNK_SIZE + 1, 9 * CHUNK_SIZE + 4321])
def test_zstd_output_is_the_same_for_any_thread_count(size: int) -> None:
    data = sample(size, seed=size + 1)
    outputs = {
        compressing_reader(io.BytesIO(data), "zstd", threads=threads).read()
        for threads in (1, 2, 4)
    }
    outputs.add(compressing_reader(Trickle(data, 70_001), "zstd", threads=2).read())
    assert len(outputs) == 1
    (out,) = outputs
    assert decompressing_reader(io.BytesIO(out)).read() == data


@needs_zstd
@pytest.mark.skipif(shutil.which("zstd") is None, reason="zstd(1) is not installed")
def test_zstd_1_reads_our_output(tmp_path: Path) -> None:
    data = sample(9 * CHUNK_SIZE + 3)
    path = tmp_path / "layer.zst"
    path.write_bytes(compressing_reader(io.BytesIO(data), "zstd", threads=2).read())
    out = subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True, timeout=60)
    assert out.stdout == data


# -- zstd on zstd's worker threads ------------------------------------------------------------
#: A size hint that asks for zstd's worker threads.
BIG = ZSTD_PARALLEL_THRESHOLD


def zstd_module() -> Any:
    try:
        return importlib.import_module("compression.zstd")
    except ImportError:
        return importlib.import_module("backports.zstd")


def zstd_workers_oracle(data: bytes, level: int | None = None) -> bytes:
    """zstd's multithreaded mode with the documented parameters, straight from the library."""
    z = zstd_module()
    param = z.CompressionParameter
    options = {param.nb_workers: 4, param.job_size: ZSTD_JOB_SIZE}
    options[param.overlap_log] = ZSTD_OVERLAP_LOG
    if level is not None:
        options[param.compression_level] = level
    obj = z.ZstdCompressor(options=options)
    out = obj.compress(data) if data else b""  # a stream: the size is never known up front
    return bytes(out + obj.flush(obj.FLUSH_FRAME))


def zstd_turns() -> int:
    return sum(compression._zstd_holders.values())


def zstd_feeders() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "imagetypes-zstd"]


def wait_until(condition: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@needs_zstd
@pytest.mark.parametrize(
    "size", [0, 1, ZSTD_JOB_SIZE - 1, ZSTD_JOB_SIZE + 1, 5 * ZSTD_JOB_SIZE + 4321]
)
def test_zstd_on_worker_threads_is_the_same_for_any_thread_count_and_chunking(size: int) -> None:
    data = sample(size, seed=size + 5)
    outputs = {
        threads: read_all(
            compressing_reader(io.BytesIO(data), "zstd", threads=threads, size_hint=BIG),
            CHUNK_SIZE,
        )
        for threads in (1, 2, 3)
    }
    trickled = compressing_reader(Trickle(data, 70_001), "zstd", threads=2, size_hint=BIG)
    assert len(set(outputs.values()) | {trickled.read()}) == 1
    out = outputs[1]
    assert out == zstd_workers_oracle(data)  # the mode and parameters the docs promise
    assert bytes(zstd_module().decompress(out)) == data
    assert read_all(decompressing_reader(io.BytesIO(out)), 65536) == data
    assert zstd_turns() == 0
    assert wait_until(lambda: not zstd_feeders())


@needs_zstd
def test_zstd_size_hint_threshold_picks_the_mode() -> None:
    data = sample(4 * ZSTD_JOB_SIZE + 3, seed=9)
    one_thread = compressing_reader(io.BytesIO(data), "zstd").read()
    below = compressing_reader(io.BytesIO(data), "zstd", size_hint=BIG - 1).read()
    at = compressing_reader(io.BytesIO(data), "zstd", size_hint=BIG).read()
    above = compressing_reader(io.BytesIO(data), "zstd", size_hint=BIG * 8).read()
    assert below == one_thread
    # The worker threads' frame is another one: why the hint must be fixed for a blob.
    assert at != one_thread
    assert at == above == zstd_workers_oracle(data)
    assert decompressing_reader(io.BytesIO(at)).read() == data
    assert decompressing_reader(io.BytesIO(one_thread)).read() == data
    # Compressed about as well (jobs are primed with the input before them).
    assert len(at) < len(one_thread) * 1.02


@needs_zstd
def test_zstd_on_worker_threads_honours_the_level() -> None:
    data = sample(3 * ZSTD_JOB_SIZE, seed=4)
    fast = compressing_reader(io.BytesIO(data), "zstd", 1, size_hint=BIG).read()
    strong = compressing_reader(io.BytesIO(data), "zstd", 12, size_hint=BIG).read()
    assert fast == zstd_workers_oracle(data, 1)
    assert strong == zstd_workers_oracle(data, 12)
    assert fast != strong
    assert decompressing_reader(io.BytesIO(strong)).read() == data


@needs_zstd
@pytest.mark.skipif(shutil.which("zstd") is None, reason="zstd(1) is not installed")
def test_zstd_1_reads_the_output_of_worker_threads(tmp_path: Path) -> None:
    data = sample(6 * ZSTD_JOB_SIZE + 11, seed=8)
    path = tmp_path / "layer.zst"
    path.write_bytes(compressing_reader(io.BytesIO(data), "zstd", size_hint=BIG).read())
    check = subprocess.run(["zstd", "-t", str(path)], capture_output=True, check=False)
    assert check.returncode == 0, check.stderr
    out = subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True, timeout=60)
    assert out.stdout == data


@needs_zstd
def test_zstd_streams_on_worker_threads_take_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compression, "zstd_parallel_streams", 1)
    # Longer than the output the stream may queue: it keeps the turn until it is read.
    data = sample(16 * ZSTD_JOB_SIZE, seed=2)
    first = compressing_reader(io.BytesIO(data), "zstd", size_hint=BIG)
    head = first.read(10)  # the first read takes the turn
    assert zstd_turns() == 1
    started = threading.Event()
    result: list[bytes] = []

    def second() -> None:
        reader = compressing_reader(io.BytesIO(data), "zstd", size_hint=BIG)
        started.set()
        result.append(reader.read())

    thread = threading.Thread(target=second)
    thread.start()
    assert started.wait(10)
    thread.join(0.5)
    assert thread.is_alive()  # waits for its turn (in its first read)...
    assert not result
    rest = first.read()  # ... until the first stream ends
    thread.join(60)
    assert not thread.is_alive()
    assert result == [head + rest]
    assert zstd_turns() == 0


@needs_zstd
def test_one_thread_may_read_several_streams_on_worker_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(compression, "zstd_parallel_streams", 1)
    data = sample(2 * ZSTD_JOB_SIZE + 5, seed=3)
    readers = [compressing_reader(io.BytesIO(data), "zstd", size_hint=BIG) for _ in range(3)]
    parts: list[list[bytes]] = [[] for _ in readers]
    open_ = set(range(len(readers)))
    while open_:  # in turns, a piece from each: no stream may wait for another here
        for i in sorted(open_):
            chunk = readers[i].read(50_000)
            if chunk:
                parts[i].append(chunk)
            else:
                open_.discard(i)
    outputs = {b"".join(p) for p in parts}
    assert outputs == {zstd_workers_oracle(data)}
    assert zstd_turns() == 0


class Closable(io.BytesIO):
    pass


@needs_zstd
@pytest.mark.parametrize("finish", ["close", "release"])
def test_stopping_a_half_read_zstd_stream_on_worker_threads_gives_its_turn_back(
    finish: str,
) -> None:
    raw = Closable(sample(12 * ZSTD_JOB_SIZE, seed=6))
    reader = compressing_reader(raw, "zstd", size_hint=BIG)
    assert reader.read(1000)
    assert zstd_turns() == 1
    assert zstd_feeders()
    getattr(reader, finish)()
    assert zstd_turns() == 0
    assert not zstd_feeders()  # stopped and waited for
    assert raw.closed is (finish == "close")  # release leaves the wrapped stream open
    with pytest.raises(ValueError, match="released"):
        reader.read(10)
    reader.release()  # again: nothing to do


@needs_zstd
def test_a_finished_zstd_stream_on_worker_threads_may_be_released() -> None:
    data = sample(2 * ZSTD_JOB_SIZE)
    reader = compressing_reader(io.BytesIO(data), "zstd", size_hint=BIG)
    out = reader.read()
    reader.release()
    assert reader.read(10) == b""  # read to its end: still at its end
    assert reader.bytes_in == len(data)
    assert reader.bytes_out == len(out)


@needs_zstd
def test_a_dropped_zstd_stream_on_worker_threads_gives_its_turn_back() -> None:
    reader = compressing_reader(io.BytesIO(sample(12 * ZSTD_JOB_SIZE)), "zstd", size_hint=BIG)
    assert reader.read(1000)
    assert zstd_turns() == 1
    del reader
    gc.collect()
    assert wait_until(lambda: zstd_turns() == 0)
    assert wait_until(lambda: not zstd_feeders())


@needs_zstd
def test_zstd_on_worker_threads_passes_errors_of_its_input_through() -> None:
    data = sample(4 * ZSTD_JOB_SIZE)
    wrong = VerifyingReader(io.BytesIO(data), Digest.from_bytes(b"something else"))
    reader = compressing_reader(wrong, "zstd", size_hint=BIG)
    with pytest.raises(DigestMismatchError) as first:
        reader.read()
    assert zstd_turns() == 0
    with pytest.raises(DigestMismatchError) as again:  # no end after a failure
        reader.read(10)
    assert again.value is first.value

    class Broken:
        def read(self, size: int = -1, /) -> bytes:
            raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        compressing_reader(Broken(), "zstd", size_hint=BIG).read()
    assert zstd_turns() == 0


@needs_zstd
def test_many_zstd_streams_on_worker_threads_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(compression, "zstd_parallel_streams", 2)
    data = sample(3 * ZSTD_JOB_SIZE + 3, seed=12)
    expected = zstd_workers_oracle(data)
    most = 0

    def compress(i: int) -> bytes:
        nonlocal most
        reader = compressing_reader(io.BytesIO(data), "zstd", threads=1 + i % 3, size_hint=BIG)
        parts = []
        while chunk := reader.read(100_000):
            most = max(most, zstd_turns())
            parts.append(chunk)
            if i % 4 == 0 and len(parts) == 3:  # some are dropped half way
                reader.close()
                return expected
        return b"".join(parts)

    with ThreadPoolExecutor(6) as pool:
        assert all(out == expected for out in pool.map(compress, range(12)))
    assert 1 <= most <= 2
    assert zstd_turns() == 0


@needs_zstd
def test_zstd_on_worker_threads_keeps_memory_bounded() -> None:
    # zstd's buffers are not Python objects: the peak RSS of a fresh process tells.
    code = """
        import io, random, resource
        from imagetypes.compression import ZSTD_PARALLEL_THRESHOLD, compressing_reader
        block = random.Random(1).randbytes(1 << 20)

        class Source:
            left = 96

            def read(self, size=-1):
                if not self.left:
                    return b""
                self.left -= 1
                return bytes([self.left]) + block[1:]

        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        reader = compressing_reader(Source(), "zstd", threads=2, size_hint=ZSTD_PARALLEL_THRESHOLD)
        total = 0
        while data := reader.read(1 << 20):
            total += len(data)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(reader.bytes_in, total, (after - before) // 1024)
        """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    bytes_in, total, grown_mib = map(int, result.stdout.split())
    assert bytes_in == 96 * 1024 * 1024
    assert 0 < total < bytes_in
    assert grown_mib < 40, f"peak RSS grew by {grown_mib} MiB for 96 MiB of input"


def _run_without(modules: list[str], code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where importing ``modules`` fails."""
    blocker = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules)
    return subprocess.run(
        [sys.executable, "-c", blocker + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_gzip_falls_back_to_zlib_without_isal() -> None:
    result = _run_without(
        ["isal", "isal.isal_zlib"],
        """
        import gzip, io
        from imagetypes.compression import compressing_reader, decompressing_reader, gzip_backend
        assert gzip_backend() == "zlib", gzip_backend()
        data = b"fallback " * 100000
        out = compressing_reader(io.BytesIO(data)).read()
        assert gzip.decompress(out) == data
        assert decompressing_reader(io.BytesIO(out)).read() == data
        try:
            compressing_reader(io.BytesIO(b""), gzip_backend="isal")
        except Exception as e:
            print(type(e).__name__, e)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert "UnsupportedError" in result.stdout
    assert "imagetypes[fast]" in result.stdout


def test_zstd_missing_names_the_extra() -> None:
    result = _run_without(
        ["compression", "compression.zstd", "backports", "backports.zstd"],
        """
        import io
        from imagetypes.compression import compressing_reader, decompressing_reader, zstd_available
        assert not zstd_available()
        for call in (lambda: compressing_reader(io.BytesIO(b"x"), "zstd"),
                     lambda: decompressing_reader(io.BytesIO(b"\\x28\\xb5\\x2f\\xfd....."))):
            try:
                call()
            except Exception as e:
                print(type(e).__name__, e)
        """,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert all(line.startswith("UnsupportedError") for line in lines)
    assert all("imagetypes[zstd]" in line for line in lines)


# -- media types -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("media_type", "compression"),
    [
        (mt.OCI_LAYER, Compression.NONE),
        (mt.OCI_LAYER_GZIP, Compression.GZIP),
        (mt.OCI_LAYER_ZSTD, Compression.ZSTD),
        (mt.OCI_NONDISTRIBUTABLE_LAYER_GZIP, Compression.GZIP),
        (mt.DOCKER_LAYER, Compression.GZIP),
        (mt.DOCKER_UNCOMPRESSED_LAYER, Compression.NONE),
        (mt.DOCKER_FOREIGN_LAYER, Compression.GZIP),
        (DOCKER_FOREIGN_UNCOMPRESSED_LAYER, Compression.NONE),
        (mt.OCI_CONFIG, None),
        (mt.OCI_LAYER_GZIP + "; charset=x", Compression.GZIP),
    ],
)
def test_layer_compression(media_type: str, compression: Compression | None) -> None:
    assert layer_compression(media_type) is compression
    assert is_layer_media_type(media_type) is (compression is not None)


@pytest.mark.parametrize(
    ("media_type", "target", "expected"),
    [
        (mt.OCI_LAYER_GZIP, "none", mt.OCI_LAYER),
        (mt.OCI_LAYER, "zstd", mt.OCI_LAYER_ZSTD),
        (mt.OCI_LAYER_ZSTD, Compression.GZIP, mt.OCI_LAYER_GZIP),
        (mt.OCI_NONDISTRIBUTABLE_LAYER, "gzip", mt.OCI_NONDISTRIBUTABLE_LAYER_GZIP),
        (mt.DOCKER_LAYER, "none", mt.DOCKER_UNCOMPRESSED_LAYER),
        (mt.DOCKER_UNCOMPRESSED_LAYER, "gzip", mt.DOCKER_LAYER),
        (mt.DOCKER_FOREIGN_LAYER, "none", DOCKER_FOREIGN_UNCOMPRESSED_LAYER),
        (mt.OCI_LAYER, "none", mt.OCI_LAYER),
    ],
)
def test_with_compression(media_type: str, target: str | Compression, expected: str) -> None:
    assert with_compression(media_type, target) == expected


def test_with_compression_refuses_what_has_no_variant() -> None:
    with pytest.raises(UnsupportedError, match="no zstd-compressed variant"):
        with_compression(mt.DOCKER_LAYER, "zstd")
    with pytest.raises(UnsupportedError, match="not a layer media type"):
        with_compression(mt.OCI_CONFIG, "gzip")


def _compress_in_threads() -> int:
    data = random.Random(7).randbytes(12 * 1024 * 1024)
    reader = compression.compressing_reader(io.BytesIO(data), "gzip", threads=2)
    compressed = b"".join(iter(lambda: reader.read(1 << 20), b""))
    return len(gzip.decompress(compressed))


def _child_compresses() -> None:
    assert _compress_in_threads() == 12 * 1024 * 1024


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_a_forked_child_compresses_on_threads_of_its_own() -> None:
    """The parent's compression pool has threads; a child forked from it (multiprocessing's
    fork) has none of them: its first compression waited forever for them."""
    import multiprocessing

    assert _compress_in_threads() == 12 * 1024 * 1024  # the parent's pool is up
    child = multiprocessing.get_context("fork").Process(target=_child_compresses)
    child.start()
    child.join(60)
    if child.exitcode is None:
        child.kill()
    assert child.exitcode == 0
    assert _compress_in_threads() == 12 * 1024 * 1024  # and the parent's still works
