"""Reading images from a ``docker save`` archive without unpacking it.

The archive is indexed once (member offsets), then the config and layers are read by
seeking. The source offers a Docker schema 2 manifest it synthesises: the config is carried
byte for byte (so its digest, the image ID, survives), and each layer is described by the
digest and size of the file stored in the archive. For an uncompressed layer that digest is
its diff ID; for a layer stored compressed it is computed with one streaming pass over the
file, at most once per archive file (the result is cached with the archive's index); for a
layer stored as ``blobs/<alg>/<hex>`` (Docker 25+) the name gives it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Sequence
from typing import Any

from imagetypes import mediatypes as mt
from imagetypes.compression import Compression, decompressing_reader, detect_compression
from imagetypes.descriptor import Descriptor
from imagetypes.digest import CHUNK_SIZE, Digest, Readable
from imagetypes.errors import (
    ArchiveError,
    BlobNotFoundError,
    ImageError,
    InvalidReferenceError,
    ManifestNotFoundError,
)
from imagetypes.manifest import DockerManifest
from imagetypes.reference import Reference
from imagetypes.types import ImageSource, SourceCapabilities, TransportOptions

from ._format import (
    MANIFEST_FILE,
    MAX_CONFIG_SIZE,
    MAX_MANIFEST_JSON_SIZE,
    REPOSITORIES_FILE,
    ManifestItem,
    parse_manifest_json,
)
from ._reference import ArchiveImage, DockerArchiveReference
from ._tar import ArchiveMember, TarArchive, clean_member_name, open_tar_archive

__all__ = ["DockerArchiveSource", "list_archive_images", "read_manifest_items"]

_CONFIG_NAME_RE = re.compile(r"([0-9a-f]{64})\.json")
_BLOB_NAME_RE = re.compile(r"blobs/(sha256|sha512)/([0-9a-f]+)")
_LAYER_TYPES = {
    Compression.NONE: mt.DOCKER_UNCOMPRESSED_LAYER,
    Compression.GZIP: mt.DOCKER_LAYER,
    # Docker schema 2 has no zstd layer type; Docker itself uses the OCI one.
    Compression.ZSTD: mt.OCI_LAYER_ZSTD,
}


def read_manifest_items(archive: TarArchive) -> list[ManifestItem]:
    """The images listed in the archive's manifest.json."""
    if archive.find(MANIFEST_FILE) is None:
        if archive.find(REPOSITORIES_FILE) is not None:
            raise ArchiveError(
                f"{archive.where}: an archive of the legacy format of Docker before 1.10 "
                "(a repositories file, no manifest.json) is not supported"
            )
        raise ArchiveError(f"{archive.where}: not a docker-archive (no {MANIFEST_FILE})")
    data = archive.read_bytes(MANIFEST_FILE, MAX_MANIFEST_JSON_SIZE, "the manifest")
    return parse_manifest_json(data, archive.where)


def _named_digest(path: str) -> Digest | None:
    """The digest a member's name states (``<hex>.json``, ``blobs/sha256/<hex>``), if any."""
    path = clean_member_name(path, "manifest.json")
    match = _BLOB_NAME_RE.fullmatch(path)
    try:
        if match:
            return Digest(match.group(1), match.group(2))
        match = _CONFIG_NAME_RE.fullmatch(os.path.basename(path))
        if match:
            return Digest("sha256", match.group(1))
    except ImageError:
        return None
    return None


def read_config(archive: TarArchive, item: ManifestItem) -> bytes:
    """The config of ``item``, checked against the digest its file name states."""
    data = archive.read_bytes(item.config, MAX_CONFIG_SIZE, "the config")
    named = _named_digest(item.config)
    if named is not None:
        actual = Digest.from_bytes(data, named.algorithm)
        if actual != named:
            raise ArchiveError(
                f"{archive.where}: the config {item.config!r} hashes to {actual}, "
                "not the digest its name gives"
            )
    return data


