"""Content digests: the :class:`Digest` value, streaming hashing and verification."""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Callable
from typing import Protocol, cast

import attrs

from ._closing import Closing
from .errors import DigestMismatchError, InvalidDigestError, SizeMismatchError

__all__ = [
    "CHUNK_SIZE",
    "SUPPORTED_ALGORITHMS",
    "Digest",
    "Readable",
    "VerifyingReader",
    "copy_to_fd",
    "verify_stream",
]

#: The size of the chunks imagetypes reads and writes blobs in.
CHUNK_SIZE = 1024 * 1024

#: Algorithm name -> length of the hex encoding.
SUPPORTED_ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}

_HEX = re.compile(r"[a-f0-9]+")
# The general grammar of the OCI image spec, for a clear error on unknown algorithms.
_GENERAL = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")


def _check_algorithm(instance: Digest, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in SUPPORTED_ALGORITHMS:
        raise InvalidDigestError(
            f"unsupported digest algorithm {value!r} (supported: {', '.join(SUPPORTED_ALGORITHMS)})"
        )


def _check_hex(instance: Digest, attribute: attrs.Attribute[str], value: str) -> None:
    length = SUPPORTED_ALGORITHMS.get(instance.algorithm)
    if length is None or len(value) != length or not _HEX.fullmatch(value):
        raise InvalidDigestError(
            f"invalid {instance.algorithm} digest {value!r}: "
            f"expected {length} lowercase hexadecimal characters"
        )


@attrs.frozen(order=True)
class Digest:
    """A content digest such as ``sha256:e3b0c442...``.

    ``Digest.parse(text)`` is the usual way in; ``str(digest)`` gives the text back.
    """

    algorithm: str = attrs.field(validator=_check_algorithm)
    hex: str = attrs.field(validator=_check_hex)

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``algorithm:hex``; raise :class:`InvalidDigestError` if it is not one."""
        if not isinstance(text, str):
            raise InvalidDigestError(f"a digest must be a string, not {type(text).__name__}")
        algorithm, sep, hexpart = text.partition(":")
        if not sep or not _GENERAL.fullmatch(text):
            raise InvalidDigestError(f"invalid digest {text!r}: expected algorithm:hex")
        return cls(algorithm, hexpart)

    @classmethod
    def from_bytes(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """The digest of ``data``."""
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    @classmethod
    def from_hash(cls, hasher: hashlib._Hash) -> Digest:
        """The digest held by a finished hashlib object (``sha256`` or ``sha512``)."""
        return cls(hasher.name, hasher.hexdigest())

    def hasher(self) -> hashlib._Hash:
        """A fresh hashlib object for this digest's algorithm."""
        return hashlib.new(self.algorithm)

    def verify(self, data: bytes) -> None:
        """Raise :class:`DigestMismatchError` unless ``data`` has this digest."""
        actual = Digest.from_bytes(data, self.algorithm)
        if actual != self:
            raise DigestMismatchError(
                f"digest mismatch: expected {self}, got {actual}", expected=self, actual=actual
            )

    @property
    def encoded(self) -> str:
        """The encoded part (an alias of :attr:`hex`, the name the OCI spec uses)."""
        return self.hex

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


class Readable(Protocol):
    """Anything with a binary ``read``: files, sockets' streams, :class:`VerifyingReader`."""

    def read(self, size: int = -1, /) -> bytes: ...


def close_stream(stream: object) -> None:
    """Close ``stream`` if it has ``close`` (a :class:`Readable` needs only ``read``): what a
    reader that wraps another does when it is closed."""
    close = getattr(stream, "close", None)
    if close is not None:
        close()


def read_all(stream: Readable) -> bytes:
    """Everything left in ``stream``, read in :data:`CHUNK_SIZE` pieces: ``read(-1)`` of the
    package's streams (never one unbounded read of the stream they wrap)."""
    parts = []
    while chunk := stream.read(CHUNK_SIZE):
        parts.append(chunk)
    return b"".join(parts)


class VerifyingReader(Closing):
    """A binary reader that hashes what passes through it and checks it at the end.

    When the wrapped stream is exhausted, the bytes read are compared with ``expected_digest``
    and ``expected_size`` (either may be ``None``); a mismatch raises
    :class:`DigestMismatchError` or :class:`SizeMismatchError` from ``read``, so a consumer
    that reads to the end never accepts corrupt content. Reading past ``expected_size`` fails
    at once, so a lying server cannot make us read without bound.

    After EOF, :attr:`digest` and :attr:`size` describe the content actually read.
    """

    def __init__(
        self,
        raw: Readable,
        expected_digest: Digest | None = None,
        expected_size: int | None = None,
        *,
        algorithm: str | None = None,
        description: str | None = None,
    ) -> None:
        self._raw = raw
        self.expected_digest = expected_digest
        self.expected_size = expected_size if expected_size is None or expected_size >= 0 else None
        algo = algorithm or (expected_digest.algorithm if expected_digest else "sha256")
        self._hasher = hashlib.new(algo)
        self._count = 0
        self._done = False
        self._error: Exception | None = None
        self._digest: Digest | None = None
        self._description = description or (str(expected_digest) if expected_digest else "blob")

    # -- reading ---------------------------------------------------------------------------
    def read(self, size: int = -1, /) -> bytes:
        if self._error is not None:
            # A failed verification stays failed: never hand out an unverified EOF later.
            raise self._error
        if self._done:
            return b""
        if size is None or size < 0:
            return read_all(self)
        if size == 0:
            return b""
        data = self._raw.read(size)
        if data:
            self._take(data)
            return data
        self._finish()
        return b""

    def readinto(self, buffer: bytearray | memoryview) -> int:
        """Read into ``buffer``; verified exactly as :meth:`read` is.

        Reading into a caller's reused buffer spares a new bytes object per chunk (and the page
        faults of fresh memory), when the wrapped stream has ``readinto`` too.
        """
        raw_readinto = getattr(self._raw, "readinto", None)
        if type(self).read is not VerifyingReader.read or raw_readinto is None:
            # A subclass that changes read() (progress, cancel) must see every byte pass.
            data = self.read(len(buffer))
            buffer[: len(data)] = data
            return len(data)
        if self._error is not None:
            raise self._error
        if self._done or len(buffer) == 0:
            return 0
        view = memoryview(buffer).cast("B")
        n = raw_readinto(view)
        if n is None:  # a non-blocking stream with nothing ready: never taken for EOF
            raise BlockingIOError(f"{self._description}: the stream has no data ready")
        if not n:
            self._finish()
            return 0
        self._take(view[:n])
        return int(n)

    def _take(self, data: bytes | memoryview) -> None:
        """Count and hash bytes read; fail at once when they overrun the expected size."""
        self._count += len(data)
        if self.expected_size is not None and self._count > self.expected_size:
            self._error = SizeMismatchError(
                f"{self._description}: more than the expected {self.expected_size} bytes",
                expected=self.expected_size,
                actual=self._count,
            )
            raise self._error
        self._hasher.update(data)

    def _finish(self) -> None:
        actual = Digest.from_hash(self._hasher)
        if self.expected_size is not None and self._count != self.expected_size:
            self._error = SizeMismatchError(
                f"{self._description}: expected {self.expected_size} bytes, got {self._count}",
                expected=self.expected_size,
                actual=self._count,
            )
            raise self._error
        if self.expected_digest is not None and actual != self.expected_digest:
            self._error = DigestMismatchError(
                f"digest mismatch: expected {self.expected_digest}, got {actual}",
                expected=self.expected_digest,
                actual=actual,
            )
            raise self._error
        self._digest = actual
        self._done = True

    def read_to_end(self) -> Digest:
        """Consume (and discard) the rest of the stream; return the verified digest."""
        while self.read(CHUNK_SIZE):
            pass
        return self.digest

    # -- results ---------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        """True once EOF was reached and verification passed."""
        return self._done

    @property
    def digest(self) -> Digest:
        """The digest of everything read; only available after EOF."""
        if self._digest is None:
            raise RuntimeError("the stream has not been read to its end")
        return self._digest

    @property
    def size(self) -> int:
        """The number of bytes read so far."""
        return self._count

    # -- lifecycle -------------------------------------------------------------------------
    def readable(self) -> bool:
        return True

    def close(self) -> None:
        close_stream(self._raw)


def verify_stream(
    stream: Readable, expected_digest: Digest | None, expected_size: int | None = None
) -> VerifyingReader:
    """Return a :class:`VerifyingReader` over ``stream`` that checks the given expectations.

    If ``stream`` already is a verifying reader with the same (or stricter) expectations it is
    returned as it is, so that a blob passed from a source to a destination is hashed once.
    """
    if (
        isinstance(stream, VerifyingReader)
        and stream.size == 0
        and (expected_digest is None or stream.expected_digest == expected_digest)
        and (expected_size is None or expected_size < 0 or stream.expected_size == expected_size)
    ):
        return stream
    return VerifyingReader(stream, expected_digest, expected_size)


#: How many bytes :func:`copy_to_fd` writes between asking the kernel to start write-back.
WRITEBACK_INTERVAL = 8 * CHUNK_SIZE
_SYNC_FILE_RANGE_WRITE = 2


_sync_file_range: Callable[[int, int, int, int], int] | None = None
_sync_file_range_looked_up = False


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's ``sync_file_range`` (Linux), looked up on first use: ctypes is not imported at
    start-up, where every command pays for it."""
    global _sync_file_range, _sync_file_range_looked_up
    if _sync_file_range_looked_up:
        return _sync_file_range
    function = None
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            found = ctypes.CDLL(None, use_errno=True).sync_file_range
        except (OSError, AttributeError):
            found = None
        if found is not None:
            found.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
            found.restype = ctypes.c_int
            function = cast("Callable[[int, int, int, int], int]", found)
    _sync_file_range, _sync_file_range_looked_up = function, True
    return function


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask Linux to start writing ``length`` bytes at ``offset`` to disk, without waiting.

    Only a hint, so its result is not checked: the fsync that ends every blob write is what
    reports an I/O error. Writing back while we still hash and write the rest overlaps the two,
    and keeps dirty pages few (fewer stalls when the kernel throttles writers).
    """
    function = _load_sync_file_range()
    if function is not None:
        function(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def _copying_readinto(stream: Readable) -> bool:
    """Whether ``stream.readinto`` would only copy what ``stream.read`` returns (no gain)."""
    return (
        isinstance(stream, VerifyingReader)
        and type(stream).read is not VerifyingReader.read
        and type(stream).readinto is VerifyingReader.readinto
    )


def copy_to_fd(stream: Readable, fd: int, *, sync: bool = True) -> int:
    """Write everything ``stream`` yields to the file descriptor ``fd``; return the byte count.

    The per-byte path of every local destination: chunks of :data:`CHUNK_SIZE`, read into one
    reused buffer when the stream can (``readinto``), written with ``os.write``, write-back
    started every :data:`WRITEBACK_INTERVAL` bytes, and, with ``sync``, ``fsync`` at the end.
    Writes start at the descriptor's current offset. Errors of the stream (a digest mismatch
    at EOF) pass through; nothing is hidden.
    """
    try:
        start = os.lseek(fd, 0, os.SEEK_CUR)
    except OSError:  # a pipe: no offsets (and the write-back hint does nothing there)
        start = 0
    total = flushed = 0
    readinto = None if _copying_readinto(stream) else getattr(stream, "readinto", None)
    if readinto is not None:
        buffer = bytearray(CHUNK_SIZE)
        view = memoryview(buffer)
        while n := readinto(buffer):
            _write_all(fd, view[:n])
            total += n
            if total - flushed >= WRITEBACK_INTERVAL:
                start_writeback(fd, start + flushed, total - flushed)
                flushed = total
    else:
        while chunk := stream.read(CHUNK_SIZE):
            _write_all(fd, chunk)
            total += len(chunk)
            if total - flushed >= WRITEBACK_INTERVAL:
                start_writeback(fd, start + flushed, total - flushed)
                flushed = total
    if sync:
        os.fsync(fd)
    return total


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
