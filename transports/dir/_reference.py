"""The ``dir`` transport and its references (``dir:PATH``)."""

from __future__ import annotations

import os
from pathlib import Path

from imagetypes.errors import InvalidReferenceError, UnsupportedError
from imagetypes.types import ImageReference, Transport, TransportOptions

from ._destination import DirImageDestination
from ._source import DirImageSource

__all__ = ["DirReference", "DirTransport", "transport"]


class DirTransport(Transport):
    """Images stored as plain files in a directory, the format of skopeo's ``dir:``."""

    name = "dir"

    def parse_reference(self, text: str) -> DirReference:
        """Parse ``PATH`` (the part after ``dir:``); any non-empty path is accepted."""
        return DirReference(text)


class DirReference(ImageReference):
    """A directory holding one image: ``dir:PATH``.

    The path is kept as written (relative paths stay relative, nothing is cleaned), as
    containers/image does, so ``str()`` gives back exactly the text that was parsed.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        text = os.fspath(path)
        if not isinstance(text, str):
            raise InvalidReferenceError(f"a dir: path must be text, not {type(text).__name__}")
        if not text:
            # containers/image would silently use the working directory, which is then
            # wiped by a copy into it; an explicit "." says that on purpose.
            raise InvalidReferenceError("a dir: reference needs a path (use dir:. for here)")
        if "\x00" in text:
            raise InvalidReferenceError(f"invalid dir: path {text!r}: contains a NUL byte")
        self._path = text

    @property
    def transport(self) -> DirTransport:
        return transport

    @property
    def path(self) -> Path:
        """The directory, as given (possibly relative)."""
        return Path(self._path)

    def string_within_transport(self) -> str:
        return self._path

    def open_source(self, options: TransportOptions | None = None) -> DirImageSource:
        """Open the directory for reading; :class:`~imagetypes.LayoutError` if it holds no image."""
        return DirImageSource(self)

    def open_destination(self, options: TransportOptions | None = None) -> DirImageDestination:
        """Prepare to write an image here, replacing the directory's content at ``commit()``.

        An existing directory must be empty or a ``dir:`` image (it has a ``version`` file);
        anything else raises :class:`NotAnImageDirectoryError`, so a typo cannot wipe a
        directory of documents. ``options.extra`` may set ``"dir.compress"`` or
        ``"dir.decompress"`` (skopeo's ``--dest-compress`` / ``--dest-decompress``).
        """
        return DirImageDestination(self, options or TransportOptions())

    def delete(self, options: TransportOptions | None = None) -> None:
        """Not supported, as in containers/image: remove the directory instead."""
        raise UnsupportedError(f"{self}: deleting images is not implemented for dir: images")


#: The transport instance registered under the ``imagetypes.transports`` entry point ``dir``.
transport = DirTransport()
