"""The ``oci-archive:`` transport: an image in a tar archive of an OCI image layout.

``oci-archive:PATH[:REF]``. Reading indexes the archive and reads blobs by seeking, without
unpacking it (a compressed archive or a pipe is spooled to a temporary file first); ``REF``
selects one of several images as with ``oci:``. Writing streams a new archive, renamed into
place at commit (or to standard output with ``-``).
"""

from __future__ import annotations

from ._destination import ACCEPT_UNCOMPRESSED_LAYERS, OCIArchiveDestination
from ._reference import OCIArchiveReference, OCIArchiveTransport, transport
from ._source import OCIArchiveSource

__all__ = [
    "ACCEPT_UNCOMPRESSED_LAYERS",
    "OCIArchiveDestination",
    "OCIArchiveReference",
    "OCIArchiveSource",
    "OCIArchiveTransport",
    "transport",
]
