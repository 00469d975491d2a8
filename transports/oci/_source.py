"""Reading an image from an OCI layout."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imagetypes import mediatypes as mt
from imagetypes.descriptor import Descriptor
from imagetypes.digest import Digest, Readable
from imagetypes.errors import BlobNotFoundError, LayoutError
from imagetypes.types import ImageSource, SourceCapabilities, TransportOptions

if TYPE_CHECKING:
    from ._reference import OCIReference

__all__ = ["OCIImageSource"]


class OCIImageSource(ImageSource):
    """An image (or index) of an OCI layout, chosen by ref name when it is opened."""

    def __init__(self, reference: OCIReference, options: TransportOptions) -> None:
        self._reference = reference
        self._options = options
        self._layout = reference.layout
        self._descriptor = self._layout.resolve(reference.ref_name)

    @property
    def reference(self) -> OCIReference:
        return self._reference

    @property
    def capabilities(self) -> SourceCapabilities:
        # Every read opens its own file, so reads are independent and seekable.
        return SourceCapabilities(concurrent_blob_reads=True, ranged_reads=True, local_reads=True)

    @property
    def descriptor(self) -> Descriptor:
        """The index.json entry of the image."""
        return self._descriptor

    def get_manifest(self, instance: Digest | None = None) -> tuple[bytes, str]:
        digest = self._descriptor.digest if instance is None else instance
        data = self._layout.read_manifest(digest, self.MAX_MANIFEST_SIZE)
        media_type = ""
        if instance is None or instance == self._descriptor.digest:
            media_type = mt.normalize(self._descriptor.media_type)
        # index.json entries may omit mediaType, and instances have no entry: the bytes tell.
        # containers/image assumes an OCI manifest when nothing does; so do we.
        return data, media_type or mt.detect_manifest_media_type(data) or mt.OCI_MANIFEST

    def get_blob_stream(self, descriptor: Descriptor, offset: int = 0) -> Readable:
        path = self._layout.blob_path(descriptor.digest)
        try:
            f = open(path, "rb")  # noqa: SIM115 - the caller owns and closes the stream
        except FileNotFoundError:
            hint = " (a non-distributable layer: only its URLs hold it)" if descriptor.urls else ""
            raise BlobNotFoundError(
                f"blob {descriptor.digest} is missing from the OCI layout {self._layout.path}{hint}"
            ) from None
        except IsADirectoryError:
            raise LayoutError(f"{path} is a directory, not a blob") from None
        if offset:
            try:
                f.seek(offset)
            except BaseException:
                f.close()
                raise
        return f
