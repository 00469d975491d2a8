"""Placing a blob in a destination's file: by writing its bytes, or by cloning or linking the
source's own file when both live on one filesystem.

The copy engine hands a destination the open file a blob is read from
(:attr:`~imagetypes.PutBlobOptions.source_file`) when that file holds exactly the blob. A
destination that stores blobs as files (``oci:``, ``dir:``) calls :func:`store_blob` with the
temporary file it would have written: with ``link_blobs="reflink"`` the temporary file becomes a
copy-on-write clone of the source (``FICLONE``: btrfs, XFS, bcachefs, ...), with ``"hardlink"``
a second name of the source's inode, and otherwise (or when the filesystem cannot) the bytes are
written as before. Whichever way, the stream is read to its end: that is what verifies the
digest, and what progress counts. Nothing here is transport-specific.

It also reads small files with a bound (:func:`read_limited`, :func:`read_bounded`): manifests,
index files, signatures and configuration files, which a hostile or broken file must not make
take unbounded memory.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path
from typing import IO, Literal

from .digest import CHUNK_SIZE, Readable, copy_to_fd
from .errors import ManifestTooLargeError, SourceChangedError
from .types import PutBlobOptions

__all__ = ["Placed", "read_bounded", "read_limited", "store_blob"]

#: How :func:`store_blob` placed a blob.
Placed = Literal["written", "reflink", "hardlink"]

#: ``ioctl(dest, FICLONE, src)``: _IOW(0x94, 9, int) on Linux.
_FICLONE = 0x40049409
#: Failures that mean "this filesystem (pair) cannot": fall back to the next way.
_CANNOT = frozenset(
    {
        errno.EXDEV,
        errno.EOPNOTSUPP,
        errno.ENOTTY,
        errno.EINVAL,
        errno.EPERM,
        errno.EACCES,
        errno.ENOSYS,
        errno.EBADF,
        errno.EMLINK,
        errno.ETXTBSY,
    }
)


def store_blob(
    stream: Readable,
    fd: int,
    tmp: Path,
    options: PutBlobOptions | None,
    *,
    sync: bool = True,
) -> Placed:
    """Fill the new temporary file ``tmp`` (open as ``fd``) with the blob ``stream`` yields.

    With a :attr:`~imagetypes.PutBlobOptions.source_file` and a ``link_blobs`` mode that allows
    it, ``tmp`` becomes a clone of that file (``fd`` then holds the clone) or, for
    ``"hardlink"``, a hard link to it (``tmp`` is replaced; ``fd`` keeps the empty file it was
    made as, which the caller closes as usual). Otherwise the bytes are written to ``fd``. The
    stream is read to its end in every case, so a digest mismatch raises here as it would
    when writing; the caller removes ``tmp`` on any error. With ``sync``, what was written or
    cloned is flushed to disk (``fsync``). Returns how the blob was placed.
    """
    source = options.source_file if options is not None else None
    mode = options.link_blobs if options is not None else "never"
    if source is not None and mode != "never":
        before = _identity(source)
        if before is not None:
            if mode == "hardlink" and _hard_link(source, before, tmp):
                _drain(stream)
                _check_unchanged(source, before)
                return "hardlink"
            if _clone(source, fd):
                _drain(stream)
                _check_unchanged(source, before)
                if sync:
                    os.fsync(fd)
                return "reflink"
    copy_to_fd(stream, fd, sync=sync)
    return "written"


def _identity(source: IO[bytes]) -> os.stat_result | None:
    """The source file's status, when it is a regular file read from its start."""
    tell = getattr(source, "tell", None)
    if tell is None:
        return None
    try:
        st = os.fstat(source.fileno())
        if tell() != 0:
            return None
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        return None
    return st if _regular(st) else None


def _regular(st: os.stat_result) -> bool:
    import stat

    return stat.S_ISREG(st.st_mode)


def _clone(source: IO[bytes], fd: int) -> bool:
    """Make ``fd`` a copy-on-write clone of ``source``; ``False`` where that is impossible."""
    import fcntl

    try:
        fcntl.ioctl(fd, _FICLONE, source.fileno())
    except OSError as e:
        if e.errno in _CANNOT:
            return False
        raise
    return True


def _hard_link(source: IO[bytes], st: os.stat_result, tmp: Path) -> bool:
    """Replace ``tmp`` with a hard link to the file ``source`` reads; ``False`` if impossible.

    The link is made by name, then checked to be the very inode ``source`` has open, so a
    name that was replaced meanwhile is never linked.
    """
    name = getattr(source, "name", None)
    if not isinstance(name, str):  # a relative name may be stale: the inode check tells
        return False
    link = tmp.with_name(f"{tmp.name}.link-{secrets.token_hex(4)}")
    try:
        os.link(name, link)
    except OSError as e:
        if e.errno in _CANNOT or e.errno == errno.ENOENT:
            return False
        raise
    try:
        linked = os.stat(link)
        if (linked.st_dev, linked.st_ino) != (st.st_dev, st.st_ino):
            link.unlink()
            return False
        os.replace(link, tmp)
    except BaseException:
        link.unlink(missing_ok=True)
        raise
    return True


def _drain(stream: Readable) -> None:
    """Read ``stream`` to its end (verifying it), keeping nothing."""
    readinto = getattr(stream, "readinto", None)
    if readinto is not None:
        buffer = bytearray(CHUNK_SIZE)
        while readinto(buffer):
            pass
        return
    while stream.read(CHUNK_SIZE):
        pass


def _check_unchanged(source: IO[bytes], before: os.stat_result) -> None:
    """Refuse a source file that changed while it was read (the bytes placed may differ)."""
    after = os.fstat(source.fileno())
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        raise SourceChangedError(f"{source.name!r} changed while it was being copied")


def read_limited(path: str | os.PathLike[str], limit: int) -> bytes | None:
    """The content of ``path`` if it holds at most ``limit`` bytes, else None.

    Reads one byte past the limit rather than trusting ``fstat``, which a FIFO or a file growing
    under us would get wrong. ``OSError`` (``FileNotFoundError`` included) passes through, for
    the caller to word in its own error, as it words a file that is too large.
    """
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    return data if len(data) <= limit else None


def read_bounded(path: str | os.PathLike[str], limit: int) -> bytes:
    """The content of ``path``; :class:`~imagetypes.ManifestTooLargeError` past ``limit`` bytes.

    For a transport's manifests, index and signature files. ``OSError`` passes through.
    """
    data = read_limited(path, limit)
    if data is None:
        raise ManifestTooLargeError(f"{path} is larger than the {limit} byte limit")
    return data
