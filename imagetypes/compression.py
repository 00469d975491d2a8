"""Telling, removing and adding layer compression (gzip, zstd), as bounded-memory streams.

:func:`detect_compression` names the format from a blob's first bytes;
:func:`decompressing_reader` and :func:`compressing_reader` wrap a binary stream in a
:class:`~imagetypes.digest.Readable` that (de)compresses it on the fly, reading about
:data:`~imagetypes.digest.CHUNK_SIZE` bytes at a time, so memory never grows with the size of
a layer (nor with a "zip bomb": output is produced only as fast as it is read).

gzip uses ISA-L (the ``isal`` package, ``pip install imagetypes[fast]``) when it is installed,
many times faster than the standard library's zlib, which is the fallback. zstd needs
``compression.zstd`` (Python 3.14) or the ``backports.zstd`` package
(``pip install imagetypes[zstd]``). Compressed output is deterministic for a given backend and
level, but ISA-L and zlib produce different bytes (and so different digests) for one input.

gzip compression of a large stream uses several cores (:data:`compression_threads`): it is
written as fixed-size blocks compressed in parallel, each primed with the 32 KiB before it (as
``pigz`` does); the bytes written do not depend on the number of threads, nor on timing.

zstd compression of a stream the caller says is large (``size_hint`` of at least
:data:`ZSTD_PARALLEL_THRESHOLD`) uses zstd's own worker threads, in jobs of
:data:`ZSTD_JOB_SIZE`, and reads its input in a thread of its own; the bytes written are the
same for any number of threads (but differ from those of a stream compressed in one thread, so
the hint is part of the output). Such streams take turns: at most
:data:`zstd_parallel_streams` at a time in the process (the others wait), which bounds the
memory of many large layers compressed at once.

The media type helpers map layer media types between their compressed and uncompressed forms
(:func:`layer_compression`, :func:`with_compression`).
"""

from __future__ import annotations

import collections
import enum
import functools
import importlib
import os
import queue
import struct
import threading
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from types import ModuleType
from typing import Any, Literal, Protocol

from . import mediatypes as mt
from ._closing import Closing
from .digest import CHUNK_SIZE, Readable, close_stream, read_all
from .errors import CompressionError, UnsupportedError

__all__ = [
    "GZIP_BLOCK_SIZE",
    "GZIP_MAGIC",
    "ZSTD_JOB_SIZE",
    "ZSTD_MAGIC",
    "ZSTD_OVERLAP_LOG",
    "ZSTD_PARALLEL_THRESHOLD",
    "Compression",
    "CompressionReader",
    "compressing_reader",
    "compression_threads",
    "decompressing_reader",
    "detect_compression",
    "gzip_backend",
    "is_layer_media_type",
    "layer_compression",
    "with_compression",
    "zstd_available",
    "zstd_parallel_streams",
]

#: The first bytes of a gzip member (RFC 1952).
GZIP_MAGIC = b"\x1f\x8b"
#: The first bytes of a zstd frame (RFC 8878).
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

#: How many bytes :func:`detect_compression` needs to tell every format apart.
_PREFIX_SIZE = max(len(GZIP_MAGIC), len(ZSTD_MAGIC))

#: Input bytes per block of a gzip stream we write. Each block is compressed on its own (primed
#: with the 32 KiB before it), so the block size is part of the output: a constant, never
#: derived from the number of cores, so that the bytes (and digests) are the same everywhere.
GZIP_BLOCK_SIZE = 1024 * 1024
#: deflate's window: how much of the preceding input primes each block.
_DEFLATE_WINDOW = 32 * 1024
#: A gzip member header: no name, no timestamp (mtime 0), no extra flags, OS "unknown" (as
#: Go's writer, and so skopeo, write it).
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
#: An empty final deflate block (fixed Huffman codes): ends the blocks, each sync-flushed.
_DEFLATE_END = b"\x03\x00"
#: Input a compressing reader reads before it starts threads: below it they cost more than
#: they give.
_PARALLEL_THRESHOLD = 4 * GZIP_BLOCK_SIZE
#: The most threads one stream uses by default.
_MAX_DEFAULT_THREADS = 8


def _default_threads() -> int:
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        count = os.cpu_count() or 1
    return max(1, min(count, _MAX_DEFAULT_THREADS))


#: How many threads compress one large gzip stream when :func:`compressing_reader` is not told
#: (``threads=``): the CPUs this process may run on, at most 8. Also bounds the blocks the
#: whole process has in its compression pools (this plus one). May be changed at run time;
#: 1 compresses in the reading thread. The output does not depend on it.
compression_threads: int = _default_threads()

