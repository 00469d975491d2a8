"""An in-memory transport: ``memory:NAME`` references over a shared, thread-safe store.

It behaves like a real transport: a destination stages blobs, manifests and signatures and
only :meth:`MemoryDestination.commit` makes them visible; closing without commit discards
them. Blobs are verified on the way in (through :func:`~imagetypes.digest.verify_stream`),
manifests must have their blobs (or instances) present, and the declared capabilities are
enforced. Knobs per image name (:meth:`MemoryStore.configure`) set the capabilities, and
:class:`MemoryStats` records what happened (blob reads, puts in flight) so tests can assert on
the copy engine's behaviour without mocking anything.

Typical use::

    store = MemoryStore()
    register_transport(MemoryTransport(store), replace=True)
    store.add_image("src", manifest_bytes, media_type, blobs)
    copy_image("memory:src", "memory:dst")

:data:`transport` is an instance over a process-wide store (:data:`default_store`), which is
what an entry point registers; tests usually make their own store.
"""

from __future__ import annotations

import copy as _copy
import io
import json
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from imagetypes import mediatypes as mt
from imagetypes.descriptor import BlobInfo, Descriptor
from imagetypes.digest import CHUNK_SIZE, Digest, Readable, VerifyingReader, verify_stream
from imagetypes.errors import (
    BlobNotFoundError,
    ImageError,
    InvalidReferenceError,
    ManifestError,
    ManifestNotFoundError,
    UnsupportedError,
    UnsupportedManifestTypeError,
)
from imagetypes.types import (
    DestinationCapabilities,
    ImageDestination,
    ImageReference,
    ImageSource,
    LayerCompression,
    PutBlobOptions,
    SourceCapabilities,
    Transport,
    TransportOptions,
)

__all__ = [
    "MemoryConfig",
    "MemoryDestination",
    "MemoryImage",
    "MemoryReference",
    "MemorySource",
    "MemoryStats",
    "MemoryStore",
    "MemoryTransport",
    "default_store",
    "transport",
]


@attrs.frozen(kw_only=True)
class MemoryConfig:
    """Capabilities and behaviour of one image name in the store."""

    #: Manifest types a destination accepts (None: any).
    manifest_types: tuple[str, ...] | None = None
    concurrent_blob_reads: bool = True
    concurrent_blob_writes: bool = True
    supports_signatures: bool = True
    accepts_foreign_layers: bool = False
    layer_compression: LayerCompression = LayerCompression.PRESERVE
    #: Seconds each put_blob waits before reading, so that overlapping calls are observable.
    put_blob_delay: float = 0.0
    #: Raised by every get_blob_stream (to simulate an I/O failure of the storage).
    blob_read_error: Exception | None = None


@attrs.define
class MemoryStats:
    """What happened to one image name (reads as a source, writes as a destination)."""

    blob_reads: Counter[Digest] = attrs.field(factory=Counter)
    puts: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    #: put_blob calls whose stream was already a verifying reader for the same blob.
    passthrough_puts: int = 0
    reuse_hits: int = 0
    commits: int = 0


@attrs.frozen
class MemoryImage:
    """A committed image: top manifest, every manifest by digest, blobs and signatures."""

    manifest: bytes
    media_type: str
    manifests: Mapping[Digest, tuple[bytes, str]]
    blobs: Mapping[Digest, bytes]
    signatures: Mapping[Digest | None, tuple[bytes, ...]] = attrs.field(factory=dict)

    @property
    def digest(self) -> Digest:
        """The digest of the top-level manifest."""
        return Digest.from_bytes(self.manifest)


