"""Tar plumbing shared by the archive transports: a safe, seekable index and a streaming writer.

Reading never unpacks: :func:`open_tar_archive` indexes the members of an uncompressed tar
file once (their data offsets), refusing anything unsafe, and members are then read by
seeking, each read with its own file descriptor so reads may run concurrently. A compressed
archive (``docker save | gzip``) or one arriving on a pipe is first spooled, decompressed, to a
temporary file, as containers/image does.

Writing is sequential: :class:`TarStreamWriter` appends members to a file (a temporary file
beside the target, renamed into place at commit), to a caller's file object, or to standard
output. A member whose size or name is known only after its data was read (a layer
decompressed on the fly) is written with a placeholder header that is rewritten afterwards
when the output is seekable, and spooled to a temporary file first when it is not.

oci-archive uses this module too (it is the same tar plumbing); it would belong in a shared
module of the transports package.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import posixpath
import secrets
import stat
import sys
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

import attrs

from imagetypes.compression import (
    Compression,
    decompressing_reader,
    detect_compression,
)
from imagetypes.digest import CHUNK_SIZE, WRITEBACK_INTERVAL, Readable, start_writeback
from imagetypes.errors import ArchiveError, CompressionError, ImageError

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "BLOCK_SIZE",
    "ArchiveMember",
    "MemberReader",
    "TarArchive",
    "TarStreamWriter",
    "clean_member_name",
    "is_stdout",
    "open_tar_archive",
]

BLOCK_SIZE = tarfile.BLOCKSIZE
#: Bound on the number of members indexed; image archives have a few per layer.
MAX_MEMBERS = 1_000_000
#: How many symbolic links a lookup follows before giving up (a loop).
_MAX_LINK_HOPS = 16
#: Archives whose index is kept in memory across sources (their digests cached too).
_CACHE_SIZE = 8

MemberKind = Literal["file", "dir", "symlink", "hardlink"]


@attrs.frozen
class ArchiveMember:
    """One entry of a tar archive: its cleaned name, kind, and where its data lies."""

    name: str
    kind: MemberKind
    offset: int
    size: int
    linkname: str = ""


def clean_member_name(name: str, where: str) -> str:
    """``name`` without ``./`` and duplicate slashes; :class:`ArchiveError` if it is unsafe.

    Unsafe: absolute, with a ``..`` component, with a NUL byte. The archive's root itself
    (``./``) cleans to ``""``.
    """
    if "\x00" in name:
        raise ArchiveError(f"{where}: member name {name!r} contains a NUL byte")
    if name.startswith("/"):
        raise ArchiveError(f"{where}: member {name!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"{where}: member {name!r} has a '..' component")
    return "/".join(parts)


def _link_target(member_name: str, linkname: str, where: str) -> str:
    """Where a symbolic link named ``member_name`` points, as an archive path."""
    if linkname.startswith("/"):
        raise ArchiveError(
            f"{where}: symbolic link {member_name!r} points to the absolute path {linkname!r}"
        )
    target = posixpath.normpath(posixpath.join(posixpath.dirname(member_name), linkname))
    if target == ".." or target.startswith("../"):
        raise ArchiveError(
            f"{where}: symbolic link {member_name!r} -> {linkname!r} points outside the archive"
        )
    return "" if target == "." else target


def _kind(info: tarfile.TarInfo, name: str, where: str) -> MemberKind:
    if info.issparse():
        raise ArchiveError(f"{where}: member {name!r} is a sparse file, which is not supported")
    if info.isreg():
        return "file"
    if info.isdir():
        return "dir"
    if info.issym():
        return "symlink"
    if info.islnk():
        return "hardlink"
    if info.ischr() or info.isblk():
        raise ArchiveError(f"{where}: member {name!r} is a device file")
    if info.isfifo():
        raise ArchiveError(f"{where}: member {name!r} is a FIFO")
    raise ArchiveError(f"{where}: member {name!r} has unsupported tar type {info.type!r}")


def _index(path: Path, where: str) -> dict[str, ArchiveMember]:
    members: dict[str, ArchiveMember] = {}
    file_size = os.stat(path).st_size
    try:
        with open(path, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
            while (info := tar.next()) is not None:
                if len(members) >= MAX_MEMBERS:
                    raise ArchiveError(f"{where}: more than {MAX_MEMBERS} members")
                name = clean_member_name(info.name, where)
                kind = _kind(info, name, where)
                linkname = ""
                if kind == "symlink":
                    linkname = _link_target(name, info.linkname, where)
                elif kind == "hardlink":
                    linkname = clean_member_name(info.linkname, where)
                size = info.size if kind == "file" else 0
                if info.offset_data + size > file_size:
                    raise ArchiveError(f"{where}: the archive is truncated (in {name!r})")
                if not name and kind != "dir":
                    raise ArchiveError(f"{where}: a {kind} member has an empty name")
                old = members.get(name)
                if old is not None and not (old.kind == kind == "dir"):
                    raise ArchiveError(f"{where}: member {name!r} appears more than once")
                members[name] = ArchiveMember(name, kind, info.offset_data, size, linkname)
                # tarfile keeps every TarInfo it read; the index is all we need.
                tar.members = []  # type: ignore[attr-defined]
            # tarfile takes a corrupt header after the first for the end of the archive;
            # Go's reader (and so skopeo) fails instead, and so do we.
            f.seek(tar.offset)
            block = f.read(BLOCK_SIZE)
            if block.strip(b"\0"):
                raise ArchiveError(f"{where}: invalid tar header at offset {tar.offset}")
    except tarfile.TarError as e:
        raise ArchiveError(f"{where}: not a valid tar archive: {e}") from e
    except EOFError as e:
        raise ArchiveError(f"{where}: the archive is truncated") from e
    return members


class _ArchiveData:
    """An archive's index and memoised facts (layer digests), shared by every reader of it."""

    def __init__(self, members: dict[str, ArchiveMember]) -> None:
        self.members = members
        self.memo: dict[tuple[str, str], object] = {}
        self.lock = threading.Lock()