#: A zstd stream whose ``size_hint`` is at least this many bytes is compressed by zstd's
#: worker threads (below it, in one thread: a stream must be long for the threads, their
#: buffers and the wait for a turn to pay, and smaller layers already spread over the cores
#: by being copied several at a time). Part of the output: a constant.
ZSTD_PARALLEL_THRESHOLD = 128 * 1024 * 1024
#: Input bytes per job of a multithreaded zstd stream. zstd cuts its input in jobs of this
#: size whatever the number of workers and however the input arrives, so the output depends
#: on it (a constant); each job in flight holds about twice this much memory. 1 MiB, with
#: :data:`ZSTD_OVERLAP_LOG`, compresses as well as one thread does, in about 12 MiB for two
#: workers (zstd's default, 4 windows, took 45-70 MiB).
ZSTD_JOB_SIZE = 1024 * 1024
#: How much of the input before a job primes it (zstd's ``overlap_log``): 2^(log - 9) of the
#: window (7: a quarter). Part of the output too.
ZSTD_OVERLAP_LOG = 7
#: Output chunks a multithreaded zstd stream may have ready ahead of its reader.
_ZSTD_QUEUE_CHUNKS = 4
#: The most zstd workers one stream uses: each costs 2-3 MiB, and four at level 3 already
#: compress faster than one thread can hash and hand over the input.
_ZSTD_MAX_WORKERS = 4

#: How many multithreaded zstd streams (see :data:`ZSTD_PARALLEL_THRESHOLD`) the process
#: compresses at once; others wait for their turn when first read (a thread already holding
#: one never waits, so one thread reading several cannot deadlock). May be changed at run
#: time; the output does not depend on it.
zstd_parallel_streams: int = 1

GzipBackend = Literal["isal", "zlib"]


class Compression(enum.Enum):
    """A layer compression format."""

    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"

    @classmethod
    def parse(cls, value: Compression | str) -> Compression:
        """The format named ``value`` (``"gzip"``, ``"zstd"``, ``"none"``), case-insensitively."""
        if isinstance(value, Compression):
            return value
        try:
            return cls(value.lower())
        except ValueError:
            known = ", ".join(c.value for c in cls)
            raise UnsupportedError(
                f"unknown compression format {value!r} (known: {known})"
            ) from None


def detect_compression(prefix: bytes) -> Compression:
    """The compression of a blob whose first bytes are ``prefix`` (4 bytes tell every format).

    Anything that is neither gzip nor zstd, including a prefix too short to tell, is
    :attr:`Compression.NONE`.
    """
    if prefix.startswith(GZIP_MAGIC):
        return Compression.GZIP
    if prefix.startswith(ZSTD_MAGIC):
        return Compression.ZSTD
    return Compression.NONE


# -- backends ---------------------------------------------------------------------------------
def _import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


# The optional backends are looked for on first use, not at import: a copy that (de)compresses
# nothing (most registry copies, every sync of unchanged layers) never loads them.
@functools.cache
def _isal() -> Any:
    return _import("isal.isal_zlib")


@functools.cache
def _zstd() -> Any:
    return _import("compression.zstd") or _import("backports.zstd")


@functools.cache
def _crc32() -> Any:
    """The fastest CRC-32 at hand (ISA-L's is several times zlib's; the value is the same)."""
    isal = _isal()
    return isal.crc32 if isal is not None else zlib.crc32


def gzip_backend() -> GzipBackend:
    """The gzip implementation used by default: ``"isal"`` when installed, else ``"zlib"``."""
    return "isal" if _isal() is not None else "zlib"


def zstd_available() -> bool:
    """Whether zstd (de)compression is possible here."""
    return _zstd() is not None


def _gzip_module(backend: GzipBackend | None) -> Any:
    backend = backend or gzip_backend()
    if backend == "isal":
        isal = _isal()
        if isal is None:
            raise UnsupportedError(
                "the isal gzip backend is not installed (pip install imagetypes[fast])"
            )
        return isal
    if backend != "zlib":
        raise UnsupportedError(f"unknown gzip backend {backend!r} (known: isal, zlib)")
    return zlib


def _zstd_module() -> Any:
    zstd = _zstd()
    if zstd is None:
        raise UnsupportedError(
            "zstd compression needs Python 3.14 or the backports.zstd package "
            "(pip install imagetypes[zstd])"
        )
    return zstd