def _diff_ids(config: bytes, where: str) -> list[Digest]:
    try:
        obj: Any = json.loads(config)
        rootfs = obj.get("rootfs") if isinstance(obj, dict) else None
        if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids"), list):
            raise ArchiveError(f"{where}: the image config has no rootfs.diff_ids")
        return [Digest.parse(d) for d in rootfs["diff_ids"]]
    except (ValueError, UnicodeDecodeError) as e:
        raise ArchiveError(f"{where}: the image config is not valid JSON: {e}") from e
    except ArchiveError:
        raise
    except (ImageError, TypeError) as e:
        raise ArchiveError(f"{where}: the image config has invalid diff IDs: {e}") from e


def _describe(items: Sequence[ManifestItem]) -> str:
    parts = []
    for i, item in enumerate(items):
        tags = ", ".join(item.repo_tags) or "untagged"
        parts.append(f"@{i} ({tags})")
    return "; ".join(parts)


def choose_item(
    items: Sequence[ManifestItem],
    named: Reference | None,
    index: int | None,
    where: str,
) -> tuple[int, ManifestItem]:
    """The image a reference selects: by tag, by position, or the only one."""
    if named is not None:
        for i, item in enumerate(items):
            for tag in item.repo_tags:
                try:
                    parsed = Reference.parse(tag)
                except InvalidReferenceError as e:
                    raise ArchiveError(
                        f"{where}: invalid tag {tag!r} in manifest.json item @{i}: {e}"
                    ) from e
                if str(parsed.with_default_tag()) == str(named):
                    return i, item
        raise ManifestNotFoundError(
            f"{where}: no image tagged {named} in the archive "
            f"(it holds: {_describe(items) or 'nothing'})"
        )
    if index is not None:
        if index >= len(items):
            raise ManifestNotFoundError(
                f"{where}: no image @{index}: the archive holds {len(items)} "
                f"({_describe(items) or 'nothing'})"
            )
        return index, items[index]
    if len(items) != 1:
        if not items:
            raise ManifestNotFoundError(f"{where}: the archive holds no images")
        raise ManifestNotFoundError(
            f"{where}: the archive holds {len(items)} images; choose one with "
            f"PATH:NAME:TAG or PATH:@INDEX ({_describe(items)})"
        )
    return 0, items[0]


def _hash_member(archive: TarArchive, member: ArchiveMember) -> Digest:
    hasher = hashlib.sha256()
    with archive.open_member(member) as r:
        while chunk := r.read(CHUNK_SIZE):
            hasher.update(chunk)
    return Digest.from_hash(hasher)


class _Layer:
    def __init__(self, member: ArchiveMember, descriptor: Descriptor, diff_id: Digest) -> None:
        self.member = member
        self.descriptor = descriptor
        self.diff_id = diff_id


def _layer(archive: TarArchive, item: ManifestItem, path: str, diff_id: Digest) -> _Layer:
    where = archive.where
    member = archive.require(path, "the layer")
    compression = detect_compression(archive.read_prefix(member, 4))
    digest = _named_digest(member.name) if member.name.startswith("blobs/") else None
    if compression is Compression.NONE:
        if digest is not None and digest != diff_id:
            raise ArchiveError(
                f"{where}: the uncompressed layer {path!r} is named {digest} but the config "
                f"gives its diff ID as {diff_id}"
            )
        digest = diff_id
    elif digest is None:
        # One pass over the stored file, once per archive file (cached with its index).
        found = archive.memo(("sha256", member.name), lambda: _hash_member(archive, member))
        assert isinstance(found, Digest)
        digest = found
    source = item.layer_sources.get(diff_id)
    if source is not None and source.digest == digest and source.size != member.size:
        raise ArchiveError(
            f"{where}: the layer {path!r} is {member.size} bytes, but manifest.json gives "
            f"{source.size} for {digest}"
        )
    return _Layer(member, Descriptor(_LAYER_TYPES[compression], digest, member.size), diff_id)


