"""The ``oci:`` transport: images in an OCI image layout directory (``oci:PATH[:REF]``).

``PATH`` is the layout directory; ``REF``, optional, is the image's name in the layout (the
``org.opencontainers.image.ref.name`` annotation of its index.json entry). Without ``REF``,
reading uses the layout's only image and writing adds an unnamed entry, as in skopeo.
"""

from __future__ import annotations

from ._destination import ACCEPT_UNCOMPRESSED_LAYERS, OCIImageDestination
from ._layout import REF_NAME_ANNOTATION, OCILayout, validate_ref_name
from ._reference import OCIReference, OCITransport, transport
from ._source import OCIImageSource

__all__ = [
    "ACCEPT_UNCOMPRESSED_LAYERS",
    "REF_NAME_ANNOTATION",
    "OCIImageDestination",
    "OCIImageSource",
    "OCILayout",
    "OCIReference",
    "OCITransport",
    "transport",
    "validate_ref_name",
]