def _isal_level(level: int) -> int:
    # ISA-L has levels 0 (fastest) to 3; map zlib's 1-9 onto them by ratio.
    if level <= 1:
        return 0
    if level <= 4:
        return 1
    if level <= 7:
        return 2
    return 3


class _Decoder(Protocol):
    """One compressed member/frame being decoded (zlib-, isal- or zstd-style objects)."""

    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    @property
    def needs_input(self) -> bool: ...

    def decompress(self, data: bytes, max_length: int) -> bytes: ...


class _ZlibDecoder:
    """zlib's and ISA-L's decompress objects, given the needs_input API of zstd/lzma."""

    def __init__(self, module: Any) -> None:
        self._obj = module.decompressobj(31)  # 16 + 15: gzip wrapper, 32 KiB window

    @property
    def eof(self) -> bool:
        return bool(self._obj.eof)

    @property
    def unused_data(self) -> bytes:
        return bytes(self._obj.unused_data)

    @property
    def needs_input(self) -> bool:
        return not self._obj.unconsumed_tail

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if not data:
            data = self._obj.unconsumed_tail
        return bytes(self._obj.decompress(data, max_length))


class _ZstdDecoder:
    def __init__(self, module: Any) -> None:
        self._obj = module.ZstdDecompressor()

    @property
    def eof(self) -> bool:
        return bool(self._obj.eof)

    @property
    def unused_data(self) -> bytes:
        return bytes(self._obj.unused_data)

    @property
    def needs_input(self) -> bool:
        return bool(self._obj.needs_input)

    def decompress(self, data: bytes, max_length: int) -> bytes:
        return bytes(self._obj.decompress(data, max_length))


class CompressionReader(Closing):
    """A binary stream over another one, (de)compressing on the fly.

    Made by :func:`decompressing_reader` and :func:`compressing_reader`; ``close()`` closes
    the wrapped stream. :attr:`compression` is the format of the compressed side.
    """

    def __init__(self, raw: Readable, compression: Compression, prefix: bytes = b"") -> None:
        self._raw = raw
        self.compression = compression
        self._pending = prefix  # input read ahead (detection) and not yet consumed
        self._chunk = b""  # the last output produced, handed out from _pos on
        self._pos = 0
        self._raw_eof = False
        self._done = False
        self.bytes_in = len(prefix)
        self.bytes_out = 0

    # -- to override -----------------------------------------------------------------------
    def _produce(self, want: int) -> bytes:
        """Up to ``want`` (or more) output bytes; b"" at the end of the output."""
        raise NotImplementedError

    # -- input -----------------------------------------------------------------------------
    def _input(self) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        if self._raw_eof:
            return b""
        data = self._raw.read(CHUNK_SIZE)
        if not data:
            self._raw_eof = True
            return b""
        self.bytes_in += len(data)
        return bytes(data)

    # -- Readable --------------------------------------------------------------------------
    def _available(self, want: int) -> int:
        """Output bytes ready in the current chunk, producing a new one if it is used up."""
        available = len(self._chunk) - self._pos
        if available or self._done:
            return available
        chunk = self._produce(max(want, CHUNK_SIZE))
        if not chunk:
            self._done = True
        self._chunk, self._pos = chunk, 0
        return len(chunk)

    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0:
            return read_all(self)
        if size == 0:
            return b""
        available = self._available(size)
        if not available:
            return b""
        chunk, start = self._chunk, self._pos
        if start == 0 and size >= available:
            data = chunk  # the whole chunk: no copy
        else:
            data = bytes(memoryview(chunk)[start : start + min(size, available)])
        self._consumed(len(data))
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        view = memoryview(buffer).cast("B")
        if not len(view):
            return 0
        available = self._available(len(view))
        count = min(len(view), available)
        if count:
            view[:count] = memoryview(self._chunk)[self._pos : self._pos + count]
            self._consumed(count)
        return count

    def _consumed(self, count: int) -> None:
        self._pos += count
        self.bytes_out += count
        if self._pos == len(self._chunk):
            self._chunk, self._pos = b"", 0

    def readable(self) -> bool:
        return True

    def release(self) -> None:
        """Stops any work done for this stream in other threads and gives back the process's
        share of them, without closing the wrapped stream (which no other thread reads after
        this returns). Reading is an error afterwards unless the stream was read to its end.
        """

    def close(self) -> None:
        """Releases the stream (:meth:`release`) and closes the wrapped stream."""
        self.release()
        close_stream(self._raw)


