"""parse_manifest(): bytes (and perhaps a media type) in, the right manifest model out."""

from __future__ import annotations

from .. import mediatypes as mt
from ..errors import UnsupportedManifestTypeError
from ._base import Manifest
from ._docker import DockerManifest, DockerManifestList
from ._json import check_size, load_object, to_bytes
from ._oci import OCIIndex, OCIManifest
from ._schema1 import DockerSchema1Manifest

__all__ = ["GENERIC_MEDIA_TYPES", "manifest_class", "parse_manifest"]

#: Media types that say nothing about a manifest's format (e.g. from a plain web server).
GENERIC_MEDIA_TYPES = frozenset({"", "application/json", "text/plain", "application/octet-stream"})

_CLASSES: dict[str, type[Manifest]] = {
    mt.OCI_MANIFEST: OCIManifest,
    mt.OCI_INDEX: OCIIndex,
    mt.DOCKER_MANIFEST: DockerManifest,
    mt.DOCKER_MANIFEST_LIST: DockerManifestList,
    mt.DOCKER_SCHEMA1_MANIFEST: DockerSchema1Manifest,
    mt.DOCKER_SCHEMA1_SIGNED_MANIFEST: DockerSchema1Manifest,
}


def manifest_class(media_type: str) -> type[Manifest]:
    """The model class for a manifest media type; :class:`UnsupportedManifestTypeError` if none."""
    try:
        return _CLASSES[mt.normalize(media_type)]
    except KeyError:
        raise UnsupportedManifestTypeError(
            f"unsupported manifest media type {media_type!r}"
        ) from None


def parse_manifest(data: bytes, media_type: str | None = None) -> Manifest:
    """Parse a manifest of any supported kind.

    The media type comes from ``media_type`` unless that is absent or generic
    (``application/json`` and the like), else from the bytes. A ``mediaType`` field in the
    bytes that contradicts ``media_type`` is an error.

    Raises :class:`ManifestTooLargeError` over 4 MiB, :class:`ManifestError` for anything
    malformed (the message names the field), and :class:`UnsupportedManifestTypeError` for a
    type imagetypes does not know.
    """
    data = to_bytes(data)
    check_size(data, "manifest")
    given = mt.normalize(media_type or "")
    if given in GENERIC_MEDIA_TYPES:
        given = ""
    if given:
        cls = manifest_class(given)
    else:
        load_object(data, "manifest")  # a clear error for bytes that are not a JSON object
        detected = mt.detect_manifest_media_type(data)
        if not detected:
            raise UnsupportedManifestTypeError(
                "cannot tell the manifest's type: it has no mediaType and no known shape"
            )
        cls = manifest_class(detected)
        given = mt.normalize(detected)
    return cls(data, media_type=given)
