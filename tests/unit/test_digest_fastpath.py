"""The per-byte path: VerifyingReader.readinto and copy_to_fd verify exactly as read() does."""

from __future__ import annotations

import hashlib
import io
import os
import sys
from pathlib import Path

import pytest

import imagetypes.digest as digest_module
from imagetypes.digest import (
    CHUNK_SIZE,
    WRITEBACK_INTERVAL,
    Digest,
    VerifyingReader,
    copy_to_fd,
    start_writeback,
)
from imagetypes.errors import DigestMismatchError, SizeMismatchError

DATA = os.urandom(9 * CHUNK_SIZE + 12345)  # past WRITEBACK_INTERVAL (8 chunks)
GOOD = Digest("sha256", hashlib.sha256(DATA).hexdigest())
BAD = Digest("sha256", "0" * 64)


class _ReadOnly:
    """A stream with read() alone (no readinto), as some sources give."""

    def __init__(self, data: bytes) -> None:
        self._f = io.BytesIO(data)

    def read(self, size: int = -1, /) -> bytes:
        return self._f.read(size)


class _Counting(VerifyingReader):
    """A subclass that overrides read(), as the copy engine's progress reader does."""

    calls = 0

    def read(self, size: int = -1, /) -> bytes:
        type(self).calls += 1
        return super().read(size)


def _drain_into(reader: VerifyingReader, size: int = 65536) -> bytes:
    buf = bytearray(size)
    out = bytearray()
    while n := reader.readinto(buf):
        out += buf[:n]
    return bytes(out)


def test_readinto_reads_everything_and_verifies() -> None:
    reader = VerifyingReader(io.BytesIO(DATA), GOOD, len(DATA))
    assert _drain_into(reader) == DATA
    assert reader.finished
    assert reader.digest == GOOD
    assert reader.size == len(DATA)
    assert reader.readinto(bytearray(10)) == 0  # EOF stays EOF


def test_readinto_reports_a_digest_mismatch_at_eof_and_keeps_failing() -> None:
    reader = VerifyingReader(io.BytesIO(DATA), BAD, len(DATA))
    with pytest.raises(DigestMismatchError):
        _drain_into(reader)
    with pytest.raises(DigestMismatchError):
        reader.readinto(bytearray(10))
    assert not reader.finished


def test_readinto_stops_at_once_past_the_expected_size() -> None:
    reader = VerifyingReader(io.BytesIO(DATA), None, 1000)
    with pytest.raises(SizeMismatchError):
        _drain_into(reader, 4096)


def test_readinto_short_content_is_a_size_mismatch() -> None:
    reader = VerifyingReader(io.BytesIO(DATA[:-1]), GOOD, len(DATA))
    with pytest.raises(SizeMismatchError):
        _drain_into(reader)


def test_readinto_of_a_subclass_goes_through_its_read() -> None:
    _Counting.calls = 0
    reader = _Counting(io.BytesIO(DATA), GOOD, len(DATA))
    assert _drain_into(reader) == DATA
    assert _Counting.calls > 0
    assert reader.digest == GOOD


def test_readinto_over_a_stream_without_readinto() -> None:
    reader = VerifyingReader(_ReadOnly(DATA), GOOD)
    assert _drain_into(reader) == DATA
    assert reader.digest == GOOD


@pytest.mark.parametrize(
    "make",
    [
        lambda: VerifyingReader(io.BytesIO(DATA), GOOD, len(DATA)),
        lambda: _Counting(io.BytesIO(DATA), GOOD, len(DATA)),
        lambda: VerifyingReader(_ReadOnly(DATA), GOOD, len(DATA)),
        lambda: _ReadOnly(DATA),
    ],
    ids=["verifying", "subclass", "no-readinto", "plain"],
)
def test_copy_to_fd_writes_the_stream(tmp_path: Path, make: object) -> None:
    target = tmp_path / "blob"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"head")  # writes continue at the current offset
        written = copy_to_fd(make(), fd)  # type: ignore[operator]
    finally:
        os.close(fd)
    assert written == len(DATA)
    assert len(DATA) > WRITEBACK_INTERVAL  # the write-back hint ran on the way
    assert target.read_bytes() == b"head" + DATA


def test_copy_to_fd_passes_a_mismatch_through(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "blob", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with pytest.raises(DigestMismatchError):
            copy_to_fd(VerifyingReader(io.BytesIO(DATA), BAD), fd, sync=False)
    finally:
        os.close(fd)


def test_start_writeback_is_harmless_on_any_descriptor(tmp_path: Path) -> None:
    r, w = os.pipe()  # not a file: the hint fails quietly, nothing else changes
    try:
        start_writeback(w, 0, 10)
    finally:
        os.close(r)
        os.close(w)
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    with open(path, "rb+") as f:
        start_writeback(f.fileno(), 0, 100)
    assert path.read_bytes() == b"x" * 100


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_writeback_uses_sync_file_range_on_linux() -> None:
    assert digest_module._load_sync_file_range() is not None
