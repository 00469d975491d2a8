"""Progress events a copy reports, and the reader that reports blob progress."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import attrs

from ..descriptor import Descriptor
from ..digest import CHUNK_SIZE, Digest, VerifyingReader

if TYPE_CHECKING:
    from ._options import CopyResult

__all__ = [
    "PROGRESS_INTERVAL",
    "BlobDone",
    "BlobProgress",
    "BlobSkipped",
    "BlobStarted",
    "CopyDone",
    "CopyStarted",
    "EventCollector",
    "ImageSkipped",
    "LayerRecompressed",
    "ManifestConverted",
    "ManifestWritten",
    "ProgressEvent",
    "Retrying",
    "SignatureMethod",
    "SigningManifest",
    "StoringSignatures",
]

#: What is done to a blob on its way: copied as it is, or its compression changed.
BlobOperation = Literal["copy", "compress", "decompress", "recompress"]

#: How a signature is made: GPG "simple signing" or a sigstore (cosign-compatible) key.
SignatureMethod = Literal["simple", "sigstore"]

#: A :class:`BlobProgress` event is sent about every this many bytes (and at the end).
PROGRESS_INTERVAL = CHUNK_SIZE


@attrs.frozen
class ProgressEvent:
    """The base class of every event :func:`~imagetypes.copy.copy_image` reports."""


@attrs.frozen
class CopyStarted(ProgressEvent):
    """The copy began; ``source`` and ``destination`` are ``transport:details`` strings."""

    source: str
    destination: str


@attrs.frozen
class ManifestConverted(ProgressEvent):
    """A manifest is written in another format than the source's."""

    from_type: str
    to_type: str
    #: Why: the format was forced, the destination does not accept the source's type, ...
    reason: str
    #: The source digest of the converted manifest.
    digest: Digest


@attrs.frozen
class BlobStarted(ProgressEvent):
    """A blob transfer began.

    ``operation`` tells whether the blob is copied as it is (``"copy"``) or its compression
    changes on the way (``"compress"``, ``"decompress"``, ``"recompress"``); the
    :class:`BlobProgress` events that follow count the bytes read from the source either way.
    """

    descriptor: Descriptor
    operation: BlobOperation = "copy"


@attrs.frozen
class BlobProgress(ProgressEvent):
    """Bytes of a blob transferred so far (about every :data:`PROGRESS_INTERVAL` bytes)."""

    descriptor: Descriptor
    bytes_done: int


@attrs.frozen
class BlobSkipped(ProgressEvent):
    """A blob was not transferred.

    ``reason`` is ``"present"`` when the destination already has it (or mounted it from
    another repository), ``"foreign"`` for a layer with URLs that the destination keeps as a
    reference. ``stored`` is the descriptor of the blob the destination holds in its place
    when that differs from ``descriptor`` (a layer whose compressed or uncompressed form the
    destination already had).
    """

    descriptor: Descriptor
    reason: Literal["present", "foreign"] = "present"
    stored: Descriptor | None = None


@attrs.frozen
class BlobDone(ProgressEvent):
    """A blob was transferred and verified; ``size`` bytes were copied."""

    descriptor: Descriptor
    size: int


@attrs.frozen
class LayerRecompressed(ProgressEvent):
    """A layer was written with another compression than the source's.

    ``source`` is the layer as the source lists it, ``stored`` as the destination received it
    (new digest, size and media type); ``from_compression`` and ``to_compression`` are
    ``"gzip"``, ``"zstd"`` or ``"none"``.
    """

    source: Descriptor
    stored: Descriptor
    operation: BlobOperation
    from_compression: str
    to_compression: str


@attrs.frozen
class ImageSkipped(ProgressEvent):
    """The destination already holds the identical manifest: nothing was copied."""

    digest: Digest
    destination: str


@attrs.frozen
class ManifestWritten(ProgressEvent):
    """A manifest was written: an instance of an index when ``instance`` is True."""

    digest: Digest
    media_type: str
    instance: bool = False


