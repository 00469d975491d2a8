"""Docker schema 2 image manifests and manifest lists."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import attrs

from .. import mediatypes as mt
from ..descriptor import Descriptor
from ._base import (
    ImageManifest,
    IndexManifest,
    check_descriptor,
    docker_descriptor_dict,
)
from ._json import dumps

__all__ = ["DockerManifest", "DockerManifestList"]


def _add_extra(out: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        out.setdefault(key, value)
    return out


def _without_empty_platform(entry: object) -> object:
    # Go writes a Docker list entry's platform even when it is unset, as empty strings;
    # read that as "no platform" rather than as an invalid one.
    if isinstance(entry, dict):
        plat = entry.get("platform")
        if isinstance(plat, dict) and not plat.get("os") and not plat.get("architecture"):
            return {k: v for k, v in entry.items() if k != "platform"}
    return entry


@attrs.frozen(repr=False)
class DockerManifest(ImageManifest):
    """A Docker image manifest, schema 2.

    Its media type is ``application/vnd.docker.distribution.manifest.v2+json``.
    """

    MEDIA_TYPES: ClassVar[tuple[str, ...]] = (mt.DOCKER_MANIFEST,)
    _FIELDS: ClassVar[tuple[str, ...]] = ("config", "layers")
    _KNOWN_KEYS: ClassVar[frozenset[str]] = frozenset(
        {"schemaVersion", "mediaType", "config", "layers"}
    )

    @classmethod
    def _encode(cls, values: Mapping[str, Any], extra: Mapping[str, Any]) -> bytes:
        out: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": mt.DOCKER_MANIFEST,
            "config": docker_descriptor_dict(check_descriptor(values["config"], "config")),
            "layers": [
                docker_descriptor_dict(check_descriptor(d, f"layers[{i}]"))
                for i, d in enumerate(values["layers"])
            ],
        }
        return dumps(_add_extra(out, extra))

    @classmethod
    def build(cls, config: Descriptor, layers: Iterable[Descriptor]) -> DockerManifest:
        """A new manifest, serialised compactly as Go (and so skopeo) would write it.

        Docker descriptors have only media type, size, digest and URLs; pass descriptors
        without annotations (or use :func:`~imagetypes.manifest.convert_manifest`, which
        drops them) to get exactly what skopeo writes.
        """
        return cls(cls._encode({"config": config, "layers": tuple(layers)}, {}))


@attrs.frozen(repr=False)
class DockerManifestList(IndexManifest):
    """A Docker manifest list (``application/vnd.docker.distribution.manifest.list.v2+json``).

    Every entry names a platform; an entry Go wrote with an empty platform reads as having none.
    """

    MEDIA_TYPES: ClassVar[tuple[str, ...]] = (mt.DOCKER_MANIFEST_LIST,)
    _FIELDS: ClassVar[tuple[str, ...]] = ("manifests",)
    _KNOWN_KEYS: ClassVar[frozenset[str]] = frozenset({"schemaVersion", "mediaType", "manifests"})

    def _load(self, data: Mapping[str, Any]) -> None:
        entries = data.get("manifests")
        if isinstance(entries, list):
            data = {**data, "manifests": [_without_empty_platform(e) for e in entries]}
        super()._load(data)

    @classmethod
    def _encode(cls, values: Mapping[str, Any], extra: Mapping[str, Any]) -> bytes:
        out: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": mt.DOCKER_MANIFEST_LIST,
            "manifests": [
                docker_descriptor_dict(check_descriptor(d, f"manifests[{i}]"), platform=True)
                for i, d in enumerate(values["manifests"])
            ],
        }
        return dumps(_add_extra(out, extra))

    @classmethod
    def build(cls, manifests: Iterable[Descriptor]) -> DockerManifestList:
        """A new manifest list, serialised compactly as Go (and so skopeo) would write it."""
        return cls(cls._encode({"manifests": tuple(manifests)}, {}))
