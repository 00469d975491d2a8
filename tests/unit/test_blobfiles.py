"""store_blob: a blob written, cloned or hard-linked from the source's file, always verified."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from imagetypes import (
    DigestMismatchError,
    LinkMode,
    ManifestTooLargeError,
    PutBlobOptions,
    SourceChangedError,
)
from imagetypes.blobfiles import read_bounded, read_limited, store_blob
from imagetypes.digest import Digest, VerifyingReader

DATA = os.urandom(3 * 1024 * 1024 + 5)
DIGEST = Digest.from_bytes(DATA)


@pytest.fixture
def source(tmp_path: Path) -> Iterator[IO[bytes]]:
    path = tmp_path / "src" / "blob"
    path.parent.mkdir()
    path.write_bytes(DATA)
    with open(path, "rb") as f:
        yield f


def _target(tmp_path: Path) -> tuple[int, Path]:
    tmp = tmp_path / "dst" / "tmp-1"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), tmp


def _store(
    source: IO[bytes], tmp_path: Path, mode: LinkMode, digest: Digest = DIGEST
) -> tuple[str, Path]:
    fd, tmp = _target(tmp_path)
    try:
        reader = VerifyingReader(source, digest, len(DATA))
        placed = store_blob(reader, fd, tmp, PutBlobOptions(source_file=source, link_blobs=mode))
    finally:
        os.close(fd)
    return placed, tmp


def test_never_writes_the_bytes(source: IO[bytes], tmp_path: Path) -> None:
    placed, tmp = _store(source, tmp_path, "never")
    assert placed == "written"
    assert tmp.read_bytes() == DATA
    assert os.stat(tmp).st_ino != os.fstat(source.fileno()).st_ino


def test_hardlink_shares_the_inode(source: IO[bytes], tmp_path: Path) -> None:
    placed, tmp = _store(source, tmp_path, "hardlink")
    assert placed == "hardlink"
    assert os.stat(tmp).st_ino == os.fstat(source.fileno()).st_ino
    assert os.stat(tmp).st_nlink == 2
    assert tmp.read_bytes() == DATA
    assert sorted(p.name for p in tmp.parent.iterdir()) == ["tmp-1"]  # no link-* left


def test_reflink_clones_or_falls_back_to_writing(source: IO[bytes], tmp_path: Path) -> None:
    # ext4 and tmpfs cannot clone (written); btrfs and XFS can (tests/integration has an XFS).
    placed, tmp = _store(source, tmp_path, "reflink")
    assert placed in ("reflink", "written")
    assert tmp.read_bytes() == DATA
    assert os.stat(tmp).st_ino != os.fstat(source.fileno()).st_ino  # never the same file


def test_a_corrupt_source_fails_whichever_way(source: IO[bytes], tmp_path: Path) -> None:
    wrong = Digest.from_bytes(b"something else")
    modes: tuple[LinkMode, ...] = ("never", "reflink", "hardlink")
    for mode in modes:
        source.seek(0)
        with pytest.raises(DigestMismatchError):
            _store(source, tmp_path / mode, mode, wrong)
    assert os.fstat(source.fileno()).st_nlink >= 1


def test_no_options_or_no_file_writes(tmp_path: Path) -> None:
    fd, tmp = _target(tmp_path)
    try:
        reader = VerifyingReader(io.BytesIO(DATA), DIGEST, len(DATA))
        assert store_blob(reader, fd, tmp, None) == "written"
    finally:
        os.close(fd)
    assert tmp.read_bytes() == DATA


def test_a_file_not_read_from_its_start_is_written(source: IO[bytes], tmp_path: Path) -> None:
    source.seek(5)
    fd, tmp = _target(tmp_path)
    rest = DATA[5:]
    try:
        reader = VerifyingReader(source, Digest.from_bytes(rest), len(rest))
        options = PutBlobOptions(source_file=source, link_blobs="hardlink")
        assert store_blob(reader, fd, tmp, options) == "written"
    finally:
        os.close(fd)
    assert tmp.read_bytes() == rest


def test_a_hard_link_across_filesystems_falls_back(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the test's temporary directory")
    path = shm / f"imagetypes-test-{os.getpid()}"
    path.write_bytes(DATA)
    try:
        with open(path, "rb") as f:
            placed, tmp = _store(f, tmp_path, "hardlink")
        assert placed in ("reflink", "written")  # EXDEV: no link; the clone cannot either
        assert tmp.read_bytes() == DATA
        assert os.stat(path).st_nlink == 1
    finally:
        path.unlink()


class _Meddler:
    """A stream that rewrites the (already read) start of the source file once half read."""

    def __init__(self, inner: VerifyingReader, path: str) -> None:
        self.inner = inner
        self.path = path
        self.done = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self.inner.read(size)
        self.done += len(data)
        if self.done > len(DATA) // 2 and self.path:
            st = os.stat(self.path)
            with open(self.path, "r+b") as f:
                f.write(bytes([DATA[0] ^ 0xFF]))
            # Timestamps may be coarser than the test: make the change visible.
            os.utime(self.path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
            self.path = ""
        return data


def test_a_source_changed_while_linked_is_refused(source: IO[bytes], tmp_path: Path) -> None:
    fd, tmp = _target(tmp_path)
    try:
        stream = _Meddler(VerifyingReader(source, DIGEST, len(DATA)), source.name)
        options = PutBlobOptions(source_file=source, link_blobs="hardlink")
        with pytest.raises(SourceChangedError):
            store_blob(stream, fd, tmp, options)
    finally:
        os.close(fd)


def test_a_relative_name_is_linked_only_while_it_names_the_open_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "blob").write_bytes(DATA)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "blob").write_bytes(DATA[::-1])  # same name, other content
    monkeypatch.chdir(tmp_path / "a")
    with open("blob", "rb") as f:
        placed, tmp = _store(f, tmp_path / "one", "hardlink")
    assert placed == "hardlink"
    assert os.stat(tmp).st_ino == os.stat(tmp_path / "a" / "blob").st_ino
    with open("blob", "rb") as f:
        monkeypatch.chdir(tmp_path / "b")  # "blob" now names another file
        placed, tmp = _store(f, tmp_path / "two", "hardlink")
    assert placed in ("reflink", "written")  # not linked to b/blob
    assert tmp.read_bytes() == DATA


# -- bounded reads of small files ---------------------------------------------------------------


def test_read_limited_takes_a_file_up_to_its_bound(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert read_limited(path, 100) == b"x" * 100
    assert read_limited(str(path), 99) is None
    assert read_bounded(path, 100) == b"x" * 100
    with pytest.raises(ManifestTooLargeError, match="larger than the 99 byte limit"):
        read_bounded(path, 99)
    with pytest.raises(FileNotFoundError):
        read_limited(tmp_path / "missing", 10)


def test_read_limited_stops_one_byte_past_the_bound_of_an_endless_pipe(tmp_path: Path) -> None:
    # fstat says nothing of a FIFO's length: the bound is what stops the read.
    import threading

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    written: list[int] = []

    def writer() -> None:
        fd = os.open(fifo, os.O_WRONLY)
        try:
            while True:
                written.append(os.write(fd, b"y" * 65536))
        except BrokenPipeError:
            pass
        finally:
            os.close(fd)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    assert read_limited(fifo, 1000) is None
    t.join(30)
    assert not t.is_alive()  # the reader closed the pipe: the writer stopped
