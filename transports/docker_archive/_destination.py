"""Writing images into a ``docker save`` archive, streaming, one image or several.

:class:`DockerArchiveWriter` owns the tar stream: members are appended as blobs arrive (the
archive's member order is free, so nothing is held back), and ``manifest.json`` and
``repositories`` are written last, when the writer commits. Layers are stored uncompressed,
as skopeo and ``docker save`` store them, named ``<diff ID hex>.tar``: a compressed layer is
decompressed on the way in. A layer whose size or diff ID is unknown until it was read is
written with a header rewritten in place, or (on a pipe) spooled to a temporary file first,
so memory never grows with a layer's size and a layer is written to disk once.

:class:`DockerArchiveDestination` is the :class:`~imagetypes.types.ImageDestination` for one
image; alone it owns a writer and commits the archive with the image, and made from a
writer's :meth:`~DockerArchiveWriter.reference` it adds the image to that writer's archive.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

import attrs

from imagetypes import mediatypes as mt
from imagetypes.compression import Compression, decompressing_reader, detect_compression
from imagetypes.descriptor import BlobInfo, Descriptor
from imagetypes.digest import Digest, Readable, VerifyingReader, verify_stream
from imagetypes.errors import (
    ArchiveError,
    BlobNotFoundError,
    CompressionError,
    ImageError,
    ManifestError,
    ManifestTooLargeError,
    UnsupportedError,
    UnsupportedManifestTypeError,
)
from imagetypes.manifest import DockerSchema1Manifest, ImageManifest, parse_manifest
from imagetypes.reference import Reference
from imagetypes.types import (
    DestinationCapabilities,
    ImageDestination,
    ImageReference,
    LayerCompression,
    PutBlobOptions,
    TransportOptions,
)

from ._format import (
    LEGACY_CONFIG_FILE,
    LEGACY_LAYER_FILE,
    LEGACY_VERSION_FILE,
    MANIFEST_FILE,
    MAX_CONFIG_SIZE,
    REPOSITORIES_FILE,
    ManifestItem,
    config_path,
    go_json,
    layer_path,
    legacy_layer_configs,
)
from ._reference import ADDITIONAL_TAGS, DockerArchiveReference, normalize_tag
from ._tar import TarStreamWriter, is_stdout

if TYPE_CHECKING:
    from typing_extensions import Self

    from imagetypes.copy import CopyOptions, CopyResult

__all__ = [
    "LAYER_COMPRESSION",
    "DockerArchiveDestination",
    "DockerArchiveWriter",
    "save_docker_tar",
]

#: Layers are stored uncompressed, as ``docker save`` and skopeo store them: the copy engine
#: decompresses them on the way (checking diff IDs). put_blob still decompresses a compressed
#: layer it is handed directly, keeping the digest the caller knows it by.
LAYER_COMPRESSION = LayerCompression.DECOMPRESS

_CONFIG_TYPES = frozenset({mt.DOCKER_CONFIG, mt.OCI_CONFIG})


@attrs.frozen
class _Stored:
    """A layer in the archive: its member name, uncompressed size and diff ID."""

    name: str
    size: int
    diff_id: Digest


class _Prefixed:
    """A stream that yields ``prefix`` and then the rest of ``stream``."""

    def __init__(self, prefix: bytes, stream: Readable) -> None:
        self._prefix = prefix
        self._stream = stream

    def read(self, size: int = -1, /) -> bytes:
        if self._prefix:
            if size is None or size < 0 or size >= len(self._prefix):
                data, self._prefix = self._prefix, b""
            else:
                data, self._prefix = self._prefix[:size], self._prefix[size:]
            return data
        return self._stream.read(size)


def _read_prefix(stream: Readable, size: int) -> bytes:
    data = b""
    while len(data) < size and (chunk := stream.read(size - len(data))):
        data += chunk
    return data


class DockerArchiveWriter:
    """Writes one or more images into one docker-archive (``docker save``) tar file.

    ``target`` is a path (written beside it and renamed into place by :meth:`commit`), ``-``
    or ``/dev/stdout`` (standard output, streamed), or a binary file object (left open).
    :meth:`add` copies an image in; :meth:`reference` gives a destination reference for the
    copy engine or any code speaking the ImageDestination API. Used as a context manager,
    the archive is committed on success and discarded on an exception. An image whose copy
    fails is left out of the archive (on a seekable target its members are removed too).

    Unlike the ``docker-archive:`` transport (which, like skopeo, refuses to replace a
    non-empty file), the writer replaces an existing file unless ``overwrite=False``.
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | IO[bytes],
        *,
        options: TransportOptions | None = None,
        overwrite: bool = True,
    ) -> None:
        self._options = options or TransportOptions()
        if isinstance(target, (str, os.PathLike)):
            self._path = os.fspath(target)
        else:
            self._path = "-" if is_stdout(target) else getattr(target, "name", "<stream>")
            if not isinstance(self._path, str) or ":" in self._path or not self._path:
                self._path = "<stream>"
        where = f"docker-archive:{self._path}"
        self._tar = TarStreamWriter(
            target, where=where, tmpdir=self._options.tmpdir, overwrite=overwrite
        )
        self._lock = threading.RLock()
        self._layers: dict[Digest, _Stored] = {}
        self._configs: dict[Digest, bytes] = {}
        self._legacy: set[str] = set()
        # (kind, key) of every blob member recorded, to forget them on rollback.
        self._journal: list[tuple[str, Any]] = []
        self._items: list[ManifestItem] = []
        self._by_config: dict[Digest, int] = {}
        self._repositories: dict[str, dict[str, str]] = {}

    @property
    def path(self) -> str:
        """The target's path (``-`` for standard output, ``<stream>`` for a file object)."""
        return self._path

    @property
    def images(self) -> int:
        """How many images were committed into the archive so far."""
        return len(self._items)

    def reference(
        self, tags: Sequence[str | Reference] = (), name: str | Reference | None = None
    ) -> DockerArchiveReference:
        """A destination reference that adds an image, tagged ``tags``, to this archive."""
        all_tags = ([name] if name is not None else []) + list(tags)
        first = all_tags[0] if all_tags else None
        return DockerArchiveReference(
            self._path if ":" not in self._path else "<stream>",
            first,
            writer=self,
            additional_tags=all_tags[1:],
        )

    def add(
        self,
        source: ImageReference | str,
        tags: Sequence[str | Reference] = (),
        *,
        options: CopyOptions | None = None,
    ) -> CopyResult:
        """Copy the image at ``source`` into the archive, tagged ``tags``.

        An index is resolved to one image as :func:`~imagetypes.copy.copy_image` does
        (``options.instances`` must select a single image). Returns the copy's result.
        """
        from imagetypes.copy import copy_image

        return copy_image(source, self.reference(tags), options)

    # -- used by destinations --------------------------------------------------------------
    @property
    def tar(self) -> TarStreamWriter:
        return self._tar

    def mark(self) -> tuple[int, int]:
        """A point to roll back to if the image being written fails."""
        with self._lock:
            return self._tar.position, len(self._journal)

    def rollback(self, mark: tuple[int, int]) -> None:
        """Forget (and, when the target is seekable, remove) the members written since ``mark``."""
        position, entries = mark
        with self._lock:
            if not self._tar.rollback(position):
                return  # the members stay in the stream, so they stay usable
            for kind, key in self._journal[entries:]:
                if kind == "layer":
                    self._layers.pop(key, None)
                elif kind == "config":
                    self._configs.pop(key, None)
                else:
                    self._legacy.discard(key)
            del self._journal[entries:]

    def has_member(self, name: str) -> bool:
        """Whether a layer file of that name was written already."""
        with self._lock:
            return any(stored.name == name for stored in self._layers.values())

    def stored_layer(self, digest: Digest) -> _Stored | None:
        with self._lock:
            return self._layers.get(digest)

    def config(self, digest: Digest) -> bytes | None:
        with self._lock:
            return self._configs.get(digest)

    def add_config(self, digest: Digest, data: bytes) -> None:
        """Write a config as ``<hex>.json`` unless it is there already."""
        with self._lock:
            if digest in self._configs:
                return
            self._tar.add_bytes(config_path(digest), data)
            self._configs[digest] = data
            self._journal.append(("config", digest))

    def record_layer(self, keys: Sequence[Digest], stored: _Stored) -> None:
        with self._lock:
            for key in keys:
                if key not in self._layers:
                    self._layers[key] = stored
                    self._journal.append(("layer", key))

    def add_image(
        self, config: Digest, layers: Sequence[Digest], tags: Sequence[Reference]
    ) -> None:
        """Record an image whose config and layers are in the archive (and its legacy data)."""
        with self._lock:
            config_data = self._configs.get(config)
            if config_data is None:
                raise BlobNotFoundError(
                    f"docker-archive:{self._path}: the config {config} was not written"
                )
            stored = []
            for digest in layers:
                layer = self._layers.get(digest)
                if layer is None:
                    raise BlobNotFoundError(
                        f"docker-archive:{self._path}: the layer {digest} was not written"
                    )
                stored.append(layer)
            _check_diff_ids(config_data, [s.diff_id for s in stored], self._path)
            legacy = legacy_layer_configs([s.diff_id for s in stored], config_data)
            for (layer_id, layer_json), layer in zip(legacy, stored, strict=True):
                if layer_id in self._legacy:
                    continue
                self._tar.add_symlink(f"{layer_id}/{LEGACY_LAYER_FILE}", f"../{layer.name}")
                self._tar.add_bytes(f"{layer_id}/{LEGACY_VERSION_FILE}", b"1.0")
                self._tar.add_bytes(f"{layer_id}/{LEGACY_CONFIG_FILE}", layer_json)
                self._legacy.add(layer_id)
                self._journal.append(("legacy", layer_id))
            if legacy:
                top = legacy[-1][0]
                for tag in tags:
                    assert tag.tag is not None
                    self._repositories.setdefault(tag.name, {})[tag.tag] = top
            paths = tuple(s.name for s in stored)
            position = self._by_config.get(config)
            if position is None:
                self._by_config[config] = len(self._items)
                self._items.append(ManifestItem(config_path(config), (), paths))
                position = len(self._items) - 1
            item = self._items[position]
            if item.layers != paths:
                raise ArchiveError(
                    f"docker-archive:{self._path}: the image with config {config} was already "
                    "written with other layers"
                )
            repo_tags = list(item.repo_tags)
            for tag in tags:
                if str(tag) not in repo_tags:
                    repo_tags.append(str(tag))
            self._items[position] = attrs.evolve(item, repo_tags=tuple(repo_tags))

    # -- finishing -------------------------------------------------------------------------
    def commit(self) -> None:
        """Write manifest.json and repositories and finish the archive."""
        with self._lock:
            if not self._items:
                self._tar.abort()
                raise ImageError(f"docker-archive:{self._path}: no image was written")
            manifest = go_json([item.to_json() for item in self._items])
            repositories = json.dumps(self._repositories, separators=(",", ":"), sort_keys=True)
            self._tar.add_bytes(MANIFEST_FILE, manifest)
            self._tar.add_bytes(REPOSITORIES_FILE, go_json(json.loads(repositories)))
            self._tar.commit()

    def abort(self) -> None:
        """Discard the archive (a file target is left as it was)."""
        self._tar.abort()

    @property
    def committed(self) -> bool:
        return self._tar.committed

    def close(self) -> None:
        """Discard the archive unless it was committed."""
        if not self._tar.committed:
            self._tar.abort()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None and not self._tar.committed:
            self.commit()
        else:
            self.close()


