"""Streams the blob pipeline is built from: hashing the uncompressed content on the side."""

from __future__ import annotations

import hashlib

from ..compression import Compression, CompressionReader, decompressing_reader
from ..digest import CHUNK_SIZE, Digest, Readable, close_stream, read_all

__all__ = ["UncompressedTap"]


class _Feed:
    """What the decompressor of an :class:`UncompressedTap` reads: pulls from the tap."""

    def __init__(self, tap: UncompressedTap) -> None:
        self._tap = tap

    def read(self, size: int = -1, /) -> bytes:
        return self._tap._pull(size if size is not None and size > 0 else CHUNK_SIZE)


class UncompressedTap:
    """Passes a (compressed) stream through unchanged, hashing its decompressed content.

    The consumer reads the original bytes; whenever it needs more, the tap asks its
    decompressor for output, and the decompressor's reads are what pull bytes from the inner
    stream (and queue them for the consumer). So the content is read once, memory stays
    bounded (about one chunk of input queued), and :attr:`uncompressed_digest` is known when
    the consumer reaches the end. Corrupt compressed data raises from :meth:`read`.
    """

    def __init__(self, inner: Readable, compression: Compression | None = None) -> None:
        self._inner = inner
        self._compression = compression
        self._queue = bytearray()
        self._inner_eof = False
        self._hasher = hashlib.sha256()
        self._size = 0
        self._decoder: CompressionReader | None = None
        self._decoded_all = False
        self._digest: Digest | None = None

    def _pull(self, size: int) -> bytes:
        if self._inner_eof:
            return b""
        data = self._inner.read(size)
        if data:
            self._queue += data
        else:
            self._inner_eof = True
        return bytes(data)

    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0:
            return read_all(self)
        if size == 0:
            return b""
        while not self._queue:
            if not self._decoded_all:
                if self._decoder is None:
                    self._decoder = decompressing_reader(_Feed(self), self._compression)
                out = self._decoder.read(CHUNK_SIZE)
                if out:
                    self._hasher.update(out)
                    self._size += len(out)
                else:
                    self._decoded_all = True
                    self._digest = Digest.from_hash(self._hasher)
                continue
            # The decompressor has read to the end; drain whatever is left (nothing, normally)
            # so that the inner stream's own checks at EOF run.
            if not self._pull(CHUNK_SIZE):
                return b""
        data = bytes(self._queue[:size])
        del self._queue[:size]
        return data

    @property
    def uncompressed_digest(self) -> Digest:
        """The digest of the decompressed content; available once the stream was read."""
        if self._digest is None:
            raise RuntimeError("the stream has not been read to its end")
        return self._digest

    @property
    def uncompressed_size(self) -> int:
        """Bytes of decompressed content seen so far."""
        return self._size

    def close(self) -> None:
        close_stream(self._inner)
