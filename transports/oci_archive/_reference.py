"""``oci-archive:PATH[:REF]`` references and the ``oci-archive`` transport."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from imagetypes.errors import InvalidReferenceError
from imagetypes.types import ImageReference, Transport, TransportOptions

from ..oci import validate_ref_name

if TYPE_CHECKING:
    from ._destination import OCIArchiveDestination
    from ._source import OCIArchiveSource

__all__ = ["OCIArchiveReference", "OCIArchiveTransport", "transport"]


class OCIArchiveTransport(Transport):
    """Images in a tar archive of an OCI image layout (skopeo's ``oci-archive:``)."""

    name = "oci-archive"

    def parse_reference(self, text: str) -> OCIArchiveReference:
        """Parse ``PATH[:REF]``: the path ends at the first ``:``, as in containers/image."""
        path, _, ref_name = text.partition(":")
        return OCIArchiveReference(path, ref_name or None)


#: The transport instance registered under the entry point ``oci-archive``.
transport = OCIArchiveTransport()


class OCIArchiveReference(ImageReference):
    """An image in an OCI layout archive: the archive's path and, optionally, a ref name.

    Reading without a ref name uses the archive's only image; the name selects one of
    several (the ``org.opencontainers.image.ref.name`` annotation, as with ``oci:``). The
    path is kept as written; ``-`` is standard input (reading) or output (writing).
    """

    def __init__(self, path: str | os.PathLike[str], ref_name: str | None = None) -> None:
        text = os.fspath(path)
        if not isinstance(text, str) or not text:
            raise InvalidReferenceError("an oci-archive: reference needs a path: PATH[:REF]")
        if ":" in text:
            raise InvalidReferenceError(
                f"invalid oci-archive: reference: the path {text!r} contains ':'"
            )
        if "\x00" in text:
            raise InvalidReferenceError("invalid oci-archive: path: contains a NUL byte")
        if ref_name is not None:
            validate_ref_name(ref_name)
        self._path = text
        self._ref_name = ref_name or None

    @property
    def transport(self) -> OCIArchiveTransport:
        return transport

    @property
    def path(self) -> str:
        """The archive's path, as given."""
        return self._path

    @property
    def ref_name(self) -> str | None:
        """The image's name in the layout, if given."""
        return self._ref_name

    def string_within_transport(self) -> str:
        return self._path if self._ref_name is None else f"{self._path}:{self._ref_name}"

    def open_source(self, options: TransportOptions | None = None) -> OCIArchiveSource:
        """Open the image for reading, without unpacking the archive."""
        from ._source import OCIArchiveSource

        return OCIArchiveSource(self, options or TransportOptions())

    def open_destination(self, options: TransportOptions | None = None) -> OCIArchiveDestination:
        """Prepare to write a new archive holding this image; it replaces the file at commit."""
        from ._destination import OCIArchiveDestination

        return OCIArchiveDestination(self, options or TransportOptions())