class _PassThrough(CompressionReader):
    def _produce(self, want: int) -> bytes:
        return self._input()


class _Decompressor(CompressionReader):
    """Decodes gzip members / zstd frames one after another (``pigz`` and ``zstd`` can write
    several); anything after the last one but another member is an error, as in Go."""

    def __init__(self, raw: Readable, compression: Compression, prefix: bytes, module: Any) -> None:
        super().__init__(raw, compression, prefix)
        self._module = module
        self._decoder: _Decoder | None = self._new_decoder()
        self._members = 1

    def _new_decoder(self) -> _Decoder:
        if self.compression is Compression.GZIP:
            return _ZlibDecoder(self._module)
        return _ZstdDecoder(self._module)

    def _produce(self, want: int) -> bytes:
        name = self.compression.value
        while True:
            decoder = self._decoder
            if decoder is None:
                return b""
            if decoder.eof:
                rest = decoder.unused_data + self._pending
                self._pending = b""
                while len(rest) < _PREFIX_SIZE and (more := self._input()):
                    rest += more
                if not rest:
                    self._decoder = None
                    return b""
                if detect_compression(rest) is not self.compression:
                    raise CompressionError(
                        f"{name} stream: unexpected data after member {self._members}"
                    )
                self._members += 1
                self._decoder = decoder = self._new_decoder()
                data = rest
            elif decoder.needs_input:
                data = self._input()
                if not data:
                    raise CompressionError(f"{name} stream is truncated")
            else:
                data = b""
            try:
                out = decoder.decompress(data, want)
            except Exception as e:  # zlib.error, IsalError, ZstdError: not one common base
                raise CompressionError(f"corrupt {name} stream: {e}") from e
            if out:
                return out


class _Compressor(CompressionReader):
    def __init__(self, raw: Readable, compression: Compression, obj: Any, finish: Any) -> None:
        super().__init__(raw, compression)
        self._obj = obj
        self._finish = finish
        self._flushed = False

    def _produce(self, want: int) -> bytes:
        while not self._flushed:
            data = self._input()
            if not data:
                self._flushed = True
                return bytes(self._finish(self._obj))
            out = bytes(self._obj.compress(data))
            if out:
                return out
        return b""


