"""Descriptors: what a manifest says about a blob (media type, digest, size, ...)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from .digest import Digest
from .errors import ImageError, ManifestError
from .platform import Platform, _str_tuple

__all__ = ["BlobInfo", "Descriptor"]

_KNOWN_KEYS = frozenset(
    {"mediaType", "digest", "size", "urls", "annotations", "platform", "artifactType", "data"}
)


def _non_negative(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ManifestError(f"invalid {attribute.name} {value!r}: must be a non-negative integer")


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return dict(value) if value else {}


@attrs.frozen(eq=True)
class Descriptor:
    """A reference to content by media type, digest and size (OCI content descriptor).

    Fields the OCI spec does not name survive a round trip through :meth:`from_dict` and
    :meth:`to_dict` in :attr:`extra`.
    """

    media_type: str
    digest: Digest
    size: int = attrs.field(validator=_non_negative)
    urls: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple, kw_only=True)
    annotations: Mapping[str, str] = attrs.field(
        factory=dict, converter=_frozen_mapping, kw_only=True, hash=False
    )
    platform: Platform | None = attrs.field(default=None, kw_only=True)
    artifact_type: str | None = attrs.field(default=None, kw_only=True)
    data: str | None = attrs.field(default=None, kw_only=True)
    extra: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_frozen_mapping, kw_only=True, hash=False, repr=False
    )

    @classmethod
    def from_dict(cls, obj: Any) -> Descriptor:
        """Parse the JSON form; raise :class:`ManifestError` on anything malformed."""
        if not isinstance(obj, Mapping):
            raise ManifestError(f"a descriptor must be a JSON object, not {type(obj).__name__}")
        try:
            media_type = obj.get("mediaType", "")
            if not isinstance(media_type, str):
                raise ManifestError("descriptor mediaType must be a string")
            if "digest" not in obj or "size" not in obj:
                raise ManifestError("a descriptor needs digest and size")
            platform = obj.get("platform")
            annotations = obj.get("annotations") or {}
            if not isinstance(annotations, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
            ):
                raise ManifestError("descriptor annotations must map strings to strings")
            urls = obj.get("urls") or ()
            if not isinstance(urls, list | tuple) or not all(isinstance(u, str) for u in urls):
                raise ManifestError("descriptor urls must be a list of strings")
            for key in ("artifactType", "data"):
                if key in obj and not isinstance(obj[key], str):
                    raise ManifestError(f"descriptor {key} must be a string")
            return cls(
                media_type,
                Digest.parse(obj["digest"]),
                obj["size"],
                urls=urls,
                annotations=annotations,
                platform=Platform.from_dict(platform) if platform is not None else None,
                artifact_type=obj.get("artifactType"),
                data=obj.get("data"),
                extra={k: v for k, v in obj.items() if k not in _KNOWN_KEYS},
            )
        except ManifestError:
            raise
        except ImageError as e:
            raise ManifestError(f"invalid descriptor: {e}") from e

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, fields in the order the OCI and Docker tools write them."""
        out: dict[str, Any] = {}
        if self.media_type:
            out["mediaType"] = self.media_type
        out["digest"] = str(self.digest)
        out["size"] = self.size
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_dict()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.data is not None:
            out["data"] = self.data
        out.update(self.extra)
        return out


@attrs.frozen
class BlobInfo:
    """What a caller knows about a blob it hands to :meth:`ImageDestination.put_blob`.

    ``digest`` and ``size`` may be unknown (``None``), for instance for a layer compressed on
    the fly; the destination computes them while it streams.
    """

    media_type: str = ""
    digest: Digest | None = None
    size: int | None = None
    annotations: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_mapping)

    @classmethod
    def from_descriptor(cls, descriptor: Descriptor) -> BlobInfo:
        return cls(descriptor.media_type, descriptor.digest, descriptor.size)