class MemoryStore:
    """The shared, thread-safe storage behind one or more ``mem`` transports."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._images: dict[str, MemoryImage] = {}
        self._configs: dict[str, MemoryConfig] = {}
        self._stats: dict[str, MemoryStats] = {}

    # -- set-up ------------------------------------------------------------------------------
    def configure(self, name: str, **settings: Any) -> MemoryConfig:
        """Set capabilities for ``name`` (fields of :class:`MemoryConfig`)."""
        with self._lock:
            config = attrs.evolve(self._configs.get(name, MemoryConfig()), **settings)
            self._configs[name] = config
            return config

    def config(self, name: str) -> MemoryConfig:
        """The settings of ``name`` (defaults unless :meth:`configure` changed them)."""
        with self._lock:
            return self._configs.get(name, MemoryConfig())

    def stats(self, name: str) -> MemoryStats:
        """What happened to ``name`` so far (a live object, updated as it happens)."""
        with self._lock:
            return self._stats.setdefault(name, MemoryStats())

    def add_image(
        self,
        name: str,
        manifest: bytes,
        media_type: str,
        blobs: Mapping[Digest, bytes] | Iterable[bytes] = (),
        *,
        instances: Iterable[tuple[bytes, str]] = (),
        signatures: Mapping[Digest | None, Sequence[bytes]] | None = None,
    ) -> MemoryImage:
        """Store an image as committed (test set-up, no checks)."""
        blob_map = (
            dict(blobs) if isinstance(blobs, Mapping) else {Digest.from_bytes(b): b for b in blobs}
        )
        manifests = {Digest.from_bytes(m): (m, t) for m, t in instances}
        manifests[Digest.from_bytes(manifest)] = (manifest, media_type)
        image = MemoryImage(
            manifest,
            media_type,
            manifests,
            blob_map,
            {k: tuple(v) for k, v in (signatures or {}).items()},
        )
        with self._lock:
            self._images[name] = image
        return image

    def add_built(
        self,
        name: str,
        built: Any,
        *,
        signatures: Mapping[Digest | None, Sequence[bytes]] | None = None,
    ) -> MemoryImage:
        """Store a built image or index as committed.

        ``built`` has ``manifest``, ``media_type`` and either ``blobs`` (a mapping of digest to
        bytes: one image, such as :class:`~imagetypes.testing.random.RandomImage`) or
        ``images`` (those of an index, such as :class:`~imagetypes.testing.random.RandomIndex`).
        """
        images = list(getattr(built, "images", [built]))
        blobs: dict[Digest, bytes] = {}
        for img in images:
            blobs.update(img.blobs)
        instances = [(img.manifest, img.media_type) for img in images if img is not built]
        return self.add_image(
            name,
            built.manifest,
            built.media_type,
            blobs,
            instances=instances,
            signatures=signatures,
        )

    def add_blob(self, name: str, data: bytes) -> Digest:
        """Put a blob into an existing image (as if a previous copy had left it there)."""
        digest = Digest.from_bytes(data)
        with self._lock:
            image = self._images[name]
            self._images[name] = attrs.evolve(image, blobs={**image.blobs, digest: data})
        return digest

    def corrupt_blob(self, name: str, digest: Digest) -> None:
        """Flip the last byte of a stored blob, keeping its size: reading it must fail."""
        with self._lock:
            image = self._images[name]
            data = bytearray(image.blobs[digest])
            data[-1] ^= 0xFF
            self._images[name] = attrs.evolve(image, blobs={**image.blobs, digest: bytes(data)})

    # -- inspection --------------------------------------------------------------------------
    def get(self, name: str) -> MemoryImage | None:
        """The committed image called ``name``, or ``None``."""
        with self._lock:
            return self._images.get(name)

    def names(self) -> list[str]:
        """The names of the committed images, sorted."""
        with self._lock:
            return sorted(self._images)

    def snapshot(self) -> dict[str, MemoryImage]:
        """A deep copy of every committed image, to compare before and after."""
        with self._lock:
            return _copy.deepcopy(self._images)

    # -- used by sources and destinations ----------------------------------------------------
    def _lookup(self, name: str) -> MemoryImage:
        with self._lock:
            image = self._images.get(name)
        if image is None:
            raise ManifestNotFoundError(f"no image named {name!r} in the memory store")
        return image

    def _commit(self, name: str, image: MemoryImage) -> None:
        with self._lock:
            previous = self._images.get(name)
            if previous is not None:
                # Like a registry, blobs stay when a tag moves on.
                image = attrs.evolve(image, blobs={**previous.blobs, **image.blobs})
            self._images[name] = image
            self._stats.setdefault(name, MemoryStats()).commits += 1

    def _delete(self, name: str) -> None:
        with self._lock:
            if self._images.pop(name, None) is None:
                raise ManifestNotFoundError(f"no image named {name!r} in the memory store")


class MemoryTransport(Transport):
    """The ``memory`` transport over a :class:`MemoryStore`."""

    name = "memory"

    def __init__(self, store: MemoryStore | None = None) -> None:
        self.store = store if store is not None else MemoryStore()

    def parse_reference(self, text: str) -> MemoryReference:
        if not text or any(c.isspace() for c in text):
            raise InvalidReferenceError(f"invalid memory reference {text!r}: expected memory:NAME")
        return MemoryReference(self, text)


class MemoryReference(ImageReference):
    """``memory:NAME``."""

    def __init__(self, transport: MemoryTransport, name: str) -> None:
        self._transport = transport
        self.name = name

    @property
    def transport(self) -> MemoryTransport:
        return self._transport

    @property
    def store(self) -> MemoryStore:
        return self._transport.store

    def string_within_transport(self) -> str:
        return self.name

    def open_source(self, options: TransportOptions | None = None) -> MemorySource:
        return MemorySource(self)

    def open_destination(self, options: TransportOptions | None = None) -> MemoryDestination:
        return MemoryDestination(self)

    def delete(self, options: TransportOptions | None = None) -> None:
        self.store._delete(self.name)


class MemorySource(ImageSource):
    """Reads a committed image; the image is looked up once, at open."""

    def __init__(self, reference: MemoryReference) -> None:
        self._reference = reference
        self._image = reference.store._lookup(reference.name)
        self._config = reference.store.config(reference.name)
        self._stats = reference.store.stats(reference.name)
        self._lock = threading.Lock()

    @property
    def reference(self) -> MemoryReference:
        return self._reference

    @property
    def capabilities(self) -> SourceCapabilities:
        return SourceCapabilities(concurrent_blob_reads=self._config.concurrent_blob_reads)

    def get_manifest(self, instance: Digest | None = None) -> tuple[bytes, str]:
        if instance is None:
            return self._image.manifest, self._image.media_type
        try:
            return self._image.manifests[instance]
        except KeyError:
            raise ManifestNotFoundError(
                f"{self._reference}: no manifest with digest {instance}"
            ) from None

    def get_blob_stream(self, descriptor: Descriptor, offset: int = 0) -> Readable:
        if self._config.blob_read_error is not None:
            raise self._config.blob_read_error
        try:
            data = self._image.blobs[descriptor.digest]
        except KeyError:
            raise BlobNotFoundError(f"{self._reference}: no blob {descriptor.digest}") from None
        with self._lock:
            self._stats.blob_reads[descriptor.digest] += 1
        return io.BytesIO(data[offset:])

    def get_signatures(self, instance: Digest | None = None) -> list[bytes]:
        return list(self._image.signatures.get(instance, ()))


_SCHEMA1_TYPES = (mt.DOCKER_SCHEMA1_MANIFEST, mt.DOCKER_SCHEMA1_SIGNED_MANIFEST)


def _referenced(manifest: bytes, media_type: str) -> tuple[list[Digest], list[Digest]]:
    """(blob digests, instance digests) a manifest needs present, foreign layers excluded.

    Understands indexes, image manifests (OCI, Docker schema 2) and Docker schema 1, whose
    layers are ``fsLayers[].blobSum`` (often repeated, so listed once each) with no config.
    """
    try:
        obj = json.loads(manifest)
        if mt.is_index(media_type):
            return [], [Digest.parse(d["digest"]) for d in obj["manifests"]]
        if mt.normalize(media_type) in _SCHEMA1_TYPES:
            sums = dict.fromkeys(Digest.parse(layer["blobSum"]) for layer in obj["fsLayers"])
            return list(sums), []
        blobs = [Digest.parse(obj["config"]["digest"])]
        blobs += [Digest.parse(d["digest"]) for d in obj["layers"] if not d.get("urls")]
        return blobs, []
    except (ValueError, KeyError, TypeError, ImageError) as e:
        raise ManifestError(f"the memory transport cannot read this manifest: {e}") from e


class MemoryDestination(ImageDestination):
    """Stages everything until :meth:`commit`."""

    def __init__(self, reference: MemoryReference) -> None:
        self._reference = reference
        self._store = reference.store
        self._config = self._store.config(reference.name)
        self._stats = self._store.stats(reference.name)
        existing = self._store.get(reference.name)
        self._existing_blobs: Mapping[Digest, bytes] = existing.blobs if existing else {}
        self._lock = threading.Lock()
        self._blobs: dict[Digest, bytes] = {}
        self._manifests: dict[Digest, tuple[bytes, str]] = {}
        self._top: tuple[bytes, str] | None = None
        self._signatures: dict[Digest | None, tuple[bytes, ...]] = {}
        self._closed = False

    @property
    def reference(self) -> MemoryReference:
        return self._reference

    @property
    def capabilities(self) -> DestinationCapabilities:
        c = self._config
        return DestinationCapabilities(
            manifest_types=c.manifest_types,
            concurrent_blob_writes=c.concurrent_blob_writes,
            supports_signatures=c.supports_signatures,
            accepts_foreign_layers=c.accepts_foreign_layers,
            layer_compression=c.layer_compression,
        )

    def _check_open(self) -> None:
        if self._closed:
            raise UnsupportedError(f"{self._reference}: the destination is closed or committed")

    def _has_blob(self, digest: Digest) -> bool:
        with self._lock:
            return digest in self._blobs or digest in self._existing_blobs

    def try_reusing_blob(self, info: BlobInfo) -> Descriptor | None:
        self._check_open()
        if info.digest is None or not self._has_blob(info.digest):
            return None
        with self._lock:
            self._stats.reuse_hits += 1
            data = self._blobs.get(info.digest, self._existing_blobs.get(info.digest, b""))
        return Descriptor(info.media_type, info.digest, len(data))

    def put_blob(
        self, stream: Readable, info: BlobInfo, options: PutBlobOptions | None = None
    ) -> Descriptor:
        self._check_open()
        with self._lock:
            if not self._config.concurrent_blob_writes and self._stats.in_flight:
                raise UnsupportedError(
                    f"{self._reference}: concurrent put_blob on a serial destination"
                )
            self._stats.puts += 1
            self._stats.in_flight += 1
            self._stats.max_in_flight = max(self._stats.max_in_flight, self._stats.in_flight)
        try:
            if self._config.put_blob_delay:
                time.sleep(self._config.put_blob_delay)
            reader = verify_stream(stream, info.digest, info.size)
            if reader is stream and isinstance(stream, VerifyingReader):
                with self._lock:
                    self._stats.passthrough_puts += 1
            parts = []
            while chunk := reader.read(CHUNK_SIZE):
                parts.append(chunk)
            data = b"".join(parts)
            digest = reader.digest  # only set once EOF passed verification
            with self._lock:
                self._blobs[digest] = data
            return Descriptor(info.media_type, digest, len(data))
        finally:
            with self._lock:
                self._stats.in_flight -= 1

    def put_manifest(
        self, manifest: bytes, media_type: str, instance: Digest | None = None
    ) -> None:
        self._check_open()
        types = self._config.manifest_types
        if types is not None and media_type not in types:
            raise UnsupportedManifestTypeError(
                f"{self._reference} does not accept {media_type} (accepts: {', '.join(types)})"
            )
        digest = Digest.from_bytes(manifest)
        if instance is not None and instance != digest:
            raise ManifestError(f"instance manifest has digest {digest}, not {instance}")
        blobs, instances = _referenced(manifest, media_type)
        missing = [str(d) for d in blobs if not self._has_blob(d)]
        missing += [str(d) for d in instances if d not in self._manifests]
        if missing:
            raise ManifestError(
                f"{self._reference}: manifest refers to content not written: {', '.join(missing)}"
            )
        with self._lock:
            self._manifests[digest] = (manifest, media_type)
            if instance is None:
                self._top = (manifest, media_type)

    def put_signatures(self, signatures: Sequence[bytes], instance: Digest | None = None) -> None:
        self._check_open()
        if signatures and not self._config.supports_signatures:
            super().put_signatures(signatures, instance)
        with self._lock:
            self._signatures[instance] = tuple(signatures)

    def commit(self) -> None:
        self._check_open()
        if self._top is None:
            raise ManifestError(f"{self._reference}: nothing to commit, no manifest was written")
        manifest, media_type = self._top
        self._store._commit(
            self._reference.name,
            MemoryImage(
                manifest,
                media_type,
                dict(self._manifests),
                dict(self._blobs),
                {k: v for k, v in self._signatures.items() if v},
            ),
        )
        self._closed = True

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._blobs.clear()
            self._manifests.clear()
            self._top = None


#: The store behind :data:`transport`, shared by the whole process.
default_store = MemoryStore()
#: A ``memory`` transport over :data:`default_store`, for registration by entry point.
transport = MemoryTransport(default_store)