class _GzipBlocks(CompressionReader):
    """gzip as ``pigz`` writes it: blocks of :data:`GZIP_BLOCK_SIZE` input bytes, each
    compressed on its own as raw deflate primed with the 32 KiB before it (``zdict``) and
    ended with a sync flush, so that the blocks concatenate into one deflate stream.

    Blocks are compressed in the reading thread until the input passes
    :data:`_PARALLEL_THRESHOLD`, then also by the process's pool of :data:`compression_threads`
    threads (zlib and ISA-L release the GIL): at most ``threads + 1`` blocks of this stream in
    flight, within a budget for the whole process. A block's bytes depend only on its input,
    its window and the level, so the output is the same whatever the threads and the timing.
    """

    def __init__(self, raw: Readable, module: Any, level: int, threads: int) -> None:
        super().__init__(raw, Compression.GZIP)
        self._module = module
        self._level = level
        self._threads = threads
        self._local: dict[Any, Any] = {}  # the compressor of the blocks done in this thread
        self._crc = 0
        self._isize = 0
        self._window = b""
        self._queue: collections.deque[bytes | Future[bytes]] = collections.deque()
        self._slots = 0  # pool slots (see _take_slot) held by the blocks in flight
        self._state: Literal["header", "blocks", "done", "released"] = "header"

    def _read_block(self) -> bytes:
        """The next block of input (shorter only at the end; b"" at the end)."""
        if self._raw_eof:
            return b""
        data = self._raw.read(GZIP_BLOCK_SIZE)
        if data and len(data) < GZIP_BLOCK_SIZE:
            buffer = bytearray(data)
            while len(buffer) < GZIP_BLOCK_SIZE:
                more = self._raw.read(GZIP_BLOCK_SIZE - len(buffer))
                if not more:
                    break
                buffer += more
            data = bytes(buffer)
        if len(data) < GZIP_BLOCK_SIZE:
            self._raw_eof = True
        self.bytes_in += len(data)
        return bytes(data)

    def _deflate(self, block: bytes, window: bytes) -> bytes:
        return _deflate_block(self._module, self._level, block, window, self._local)

    def _submit(self) -> bool:
        """Read one block and compress it, in the pool when a slot is free, else here."""
        block = self._read_block()
        if not block:
            return False
        self._crc = _crc32()(block, self._crc)
        self._isize += len(block)
        window, self._window = self._window, block[-_DEFLATE_WINDOW:]
        if self._wants_pool() and _take_slot():
            self._slots += 1
            self._queue.append(
                _shared_pool().submit(_deflate_in_pool, self._module, self._level, block, window)
            )
        else:
            self._queue.append(self._deflate(block, window))
        return True

    def _wants_pool(self) -> bool:
        return self._threads > 1 and self.bytes_in > _PARALLEL_THRESHOLD

    def _produce(self, want: int) -> bytes:
        if self._state == "header":
            self._state = "blocks"
            return _GZIP_HEADER
        if self._state == "done":
            return b""
        if self._state == "released":
            raise ValueError("read of a released compression stream")
        # Keep the pool fed: read (and checksum) input here while the threads compress. With
        # blocks in flight, more are read only while the process has pool slots to spare;
        # otherwise this thread waits for its oldest (or, with nothing queued, compresses).
        while len(self._queue) <= self._threads:
            if self._queue and not (self._wants_pool() and _slot_free()):
                break
            if not self._submit():
                break
        if self._queue:
            item = self._queue.popleft()
            if isinstance(item, bytes):
                return item
            self._slots -= 1
            _release_slots(1)
            try:
                return item.result()
            except Exception as e:  # zlib.error, IsalError, OverflowError: no common base
                self._stop()
                raise CompressionError(f"gzip compression failed: {e}") from e
        self._state = "done"
        self._stop()
        return _DEFLATE_END + struct.pack("<II", self._crc, self._isize & 0xFFFFFFFF)

    def _stop(self) -> None:
        for item in self._queue:
            if isinstance(item, Future):
                item.cancel()  # a block already being compressed finishes (milliseconds)
        self._queue.clear()
        slots, self._slots = self._slots, 0
        _release_slots(slots)

    def release(self) -> None:
        self._stop()
        if self._state != "done":
            self._state = "released"
            self._chunk, self._pos = b"", 0

    def __del__(self) -> None:
        # A reader dropped half read must not keep the process's pool slots.
        if getattr(self, "_slots", 0):
            self._stop()


def _deflate_block(
    module: Any, level: int, block: bytes, window: bytes, cache: dict[Any, Any]
) -> bytes:
    """``block`` as raw deflate primed with ``window``, sync-flushed (byte-aligned, open)."""
    blocks = getattr(module, "_ParallelCompress", None) if module is _isal() else None
    if blocks is not None:
        # ISA-L's block compressor (what isal.igzip_threaded uses): one call compresses with a
        # dictionary and sync-flushes into a preallocated buffer, outside the GIL; twice as fast
        # as a compressobj. Optional: it is not part of isal's documented API. ``cache`` keeps
        # one per thread (its buffer is reused).
        compressor = cache.get(level)
        if compressor is None:
            # Level 0 never falls back to stored blocks: random data grows by up to 2x.
            size = 2 * GZIP_BLOCK_SIZE + 500 if level == 0 else GZIP_BLOCK_SIZE * 11 // 10
            compressor = cache[level] = blocks(buffersize=size, level=level)
        out, _ = compressor.compress_and_crc(block, window)
        return bytes(out)
    if window:
        obj = module.compressobj(level, module.DEFLATED, -15, module.DEF_MEM_LEVEL, 0, window)
    else:
        obj = module.compressobj(level, module.DEFLATED, -15)
    return bytes(obj.compress(block) + obj.flush(module.Z_SYNC_FLUSH))


# One pool for the whole process, of compression_threads threads (created on first use), so
# that layers compressed at once share the cores, and each pool thread keeps one compressor.
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_pool_local = threading.local()


def _deflate_in_pool(module: Any, level: int, block: bytes, window: bytes) -> bytes:
    return _deflate_block(module, level, block, window, _pool_local.__dict__)


def _shared_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(compression_threads, thread_name_prefix="imagetypes-gzip")
        return _pool


# Blocks in the compression pool, at most compression_threads + 1 for the whole process:
# this bounds the memory of many layers compressed at once (each also holds at most the one
# block it compresses itself), and spreads the cores over them.
_slots_lock = threading.Lock()
_slots_used = 0


def _slot_free() -> bool:
    return _slots_used < compression_threads + 1


