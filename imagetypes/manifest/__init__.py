"""Typed models of image manifests: parse, build, re-serialise and convert them.

Supported: OCI image manifests and indexes, Docker schema 2 manifests and manifest lists, and
Docker schema 1 (read, and written by :func:`schema1_from_image`). Every model keeps the exact
bytes it was parsed from in ``raw``, so parsing never changes a digest; builders serialise
compactly, as Go (and skopeo) do.
"""

from __future__ import annotations

from ._base import ImageManifest, IndexManifest, Manifest
from ._config import ImageConfig
from ._convert import convert_manifest
from ._docker import DockerManifest, DockerManifestList
from ._json import MAX_MANIFEST_SIZE
from ._oci import OCIIndex, OCIManifest
from ._parse import GENERIC_MEDIA_TYPES, manifest_class, parse_manifest
from ._schema1 import DockerSchema1Manifest
from ._schema1_write import (
    GZIPPED_EMPTY_LAYER,
    GZIPPED_EMPTY_LAYER_DIGEST,
    schema1_from_image,
)

__all__ = [
    "GENERIC_MEDIA_TYPES",
    "GZIPPED_EMPTY_LAYER",
    "GZIPPED_EMPTY_LAYER_DIGEST",
    "MAX_MANIFEST_SIZE",
    "DockerManifest",
    "DockerManifestList",
    "DockerSchema1Manifest",
    "ImageConfig",
    "ImageManifest",
    "IndexManifest",
    "Manifest",
    "OCIIndex",
    "OCIManifest",
    "convert_manifest",
    "manifest_class",
    "parse_manifest",
    "schema1_from_image",
]
