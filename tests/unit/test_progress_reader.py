"""The copy engine's ProgressReader: zero-copy reads into the destination's buffer, progress
reported, content still verified once."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import pytest

from imagetypes.copy._progress import (
    PROGRESS_INTERVAL,
    BlobProgress,
    CopyCancelled,
    ProgressEvent,
    ProgressReader,
    _Emitter,
)
from imagetypes.descriptor import Descriptor
from imagetypes.digest import Digest, VerifyingReader, copy_to_fd
from imagetypes.errors import DigestMismatchError


class CountingStream(io.BytesIO):
    """Counts how the bytes were asked for."""

    reads = 0
    readintos = 0

    def read(self, size: int | None = -1, /) -> bytes:
        self.reads += 1
        return super().read(size)

    def readinto(self, buffer: bytearray | memoryview, /) -> int:  # type: ignore[override]
        self.readintos += 1
        return super().readinto(buffer)


def _reader(data: bytes, digest: Digest | None = None) -> tuple[CountingStream, VerifyingReader]:
    raw = CountingStream(data)
    return raw, VerifyingReader(raw, digest or Digest.from_bytes(data), len(data))


def test_copy_to_fd_fills_the_buffer_through_the_progress_reader(tmp_path: Path) -> None:
    data = os.urandom(3 * PROGRESS_INTERVAL + 123)
    raw, inner = _reader(data)
    events: list[ProgressEvent] = []
    desc = Descriptor("application/octet-stream", Digest.from_bytes(data), len(data))
    reader = ProgressReader(inner, desc, _Emitter(events.append), threading.Event())
    fd = os.open(tmp_path / "blob", os.O_WRONLY | os.O_CREAT)
    try:
        assert copy_to_fd(reader, fd) == len(data)
    finally:
        os.close(fd)
    assert (tmp_path / "blob").read_bytes() == data
    assert raw.readintos > 0
    assert raw.reads == 0
    assert reader.finished
    assert reader.digest == desc.digest
    done = [e.bytes_done for e in events if isinstance(e, BlobProgress)]
    assert done == sorted(done)
    assert done[-1] == len(data)
    assert len(done) >= 3


def test_a_corrupt_blob_still_fails_through_readinto() -> None:
    data = os.urandom(PROGRESS_INTERVAL + 10)
    _raw, inner = _reader(data, Digest.from_bytes(b"something else"))
    desc = Descriptor("application/octet-stream", Digest.from_bytes(b"something else"), len(data))
    reader = ProgressReader(inner, desc, _Emitter(None), threading.Event())
    buffer = bytearray(2 * PROGRESS_INTERVAL)
    assert reader.readinto(buffer) == len(data)
    with pytest.raises(DigestMismatchError):
        reader.readinto(buffer)  # the end: where the digest is checked


def test_readinto_honours_cancel() -> None:
    _raw, inner = _reader(b"x" * 100)
    desc = Descriptor("application/octet-stream", Digest.from_bytes(b"x" * 100), 100)
    cancel = threading.Event()
    reader = ProgressReader(inner, desc, _Emitter(None), cancel)
    cancel.set()
    with pytest.raises(CopyCancelled):
        reader.readinto(bytearray(10))
