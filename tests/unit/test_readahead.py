"""Read-ahead of blob streams (imagetypes.copy._readahead) and its use by the copy engine."""

from __future__ import annotations

import gc
import io
import random
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from imagebuilder import BuiltImage, make_image, write_oci_layout  # noqa: E402

from imagetypes import (  # noqa: E402
    BlobInfo,
    Descriptor,
    DigestMismatchError,
    ImageError,
    PutBlobOptions,
    RetryPolicy,
    SizeMismatchError,
    TransportOptions,
    register_transport,
)
from imagetypes.copy import (  # noqa: E402
    BlobProgress,
    CopyOptions,
    EventCollector,
    ProgressEvent,
    Retrying,
    _engine,
    copy_image,
)
from imagetypes.copy._progress import CopyCancelled, ProgressReader, _Emitter  # noqa: E402
from imagetypes.copy._readahead import (  # noqa: E402
    READ_AHEAD_BUFFER_SIZE,
    READ_AHEAD_BUFFERS,
    READ_AHEAD_MIN,
    ReadAhead,
)
from imagetypes.digest import Digest, Readable, VerifyingReader, verify_stream  # noqa: E402
from imagetypes.plugins import reset_transports  # noqa: E402
from imagetypes.testing.memory import (  # noqa: E402
    MemoryDestination,
    MemoryReference,
    MemorySource,
    MemoryStore,
    MemoryTransport,
)

THREAD_NAME = "imagetypes-readahead"


def readahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


@pytest.fixture(autouse=True)
def no_thread_left() -> Iterator[None]:
    """Every test must leave no read-ahead thread running."""
    before = set(readahead_threads())
    yield
    deadline = time.monotonic() + 5
    while set(readahead_threads()) - before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not set(readahead_threads()) - before, "a read-ahead thread was left running"


