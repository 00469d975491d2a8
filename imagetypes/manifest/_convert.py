"""Converting manifests between the OCI and Docker schema 2 formats."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from .. import mediatypes as mt
from ..descriptor import Descriptor
from ..digest import Digest
from ..errors import UnsupportedConversionError
from ._base import IndexManifest, Manifest, make_descriptor
from ._docker import DockerManifest, DockerManifestList
from ._oci import OCIIndex, OCIManifest
from ._parse import manifest_class
from ._schema1 import DockerSchema1Manifest

__all__ = ["convert_manifest"]

# Not (yet) in imagetypes.mediatypes: the uncompressed foreign layer of Docker schema 2.

_OCI_TO_DOCKER_LAYER = {
    mt.OCI_LAYER_GZIP: mt.DOCKER_LAYER,
    mt.OCI_LAYER: mt.DOCKER_UNCOMPRESSED_LAYER,
    mt.OCI_NONDISTRIBUTABLE_LAYER_GZIP: mt.DOCKER_FOREIGN_LAYER,
    mt.OCI_NONDISTRIBUTABLE_LAYER: mt.DOCKER_FOREIGN_UNCOMPRESSED_LAYER,
}
_DOCKER_TO_OCI_LAYER = {docker: oci for oci, docker in _OCI_TO_DOCKER_LAYER.items()}
_OCI_ZSTD_LAYERS = frozenset({mt.OCI_LAYER_ZSTD, mt.OCI_NONDISTRIBUTABLE_LAYER_ZSTD})
_IMAGE_CONFIGS = frozenset({mt.OCI_CONFIG, mt.DOCKER_CONFIG})


def _is_encrypted(media_type: str) -> bool:
    # ocicrypt's layer types: application/vnd.oci.image.layer.v1.tar(+gzip|+zstd)+encrypted
    return media_type.endswith("+encrypted")


def _docker_layer(layer: Descriptor, index: int) -> Descriptor:
    media_type = layer.media_type
    where = f"layer {index} ({layer.digest})"
    if _is_encrypted(media_type):
        raise UnsupportedConversionError(
            f"{where} is encrypted ({media_type}); Docker images cannot hold encrypted layers"
        )
    if media_type in _OCI_ZSTD_LAYERS:
        raise UnsupportedConversionError(
            f"{where} is zstd-compressed ({media_type}); Docker images support only gzip or "
            "uncompressed layers"
        )
    if media_type in _OCI_TO_DOCKER_LAYER:
        media_type = _OCI_TO_DOCKER_LAYER[media_type]
    elif media_type not in _DOCKER_TO_OCI_LAYER:
        raise UnsupportedConversionError(
            f"{where} has the media type {media_type!r}, which has no Docker equivalent"
        )
    return make_descriptor(media_type, layer.digest, layer.size, urls=layer.urls)


def _oci_layer(layer: Descriptor, index: int) -> Descriptor:
    media_type = layer.media_type
    if media_type in _DOCKER_TO_OCI_LAYER:
        media_type = _DOCKER_TO_OCI_LAYER[media_type]
    elif media_type not in _OCI_TO_DOCKER_LAYER and media_type not in _OCI_ZSTD_LAYERS:
        raise UnsupportedConversionError(
            f"layer {index} ({layer.digest}) has the media type {media_type!r}, "
            "which has no OCI equivalent"
        )
    return attrs.evolve(layer, media_type=media_type)


def _to_docker_manifest(manifest: OCIManifest) -> DockerManifest:
    if manifest.artifact_type:
        raise UnsupportedConversionError(
            f"the manifest is an artifact (artifactType {manifest.artifact_type!r}); "
            "Docker schema 2 can only describe images"
        )
    if manifest.subject is not None:
        raise UnsupportedConversionError(
            "the manifest has a subject; Docker schema 2 cannot refer to another manifest"
        )
    if manifest.config.media_type not in _IMAGE_CONFIGS:
        raise UnsupportedConversionError(
            f"the manifest is an artifact (config media type {manifest.config.media_type!r}); "
            "Docker schema 2 can only describe images"
        )
    config = make_descriptor(
        mt.DOCKER_CONFIG, manifest.config.digest, manifest.config.size, urls=manifest.config.urls
    )
    layers = [_docker_layer(layer, i) for i, layer in enumerate(manifest.layers)]
    return DockerManifest.build(config, layers)


def _to_oci_manifest(manifest: DockerManifest) -> OCIManifest:
    if manifest.config.media_type != mt.DOCKER_CONFIG:
        raise UnsupportedConversionError(
            f"the config has the media type {manifest.config.media_type!r}, not a Docker "
            "image config"
        )
    config = attrs.evolve(manifest.config, media_type=mt.OCI_CONFIG)
    layers = [_oci_layer(layer, i) for i, layer in enumerate(manifest.layers)]
    return OCIManifest.build(config, layers)


def _replace_entry(entry: Descriptor, new: Descriptor) -> Descriptor:
    """``entry`` pointing at ``new``'s content, keeping what describes the instance."""
    changes: dict[str, Any] = {
        "media_type": new.media_type,
        "digest": new.digest,
        "size": new.size,
        "urls": new.urls or entry.urls,
        "platform": new.platform or entry.platform,
        "annotations": new.annotations or entry.annotations,
        "artifact_type": new.artifact_type or entry.artifact_type,
    }
    return attrs.evolve(entry, **changes)