@attrs.frozen
class SigningManifest(ProgressEvent):
    """A new signature of a manifest written is being made (``sign_by`` or
    ``sign_by_sigstore_private_key``); one event per signature, before it is made."""

    #: The digest of the manifest signed (as written).
    digest: Digest
    #: ``"simple"`` (GPG simple signing) or ``"sigstore"``.
    method: SignatureMethod
    #: The identity the signature claims (a Docker reference with a tag or digest).
    identity: str


@attrs.frozen
class StoringSignatures(ProgressEvent):
    """The signatures of a manifest written (those copied and those made) are about to be
    stored at the destination. Reported once per manifest that has any."""

    #: The digest of the manifest the signatures are stored with.
    digest: Digest
    #: Signatures stored: copied from the source plus made during the copy.
    count: int
    #: Of those, the signatures made during the copy.
    created: int = 0
    #: True for the signatures of an index (OCI index / Docker manifest list).
    index: bool = False


@attrs.frozen
class Retrying(ProgressEvent):
    """A transport is about to try a failed request or transfer again, or the copy engine is
    about to put a blob again."""

    #: ``"source"`` or ``"destination"``.
    side: str
    #: What is retried, in words (never with credentials).
    operation: str
    #: 1 for the first retry of this operation, 2 for the second, ...
    attempt: int
    #: Seconds waited before the retry.
    delay: float
    #: Why the previous try failed.
    reason: str


@attrs.frozen
class CopyDone(ProgressEvent):
    """The copy was committed."""

    result: CopyResult


class EventCollector:
    """A progress callback that keeps every event in :attr:`events` (thread-safe).

    ``collector = EventCollector(); copy_image(a, b, CopyOptions(progress=collector))``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[ProgressEvent] = []

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            self.events.append(event)

    def of_type(self, kind: type[ProgressEvent]) -> list[ProgressEvent]:
        """The events that are instances of ``kind``, in order."""
        with self._lock:
            return [e for e in self.events if isinstance(e, kind)]


class _Emitter:
    """Calls the user's callback, one call at a time, from whichever thread reports."""

    def __init__(self, callback: Callable[[ProgressEvent], None] | None) -> None:
        self._callback = callback
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self._callback is not None

    def __call__(self, event: ProgressEvent) -> None:
        if self._callback is not None:
            with self._lock:
                self._callback(event)


class CopyCancelled(Exception):
    """Raised inside a worker whose transfer is abandoned because another one failed."""


class ProgressReader(VerifyingReader):
    """Passes a source's verifying reader through, reporting progress and honouring cancel.

    Why a ``VerifyingReader`` subclass that does not hash: destinations pass what they receive
    through :func:`~imagetypes.digest.verify_stream`, which returns a ``VerifyingReader`` with
    the same expectations as it is and wraps anything else in a new one, hashing each byte a
    second time. This class is such a reader, with the expectations of the source's reader,
    but it delegates reading, hashing and the EOF check to that reader, so every byte is hashed
    exactly once while the destination still receives a stream that fails on corrupt content.
    """

    def __init__(
        self,
        inner: VerifyingReader,
        descriptor: Descriptor,
        emit: _Emitter,
        cancel: threading.Event,
    ) -> None:
        super().__init__(inner, inner.expected_digest, inner.expected_size)
        self._inner = inner
        self._descriptor = descriptor
        self._emit = emit
        self._cancel = cancel
        self._reported = 0

    def read(self, size: int = -1, /) -> bytes:
        if self._cancel.is_set():
            raise CopyCancelled(f"copy of {self._descriptor.digest} abandoned")
        data = self._inner.read(size)
        self._progress(len(data))
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        # The inner reader fills the caller's buffer (and hashes it) without a copy here.
        if self._cancel.is_set():
            raise CopyCancelled(f"copy of {self._descriptor.digest} abandoned")
        n = self._inner.readinto(buffer)
        self._progress(n)
        return n

    def _progress(self, n: int) -> None:
        if self._emit.active:
            done = self._inner.size
            if (n and done - self._reported >= PROGRESS_INTERVAL) or (
                not n and done != self._reported
            ):
                self._reported = done
                self._emit(BlobProgress(self._descriptor, done))

    @property
    def finished(self) -> bool:
        return self._inner.finished

    @property
    def digest(self) -> Digest:
        return self._inner.digest

    @property
    def size(self) -> int:
        return self._inner.size
