"""Reading an image from an OCI layout archive, by seeking, without unpacking it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from imagetypes import mediatypes as mt
from imagetypes.descriptor import Descriptor
from imagetypes.digest import Digest, Readable
from imagetypes.errors import (
    ArchiveError,
    BlobNotFoundError,
    DigestMismatchError,
    ImageError,
    ManifestNotFoundError,
    UnsupportedManifestTypeError,
)
from imagetypes.types import ImageSource, SourceCapabilities, TransportOptions

from ..docker_archive._tar import TarArchive, open_tar_archive
from ..oci._layout import (
    BLOBS_DIR,
    INDEX_FILE,
    LAYOUT_FILE,
    MAX_INDEX_SIZE,
    entry_ref_name,
    parse_index,
)

if TYPE_CHECKING:
    from ._reference import OCIArchiveReference

__all__ = ["OCIArchiveSource", "blob_member"]

_MAX_LAYOUT_FILE_SIZE = 64 * 1024


def blob_member(digest: Digest) -> str:
    """The archive path of a blob."""
    return f"{BLOBS_DIR}/{digest.algorithm}/{digest.hex}"


def _check_layout_file(archive: TarArchive) -> None:
    where = archive.where
    if archive.find(LAYOUT_FILE) is None:
        raise ArchiveError(f"{where}: not an OCI layout archive (no {LAYOUT_FILE})")
    data = archive.read_bytes(LAYOUT_FILE, _MAX_LAYOUT_FILE_SIZE, "the layout file")
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ArchiveError(f"{where}: {LAYOUT_FILE} is not valid JSON") from e
    version = obj.get("imageLayoutVersion") if isinstance(obj, dict) else None
    if not isinstance(version, str) or version.split(".", 1)[0] != "1":
        raise ArchiveError(
            f"{where}: unsupported imageLayoutVersion {version!r} (only 1.x is understood)"
        )


def _describe(entries: Sequence[Descriptor]) -> str:
    names = [n for n in (entry_ref_name(e) for e in entries) if n is not None]
    unnamed = len(entries) - len(names)
    text = ("available: " + ", ".join(repr(n) for n in names)) if names else "none has a name"
    return text + (f" and {unnamed} unnamed" if unnamed and names else "")


def choose_entry(entries: Sequence[Descriptor], ref_name: str | None, where: str) -> Descriptor:
    """The index.json entry a ref name selects (the only entry without one), as ``oci:``."""
    if ref_name is None:
        if len(entries) == 1:
            return entries[0]
        if not entries:
            raise ManifestNotFoundError(f"{where}: the archive holds no images")
        raise ManifestNotFoundError(
            f"{where}: the archive holds {len(entries)} images; name one as PATH:REF "
            f"({_describe(entries)})"
        )
    for entry in entries:
        if entry_ref_name(entry) == ref_name:
            media_type = mt.normalize(entry.media_type)
            if media_type and media_type not in mt.MANIFEST_TYPES:
                raise UnsupportedManifestTypeError(
                    f"{where}: {ref_name!r} is a {media_type!r}, not an image or index"
                )
            return entry
    raise ManifestNotFoundError(
        f"{where}: no image named {ref_name!r} in the archive ({_describe(entries)})"
    )


def read_entries(archive: TarArchive) -> list[Descriptor]:
    """The entries of the archive's index.json, after checking its oci-layout file."""
    _check_layout_file(archive)
    data = archive.read_bytes(INDEX_FILE, MAX_INDEX_SIZE, "the index")
    try:
        index = parse_index(data, archive.path)
        return [Descriptor.from_dict(m) for m in index["manifests"]]
    except ImageError as e:
        raise ArchiveError(f"{archive.where}: {e}") from e


class OCIArchiveSource(ImageSource):
    """An image (or index) of an OCI layout archive, chosen by ref name when opened."""

    def __init__(self, reference: OCIArchiveReference, options: TransportOptions) -> None:
        self._reference = reference
        self._archive = open_tar_archive(
            reference.path, where=str(reference), tmpdir=options.tmpdir
        )
        try:
            self._entries = read_entries(self._archive)
            self._descriptor = choose_entry(self._entries, reference.ref_name, str(reference))
        except BaseException:
            self._archive.close()
            raise

    @property
    def reference(self) -> OCIArchiveReference:
        return self._reference

    @property
    def capabilities(self) -> SourceCapabilities:
        return SourceCapabilities(concurrent_blob_reads=True, ranged_reads=True, local_reads=True)

    @property
    def descriptor(self) -> Descriptor:
        """The index.json entry of the image."""
        return self._descriptor

    def get_manifest(self, instance: Digest | None = None) -> tuple[bytes, str]:
        digest = self._descriptor.digest if instance is None else instance
        member = self._archive.find(blob_member(digest))
        if member is None:
            raise ManifestNotFoundError(f"{self._reference}: manifest {digest} is missing")
        data = self._archive.read_bytes(member.name, self.MAX_MANIFEST_SIZE, "the manifest")
        actual = Digest.from_bytes(data, digest.algorithm)
        if actual != digest:
            raise DigestMismatchError(
                f"{self._reference}: manifest {digest} hashes to {actual}",
                expected=digest,
                actual=actual,
            )
        media_type = ""
        if instance is None or instance == self._descriptor.digest:
            media_type = mt.normalize(self._descriptor.media_type)
        return data, media_type or mt.detect_manifest_media_type(data) or mt.OCI_MANIFEST

    def get_blob_stream(self, descriptor: Descriptor, offset: int = 0) -> Readable:
        member = self._archive.find(blob_member(descriptor.digest))
        if member is None:
            raise BlobNotFoundError(
                f"{self._reference}: blob {descriptor.digest} is missing from the archive"
            )
        return self._archive.open_member(member, offset)

    def close(self) -> None:
        self._archive.close()