_cache: collections.OrderedDict[tuple[int, int, int, int], _ArchiveData] = collections.OrderedDict()
_cache_lock = threading.Lock()


def _start_afresh_after_fork() -> None:
    """In a forked child: a parent's thread that held the lock does not exist here."""
    global _cache_lock
    _cache_lock = threading.Lock()


os.register_at_fork(after_in_child=_start_afresh_after_fork)


def _cached_index(path: Path, where: str) -> _ArchiveData:
    st = os.stat(path)
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    with _cache_lock:
        data = _cache.get(key)
        if data is not None:
            _cache.move_to_end(key)
            return data
    data = _ArchiveData(_index(path, where))
    with _cache_lock:
        _cache[key] = data
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return data


class MemberReader:
    """A stream over one member's data, read with its own file descriptor."""

    def __init__(self, path: Path, member: ArchiveMember, where: str, offset: int = 0) -> None:
        self._file: io.BufferedReader | None = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._remaining = max(member.size - offset, 0)
        self._where = where
        self._name = member.name
        self._file.seek(member.offset + min(offset, member.size))

    def read(self, size: int = -1, /) -> bytes:
        if self._file is None:
            raise ValueError("read from a closed member stream")
        if size is None or size < 0 or size > self._remaining:
            size = self._remaining
        if size == 0:
            return b""
        data = self._file.read(size)
        if not data:
            raise ArchiveError(f"{self._where}: {self._name!r} ends early (the file shrank?)")
        self._remaining -= len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        """Read into ``buffer`` (a caller's reused buffer: no new bytes object per chunk)."""
        if self._file is None:
            raise ValueError("read from a closed member stream")
        view = memoryview(buffer).cast("B")
        size = min(len(view), self._remaining)
        if size == 0:
            return 0
        count = self._file.readinto(view[:size])
        if not count:
            raise ArchiveError(f"{self._where}: {self._name!r} ends early (the file shrank?)")
        self._remaining -= count
        return count

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TarArchive:
    """An uncompressed tar file, indexed; members are looked up by name and read by seeking."""

    def __init__(self, path: Path, data: _ArchiveData, where: str, *, temporary: bool) -> None:
        self.path = path
        self.where = where
        self._data = data
        self._temporary = temporary
        self._closed = False

    @property
    def members(self) -> dict[str, ArchiveMember]:
        """Every member by cleaned name."""
        return self._data.members

    def memo(self, key: tuple[str, str], compute: Callable[[], object]) -> object:
        """A value cached with the archive's index (computed at most once per archive file)."""
        with self._data.lock:
            if key in self._data.memo:
                return self._data.memo[key]
        value = compute()
        with self._data.lock:
            return self._data.memo.setdefault(key, value)

    def find(self, name: str) -> ArchiveMember | None:
        """The regular file ``name`` refers to, following links; None if there is none.

        :class:`ArchiveError` if ``name`` is a directory or its links loop.
        """
        current = clean_member_name(name, self.where)
        for _ in range(_MAX_LINK_HOPS):
            member = self.members.get(current)
            if member is None:
                return None
            if member.kind == "file":
                return member
            if member.kind == "dir":
                raise ArchiveError(f"{self.where}: {name!r} is a directory, not a file")
            current = member.linkname
        raise ArchiveError(f"{self.where}: too many levels of links resolving {name!r}")

    def require(self, name: str, what: str) -> ArchiveMember:
        """The regular file ``name`` refers to; :class:`ArchiveError` naming ``what`` if absent."""
        member = self.find(name)
        if member is None:
            raise ArchiveError(f"{self.where}: {what} {name!r} is missing from the archive")
        return member

    def open_member(self, member: ArchiveMember, offset: int = 0) -> MemberReader:
        """A stream of the member's data from ``offset``."""
        return MemberReader(self.path, member, self.where, offset)

    def read_prefix(self, member: ArchiveMember, size: int) -> bytes:
        """The first ``size`` bytes of a member (fewer if it is shorter)."""
        with self.open_member(member) as r:
            return r.read(size)

    def read_bytes(self, name: str, limit: int, what: str) -> bytes:
        """The whole content of member ``name``; :class:`ArchiveError` past ``limit`` bytes."""
        member = self.require(name, what)
        if member.size > limit:
            raise ArchiveError(
                f"{self.where}: {what} {name!r} is {member.size} bytes, over the {limit} byte limit"
            )
        with self.open_member(member) as r:
            return r.read()

    def close(self) -> None:
        """Forget the archive; a spooled temporary copy is deleted."""
        if self._closed:
            return
        self._closed = True
        if self._temporary:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _spool(stream: Readable, tmpdir: str | None, where: str) -> Path:
    """Copy ``stream`` (decompressed) to a new temporary file; return its path."""
    fd, name = tempfile.mkstemp(prefix="imagetypes-archive-", suffix=".tar", dir=tmpdir)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            reader = decompressing_reader(stream)
            while chunk := reader.read(CHUNK_SIZE):
                out.write(chunk)
    except CompressionError as e:
        path.unlink(missing_ok=True)
        raise ArchiveError(f"{where}: {e}") from e
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def open_tar_archive(path: str, *, where: str, tmpdir: str | None = None) -> TarArchive:
    """Open and index the tar archive at ``path`` (``-`` is standard input).

    A regular, uncompressed file is read in place; anything else (compressed, a pipe) is
    spooled to a temporary file in ``tmpdir`` first, deleted when the archive is closed.
    """
    if path == "-":
        spooled = _spool(sys.stdin.buffer, tmpdir, where)
        return _open_spooled(spooled, where)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ArchiveError(f"{where}: {path} does not exist") from None
    except OSError as e:
        raise ArchiveError(f"{where}: cannot open {path}: {e.strerror}") from e
    if stat.S_ISDIR(st.st_mode):
        raise ArchiveError(f"{where}: {path} is a directory, not a tar archive")
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb") as f:
            prefix = f.read(4)
        if detect_compression(prefix) is Compression.NONE:
            return TarArchive(Path(path), _cached_index(Path(path), where), where, temporary=False)
    with open(path, "rb") as f:
        spooled = _spool(f, tmpdir, where)
    return _open_spooled(spooled, where)


