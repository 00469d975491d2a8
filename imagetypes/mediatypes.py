"""Media type constants, and telling a manifest's type from its bytes."""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_FOREIGN_LAYER",
    "DOCKER_FOREIGN_UNCOMPRESSED_LAYER",
    "DOCKER_LAYER",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "DOCKER_SCHEMA1_MANIFEST",
    "DOCKER_SCHEMA1_SIGNED_MANIFEST",
    "DOCKER_UNCOMPRESSED_LAYER",
    "IMAGE_MANIFEST_TYPES",
    "INDEX_TYPES",
    "MANIFEST_TYPES",
    "OCI_CONFIG",
    "OCI_EMPTY",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_ZSTD",
    "OCI_LAYOUT_VERSION",
    "OCI_MANIFEST",
    "OCI_NONDISTRIBUTABLE_LAYER",
    "OCI_NONDISTRIBUTABLE_LAYER_GZIP",
    "OCI_NONDISTRIBUTABLE_LAYER_ZSTD",
    "detect_manifest_media_type",
    "is_index",
    "normalize",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_NONDISTRIBUTABLE_LAYER = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_NONDISTRIBUTABLE_LAYER_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_NONDISTRIBUTABLE_LAYER_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
OCI_LAYOUT_VERSION = "1.0.0"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1_MANIFEST = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED_MANIFEST = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_UNCOMPRESSED_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_FOREIGN_UNCOMPRESSED_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar"

#: Media types of single-image manifests.
IMAGE_MANIFEST_TYPES: tuple[str, ...] = (
    OCI_MANIFEST,
    DOCKER_MANIFEST,
    DOCKER_SCHEMA1_SIGNED_MANIFEST,
    DOCKER_SCHEMA1_MANIFEST,
)
#: Media types of multi-image manifests (indexes, manifest lists).
INDEX_TYPES: tuple[str, ...] = (OCI_INDEX, DOCKER_MANIFEST_LIST)
#: Every manifest media type imagetypes understands, most preferred first.
MANIFEST_TYPES: tuple[str, ...] = (
    OCI_MANIFEST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
    DOCKER_SCHEMA1_SIGNED_MANIFEST,
    DOCKER_SCHEMA1_MANIFEST,
)


def normalize(media_type: str) -> str:
    """Strip parameters and whitespace (``"text/plain; charset=utf-8"`` -> ``"text/plain"``)."""
    return media_type.split(";", 1)[0].strip()


def is_index(media_type: str) -> bool:
    """True for an OCI index or a Docker manifest list."""
    return normalize(media_type) in INDEX_TYPES


def detect_manifest_media_type(data: bytes) -> str:
    """Tell the media type of a manifest from its bytes.

    The ``mediaType`` field wins when present. Without it (allowed in OCI), the shape decides:
    ``manifests`` means an index, ``config`` and ``layers`` an image manifest, ``fsLayers`` and
    ``schemaVersion: 1`` Docker schema 1 (signed when it carries ``signatures``). Returns an empty
    string when the bytes are not a JSON object or match no shape.
    """
    try:
        obj: Any = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return ""
    if not isinstance(obj, dict):
        return ""
    declared = obj.get("mediaType")
    if isinstance(declared, str) and declared:
        if declared == DOCKER_SCHEMA1_MANIFEST and "signatures" in obj:
            return DOCKER_SCHEMA1_SIGNED_MANIFEST
        return declared
    version = obj.get("schemaVersion")
    if version == 1:
        return DOCKER_SCHEMA1_SIGNED_MANIFEST if "signatures" in obj else DOCKER_SCHEMA1_MANIFEST
    if "manifests" in obj:
        return OCI_INDEX
    if "config" in obj and "layers" in obj:
        if isinstance(obj["config"], dict) and obj["config"].get("mediaType") == DOCKER_CONFIG:
            return DOCKER_MANIFEST
        return OCI_MANIFEST
    return ""