def _mapped_entries(
    index: IndexManifest, instance_map: Mapping[Digest, Descriptor] | None
) -> list[Descriptor]:
    mapping = instance_map or {}
    return [
        _replace_entry(entry, mapping[entry.digest]) if entry.digest in mapping else entry
        for entry in index.manifests
    ]


def _to_docker_list(
    index: OCIIndex, instance_map: Mapping[Digest, Descriptor] | None
) -> DockerManifestList:
    if index.artifact_type:
        raise UnsupportedConversionError(
            f"the index is an artifact (artifactType {index.artifact_type!r}); "
            "Docker manifest lists cannot describe artifacts"
        )
    if index.subject is not None:
        raise UnsupportedConversionError(
            "the index has a subject; Docker manifest lists cannot refer to another manifest"
        )
    entries = []
    for i, entry in enumerate(_mapped_entries(index, instance_map)):
        if entry.platform is None:
            raise UnsupportedConversionError(
                f"manifests[{i}] ({entry.digest}) names no platform; every entry of a Docker "
                "manifest list needs one"
            )
        if entry.artifact_type:
            raise UnsupportedConversionError(
                f"manifests[{i}] ({entry.digest}) is an artifact; Docker manifest lists cannot "
                "describe artifacts"
            )
        entries.append(
            make_descriptor(
                entry.media_type, entry.digest, entry.size, urls=entry.urls, platform=entry.platform
            )
        )
    return DockerManifestList.build(entries)


def _to_oci_index(
    manifest_list: DockerManifestList, instance_map: Mapping[Digest, Descriptor] | None
) -> OCIIndex:
    return OCIIndex.build(_mapped_entries(manifest_list, instance_map))


def convert_manifest(
    manifest: Manifest,
    media_type: str,
    *,
    instance_map: Mapping[Digest, Descriptor] | None = None,
) -> Manifest:
    """Convert ``manifest`` to the format ``media_type`` names, losing nothing that matters.

    - OCI image manifest <-> Docker schema 2 manifest: the config and layer media types are
      translated (gzip, uncompressed and non-distributable/foreign layers; URLs are kept);
      the config blob itself is unchanged, so the config digest stays the same.
    - OCI index <-> Docker manifest list: the entries keep their digests, media types and
      platforms; ``instance_map`` (old instance digest -> descriptor of the converted
      instance) replaces the entries whose instances the caller converted, keeping their
      platform. An entry that is not in the map still points at the same bytes, so its media
      type is left as it is.
    - Converting to the manifest's own type returns it unchanged (the same bytes), unless
      ``instance_map`` replaces some of an index's entries.

    Docker schema 2 has no annotations: the manifest's and descriptors' annotations are
    dropped on the way to Docker (as containers/image does). A converted manifest is a new
    document, so unknown top-level fields are not carried over either.

    :class:`UnsupportedConversionError` is raised where the result could not be faithful:
    zstd or encrypted layers to Docker, an artifact (a config that is not an image config,
    ``artifactType`` or ``subject``) to Docker, an index entry without a platform to a Docker
    list, an image manifest to an index or back, and anything from or to schema 1 (converting
    from schema 1 needs the layers' diff IDs).
    """
    target = mt.normalize(media_type)
    target_class = manifest_class(target)
    if target == manifest.media_type:
        if (
            instance_map
            and isinstance(manifest, IndexManifest)
            and any(entry.digest in instance_map for entry in manifest.manifests)
        ):
            return manifest.replace_manifests(_mapped_entries(manifest, instance_map))
        return manifest
    if isinstance(manifest, DockerSchema1Manifest):
        raise UnsupportedConversionError(
            f"cannot convert a Docker schema 1 manifest to {target}: that needs the layers' "
            "diff IDs, which schema 1 does not record"
        )
    if target_class is DockerSchema1Manifest:
        raise UnsupportedConversionError("converting to Docker schema 1 is not supported")
    if isinstance(manifest, OCIManifest) and target_class is DockerManifest:
        return _to_docker_manifest(manifest)
    if isinstance(manifest, DockerManifest) and target_class is OCIManifest:
        return _to_oci_manifest(manifest)
    if isinstance(manifest, OCIIndex) and target_class is DockerManifestList:
        return _to_docker_list(manifest, instance_map)
    if isinstance(manifest, DockerManifestList) and target_class is OCIIndex:
        return _to_oci_index(manifest, instance_map)
    kind = "an index" if isinstance(manifest, IndexManifest) else "an image manifest"
    raise UnsupportedConversionError(f"cannot convert {kind} ({manifest.media_type}) to {target}")
