"""The manifest base classes and the helpers every manifest format shares."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from .. import mediatypes as mt
from ..descriptor import Descriptor
from ..digest import Digest
from ..errors import ImageError, ManifestError, UnsupportedError
from ..platform import Platform, best_match
from ._json import json_type, load_object, to_bytes

if TYPE_CHECKING:
    from typing_extensions import Self

    from .. import _display

__all__ = ["ImageManifest", "IndexManifest", "Manifest"]


def _set(instance: object, name: str, value: object) -> None:
    # The models are frozen; their derived fields are filled in once, while constructing.
    object.__setattr__(instance, name, value)


def _normalize_media_type(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"media_type must be a string, not {type(value).__name__}")
    return mt.normalize(value)


# -- reading fields ----------------------------------------------------------------------------


def read_schema_version(data: Mapping[str, Any], expected: int) -> None:
    """Check ``schemaVersion``; bools are refused although Python counts ``true`` as 1."""
    if "schemaVersion" not in data:
        raise ManifestError("schemaVersion is missing")
    version = data["schemaVersion"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise ManifestError(f"schemaVersion must be an integer, not {json_type(version)}")
    if version != expected:
        raise ManifestError(f"schemaVersion must be {expected}, not {version}")


def read_str(data: Mapping[str, Any], key: str, where: str = "") -> str | None:
    """An optional string field (``null`` counts as absent, as in Go)."""
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ManifestError(f"{where}{key} must be a string, not {json_type(value)}")
    return value


def read_annotations(value: object, where: str) -> Mapping[str, str]:
    """A read-only string-to-string map (``null`` or absent: empty)."""
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ManifestError(f"{where} must be an object mapping strings to strings")
    return MappingProxyType(dict(value))


def read_descriptor(value: object, where: str) -> Descriptor:
    """Parse one descriptor; errors name the field (``layers[2]: ...``)."""
    if not isinstance(value, dict):
        raise ManifestError(f"{where} must be an object, not {json_type(value)}")
    for key in ("mediaType", "artifactType", "data"):
        if value.get(key) is not None and not isinstance(value[key], str):
            raise ManifestError(f"{where}.{key} must be a string, not {json_type(value[key])}")
    if "digest" not in value:
        raise ManifestError(f"{where}.digest is missing")
    if "size" not in value:
        raise ManifestError(f"{where}.size is missing")
    size = value["size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ManifestError(f"{where}.size must be a non-negative integer, not {size!r}")
    try:
        return Descriptor.from_dict(value)
    except ImageError as e:
        raise ManifestError(f"{where}: {e}") from e
    except (TypeError, ValueError) as e:
        raise ManifestError(f"{where}: invalid descriptor: {e}") from e


def read_descriptors(
    data: Mapping[str, Any], key: str, *, required: bool = True
) -> tuple[Descriptor, ...]:
    """A list of descriptors under ``key``."""
    value = data.get(key)
    if value is None:
        if required and key not in data:
            raise ManifestError(f"{key} is missing")
        return ()
    if not isinstance(value, list):
        raise ManifestError(f"{key} must be an array, not {json_type(value)}")
    return tuple(read_descriptor(item, f"{key}[{i}]") for i, item in enumerate(value))


def reject_keys(data: Mapping[str, Any], keys: Iterable[str], kind: str) -> None:
    """Refuse fields of another manifest kind, so one document cannot be read two ways."""
    for key in keys:
        if key in data:
            raise ManifestError(f"a {kind} must not have a {key!r} field (ambiguous manifest)")


# -- writing fields ----------------------------------------------------------------------------


def check_descriptor(value: object, where: str) -> Descriptor:
    if not isinstance(value, Descriptor):
        raise TypeError(f"{where} must be a Descriptor, not {type(value).__name__}")
    return value


def make_descriptor(
    media_type: str,
    digest: Digest,
    size: int,
    *,
    urls: Iterable[str] = (),
    platform: Platform | None = None,
) -> Descriptor:
    """A descriptor with only the fields both OCI and Docker define."""
    # Passed as a dict: mypy's attrs plugin types the ``converter=tuple`` field ``urls`` as
    # ``Iterable[_T_co]``, which no argument satisfies.
    optional: dict[str, Any] = {"urls": tuple(urls), "platform": platform}
    return Descriptor(media_type, digest, size, **optional)


def sorted_map(value: Mapping[str, str]) -> dict[str, str]:
    """Go writes map keys sorted."""
    return {k: value[k] for k in sorted(value)}


def oci_descriptor_dict(d: Descriptor) -> dict[str, Any]:
    """An OCI descriptor in the field order of Go's ``imgspecv1.Descriptor``."""
    out: dict[str, Any] = {"mediaType": d.media_type, "digest": str(d.digest), "size": d.size}
    if d.urls:
        out["urls"] = list(d.urls)
    if d.annotations:
        out["annotations"] = sorted_map(d.annotations)
    if d.data is not None:
        out["data"] = d.data
    if d.platform is not None:
        out["platform"] = d.platform.to_dict()
    if d.artifact_type:
        out["artifactType"] = d.artifact_type
    for key, value in d.extra.items():
        out.setdefault(key, copy.deepcopy(value))
    return out