def _open_spooled(path: Path, where: str) -> TarArchive:
    try:
        data = _ArchiveData(_index(path, where))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return TarArchive(path, data, where, temporary=True)


# -- writing ----------------------------------------------------------------------------------
def is_stdout(target: object) -> bool:
    """Whether ``target`` names standard output (``-`` or ``/dev/stdout``)."""
    return isinstance(target, str) and target in ("-", "/dev/stdout")


def _header(
    name: str, size: int, *, kind: MemberKind = "file", linkname: str = "", mode: int = 0o444
) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = mode
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = linkname
        info.mode = 0
    elif kind == "dir":
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def _fixed_header(name: str, size: int, mode: int) -> bytes:
    """A header of exactly one block (ustar, or GNU base-256 for sizes of 8 GiB and more)."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = mode
    info.uname = info.gname = ""
    try:
        buf = info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")
    except ValueError:
        buf = info.tobuf(format=tarfile.GNU_FORMAT, encoding="utf-8", errors="strict")
    if len(buf) != BLOCK_SIZE:
        raise ArchiveError(f"internal error: the tar header for {name!r} is not one block")
    return buf


def _padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK_SIZE)


class TarStreamWriter:
    """Appends members to a tar stream; :meth:`commit` ends it (and renames a temporary file).

    ``target`` is a path (written to a temporary file beside it, renamed at commit; a FIFO or
    character device is written directly), ``-`` / ``/dev/stdout`` (standard output), or a
    binary file object (written from its current position, left open). Members are written
    one at a time under a lock. After a failed member the stream is rolled back to where the
    member started when it is seekable; otherwise the writer is broken and refuses more.
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | IO[bytes],
        *,
        where: str,
        tmpdir: str | None = None,
        overwrite: bool = True,
        file_mode: int = 0o444,
    ) -> None:
        self.where = where
        self._mode = file_mode
        self._tmpdir = tmpdir
        self._lock = threading.RLock()
        self._final: Path | None = None
        self._temp: Path | None = None
        self._owned = False
        self._state: Literal["open", "committed", "aborted", "broken"] = "open"
        out: IO[bytes]
        if is_stdout(target):
            out = sys.stdout.buffer
        elif isinstance(target, (str, os.PathLike)):
            out = self._open_path(Path(os.fspath(target)), overwrite)
            self._owned = True
        else:
            out = target
        self._out = out
        try:
            self._seekable = bool(out.seekable())
            self._start = out.tell() if self._seekable else 0
        except (OSError, ValueError):
            self._seekable, self._start = False, 0
        self._pos = self._start
        # Where write-back was last started (see _write).
        self._flushed = self._start

    def _open_path(self, path: Path, overwrite: bool) -> IO[bytes]:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise ArchiveError(f"{self.where}: {path} is a directory")
        if st is not None and not stat.S_ISREG(st.st_mode):
            # A pipe or device (e.g. /dev/stdout, a FIFO): written directly, as skopeo does.
            return open(path, "wb")
        if st is not None and st.st_size and not overwrite:
            raise ArchiveError(
                f"{self.where}: {path} exists and is not empty; refusing to overwrite it"
            )
        parent = path.parent
        if not parent.is_dir():
            raise ArchiveError(f"{self.where}: the directory {parent} does not exist")
        for _ in range(100):
            temp = parent / f".{path.name}.imagetypes-{secrets.token_hex(4)}"
            try:
                fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            self._final, self._temp = path, temp
            return os.fdopen(fd, "w+b")
        raise ArchiveError(f"{self.where}: could not create a temporary file in {parent}")

    # -- state -----------------------------------------------------------------------------
    @property
    def seekable(self) -> bool:
        """Whether members can be rolled back and headers rewritten in place."""
        return self._seekable

    @property
    def position(self) -> int:
        """The offset of the next member from the start of the archive."""
        return self._pos - self._start

    def _check(self) -> None:
        if self._state != "open":
            raise ImageError(f"{self.where}: the archive writer is {self._state}")

    @contextlib.contextmanager
    def _member(self) -> Iterator[None]:
        """Write one member; roll the stream back if it fails half way."""
        with self._lock:
            self._check()
            start = self._pos
            try:
                yield
            except BaseException:
                self._rollback_to(start)
                raise

    def _rollback_to(self, start: int) -> None:
        if not self._seekable:
            self._state = "broken"
            return
        try:
            self._out.seek(start)
            self._out.truncate(start)
            self._pos = start
            self._flushed = min(self._flushed, start)
        except OSError:
            self._state = "broken"

    def rollback(self, position: int) -> bool:
        """Drop every member written since :attr:`position` was ``position``; False if not
        possible (the stream is not seekable)."""
        with self._lock:
            if self._state != "open" or not self._seekable:
                return False
            self._rollback_to(self._start + position)
            return self._state == "open"

    def _write(self, data: bytes | memoryview) -> None:
        self._out.write(data)
        self._pos += len(data)
        if self._temp is not None and self._pos - self._flushed >= WRITEBACK_INTERVAL:
            # Our own file, fsync'ed at commit: have the kernel write it back as we go, so
            # that the final fsync waits for little and dirty pages do not pile up.
            start_writeback(self._out.fileno(), self._flushed, self._pos - self._flushed)
            self._flushed = self._pos

    # -- members ---------------------------------------------------------------------------
    def add_bytes(self, name: str, data: bytes) -> None:
        """A regular file member holding ``data``."""
        with self._member():
            self._write(_header(name, len(data), mode=self._mode))
            self._write(data)
            self._write(_padding(len(data)))

    def add_symlink(self, name: str, target: str) -> None:
        """A symbolic link member."""
        with self._member():
            self._write(_header(name, 0, kind="symlink", linkname=target))

    def add_dir(self, name: str) -> None:
        """A directory member."""
        with self._member():
            self._write(_header(name.rstrip("/") + "/", 0, kind="dir"))

    def add_stream(self, name: str, stream: Readable, size: int) -> None:
        """A regular file member of ``size`` bytes read from ``stream`` (which must hold exactly
        that many; the stream is read to its end)."""
        with self._member():
            self._write(_header(name, size, mode=self._mode))
            written = 0
            while chunk := stream.read(CHUNK_SIZE):
                written += len(chunk)
                if written > size:
                    raise ArchiveError(f"{self.where}: {name!r} is longer than {size} bytes")
                self._write(chunk)
            if written != size:
                raise ArchiveError(f"{self.where}: {name!r} has {written} bytes, not {size}")
            self._write(_padding(size))

    def add_unsized(
        self,
        stream: Readable,
        name_after: Callable[[], str],
        present: Callable[[str], bool] | None = None,
    ) -> tuple[str, int]:
        """A regular file member whose size, and name, are known only once ``stream`` ends.

        ``name_after`` is called after the stream was read to its end (and so verified) and
        must return a name of at most 100 characters. When ``present(name)`` says the archive
        has that member already, nothing is added. Returns (name, size).
        """
        with self._lock:
            self._check()
            if self._seekable:
                return self._add_unsized_in_place(stream, name_after, present)
        # Not seekable: stream to a temporary file first (outside the lock: the slow part).
        with tempfile.TemporaryFile(prefix="imagetypes-blob-", dir=self._tmpdir) as spool:
            size = 0
            while chunk := stream.read(CHUNK_SIZE):
                spool.write(chunk)
                size += len(chunk)
            name = name_after()
            if present is None or not present(name):
                spool.seek(0)
                self.add_stream(name, spool, size)
        return name, size

    def _add_unsized_in_place(
        self,
        stream: Readable,
        name_after: Callable[[], str],
        present: Callable[[str], bool] | None,
    ) -> tuple[str, int]:
        with self._member():
            header_at = self._pos
            self._write(b"\0" * BLOCK_SIZE)
            size = 0
            while chunk := stream.read(CHUNK_SIZE):
                size += len(chunk)
                self._write(chunk)
            name = name_after()
            if present is not None and present(name):
                self._rollback_to(header_at)
                return name, size
            self._write(_padding(size))
            end = self._pos
            self._out.seek(header_at)
            self._out.write(_fixed_header(name, size, self._mode))
            self._out.seek(end)
        return name, size

    # -- finishing -------------------------------------------------------------------------
    def commit(self) -> None:
        """End the archive and make it visible (rename the temporary file into place)."""
        with self._lock:
            self._check()
            try:
                self._write(b"\0" * (2 * BLOCK_SIZE))
                self._out.flush()
                if self._temp is not None and self._final is not None:
                    os.fsync(self._out.fileno())
                    self._out.close()
                    os.replace(self._temp, self._final)
                    self._temp = None
                    with contextlib.suppress(OSError):
                        _fsync_dir(self._final.parent)
                elif self._owned:
                    self._out.close()
            except BaseException:
                self.abort()
                raise
            self._state = "committed"

    def abort(self) -> None:
        """Discard the archive: a temporary file is deleted; a stream is left unfinished."""
        with self._lock:
            if self._state in ("committed", "aborted"):
                return
            self._state = "aborted"
            if self._owned:
                with contextlib.suppress(OSError):
                    self._out.close()
            if self._temp is not None:
                self._temp.unlink(missing_ok=True)
                self._temp = None

    @property
    def committed(self) -> bool:
        return self._state == "committed"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