def _check_diff_ids(config: bytes, diff_ids: list[Digest], path: str) -> None:
    try:
        obj = json.loads(config)
        listed = obj["rootfs"]["diff_ids"]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        return  # not a Docker config we can check; docker load will judge
    if [str(d) for d in diff_ids] != listed:
        raise ArchiveError(
            f"docker-archive:{path}: the layers written (diff IDs "
            f"{', '.join(map(str, diff_ids)) or 'none'}) do not match the config's "
            f"rootfs.diff_ids ({', '.join(map(str, listed)) or 'none'})"
        )


class DockerArchiveDestination(ImageDestination):
    """Writes one image into a docker-archive: its own new file, or a writer's archive."""

    def __init__(self, reference: DockerArchiveReference, options: TransportOptions) -> None:
        self._reference = reference
        extra = options.extra.get(ADDITIONAL_TAGS) or ()
        if isinstance(extra, (str, Reference)):
            extra = (extra,)
        self._tags: list[Reference] = list(reference.tags)
        self.add_tags(extra)
        if reference.writer is not None:
            self._writer = reference.writer
            self._owns_writer = False
        else:
            self._writer = DockerArchiveWriter(reference.path, options=options, overwrite=False)
            self._owns_writer = True
        self._mark = self._writer.mark()
        self._staged: tuple[Digest, tuple[Digest, ...]] | None = None
        self._state = "open"

    @property
    def reference(self) -> DockerArchiveReference:
        return self._reference

    @property
    def capabilities(self) -> DestinationCapabilities:
        return DestinationCapabilities(
            manifest_types=(mt.DOCKER_MANIFEST,),
            # A tar stream is written one member at a time.
            concurrent_blob_writes=False,
            layer_compression=LAYER_COMPRESSION,
            supports_signatures=False,
            accepts_foreign_layers=False,
        )

    @property
    def tags(self) -> tuple[Reference, ...]:
        """The tags the image will be recorded with."""
        return tuple(self._tags)

    def add_tags(self, tags: Sequence[str | Reference]) -> None:
        """Record the image under these tags too (skopeo's ``--additional-tag``)."""
        for tag in tags:
            ref = normalize_tag(tag)
            if ref not in self._tags:
                self._tags.append(ref)

    def _check_open(self) -> None:
        if self._state != "open":
            raise ImageError(f"{self._reference}: the destination is already {self._state}")

    def try_reusing_blob(self, info: BlobInfo) -> Descriptor | None:
        """A blob already in the archive (written for this or an earlier image) is reused."""
        self._check_open()
        if info.digest is None:
            return None
        config = self._writer.config(info.digest)
        if config is not None:
            return Descriptor(info.media_type, info.digest, len(config))
        stored = self._writer.stored_layer(info.digest)
        if stored is None:
            return None
        size = info.size if info.size is not None and info.size >= 0 else stored.size
        return Descriptor(info.media_type, info.digest, size)

    def put_blob(
        self, stream: Readable, info: BlobInfo, options: PutBlobOptions | None = None
    ) -> Descriptor:
        """Store a config (``<hex>.json``) or a layer (``<diff ID hex>.tar``, uncompressed).

        The returned descriptor describes the blob as it was received (a compressed layer
        keeps its compressed digest), so the caller's manifest still names it.
        """
        self._check_open()
        size = info.size if info.size is not None and info.size >= 0 else None
        reader = verify_stream(stream, info.digest, size)
        is_config = (options is not None and options.is_config) or (
            mt.normalize(info.media_type) in _CONFIG_TYPES
        )
        if is_config:
            data = reader.read(MAX_CONFIG_SIZE + 1)
            if len(data) > MAX_CONFIG_SIZE or reader.read(1):
                raise ManifestTooLargeError(
                    f"{self._reference}: the config is over the {MAX_CONFIG_SIZE} byte limit"
                )
            reader.read_to_end()
            self._writer.add_config(reader.digest, data)
            return Descriptor(info.media_type, reader.digest, len(data))
        if info.digest is not None and self._writer.stored_layer(info.digest) is not None:
            reader.read_to_end()  # the contract: read to the end (and verify)
            return Descriptor(info.media_type, reader.digest, reader.size)
        self._put_layer(reader, size)
        return Descriptor(info.media_type, reader.digest, reader.size)

    def _put_layer(self, reader: VerifyingReader, size: int | None) -> None:
        tar = self._writer.tar
        prefix = _read_prefix(reader, 4)
        compression = detect_compression(prefix)
        stream = _Prefixed(prefix, reader)
        if compression is Compression.NONE:
            expected = reader.expected_digest
            if expected is not None and expected.algorithm == "sha256":
                # The name is known up front; with the size too, straight into the stream.
                name = layer_path(expected)
                if size is not None:
                    tar.add_stream(name, stream, size)
                    written = size
                else:
                    name, written = tar.add_unsized(stream, lambda: name)
                stored = _Stored(name, written, expected)
            else:
                hashed = VerifyingReader(stream)
                name, written = tar.add_unsized(
                    hashed, lambda: layer_path(hashed.digest), self._writer.has_member
                )
                stored = _Stored(name, written, hashed.digest)
            self._writer.record_layer([reader.digest, stored.diff_id], stored)
            return
        plain = VerifyingReader(decompressing_reader(stream, compression))

        def name_after() -> str:
            reader.read_to_end()  # the compressed input must have ended (and verified) too
            return layer_path(plain.digest)

        try:
            name, written = tar.add_unsized(plain, name_after, self._writer.has_member)
        except CompressionError:
            # Corrupt compressed bytes are usually bytes that do not match their digest:
            # report that (the caller's real problem) when it is so.
            reader.read_to_end()
            raise
        stored = _Stored(name, written, plain.digest)
        self._writer.record_layer([reader.digest, stored.diff_id], stored)

    def put_manifest(
        self, manifest: bytes, media_type: str, instance: Digest | None = None
    ) -> None:
        """Take the image's config and layers from a Docker schema 2 (or OCI) manifest.

        The manifest itself is not stored: an archive records only file names.
        """
        self._check_open()
        if instance is not None:
            raise UnsupportedError(
                f"{self._reference}: a docker-archive stores single images, not indexes"
            )
        try:
            parsed = parse_manifest(manifest, media_type or None)
        except ManifestError:
            raise
        if not isinstance(parsed, ImageManifest) or isinstance(parsed, DockerSchema1Manifest):
            raise UnsupportedManifestTypeError(
                f"{self._reference}: a docker-archive needs an image manifest (Docker schema "
                f"2), not {parsed.media_type}"
            )
        self._staged = (parsed.config.digest, tuple(layer.digest for layer in parsed.layers))

    def commit(self) -> None:
        """Record the image in the archive; a destination of its own also finishes the file."""
        self._check_open()
        if self._staged is None:
            raise ImageError(f"{self._reference}: commit() before the manifest was written")
        config, layers = self._staged
        self._writer.add_image(config, layers, self._tags)
        self._state = "committed"
        if self._owns_writer:
            self._writer.commit()

    def close(self) -> None:
        """Without a commit, leave the image out: discard an own archive, or roll back."""
        if self._state == "open":
            self._state = "closed"
            if self._owns_writer:
                self._writer.abort()
            else:
                self._writer.rollback(self._mark)
        else:
            self._state = "closed"


def save_docker_tar(
    source: ImageReference | str,
    target: str | os.PathLike[str] | IO[bytes],
    tags: Sequence[str | Reference] = (),
    *,
    options: CopyOptions | None = None,
    overwrite: bool = True,
) -> CopyResult:
    """Write the image at ``source`` as a ``docker load``-able archive at ``target``.

    ``target`` is a path, ``-`` (standard output) or a binary file object. The copy goes
    through the docker-archive destination (it is ``DockerArchiveWriter(target).add(...)``).
    """
    destination_options = options.destination_options if options is not None else None
    with DockerArchiveWriter(target, options=destination_options, overwrite=overwrite) as w:
        return w.add(source, tags, options=options)
