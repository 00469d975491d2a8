"""Reading an image from a ``dir:`` directory."""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO

from imagetypes.blobfiles import read_bounded
from imagetypes.descriptor import Descriptor
from imagetypes.digest import Digest
from imagetypes.errors import (
    BlobNotFoundError,
    DigestMismatchError,
    LayoutError,
    ManifestNotFoundError,
)
from imagetypes.mediatypes import detect_manifest_media_type
from imagetypes.types import ImageSource, SourceCapabilities

from ._layout import (
    MANIFEST_FILE,
    blob_name,
    check_version,
    manifest_name,
    signature_name,
)

if TYPE_CHECKING:
    from ._reference import DirReference

__all__ = ["DirImageSource"]

# Signatures are small (a GPG message or a sigstore payload); bound them like manifests.
_MAX_SIGNATURE_SIZE = 4 * 1024 * 1024


class DirImageSource(ImageSource):
    """Reads the image stored in a ``dir:`` directory."""

    def __init__(self, reference: DirReference) -> None:
        self._reference = reference
        root = reference.path
        if not root.is_dir():
            what = "does not exist" if not root.exists() else "is not a directory"
            raise LayoutError(f"{reference}: {root} {what}")
        check_version(root)
        if not (root / MANIFEST_FILE).is_file():
            raise LayoutError(f"{reference}: not a dir: image (no {MANIFEST_FILE})")
        self._root = root

    @property
    def reference(self) -> DirReference:
        return self._reference

    @property
    def capabilities(self) -> SourceCapabilities:
        return SourceCapabilities(concurrent_blob_reads=True, ranged_reads=True, local_reads=True)

    def get_manifest(self, instance: Digest | None = None) -> tuple[bytes, str]:
        """The top-level manifest, or the manifest of an instance (verified against its digest).

        The media type is told from the bytes; it is empty when the bytes match no known shape.
        """
        try:
            data = read_bounded(self._root / manifest_name(instance), self.MAX_MANIFEST_SIZE)
        except FileNotFoundError:
            if instance is None:
                raise LayoutError(f"{self._reference}: {MANIFEST_FILE} is missing") from None
            # Asking for the top-level manifest by its own digest is legitimate (a caller
            # resolving an image by digest); containers/image would fail, we answer.
            data = self._top_manifest_if(instance)
        if instance is not None:
            actual = Digest.from_bytes(data, instance.algorithm)
            if actual != instance:
                raise DigestMismatchError(
                    f"{self._reference}: manifest {manifest_name(instance)} has digest {actual}",
                    expected=instance,
                    actual=actual,
                )
        return data, detect_manifest_media_type(data)

    def _top_manifest_if(self, instance: Digest) -> bytes:
        try:
            data = read_bounded(self._root / MANIFEST_FILE, self.MAX_MANIFEST_SIZE)
        except FileNotFoundError:
            data = b""
        if data and Digest.from_bytes(data, instance.algorithm) == instance:
            return data
        raise ManifestNotFoundError(f"{self._reference}: no manifest with digest {instance}")

    def get_blob_stream(self, descriptor: Descriptor, offset: int = 0) -> BinaryIO:
        """The blob file, opened for reading at ``offset``."""
        path = self._root / blob_name(descriptor.digest)
        try:
            f = open(path, "rb")  # noqa: SIM115 - the caller owns and closes the stream
        except FileNotFoundError:
            raise BlobNotFoundError(
                f"{self._reference}: no blob {descriptor.digest} ({path.name} is missing)"
            ) from None
        try:
            if offset:
                f.seek(offset)
        except BaseException:
            f.close()
            raise
        return f

    def get_signatures(self, instance: Digest | None = None) -> list[bytes]:
        """The signature files ``signature-1``, ``signature-2``, ... up to the first missing one."""
        signatures: list[bytes] = []
        while True:
            path = self._root / signature_name(len(signatures), instance)
            try:
                signatures.append(read_bounded(path, _MAX_SIGNATURE_SIZE))
            except FileNotFoundError:
                return signatures
