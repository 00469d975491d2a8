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

The media type helpers map layer media types between their compressed and uncompressed forms
(:func:`layer_compression`, :func:`with_compression`).
"""

from __future__ import annotations

import enum
import importlib
import zlib
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol

from . import mediatypes as mt
from .digest import CHUNK_SIZE, Readable
from .errors import CompressionError, UnsupportedError

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "GZIP_MAGIC",
    "ZSTD_MAGIC",
    "Compression",
    "CompressionReader",
    "compressing_reader",
    "decompressing_reader",
    "detect_compression",
    "gzip_backend",
    "is_layer_media_type",
    "layer_compression",
    "with_compression",
    "zstd_available",
]

#: The first bytes of a gzip member (RFC 1952).
GZIP_MAGIC = b"\x1f\x8b"
#: The first bytes of a zstd frame (RFC 8878).
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

#: How many bytes :func:`detect_compression` needs to tell every format apart.
_PREFIX_SIZE = max(len(GZIP_MAGIC), len(ZSTD_MAGIC))

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


_isal = _import("isal.isal_zlib")
_zstd = _import("compression.zstd") or _import("backports.zstd")


def gzip_backend() -> GzipBackend:
    """The gzip implementation used by default: ``"isal"`` when installed, else ``"zlib"``."""
    return "isal" if _isal is not None else "zlib"


def zstd_available() -> bool:
    """Whether zstd (de)compression is possible here."""
    return _zstd is not None


def _gzip_module(backend: GzipBackend | None) -> Any:
    backend = backend or gzip_backend()
    if backend == "isal":
        if _isal is None:
            raise UnsupportedError(
                "the isal gzip backend is not installed (pip install imagetypes[fast])"
            )
        return _isal
    if backend != "zlib":
        raise UnsupportedError(f"unknown gzip backend {backend!r} (known: isal, zlib)")
    return zlib


def _zstd_module() -> Any:
    if _zstd is None:
        raise UnsupportedError(
            "zstd compression needs Python 3.14 or the backports.zstd package "
            "(pip install imagetypes[zstd])"
        )
    return _zstd


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


class CompressionReader:
    """A binary stream over another one, (de)compressing on the fly.

    Made by :func:`decompressing_reader` and :func:`compressing_reader`; ``close()`` closes
    the wrapped stream. :attr:`compression` is the format of the compressed side.
    """

    def __init__(self, raw: Readable, compression: Compression, prefix: bytes = b"") -> None:
        self._raw = raw
        self.compression = compression
        self._pending = prefix  # input read ahead (detection) and not yet consumed
        self._out = bytearray()
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
    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0:
            parts = []
            while chunk := self.read(CHUNK_SIZE):
                parts.append(chunk)
            return b"".join(parts)
        if size == 0:
            return b""
        available = len(self._out) - self._pos
        while available == 0:
            if self._done:
                return b""
            chunk = self._produce(max(size, CHUNK_SIZE))
            if not chunk:
                self._done = True
                return b""
            if size >= len(chunk):
                self.bytes_out += len(chunk)
                return chunk
            self._out = bytearray(chunk)
            self._pos = 0
            available = len(chunk)
        end = self._pos + min(size, available)
        data = bytes(self._out[self._pos : end])
        self._pos = end
        if self._pos == len(self._out):
            self._out.clear()
            self._pos = 0
        self.bytes_out += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        close = getattr(self._raw, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


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
) -> CompressionReader:
    """A stream of ``stream``'s content compressed as ``format`` (``"gzip"`` or ``"zstd"``).

    ``level`` is zlib's 1-9 for gzip (mapped onto ISA-L's 0-3 when ISA-L is used; default:
    zlib's 6, ISA-L's 2) and zstd's level for zstd (default 3). ``"none"`` passes the stream
    through.
    """
    compression = Compression.parse(format)
    if compression is Compression.NONE:
        return _PassThrough(stream, compression)
    if compression is Compression.GZIP:
        module = _gzip_module(gzip_backend)
        if module is zlib:
            obj = zlib.compressobj(6 if level is None else level, zlib.DEFLATED, 31)
        else:
            isal_level = module.ISAL_DEFAULT_COMPRESSION if level is None else _isal_level(level)
            obj = module.compressobj(isal_level, module.DEFLATED, 31)
        return _Compressor(stream, compression, obj, lambda o: o.flush())
    zstd = _zstd_module()
    obj = zstd.ZstdCompressor(level=level)
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
