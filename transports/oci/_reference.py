"""``oci:PATH[:REF]`` references and the ``oci`` transport."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from imagetypes.errors import InvalidReferenceError
from imagetypes.types import ImageReference, Transport, TransportOptions

from ._layout import OCILayout, validate_ref_name

if TYPE_CHECKING:
    from ._destination import OCIImageDestination
    from ._source import OCIImageSource

__all__ = ["OCIReference", "OCITransport", "transport"]


class OCITransport(Transport):
    """The ``oci:`` transport: images in an OCI image layout directory."""

    name = "oci"

    def parse_reference(self, text: str) -> OCIReference:
        """Parse ``PATH[:REF]``: the path ends at the first ``:``, as in containers/image."""
        path, _, ref_name = text.partition(":")
        return OCIReference(path, ref_name or None)


#: The transport instance registered under the entry point ``oci``.
transport = OCITransport()


class OCIReference(ImageReference):
    """An image in an OCI layout: the layout's path and, optionally, the image's ref name.

    The path is made absolute when the reference is made, so ``str(ref)`` names the same
    layout whatever the working directory is later (containers/image keeps the path as typed).
    Without a ref name, reading uses the layout's only image and writing adds an unnamed entry.
    """

    def __init__(self, path: str | os.PathLike[str], ref_name: str | None = None) -> None:
        text = os.fspath(path)
        if not text:
            raise InvalidReferenceError("an oci: reference needs a path: oci:PATH[:REF]")
        if ":" in text:
            raise InvalidReferenceError(f"invalid oci: reference: the path {text!r} contains ':'")
        absolute = os.path.abspath(text)
        if ":" in absolute:
            # The working directory has a ':' in it: the reference could not be parsed back.
            raise InvalidReferenceError(
                f"invalid oci: reference: the absolute path {absolute!r} contains ':'"
            )
        if ref_name:
            validate_ref_name(ref_name)
        self._path = Path(absolute)
        self._ref_name = ref_name or None

    @property
    def transport(self) -> OCITransport:
        return transport

    @property
    def path(self) -> Path:
        """The absolute path of the layout directory."""
        return self._path

    @property
    def ref_name(self) -> str | None:
        """The image's name in the layout (``org.opencontainers.image.ref.name``), if given."""
        return self._ref_name

    @property
    def layout(self) -> OCILayout:
        """The layout this reference points into."""
        return OCILayout(self._path)

    def string_within_transport(self) -> str:
        if self._ref_name is None:
            return str(self._path)
        return f"{self._path}:{self._ref_name}"

    def open_source(self, options: TransportOptions | None = None) -> OCIImageSource:
        """Open the image for reading; fails at once if the layout or the image is missing."""
        from ._source import OCIImageSource

        return OCIImageSource(self, options or TransportOptions())

    def open_destination(self, options: TransportOptions | None = None) -> OCIImageDestination:
        """Open the layout for writing this image; nothing changes on disk before ``commit()``."""
        from ._destination import OCIImageDestination

        return OCIImageDestination(self, options or TransportOptions())

    def delete(self, options: TransportOptions | None = None) -> None:
        """Remove the image from index.json and delete the blobs no other image uses."""
        self.layout.delete(self._ref_name)