def payload(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def verifying(
    data: bytes, *, digest: Digest | None = None, size: int | None = None
) -> VerifyingReader:
    expected = digest if digest is not None else Digest.from_bytes(data)
    return VerifyingReader(io.BytesIO(data), expected, len(data) if size is None else size)


class ReadOnly:
    """A raw stream with ``read`` alone, returning short reads of varying sizes."""

    def __init__(self, data: bytes, seed: int = 7) -> None:
        self._data = data
        self._pos = 0
        self._rnd = random.Random(seed)
        self.closed = False

    def read(self, size: int = -1, /) -> bytes:
        n = min(size, self._rnd.randint(1, 5000))
        out = self._data[self._pos : self._pos + n]
        self._pos += len(out)
        return out

    def close(self) -> None:
        self.closed = True


class Breaking:
    """A raw stream (with ``readinto``) that fails once ``fail_at`` bytes were read."""

    def __init__(self, data: bytes, fail_at: int, error: BaseException) -> None:
        self._data = data
        self._fail_at = fail_at
        self._error = error
        self.pos = 0
        #: The objects behind the buffers ``readinto`` was given (to see they are reused).
        self.buffers: set[int] = set()
        self.closed = False

    def readinto(self, buffer: memoryview) -> int:
        self.buffers.add(id(buffer.obj))
        if self._fail_at <= self.pos < len(self._data) or self.pos == self._fail_at == 0:
            raise self._error
        n = min(len(buffer), self._fail_at - self.pos, len(self._data) - self.pos)
        buffer[:n] = self._data[self.pos : self.pos + n]
        self.pos += n
        return n

    def read(self, size: int = -1, /) -> bytes:
        buffer = bytearray(size)
        n = self.readinto(memoryview(buffer))
        return bytes(buffer[:n])

    def close(self) -> None:
        self.closed = True


class Gated:
    """A raw stream whose reads wait for ``gate`` (a source read that is under way)."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def read(self, size: int = -1, /) -> bytes:
        self.waiting.set()
        self.gate.wait()
        return self._inner.read(size)


# -- the reader ---------------------------------------------------------------------------------


@pytest.mark.parametrize("buffer_size", [1, 7, 4096, 65537, 1 << 20])
@pytest.mark.parametrize("read_size", [1, 3, 1000, 70001, 1 << 20])
def test_read_is_byte_exact(buffer_size: int, read_size: int) -> None:
    data = payload(300_001 if buffer_size > 1 and read_size > 1 else 20_011)
    with ReadAhead(verifying(data), buffers=3, buffer_size=buffer_size) as ahead:
        parts = []
        while chunk := ahead.read(read_size):
            assert len(chunk) <= read_size
            parts.append(chunk)
        assert b"".join(parts) == data
        assert ahead.read(read_size) == b""  # and again: EOF stays EOF
        assert ahead.finished
        assert ahead.size == len(data)
        assert ahead.digest == Digest.from_bytes(data)


@pytest.mark.parametrize("buffer_size", [5, 4096, 65537])
@pytest.mark.parametrize("into_size", [1, 9, 65536, 1 << 20])
def test_readinto_is_byte_exact(buffer_size: int, into_size: int) -> None:
    data = payload(200_003)
    with ReadAhead(verifying(data), buffers=2, buffer_size=buffer_size) as ahead:
        out = bytearray()
        target = bytearray(into_size)
        while n := ahead.readinto(target):
            assert 0 < n <= into_size
            out += target[:n]
        assert bytes(out) == data
        assert ahead.readinto(target) == 0
        assert ahead.finished


def test_read_all_and_a_source_without_readinto() -> None:
    data = payload(123_457)
    source = VerifyingReader(ReadOnly(data), Digest.from_bytes(data), len(data))
    with ReadAhead(source, buffers=4, buffer_size=10_000) as ahead:
        assert ahead.read(0) == b""
        assert ahead.read() == data
        assert ahead.read() == b""
    assert ahead.digest == Digest.from_bytes(data)


def test_an_empty_blob() -> None:
    with ReadAhead(verifying(b"")) as ahead:
        assert ahead.read(10) == b""
        assert ahead.finished
        assert ahead.digest == Digest.from_bytes(b"")


def test_no_thread_before_the_first_read_and_none_after_the_end() -> None:
    data = payload(50_000)
    ahead = ReadAhead(verifying(data), buffer_size=4096)
    assert not ahead.running
    assert ahead.read(1) == data[:1]
    assert ahead.read() == data[1:]
    ahead.close()
    assert not ahead.running


@pytest.mark.parametrize("fail_at", [0, 1, 4095, 4096, 4097, 40_000, 99_999])
@pytest.mark.parametrize("use_readinto", [False, True])
def test_a_source_error_comes_after_the_bytes_before_it(fail_at: int, use_readinto: bool) -> None:
    data = payload(100_000)
    error = ImageError(f"the connection broke at {fail_at}")
    raw = Breaking(data, fail_at, error)
    source = VerifyingReader(raw, Digest.from_bytes(data), len(data))
    got = bytearray()
    with ReadAhead(source, buffers=3, buffer_size=4096) as ahead:

        def read_all() -> None:
            while True:
                if use_readinto:
                    buffer = bytearray(3000)
                    n = ahead.readinto(buffer)
                    got.extend(buffer[:n])
                else:
                    chunk = ahead.read(3000)
                    got.extend(chunk)
                    n = len(chunk)
                assert n, "EOF before the error"

        with pytest.raises(ImageError) as caught:
            read_all()
        assert caught.value is error  # the same object: the engine tells source errors by it
        assert bytes(got) == data[:fail_at]
        assert ahead.size == fail_at
        with pytest.raises(ImageError) as again:  # a failed stream stays failed
            ahead.read(1)
        assert again.value is error
        assert not ahead.finished
    assert raw.closed


def test_a_digest_mismatch_at_the_end_surfaces_after_all_bytes() -> None:
    data = payload(70_000)
    wrong = Digest.from_bytes(b"something else")
    with ReadAhead(verifying(data, digest=wrong), buffer_size=8192) as ahead:
        got: list[bytes] = []

        def drain() -> None:
            while chunk := ahead.read(5000):
                got.append(chunk)

        with pytest.raises(DigestMismatchError) as caught:
            drain()
        assert b"".join(got) == data
        assert caught.value.expected == wrong
        assert not ahead.finished
        with pytest.raises(DigestMismatchError):
            ahead.read(1)
        with pytest.raises(RuntimeError):
            ahead.digest  # noqa: B018


def test_a_short_blob_fails_with_a_size_mismatch() -> None:
    data = payload(10_000)
    with (
        ReadAhead(verifying(data, size=10_001), buffer_size=4096) as ahead,
        pytest.raises(SizeMismatchError),
    ):
        ahead.read()


def test_close_mid_stream_stops_and_joins_the_thread() -> None:
    data = payload(1 << 20)
    raw = Breaking(data, len(data) + 1, ImageError("never"))
    ahead = ReadAhead(VerifyingReader(raw, None, len(data)), buffers=2, buffer_size=4096)
    assert ahead.read(10) == data[:10]
    assert ahead.running
    start = time.monotonic()
    ahead.close()
    assert time.monotonic() - start < 1.0
    assert not ahead.running
    assert raw.closed
    assert raw.pos < len(data)  # abandoned: not read to its end
    with pytest.raises(ValueError, match="closed"):
        ahead.read(1)
    ahead.close()  # twice is fine


def test_close_waits_for_a_source_read_under_way() -> None:
    raw = Gated(payload(10_000))
    ahead = ReadAhead(VerifyingReader(raw), buffers=2, buffer_size=4096)
    started = threading.Thread(target=lambda: ahead.read(1))  # starts the thread, then waits
    started.start()
    assert raw.waiting.wait(5)
    closer = threading.Thread(target=ahead.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive()  # the source read is under way: the stream is not closed below it
    raw.gate.set()
    closer.join(5)
    started.join(5)
    assert not closer.is_alive()
    assert not ahead.running


def test_an_abandoned_reader_stops_its_thread() -> None:
    data = payload(1 << 20)
    ahead = ReadAhead(verifying(data), buffers=2, buffer_size=4096)
    assert ahead.read(1) == data[:1]
    (thread,) = [t for t in readahead_threads() if t.is_alive()]
    del ahead
    gc.collect()
    thread.join(5)
    assert not thread.is_alive()


def test_memory_is_bounded_and_buffers_are_reused() -> None:
    data = payload(2_000_000)
    raw = Breaking(data, len(data), ImageError("never"))
    source = VerifyingReader(raw, Digest.from_bytes(data), len(data))
    with ReadAhead(source, buffers=3, buffer_size=10_000) as ahead:
        one = bytearray(1)
        assert ahead.readinto(one) == 1
        time.sleep(0.2)  # let the producer run as far ahead as it may
        # At most the buffers of the ring are read ahead of the consumer.
        assert raw.pos <= 3 * 10_000
        got = bytearray(one)
        buffer = bytearray(7_000)
        while n := ahead.readinto(buffer):
            got += buffer[:n]
        assert got == data
    assert len(raw.buffers) <= 3  # 200 buffers' worth went through the same three


class Pieces:
    """A raw stream with ``read`` alone, returning bytes objects it remembers."""

    def __init__(self, data: bytes, piece: int) -> None:
        self._data = data
        self._piece = piece
        self.pos = 0
        self.returned: list[bytes] = []

    def read(self, size: int = -1, /) -> bytes:
        out = self._data[self.pos : self.pos + min(size, self._piece)]
        self.pos += len(out)
        self.returned.append(out)
        return out


def test_read_hands_out_the_sources_bytes_without_a_copy() -> None:
    data = payload(500_000)
    raw = Pieces(data, 30_000)
    source = VerifyingReader(raw, None, len(data))
    with ReadAhead(source, buffers=2, buffer_size=65_536) as ahead:
        first = ahead.read(1 << 20)
        assert first is raw.returned[0]
        time.sleep(0.2)
        assert raw.pos <= 2 * 65_536  # bounded in this form too
        got = [first]
        while part := ahead.read(1 << 20):
            got.append(part)
        assert b"".join(got) == data
        assert all(any(p is r for r in raw.returned) for p in got)


@pytest.mark.parametrize("seed", range(6))
def test_read_and_readinto_mixed(seed: int) -> None:
    rnd = random.Random(seed)
    data = payload(150_001, seed)
    raw: Readable = ReadOnly(data, seed) if seed % 2 else io.BytesIO(data)
    source = VerifyingReader(raw, Digest.from_bytes(data), len(data))
    got = bytearray()
    buffers, size = rnd.randint(1, 4), rnd.randint(1, 20_000)
    with ReadAhead(source, buffers=buffers, buffer_size=size) as ahead:
        while True:
            want = rnd.randint(1, 30_000)
            if rnd.random() < 0.5:
                chunk = ahead.read(want)
            else:
                buffer = bytearray(want)
                chunk = bytes(buffer[: ahead.readinto(buffer)])
            assert len(chunk) <= want
            if not chunk:
                break
            got += chunk
        assert ahead.finished
    assert bytes(got) == data


def test_the_source_hashes_once_and_destinations_take_the_reader_as_it_is() -> None:
    data = payload(100_000)
    raw = Breaking(data, len(data), ImageError("never"))
    source = VerifyingReader(raw, Digest.from_bytes(data), len(data))
    ahead = ReadAhead(source, buffer_size=4096)
    progress = ProgressReader(
        ahead,
        Descriptor("a/b", Digest.from_bytes(data), len(data)),
        _Emitter(None),
        threading.Event(),
    )
    # A destination checking the expectations gets the same reader: no second hash.
    assert verify_stream(progress, Digest.from_bytes(data), len(data)) is progress
    with ahead:
        assert progress.read() == data
    assert raw.pos == len(data)  # every byte read (and hashed, by ``source``) once
    assert source.finished
    assert source.digest == Digest.from_bytes(data)
    assert progress.digest == Digest.from_bytes(data)


def test_progress_and_cancel_through_the_reader() -> None:
    data = payload(300_000)
    desc = Descriptor("a/b", Digest.from_bytes(data), len(data))
    events: list[ProgressEvent] = []
    cancel = threading.Event()
    ahead = ReadAhead(verifying(data), buffers=2, buffer_size=65536)
    with ahead:
        reader = ProgressReader(ahead, desc, _Emitter(events.append), cancel)
        buffer = bytearray(65536)
        assert reader.readinto(buffer) == 65536
        cancel.set()
        with pytest.raises(CopyCancelled):
            reader.readinto(buffer)
        assert reader.size == 65536
    assert not ahead.running
    with ReadAhead(verifying(data), buffer_size=65536) as again:
        reader = ProgressReader(again, desc, _Emitter(events.append), threading.Event())
        got = bytearray()
        while chunk := reader.read(100_000):
            got += chunk
        assert got == data
    assert [e.bytes_done for e in events if isinstance(e, BlobProgress)][-1] == len(data)


def test_without_threaded_reads_read_goes_straight_to_the_source() -> None:
    data = payload(300_000)
    raw = Pieces(data, 70_000)
    source = VerifyingReader(raw, Digest.from_bytes(data), len(data))
    with ReadAhead(source, buffer_size=4096, threaded_reads=False) as ahead:
        first = ahead.read(100_000)
        assert first is raw.returned[0]
        assert not ahead.running
        assert raw.pos == len(first)  # nothing read ahead
        buffer = bytearray(50_000)
        got = bytearray(first)
        while n := ahead.readinto(buffer):  # readinto after read: still straight through
            got += buffer[:n]
        assert got == data
        assert ahead.finished
        assert ahead.size == len(data)
        assert ahead.digest == Digest.from_bytes(data)
        assert not ahead.running


def test_without_threaded_reads_errors_are_the_sources() -> None:
    data = payload(50_000)
    with ReadAhead(verifying(data, digest=Digest.from_bytes(b"x")), threaded_reads=False) as ahead:
        with pytest.raises(DigestMismatchError):
            ahead.read()
        assert not ahead.finished
    with pytest.raises(ValueError, match="closed"):
        ahead.read(1)


def test_without_threaded_reads_readinto_first_still_reads_ahead() -> None:
    data = payload(300_000)
    with ReadAhead(verifying(data), buffer_size=4096, threaded_reads=False) as ahead:
        buffer = bytearray(1000)
        assert ahead.readinto(buffer) == 1000
        assert ahead.running
        rest = ahead.read()
        assert bytes(buffer) + rest == data


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ReadAhead(verifying(b"x"), buffers=0)
    with pytest.raises(ValueError, match="at least one"):
        ReadAhead(verifying(b"x"), buffer_size=0)


# -- in the copy engine ---------------------------------------------------------------------------


def big_image(seed: int = 3) -> tuple[BuiltImage, Digest]:
    img = make_image(seed, (READ_AHEAD_MIN + 12_345, 2048))
    big = max(img.blobs, key=lambda d: len(img.blobs[d]))
    assert len(img.blobs[big]) >= READ_AHEAD_MIN
    return img, big


def watching(big: Digest, seen: list[bool]) -> CopyOptions:
    """Options whose progress callback notes whether a read-ahead runs as ``big`` moves."""

    def progress(event: ProgressEvent) -> None:
        if isinstance(event, BlobProgress) and event.descriptor.digest == big:
            seen.append(bool(readahead_threads()))

    return CopyOptions(progress=progress)


@pytest.fixture
def memory() -> Iterator[MemoryStore]:
    store = MemoryStore()
    register_transport(MemoryTransport(store), replace=True)
    yield store
    reset_transports()


def test_a_large_layer_from_a_file_to_disk_is_read_ahead_and_verified(tmp_path: Path) -> None:
    img, big = big_image()
    src = write_oci_layout(tmp_path / "src", {"v1": img})
    seen: list[bool] = []
    result = copy_image(f"oci:{src}:v1", f"oci:{tmp_path / 'dst'}:v1", watching(big, seen))
    assert any(seen), "the large layer was not read ahead"  # hashing overlaps with writing
    assert result.bytes_copied == sum(len(b) for b in img.blobs.values())
    assert (tmp_path / "dst" / "blobs" / "sha256" / big.hex).read_bytes() == img.blobs[big]


@pytest.mark.parametrize(("archive", "to"), [("oci-archive", "oci"), ("docker-archive", "dir")])
def test_a_large_layer_from_an_archive_is_read_ahead(tmp_path: Path, archive: str, to: str) -> None:
    # An archive member is no file of its own, but it is read from local storage: the source
    # says so (SourceCapabilities.local_reads), and it is read ahead as a file is. (From a
    # docker-archive to dir:, which keeps its uncompressed layers as they are: oci: would
    # compress them, which reads ahead nothing.)
    img, _ = big_image(5)
    src = write_oci_layout(tmp_path / "src", {"v1": img})
    tar = tmp_path / "image.tar"
    copy_image(f"oci:{src}:v1", f"{archive}:{tar}:example.com/app:v1")
    seen: list[bool] = []

    def progress(event: ProgressEvent) -> None:
        if isinstance(event, BlobProgress) and event.descriptor.size >= READ_AHEAD_MIN:
            seen.append(bool(readahead_threads()))

    dst = tmp_path / "dst"
    result = copy_image(
        f"{archive}:{tar}",
        f"oci:{dst}:v1" if to == "oci" else f"dir:{dst}",
        CopyOptions(progress=progress),
    )
    assert any(seen), "the large layer was not read ahead"
    assert result.layers_recompressed == 0
    files = dst / "blobs" / "sha256" if to == "oci" else dst
    big = [p for p in files.iterdir() if p.stat().st_size >= READ_AHEAD_MIN]
    assert len(big) == 1
    assert Digest.from_bytes(big[0].read_bytes()).hex in big[0].name  # stored as verified


def test_a_layer_read_from_a_file_is_not_read_ahead_for_bytes_objects(
    memory: MemoryStore, tmp_path: Path
) -> None:
    img, big = big_image()
    src = write_oci_layout(tmp_path / "src", {"v1": img})
    seen: list[bool] = []
    # The memory destination takes bytes objects (read()), as an upload does.
    copy_image(f"oci:{src}:v1", "memory:dst", watching(big, seen))
    assert seen
    assert not any(seen)
    dst = memory.get("dst")
    assert dst is not None
    assert dst.blobs[big] == img.blobs[big]


def test_a_layer_from_a_stream_is_not_read_ahead(memory: MemoryStore, tmp_path: Path) -> None:
    img, big = big_image()
    memory.add_built("src", img)  # not a file: as a registry's blob stream
    seen: list[bool] = []
    copy_image("memory:src", f"oci:{tmp_path / 'dst'}:v1", watching(big, seen))
    assert seen
    assert not any(seen)


@pytest.mark.parametrize("concurrency", [1, 6])
def test_large_layers_moving_at_once_are_not_read_ahead(tmp_path: Path, concurrency: int) -> None:
    img = make_image(8, (READ_AHEAD_MIN + 1, READ_AHEAD_MIN + 2))
    src = write_oci_layout(tmp_path / "src", {"v1": img})
    layers = [d for d in img.blobs if d != img.config_digest]
    seen: dict[Digest, list[bool]] = {d: [] for d in layers}

    def progress(event: ProgressEvent) -> None:
        if isinstance(event, BlobProgress) and event.descriptor.digest in seen:
            seen[event.descriptor.digest].append(bool(readahead_threads()))

    options = CopyOptions(progress=progress, concurrency=concurrency)
    copy_image(f"oci:{src}:v1", f"oci:{tmp_path / 'dst'}:v1", options)
    assert all(seen.values())
    # One at a time, each is read ahead; at once, they overlap each other already.
    read_ahead = [any(s) for s in seen.values()]
    assert read_ahead == [concurrency == 1] * 2


def test_a_corrupt_large_layer_fails_the_copy(tmp_path: Path) -> None:
    img, big = big_image(4)
    src = write_oci_layout(tmp_path / "src", {"v1": img})
    blob = src / "blobs" / "sha256" / big.hex
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other content: only the digest tells
    blob.write_bytes(bytes(data))
    seen: list[bool] = []
    with pytest.raises(DigestMismatchError):
        copy_image(f"oci:{src}:v1", f"oci:{tmp_path / 'dst'}:v1", watching(big, seen))
    assert any(seen)
    assert not (tmp_path / "dst").exists()


class CutError(ImageError):
    retryable = True


class Cutting(MemoryDestination):
    """Reads part of a layer, then fails like a cut upload (``cuts`` times); with ``wrap``,
    reads on and wraps what reading raised in its own retryable error."""

    cuts = 0
    wrap = False
    #: For each put of a layer: whether a read-ahead thread ran while it read.
    threaded: list[bool] = []

    def put_blob(
        self, stream: Readable, info: BlobInfo, options: PutBlobOptions | None = None
    ) -> Descriptor:
        # readinto, as a destination writing files does (the read-ahead's threaded form).
        readinto = stream.readinto  # type: ignore[attr-defined]
        buffer = bytearray(4096)
        layer = not (options and options.is_config)
        if Cutting.cuts > 0 and layer:
            Cutting.cuts -= 1
            try:
                readinto(memoryview(buffer)[:100])
                Cutting.threaded.append(bool(readahead_threads()))
                if Cutting.wrap:
                    while readinto(buffer):
                        pass
            except Exception as e:
                raise CutError(f"sending {info.digest} failed: {e}") from e
            raise CutError(f"the connection broke while sending {info.digest}")
        data = bytearray()
        while n := readinto(buffer):
            data += buffer[:n]
            if layer and len(data) == n:
                Cutting.threaded.append(bool(readahead_threads()))
        return super().put_blob(io.BytesIO(bytes(data)), info, options)


class CuttingReference(MemoryReference):
    def open_destination(self, options: TransportOptions | None = None) -> Cutting:
        return Cutting(self)


class CuttingTransport(MemoryTransport):
    name = "cutting"

    def parse_reference(self, text: str) -> CuttingReference:
        return CuttingReference(self, text)


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryStore]:
    # Every blob read ahead, so that small test images from memory go through it.
    monkeypatch.setattr(_engine, "READ_AHEAD_MIN", 0)
    monkeypatch.setattr(_engine, "_is_regular_file", lambda stream: True)
    Cutting.cuts, Cutting.wrap, Cutting.threaded = 0, False, []
    store = MemoryStore()
    register_transport(MemoryTransport(store), replace=True)
    register_transport(CuttingTransport(store), replace=True)
    yield store
    reset_transports()


#: Layers the producer cannot read to their end at once: its thread is seen running.
LONGER_THAN_THE_RING = READ_AHEAD_BUFFERS * READ_AHEAD_BUFFER_SIZE + 500_000


def retrying(events: EventCollector, attempts: int = 2) -> CopyOptions:
    policy = RetryPolicy(attempts=attempts, backoff=0.0, jitter=False)
    return CopyOptions(
        destination_options=TransportOptions(retry=policy), progress=events, concurrency=1
    )


def the_layer(img: BuiltImage) -> Digest:
    return max((d for d in img.blobs if d != img.config_digest), key=lambda d: len(img.blobs[d]))


def test_a_cut_put_is_tried_again_through_the_read_ahead(store: MemoryStore) -> None:
    img = make_image(5, (LONGER_THAN_THE_RING,))
    store.add_built("src", img)
    Cutting.cuts = 1
    events = EventCollector()
    copy_image("memory:src", "cutting:dst", retrying(events))
    assert Cutting.cuts == 0
    (retry,) = events.of_type(Retrying)
    assert isinstance(retry, Retrying)
    assert retry.side == "destination"
    dst = store.get("dst")
    assert dst is not None
    assert dict(dst.blobs) == img.blobs
    assert store.stats("src").blob_reads[the_layer(img)] == 2
    assert Cutting.threaded == [True, True]  # both tries went through a read-ahead thread


def test_a_corrupt_source_through_the_read_ahead_is_not_retried(store: MemoryStore) -> None:
    img = make_image(6, (LONGER_THAN_THE_RING,))
    store.add_built("src", img)
    store.corrupt_blob("src", the_layer(img))
    Cutting.cuts, Cutting.wrap = 5, True  # the mismatch comes wrapped in a retryable error
    events = EventCollector()
    with pytest.raises(CutError) as raised:
        copy_image("memory:src", "cutting:dst", retrying(events, 5))
    assert isinstance(raised.value.__cause__, DigestMismatchError)
    assert not events.of_type(Retrying)
    assert Cutting.cuts == 4
    assert Cutting.threaded == [True]
    assert store.get("dst") is None


def test_a_failing_source_through_the_read_ahead_is_not_retried(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    img = make_image(7, (LONGER_THAN_THE_RING,))
    store.add_built("src", img)
    layer = the_layer(img)
    original = MemorySource.get_blob_stream
    error = CutError("the source connection broke")

    def breaking(self: MemorySource, descriptor: Descriptor, offset: int = 0) -> Readable:
        if descriptor.digest == layer:
            return Breaking(img.blobs[layer], LONGER_THAN_THE_RING - 1000, error)
        return original(self, descriptor, offset)

    monkeypatch.setattr(MemorySource, "get_blob_stream", breaking)
    Cutting.cuts, Cutting.wrap = 5, True
    events = EventCollector()
    with pytest.raises(CutError) as raised:
        copy_image("memory:src", "cutting:dst", retrying(events, 5))
    assert raised.value.__cause__ is error  # the destination wrapped the source's own error
    assert not events.of_type(Retrying)
    assert Cutting.cuts == 4
    assert Cutting.threaded == [True]
