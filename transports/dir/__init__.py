"""The ``dir:`` transport: an image as plain files in a directory (skopeo's ``dir:`` format).

``dir:PATH`` holds ``version``, ``manifest.json``, one file per blob named by its encoded
digest, ``<hex>.manifest.json`` for the instances of an index, and ``signature-N`` /
``<hex>.signature-N`` signature files. Writing is atomic: nothing changes on disk until
``commit()``.
"""

from __future__ import annotations

from ._destination import DirImageDestination
from ._layout import VERSION, NotAnImageDirectoryError
from ._reference import DirReference, DirTransport, transport
from ._source import DirImageSource

__all__ = [
    "VERSION",
    "DirImageDestination",
    "DirImageSource",
    "DirReference",
    "DirTransport",
    "NotAnImageDirectoryError",
    "transport",
]
