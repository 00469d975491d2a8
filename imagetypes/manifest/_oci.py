"""OCI image manifests and indexes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import attrs

from .. import mediatypes as mt
from ..descriptor import Descriptor
from ._base import (
    ImageManifest,
    IndexManifest,
    check_annotations,
    check_descriptor,
    oci_descriptor_dict,
    read_descriptor,
    read_str,
)
from ._json import dumps

__all__ = ["OCIIndex", "OCIManifest"]


def _check_artifact_type(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"artifact_type must be a string, not {type(value).__name__}")
    return value or None


def _add_extra(out: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        out.setdefault(key, value)
    return out


def _read_subject(data: Mapping[str, Any]) -> Descriptor | None:
    value = data.get("subject")
    return None if value is None else read_descriptor(value, "subject")


@attrs.frozen(repr=False)
class OCIManifest(ImageManifest):
    """An OCI image manifest (``application/vnd.oci.image.manifest.v1+json``)."""

    #: The type of artifact this manifest describes, if it is one (OCI 1.1).
    artifact_type: str | None = attrs.field(init=False, eq=False)
    #: The manifest this one refers to (OCI 1.1 referrers), if any.
    subject: Descriptor | None = attrs.field(init=False, eq=False)

    MEDIA_TYPES: ClassVar[tuple[str, ...]] = (mt.OCI_MANIFEST,)
    _FIELDS: ClassVar[tuple[str, ...]] = (
        "config",
        "layers",
        "annotations",
        "artifact_type",
        "subject",
    )
    _KNOWN_KEYS: ClassVar[frozenset[str]] = frozenset(
        {"schemaVersion", "mediaType", "artifactType", "config", "layers", "subject", "annotations"}
    )

    def _load(self, data: Mapping[str, Any]) -> None:
        super()._load(data)
        object.__setattr__(self, "artifact_type", read_str(data, "artifactType") or None)
        object.__setattr__(self, "subject", _read_subject(data))

    @classmethod
    def _encode(cls, values: Mapping[str, Any], extra: Mapping[str, Any]) -> bytes:
        out: dict[str, Any] = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST}
        artifact_type = _check_artifact_type(values.get("artifact_type"))
        if artifact_type:
            out["artifactType"] = artifact_type
        out["config"] = oci_descriptor_dict(check_descriptor(values["config"], "config"))
        out["layers"] = [
            oci_descriptor_dict(check_descriptor(d, f"layers[{i}]"))
            for i, d in enumerate(values["layers"])
        ]
        subject = values.get("subject")
        if subject is not None:
            out["subject"] = oci_descriptor_dict(check_descriptor(subject, "subject"))
        annotations = check_annotations(values.get("annotations"), "annotations")
        if annotations:
            out["annotations"] = annotations
        return dumps(_add_extra(out, extra))

    @classmethod
    def build(
        cls,
        config: Descriptor,
        layers: Iterable[Descriptor],
        *,
        annotations: Mapping[str, str] | None = None,
        artifact_type: str | None = None,
        subject: Descriptor | None = None,
    ) -> OCIManifest:
        """A new manifest, serialised compactly as Go (and so skopeo) would write it."""
        values = {
            "config": config,
            "layers": tuple(layers),
            "annotations": annotations,
            "artifact_type": artifact_type,
            "subject": subject,
        }
        return cls(cls._encode(values, {}))

    def descriptor(self, **extra: Any) -> Descriptor:
        """A descriptor pointing at this manifest, carrying its artifact type if it has one."""
        if self.artifact_type and "artifact_type" not in extra:
            extra["artifact_type"] = self.artifact_type
        return super().descriptor(**extra)


@attrs.frozen(repr=False)
class OCIIndex(IndexManifest):
    """An OCI image index (``application/vnd.oci.image.index.v1+json``)."""

    #: The type of artifact this index describes, if it is one (OCI 1.1).
    artifact_type: str | None = attrs.field(init=False, eq=False)
    #: The manifest this one refers to (OCI 1.1 referrers), if any.
    subject: Descriptor | None = attrs.field(init=False, eq=False)

    MEDIA_TYPES: ClassVar[tuple[str, ...]] = (mt.OCI_INDEX,)
    _FIELDS: ClassVar[tuple[str, ...]] = ("manifests", "annotations", "artifact_type", "subject")
    _KNOWN_KEYS: ClassVar[frozenset[str]] = frozenset(
        {"schemaVersion", "mediaType", "artifactType", "manifests", "subject", "annotations"}
    )

    def _load(self, data: Mapping[str, Any]) -> None:
        super()._load(data)
        object.__setattr__(self, "artifact_type", read_str(data, "artifactType") or None)
        object.__setattr__(self, "subject", _read_subject(data))

    @classmethod
    def _encode(cls, values: Mapping[str, Any], extra: Mapping[str, Any]) -> bytes:
        out: dict[str, Any] = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX}
        artifact_type = _check_artifact_type(values.get("artifact_type"))
        if artifact_type:
            out["artifactType"] = artifact_type
        out["manifests"] = [
            oci_descriptor_dict(check_descriptor(d, f"manifests[{i}]"))
            for i, d in enumerate(values["manifests"])
        ]
        subject = values.get("subject")
        if subject is not None:
            out["subject"] = oci_descriptor_dict(check_descriptor(subject, "subject"))
        annotations = check_annotations(values.get("annotations"), "annotations")
        if annotations:
            out["annotations"] = annotations
        return dumps(_add_extra(out, extra))

    @classmethod
    def build(
        cls,
        manifests: Iterable[Descriptor],
        *,
        annotations: Mapping[str, str] | None = None,
        artifact_type: str | None = None,
        subject: Descriptor | None = None,
    ) -> OCIIndex:
        """A new index, serialised compactly as Go (and so skopeo) would write it."""
        values = {
            "manifests": tuple(manifests),
            "annotations": annotations,
            "artifact_type": artifact_type,
            "subject": subject,
        }
        return cls(cls._encode(values, {}))

    def descriptor(self, **extra: Any) -> Descriptor:
        """A descriptor pointing at this index, carrying its artifact type if it has one."""
        if self.artifact_type and "artifact_type" not in extra:
            extra["artifact_type"] = self.artifact_type
        return super().descriptor(**extra)