class DockerArchiveSource(ImageSource):
    """One image of a docker-archive file, chosen by tag, by ``@INDEX``, or the only one."""

    def __init__(self, reference: DockerArchiveReference, options: TransportOptions) -> None:
        self._reference = reference
        where = str(reference)
        self._archive = open_tar_archive(reference.path, where=where, tmpdir=options.tmpdir)
        try:
            self._items = read_manifest_items(self._archive)
            self._position, self._item = choose_item(
                self._items, reference.docker_reference, reference.index, where
            )
            self._config = read_config(self._archive, self._item)
            self._diff_ids = _diff_ids(self._config, where)
            if len(self._diff_ids) != len(self._item.layers):
                raise ArchiveError(
                    f"{where}: manifest.json lists {len(self._item.layers)} layers but the "
                    f"config has {len(self._diff_ids)} diff IDs"
                )
        except BaseException:
            self._archive.close()
            raise
        self._config_digest = Digest.from_bytes(self._config)
        self._layers: list[_Layer] | None = None
        self._manifest: bytes | None = None

    @property
    def reference(self) -> DockerArchiveReference:
        return self._reference

    @property
    def capabilities(self) -> SourceCapabilities:
        # Every read opens its own descriptor on the archive and seeks to the member.
        return SourceCapabilities(concurrent_blob_reads=True, ranged_reads=True, local_reads=True)

    @property
    def repo_tags(self) -> tuple[str, ...]:
        """The tags the archive records for this image."""
        return self._item.repo_tags

    @property
    def position(self) -> int:
        """The image's position in the archive (``PATH:@INDEX``)."""
        return self._position

    @property
    def config_digest(self) -> Digest:
        """The digest of the image's config (its image ID)."""
        return self._config_digest

    def _layer_list(self) -> list[_Layer]:
        if self._layers is None:
            self._layers = [
                _layer(self._archive, self._item, path, diff_id)
                for path, diff_id in zip(self._item.layers, self._diff_ids, strict=True)
            ]
        return self._layers

    def get_manifest(self, instance: Digest | None = None) -> tuple[bytes, str]:
        """A Docker schema 2 manifest for the image (computed on first use)."""
        if self._manifest is None:
            config = Descriptor(mt.DOCKER_CONFIG, self._config_digest, len(self._config))
            self._manifest = DockerManifest.build(
                config, [layer.descriptor for layer in self._layer_list()]
            ).raw
        if instance is not None and instance != Digest.from_bytes(
            self._manifest, instance.algorithm
        ):
            raise ManifestNotFoundError(
                f"{self._reference}: a docker-archive holds single images; no instance {instance}"
            )
        return self._manifest, mt.DOCKER_MANIFEST

    def get_blob_stream(self, descriptor: Descriptor, offset: int = 0) -> Readable:
        """The config, a stored layer file, or (asked by diff ID) a layer decompressed."""
        digest = descriptor.digest
        if digest == self._config_digest:
            return io.BytesIO(self._config[offset:])
        layers = self._layer_list()
        for layer in layers:
            if layer.descriptor.digest == digest:
                return self._archive.open_member(layer.member, offset)
        for layer in layers:
            if layer.diff_id == digest:
                # skopeo describes layers by diff ID: serve those too, uncompressed.
                reader = decompressing_reader(self._archive.open_member(layer.member))
                if offset:
                    _skip(reader, offset)
                return reader
        raise BlobNotFoundError(f"{self._reference}: no blob {digest} in this image")

    def close(self) -> None:
        self._archive.close()


def _skip(reader: Readable, count: int) -> None:
    while count > 0:
        data = reader.read(min(count, CHUNK_SIZE))
        if not data:
            return
        count -= len(data)


def list_archive_images(
    path: str | os.PathLike[str], options: TransportOptions | None = None
) -> list[ArchiveImage]:
    """The images of a docker-archive file: position, tags, config digest, layer count."""
    options = options or TransportOptions()
    text = os.fspath(path)
    where = f"docker-archive:{text}"
    with open_tar_archive(text, where=where, tmpdir=options.tmpdir) as archive:
        out = []
        for i, item in enumerate(read_manifest_items(archive)):
            config = read_config(archive, item)
            out.append(
                ArchiveImage(
                    i,
                    item.repo_tags,
                    Digest.from_bytes(config),
                    len(item.layers),
                    DockerArchiveReference(text, index=i),
                )
            )
        return out