def docker_descriptor_dict(d: Descriptor, *, platform: bool = False) -> dict[str, Any]:
    """A Docker schema 2 descriptor in the field order of Go's ``Schema2Descriptor``.

    Docker descriptors have no annotations, data or artifactType; they are written only when
    the descriptor carries them (so re-serialising a parsed document loses nothing), and
    :func:`~imagetypes.manifest.convert_manifest` strips them first.
    """
    out: dict[str, Any] = {"mediaType": d.media_type, "size": d.size, "digest": str(d.digest)}
    if d.urls:
        out["urls"] = list(d.urls)
    if platform:
        # Go's Schema2ManifestDescriptor.Platform is not omitempty.
        out["platform"] = d.platform.to_dict() if d.platform else {"architecture": "", "os": ""}
    if d.annotations:
        out["annotations"] = sorted_map(d.annotations)
    if d.data is not None:
        out["data"] = d.data
    if d.artifact_type:
        out["artifactType"] = d.artifact_type
    for key, value in d.extra.items():
        out.setdefault(key, copy.deepcopy(value))
    return out


def check_annotations(value: Mapping[str, str] | None, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise TypeError(f"{where} must map strings to strings")
    return sorted_map(value)


# -- the models --------------------------------------------------------------------------------


@attrs.frozen(repr=False)
class Manifest:
    """A parsed manifest of any kind, holding the exact bytes it was parsed from.

    Construct one with :func:`~imagetypes.manifest.parse_manifest`, ``SomeManifest.parse``, or
    a builder such as :meth:`OCIManifest.build`; calling a concrete class with the bytes
    (``OCIManifest(raw)``) parses and validates them as that type. Two manifests are equal when
    their media type and bytes are.
    """

    #: The exact bytes of the manifest; never re-serialised.
    raw: bytes = attrs.field(converter=to_bytes)
    #: The manifest's media type (normalised, without parameters).
    media_type: str = attrs.field(default="", kw_only=True, converter=_normalize_media_type)
    #: The digest of :attr:`raw`.
    digest: Digest = attrs.field(init=False, eq=False)
    _data: dict[str, Any] = attrs.field(init=False, eq=False)

    #: The media types the class can hold; the first is its default.
    MEDIA_TYPES: ClassVar[tuple[str, ...]] = ()
    #: What :meth:`evolve` may change (in the order :meth:`_encode` takes them).
    _FIELDS: ClassVar[tuple[str, ...]] = ()
    #: Top-level JSON fields the class writes itself; the others are kept as they were.
    _KNOWN_KEYS: ClassVar[frozenset[str]] = frozenset()

    def __attrs_post_init__(self) -> None:
        if not self.MEDIA_TYPES:
            raise TypeError(
                f"{type(self).__name__} is abstract: use parse_manifest() or a concrete class"
            )
        data = load_object(self.raw, "manifest")
        media_type = self.media_type or self._default_media_type(data)
        if media_type not in self.MEDIA_TYPES:
            raise ManifestError(f"{type(self).__name__} cannot hold a {media_type!r} manifest")
        declared = read_str(data, "mediaType")
        if declared and not self._declared_type_matches(mt.normalize(declared), media_type):
            raise ManifestError(
                f"the manifest declares mediaType {declared!r}, but was given as {media_type!r}"
            )
        _set(self, "media_type", media_type)
        _set(self, "digest", Digest.from_bytes(self.raw))
        _set(self, "_data", data)
        self._load(data)

    # -- hooks for subclasses --------------------------------------------------------------
    def _default_media_type(self, data: Mapping[str, Any]) -> str:
        return self.MEDIA_TYPES[0]

    def _declared_type_matches(self, declared: str, media_type: str) -> bool:
        return declared == media_type

    def _load(self, data: Mapping[str, Any]) -> None:
        raise NotImplementedError

    @classmethod
    def _encode(cls, values: Mapping[str, Any], extra: Mapping[str, Any]) -> bytes:
        raise UnsupportedError(f"{cls.__name__} cannot be serialised")

    # -- public API ------------------------------------------------------------------------
    @classmethod
    def parse(cls, data: bytes, media_type: str | None = None) -> Self:
        """Parse ``data`` like :func:`parse_manifest`, and check the result is a ``cls``."""
        from ._parse import parse_manifest

        manifest = parse_manifest(data, media_type)
        if not isinstance(manifest, cls):
            raise ManifestError(
                f"expected a {cls.__name__}, got a {manifest.media_type!r} manifest"
            )
        return manifest

    @property
    def size(self) -> int:
        """The length of :attr:`raw`."""
        return len(self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    def to_dict(self) -> dict[str, Any]:
        """A fresh copy of the parsed JSON, unknown fields included."""
        return copy.deepcopy(self._data)

    def descriptor(self, **extra: Any) -> Descriptor:
        """A descriptor pointing at this manifest; ``extra`` sets e.g. ``platform``."""
        return Descriptor(self.media_type, self.digest, self.size, **extra)

    def evolve(self, **changes: Any) -> Self:
        """A copy with some fields changed, re-serialised; unknown top-level fields are kept.

        The fields that may change are the keyword arguments of the class's ``build``.
        """
        unknown = sorted(set(changes) - set(self._FIELDS))
        if unknown:
            raise TypeError(f"{type(self).__name__}.evolve() cannot change {', '.join(unknown)}")
        values = {name: getattr(self, name) for name in self._FIELDS}
        values.update(changes)
        extra = {k: v for k, v in self._data.items() if k not in self._KNOWN_KEYS}
        return type(self)(self._encode(values, extra), media_type=self.media_type)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(media_type={self.media_type!r}, digest={self.digest})"

    # Rich display in IPython and Jupyter: type, digest, size, blobs or instances.
    def _repr_html_(self) -> str:
        from .. import _display

        return _display.render_html(_display.manifest_card(self))

    def _repr_pretty_(self, p: _display.PrettyPrinter, cycle: bool) -> None:
        from .. import _display

        _display.render_pretty(_display.manifest_card(self), p, cycle, repr(self))


@attrs.frozen(repr=False)
class ImageManifest(Manifest):
    """A manifest of one image (schema version 2): a config and layers."""

    config: Descriptor = attrs.field(init=False, eq=False)
    layers: tuple[Descriptor, ...] = attrs.field(init=False, eq=False)
    annotations: Mapping[str, str] = attrs.field(init=False, eq=False)

    def _load(self, data: Mapping[str, Any]) -> None:
        read_schema_version(data, 2)
        reject_keys(data, ("manifests", "fsLayers"), "image manifest")
        if "config" not in data:
            raise ManifestError("config is missing")
        _set(self, "config", read_descriptor(data["config"], "config"))
        _set(self, "layers", read_descriptors(data, "layers"))
        _set(self, "annotations", read_annotations(data.get("annotations"), "annotations"))

    def replace_descriptors(
        self,
        *,
        config: Descriptor | None = None,
        layers: Iterable[Descriptor] | None = None,
    ) -> Self:
        """A copy with the config and/or layer descriptors replaced (``None``: keep)."""
        changes: dict[str, Any] = {}
        if config is not None:
            changes["config"] = config
        if layers is not None:
            changes["layers"] = tuple(layers)
        return self.evolve(**changes)


@attrs.frozen(repr=False)
class IndexManifest(Manifest):
    """A manifest of several images: an OCI index or a Docker manifest list."""

    manifests: tuple[Descriptor, ...] = attrs.field(init=False, eq=False)
    annotations: Mapping[str, str] = attrs.field(init=False, eq=False)

    def _load(self, data: Mapping[str, Any]) -> None:
        read_schema_version(data, 2)
        reject_keys(data, ("config", "layers", "fsLayers"), "manifest index")
        _set(self, "manifests", read_descriptors(data, "manifests"))
        _set(self, "annotations", read_annotations(data.get("annotations"), "annotations"))

    def instance_for(self, platform: Platform | str) -> Descriptor | None:
        """The entry best matching ``platform`` (``linux/arm64`` matches ``linux/arm64/v8``)."""
        wanted = Platform.parse(platform) if isinstance(platform, str) else platform
        result: Descriptor | None = best_match(((d.platform, d) for d in self.manifests), wanted)
        return result

    def replace_manifests(self, manifests: Iterable[Descriptor]) -> Self:
        """A copy with the entries replaced, e.g. after instances were converted or dropped."""
        return self.evolve(manifests=tuple(manifests))
