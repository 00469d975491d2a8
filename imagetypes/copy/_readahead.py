"""Read-ahead: a blob's source is read (and hashed) in a thread while its destination writes.

A copy of one blob is a chain of blocking steps (receive, hash, write or send); run in one
thread, their times add up. Each of them releases the GIL, so a second thread that keeps the
source busy while the destination writes overlaps them: wall time tends to the slower side
instead of the sum of both.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from ..digest import CHUNK_SIZE, Digest, VerifyingReader, read_all

__all__ = ["READ_AHEAD_BUFFERS", "READ_AHEAD_BUFFER_SIZE", "READ_AHEAD_MIN", "ReadAhead"]

#: How many chunks a :class:`ReadAhead` holds ahead of its consumer (at most).
READ_AHEAD_BUFFERS = 4
#: The size of each of those chunks (the memory of one read-ahead is their product).
READ_AHEAD_BUFFER_SIZE = CHUNK_SIZE
#: The copy engine reads blobs of at least this many bytes ahead.
READ_AHEAD_MIN = 8 * CHUNK_SIZE


class _Chunk:
    """Bytes read ahead: a filled buffer of the ring, or the pieces ``read`` returned.

    A chunk of ``size`` 0 marks the end of the stream.
    """

    __slots__ = ("buffer", "pieces", "size")

    def __init__(self, buffer: bytearray | None, pieces: deque[bytes] | None, size: int) -> None:
        self.buffer = buffer
        self.pieces = pieces
        self.size = size


_END = _Chunk(None, None, 0)
_T = TypeVar("_T")
_R = TypeVar("_R", bytes, int)


class _Ring:
    """The state shared by a :class:`ReadAhead` and its producer thread.

    Kept apart from the reader so that the thread holds no reference to it: a reader dropped
    without ``close()`` is collected, and its finalizer stops the thread.
    """

    def __init__(self, count: int, size: int) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.size = size
        #: Chunks the producer may still hand over before the consumer gives one back: the
        #: bound on memory (the chunk the consumer is taking bytes from counts).
        self.tokens = count
        #: Buffers given back, filled again (reused: memory does not grow with the blob).
        self.free: list[bytearray] = []
        #: Chunks in stream order, for the consumer.
        self.filled: deque[_Chunk] = deque()
        #: What the source raised; handed to the consumer after the bytes read before it.
        self.error: BaseException | None = None
        self.stopping = False

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()

    def give_back(self, chunk: _Chunk) -> None:
        with self.cond:
            self.tokens += 1
            if chunk.buffer is not None:
                self.free.append(chunk.buffer)
            self.cond.notify_all()

    def produce(self, source: VerifyingReader, into_buffers: bool) -> None:
        """The producer thread: read chunks of ``source`` until its end, an error or stop.

        With ``into_buffers``, each chunk is one of the ring's buffers, filled with the
        source's ``readinto`` (for a consumer that copies into buffers of its own); else the
        chunk holds the bytes objects the source's ``read`` returns, handed on as they are
        (for a consumer that wants bytes objects: no copy). Either way a chunk is filled up
        to the buffer size (a socket gives some KiB per call): one hand-over per chunk keeps
        the threads' wake-ups few. The source hashes what it reads, in this thread.
        """
        size = self.size
        while True:
            with self.cond:
                while not self.tokens and not self.stopping:
                    self.cond.wait()
                if self.stopping:
                    return
                self.tokens -= 1
                buffer: bytearray | None = None
                if into_buffers:
                    buffer = self.free.pop() if self.free else bytearray(size)
            n = 0
            pieces: deque[bytes] | None = None
            error: BaseException | None = None
            try:
                if buffer is not None:
                    view = memoryview(buffer)
                    while n < size and (got := source.readinto(view[n:])):
                        n += got
                else:
                    pieces = deque()
                    while n < size and (data := source.read(size - n)):
                        pieces.append(data)
                        n += len(data)
            except BaseException as e:
                error = e
            with self.cond:
                if n:
                    self.filled.append(_Chunk(buffer, pieces, n))
                if error is not None:
                    self.error = error  # after the bytes read before it
                elif n < size:
                    self.filled.append(_END)
                self.cond.notify_all()
            if error is not None or n < size:
                return


class ReadAhead(VerifyingReader):
    """A verifying reader over another one, whose bytes a background thread reads ahead.

    The thread, started by the first read, reads ``source`` (so the source hashes and checks
    it there, exactly once) up to ``buffers`` chunks of ``buffer_size`` bytes ahead of the
    consumer. If the consumer's first call is :meth:`readinto`, the chunks are reused
    buffers and each byte is copied once, into the consumer's buffer; if it is :meth:`read`,
    they hold the source's own bytes objects, handed out without a copy. Whatever the source
    raises (a broken connection, a digest mismatch at its end) is raised to the consumer, as
    the same exception object, once the bytes read before it were handed out, and again on
    every later read.

    As a :class:`VerifyingReader` with the source's expectations, destinations take it as
    the verifying stream it is (:func:`~imagetypes.digest.verify_stream` does not wrap it
    again). :attr:`size`, :attr:`finished` and :attr:`digest` describe what the consumer
    received. :meth:`close` stops the thread, waits for it (a source read under way ends
    first, within the source's own timeouts), then closes the source.

    With ``threaded_reads`` False, a consumer whose first call is :meth:`read` reads from the
    source in its own thread, as if there were no read-ahead (for a source that never waits,
    such as a file, feeding a consumer that takes bytes objects: the thread would only add
    work); one whose first call is :meth:`readinto` still gets the thread.

    One consumer thread at a time.
    """

    def __init__(
        self,
        source: VerifyingReader,
        *,
        buffers: int = READ_AHEAD_BUFFERS,
        buffer_size: int = READ_AHEAD_BUFFER_SIZE,
        threaded_reads: bool = True,
    ) -> None:
        if buffers < 1 or buffer_size < 1:
            raise ValueError("a read-ahead needs at least one buffer of at least one byte")
        super().__init__(source, source.expected_digest, source.expected_size)
        self._source = source
        self._ring = _Ring(buffers, buffer_size)
        self._thread: threading.Thread | None = None
        self._closed = False
        # The chunk being handed out, and the position of its next byte (in its buffer, or
        # in its first piece).
        self._current: _Chunk | None = None
        self._pos = 0
        self._delivered = 0
        self._eof = False
        self._failure: BaseException | None = None
        self._threaded_reads = threaded_reads
        # Reading straight from the source, without a thread (see threaded_reads).
        self._direct = False
        self._finalizer = weakref.finalize(self, self._ring.stop)

    # -- reading ---------------------------------------------------------------------------
    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0:
            return read_all(self)
        if size == 0:
            return b""
        if self._thread is None and not self._threaded_reads:
            self._direct = True
        if self._direct:
            data = self._source_call(self._source.read, size)
            self._delivered += len(data)
            return data
        chunk = self._chunk(into_buffers=False)
        if chunk is None:
            return b""
        if chunk.buffer is not None:
            end = min(self._pos + size, chunk.size)
            data = bytes(memoryview(chunk.buffer)[self._pos : end])
            self._pos = end
        else:
            assert chunk.pieces is not None
            piece = chunk.pieces[0]
            if self._pos == 0 and len(piece) <= size:
                data = piece  # as the source returned it: no copy
            else:
                data = piece[self._pos : self._pos + size]
            self._pos += len(data)
            if self._pos == len(piece):
                chunk.pieces.popleft()
                self._pos = 0
        self._taken(chunk, len(data))
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        view = memoryview(buffer).cast("B")
        if len(view) == 0:
            return 0
        if self._direct:
            n: int = self._source_call(self._source.readinto, view)
            self._delivered += n
            return n
        chunk = self._chunk(into_buffers=True)
        if chunk is None:
            return 0
        if chunk.buffer is not None:
            end = min(self._pos + len(view), chunk.size)
            n = end - self._pos
            view[:n] = memoryview(chunk.buffer)[self._pos : end]
            self._pos = end
        else:
            assert chunk.pieces is not None
            piece = chunk.pieces[0]
            n = min(len(view), len(piece) - self._pos)
            view[:n] = memoryview(piece)[self._pos : self._pos + n]
            self._pos += n
            if self._pos == len(piece):
                chunk.pieces.popleft()
                self._pos = 0
        self._taken(chunk, n)
        return n

    def _source_call(self, method: Callable[[_T], _R], argument: _T) -> _R:
        """Read from the source in this thread (no read-ahead): its errors are its own."""
        if self._closed:
            raise ValueError("read from a closed read-ahead stream")
        result = method(argument)
        if not result:
            self._eof = True
        return result

    def _chunk(self, *, into_buffers: bool) -> _Chunk | None:
        """The chunk with bytes to hand out next; None at the end of the stream."""
        if self._failure is not None:
            raise self._failure
        if self._current is not None:
            return self._current
        if self._eof:
            return None
        if self._closed:
            raise ValueError("read from a closed read-ahead stream")
        if self._thread is None:
            self._start(into_buffers)
        ring = self._ring
        with ring.cond:
            while not ring.filled and ring.error is None:
                ring.cond.wait()
            if not ring.filled:
                # Every byte read before the failure has been handed out: now the failure.
                assert ring.error is not None
                self._failure = ring.error
                raise self._failure
            chunk = ring.filled.popleft()
        if not chunk.size:
            self._eof = True
            return None
        self._current, self._pos = chunk, 0
        return chunk

    def _taken(self, chunk: _Chunk, n: int) -> None:
        self._delivered += n
        if (chunk.buffer is not None and self._pos == chunk.size) or (
            chunk.pieces is not None and not chunk.pieces
        ):
            self._current, self._pos = None, 0
            self._ring.give_back(chunk)

    def _start(self, into_buffers: bool) -> None:
        self._thread = threading.Thread(
            target=self._ring.produce,
            args=(self._source, into_buffers),
            name="imagetypes-readahead",
            daemon=True,
        )
        self._thread.start()

    # -- results ---------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        """True once the consumer reached the end and the source verified it."""
        return self._eof and self._source.finished

    @property
    def digest(self) -> Digest:
        """The digest of everything handed out; only available after the end of stream."""
        if not self._eof:
            raise RuntimeError("the stream has not been read to its end")
        return self._source.digest

    @property
    def size(self) -> int:
        """The number of bytes handed out so far."""
        return self._delivered

    @property
    def running(self) -> bool:
        """Whether the background thread is alive (for tests and diagnostics)."""
        return self._thread is not None and self._thread.is_alive()

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Stop and join the background thread, then close the source."""
        if self._closed:
            return
        self._closed = True
        self._ring.stop()
        if self._thread is not None:
            self._thread.join()
        self._finalizer.detach()
        self._current = None
        self._source.close()