def _take_slot() -> bool:
    global _slots_used
    with _slots_lock:
        if _slots_used >= compression_threads + 1:
            return False
        _slots_used += 1
        return True


def _release_slots(count: int) -> None:
    global _slots_used
    if count:
        with _slots_lock:
            _slots_used -= count


# Multithreaded zstd streams at work, by the thread that reads each (the one that waited for its
# turn): at most zstd_parallel_streams in all, except that a thread holding one may take more.
_zstd_turns = threading.Condition()
_zstd_holders: dict[int, int] = {}


def _take_zstd_turn() -> int:
    """Wait until this thread may start a multithreaded zstd stream; the turn's owner."""
    me = threading.get_ident()
    with _zstd_turns:
        while me not in _zstd_holders and sum(_zstd_holders.values()) >= max(
            1, zstd_parallel_streams
        ):
            _zstd_turns.wait()
        _zstd_holders[me] = _zstd_holders.get(me, 0) + 1
    return me


def _give_zstd_turn(owner: int) -> None:
    with _zstd_turns:
        left = _zstd_holders.pop(owner) - 1
        if left:
            _zstd_holders[owner] = left
        _zstd_turns.notify_all()


def _start_afresh_after_fork() -> None:
    """In a forked child: the parent's pool threads, and the blocks and turns its streams
    held, are not this process's. Forget them (the pool is made again on first use); else
    the child's first compression waits forever for threads that do not exist in it."""
    global _pool, _pool_lock, _slots_lock, _slots_used, _zstd_turns, _zstd_holders
    _pool = None
    _pool_lock = threading.Lock()
    _slots_lock = threading.Lock()
    _slots_used = 0
    _zstd_turns = threading.Condition()
    _zstd_holders = {}


os.register_at_fork(after_in_child=_start_afresh_after_fork)


_Item = bytes | BaseException | None  # output, a failure, or the end


class _ZstdFeeder:
    """The thread of a multithreaded zstd stream that reads its input and hands it to zstd
    (whose workers compress it), queueing the output for the reader of the stream.

    So the input side (often decompression and hashing of a source layer) runs beside the
    reader's side (hashing and writing the output) and zstd's workers. It holds no reference
    to the :class:`_ZstdThreads` reading it: a reader dropped half way stops it. It owns the
    compressor, and gives the stream's turn back when it ends, once zstd's buffers are freed.
    """

    def __init__(self, raw: Readable, compressor: Any, owner: int) -> None:
        self.raw = raw
        self.compressor: Any = compressor
        self.owner = owner
        self.queue: queue.Queue[_Item] = queue.Queue(_ZSTD_QUEUE_CHUNKS)
        self.stopped = threading.Event()
        self.bytes_in = 0
        self.thread = threading.Thread(target=self._run, name="imagetypes-zstd", daemon=True)

    def _run(self) -> None:
        try:
            while not self.stopped.is_set():
                try:
                    data = self.raw.read(CHUNK_SIZE)
                except BaseException as e:  # the reader raises it: whatever the input raised
                    self._put(e)
                    return
                try:
                    if data:
                        self.bytes_in += len(data)
                        out = self.compressor.compress(data)
                    else:
                        out = self.compressor.flush(self.compressor.FLUSH_FRAME)
                except Exception as e:  # ZstdError, MemoryError
                    failed = CompressionError(f"zstd compression failed: {e}")
                    failed.__cause__ = e
                    self._put(failed)
                    return
                if out:
                    self._put(bytes(out))
                if not data:
                    self._put(None)
                    return
        finally:
            self.compressor = None  # free zstd's threads and buffers before the turn goes
            _give_zstd_turn(self.owner)

    def _put(self, item: _Item) -> None:
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=0.05)  # wakes at once when there is room
                return
            except queue.Full:
                continue

    def stop(self) -> None:
        """Stop the thread and wait for it (a read or compression under way finishes)."""
        self.stopped.set()
        if self.thread.ident is not None and self.thread is not threading.current_thread():
            self.thread.join()


class _ZstdThreads(CompressionReader):
    """zstd compressed by zstd's worker threads (``nb_workers``), fed by a :class:`_ZstdFeeder`.

    zstd's multithreaded mode cuts the input in jobs of :data:`ZSTD_JOB_SIZE` (primed with the
    end of the job before it) whatever the number of workers and however the input is handed
    over, so the frame is the same for any ``nb_workers`` from 1 up; it differs from the
    single-threaded one. The stream waits for its turn (:data:`zstd_parallel_streams`) when
    first read, and gives it back at its end, on error, on :meth:`release` or when dropped.
    """

    def __init__(self, raw: Readable, module: Any, level: int | None, workers: int) -> None:
        super().__init__(raw, Compression.ZSTD)
        self._module = module
        self._level = level
        self._workers = workers
        self._feeder: _ZstdFeeder | None = None
        self._state: Literal["new", "running", "done", "failed", "released"] = "new"
        self._error: BaseException | None = None

    def _compressor(self) -> Any:
        param = self._module.CompressionParameter
        options = {
            param.nb_workers: self._workers,
            param.job_size: ZSTD_JOB_SIZE,
            param.overlap_log: ZSTD_OVERLAP_LOG,
        }
        if self._level is not None:
            options[param.compression_level] = self._level
        try:
            return self._module.ZstdCompressor(options=options)
        except self._module.ZstdError as e:  # a libzstd built without threads
            raise UnsupportedError(f"zstd cannot compress on worker threads here: {e}") from e

    def _produce(self, want: int) -> bytes:
        if self._state == "new":
            owner = _take_zstd_turn()
            try:
                feeder = _ZstdFeeder(self._raw, self._compressor(), owner)
                feeder.thread.start()
            except BaseException:
                _give_zstd_turn(owner)
                raise
            self._feeder, self._state = feeder, "running"
        if self._state == "done":
            return b""
        if self._state == "failed" and self._error is not None:
            raise self._error  # again: the stream has no end
        if self._state == "released" or self._feeder is None:
            raise ValueError("read of a released compression stream")
        item = self._feeder.queue.get()
        self.bytes_in = self._feeder.bytes_in
        if isinstance(item, bytes):
            return item
        # The end, or a failure: the feeder has stopped (and gives the turn back) after it.
        self._feeder.stop()
        self._feeder = None
        if item is None:
            self._state = "done"
            return b""
        self._state, self._error = "failed", item
        raise item

    def release(self) -> None:
        feeder, self._feeder = self._feeder, None
        if self._state in ("new", "running"):
            self._state = "released"
            self._chunk, self._pos = b"", 0
        if feeder is not None:
            feeder.stopped.set()
            while True:  # a feeder waiting for room in the queue sees the stop at once
                try:
                    feeder.queue.get_nowait()
                except queue.Empty:
                    break
            feeder.stop()

    def __del__(self) -> None:
        # A stream dropped half read stops its feeder (without waiting: this may run anywhere),
        # which gives the turn back for the streams waiting for it.
        feeder = getattr(self, "_feeder", None)
        if feeder is not None:
            feeder.stopped.set()


def _read_prefix(stream: Readable) -> bytes:
    prefix = b""
    while len(prefix) < _PREFIX_SIZE:
        data = stream.read(_PREFIX_SIZE - len(prefix))
        if not data:
            break
        prefix += data
    return prefix


def decompressing_reader(
    stream: Readable,
    compression: Compression | str | None = None,
    *,
    gzip_backend: GzipBackend | None = None,
) -> CompressionReader:
    """A stream of the uncompressed content of ``stream``.

    The format is detected from the first bytes unless ``compression`` names it; an
    uncompressed stream passes through unchanged. Corrupt or truncated input raises
    :class:`CompressionError` from ``read``; zstd without a zstd module raises
    :class:`~imagetypes.UnsupportedError` at once. ``gzip_backend`` forces ``"zlib"`` or
    ``"isal"`` (default: the fastest installed).
    """
    prefix = _read_prefix(stream)
    detected = detect_compression(prefix)
    if compression is not None:
        wanted = Compression.parse(compression)
        if wanted is not Compression.NONE and prefix and detected is not wanted:
            raise CompressionError(f"the stream is not {wanted.value}-compressed")
        detected = wanted
    if detected is Compression.NONE:
        return _PassThrough(stream, Compression.NONE, prefix)
    if detected is Compression.GZIP:
        return _Decompressor(stream, detected, prefix, _gzip_module(gzip_backend))
    return _Decompressor(stream, detected, prefix, _zstd_module())


def compressing_reader(
    stream: Readable,
    format: Compression | str = "gzip",
    level: int | None = None,
    *,
    gzip_backend: GzipBackend | None = None,
    threads: int | None = None,
    size_hint: int | None = None,
) -> CompressionReader:
    """A stream of ``stream``'s content compressed as ``format`` (``"gzip"`` or ``"zstd"``).

    ``level`` is zlib's 1-9 for gzip (mapped onto ISA-L's 0-3 when ISA-L is used; default:
    zlib's 6, ISA-L's 2) and zstd's level for zstd (default 3). ``"none"`` passes the stream
    through. gzip of a stream of more than a few MiB is compressed by ``threads`` threads
    (default: :data:`compression_threads`); the output is the same for any number of threads.

    ``size_hint`` is the expected size of the content, or of the blob it is read from (a
    layer's descriptor size), when known: zstd of a stream hinted at
    :data:`ZSTD_PARALLEL_THRESHOLD` or more is compressed by ``threads`` of zstd's worker
    threads (at most 4; at least one), with output that is the same for any number of
    threads but not the same as without the hint. Pass a value fixed for the content (never
    one that depends on the moment) to get the same bytes every time.
    :meth:`CompressionReader.release` (or ``close``) stops the threads of a stream that is not
    read to its end.
    """
    compression = Compression.parse(format)
    if threads is None:
        threads = compression_threads
    if threads < 1:
        raise ValueError(f"threads must be at least 1, not {threads}")
    if compression is Compression.NONE:
        return _PassThrough(stream, compression)
    if compression is Compression.GZIP:
        module = _gzip_module(gzip_backend)
        if module is zlib:
            backend_level = 6 if level is None else level
        else:
            backend_level = module.ISAL_DEFAULT_COMPRESSION if level is None else _isal_level(level)
        return _GzipBlocks(stream, module, backend_level, threads)
    module = _zstd_module()
    if size_hint is not None and size_hint >= ZSTD_PARALLEL_THRESHOLD:
        return _ZstdThreads(stream, module, level, min(threads, _ZSTD_MAX_WORKERS))
    # Smaller streams run in one thread, with no worker: zstd's workers cost about 12 MiB per
    # stream, and layers are compressed several at a time.
    obj = module.ZstdCompressor(level=level)
    return _Compressor(stream, compression, obj, lambda o: o.flush(o.FLUSH_FRAME))


# -- media types ------------------------------------------------------------------------------
# (uncompressed, gzip, zstd) variants of each family of layer media types.
_FAMILIES: tuple[tuple[str, str, str | None], ...] = (
    (mt.OCI_LAYER, mt.OCI_LAYER_GZIP, mt.OCI_LAYER_ZSTD),
    (
        mt.OCI_NONDISTRIBUTABLE_LAYER,
        mt.OCI_NONDISTRIBUTABLE_LAYER_GZIP,
        mt.OCI_NONDISTRIBUTABLE_LAYER_ZSTD,
    ),
    # Docker schema 2 has no zstd layer type.
    (mt.DOCKER_UNCOMPRESSED_LAYER, mt.DOCKER_LAYER, None),
    (mt.DOCKER_FOREIGN_UNCOMPRESSED_LAYER, mt.DOCKER_FOREIGN_LAYER, None),
)
_BY_TYPE: dict[str, tuple[int, Compression]] = {}
for _i, _family in enumerate(_FAMILIES):
    for _compression, _type in zip(
        (Compression.NONE, Compression.GZIP, Compression.ZSTD), _family, strict=True
    ):
        if _type is not None:
            _BY_TYPE[_type] = (_i, _compression)


def is_layer_media_type(media_type: str) -> bool:
    """Whether ``media_type`` is an OCI or Docker layer type this module knows."""
    return mt.normalize(media_type) in _BY_TYPE


def layer_compression(media_type: str) -> Compression | None:
    """The compression a layer media type declares; ``None`` for a type that is not a layer's."""
    found = _BY_TYPE.get(mt.normalize(media_type))
    return found[1] if found else None


def with_compression(media_type: str, compression: Compression | str) -> str:
    """The variant of a layer media type with the given compression.

    ``with_compression(OCI_LAYER_GZIP, "none")`` is ``OCI_LAYER``; Docker types have no zstd
    variant (:class:`~imagetypes.UnsupportedError`), nor have non-layer types.
    """
    target = Compression.parse(compression)
    found = _BY_TYPE.get(mt.normalize(media_type))
    if found is None:
        raise UnsupportedError(f"{media_type!r} is not a layer media type")
    variant = _FAMILIES[found[0]][
        [Compression.NONE, Compression.GZIP, Compression.ZSTD].index(target)
    ]
    if variant is None:
        raise UnsupportedError(f"{media_type!r} has no {target.value}-compressed variant")
    return variant
