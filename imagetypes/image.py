"""Read-only, parsed views of one image: :func:`open_image` and :class:`Image`.

An :class:`Image` wraps an open :class:`~imagetypes.ImageSource`. When the reference names an
index (or Docker manifest list), one instance is chosen for a platform when the image is opened;
the index stays available through :meth:`Image.index`. :meth:`Image.inspect` gives the same
values ``skopeo inspect`` prints for the same image.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

import attrs

from . import mediatypes as mt
from ._closing import Closing
from .descriptor import Descriptor
from .digest import Digest
from .errors import (
    ImageError,
    ManifestError,
    NotFoundError,
    PlatformMismatchError,
    SizeMismatchError,
    UnsupportedConversionError,
    UnsupportedError,
    UnsupportedManifestTypeError,
)
from .manifest import ImageConfig, ImageManifest, IndexManifest, convert_manifest, parse_manifest
from .platform import Platform
from .plugins import parse_reference
from .types import ImageReference, ImageSource, TransportOptions

if TYPE_CHECKING:
    from . import _display
    from .copy._schema1 import Schema1Layer
    from .manifest import DockerSchema1Manifest

__all__ = [
    "MAX_CONFIG_SIZE",
    "Image",
    "manifest_digest",
    "oci_config_view",
    "open_image",
    "read_manifest",
]

log = logging.getLogger(__name__)

#: Bound on the size of a config blob read into memory (containers/image uses the same).
MAX_CONFIG_SIZE = 4 * 1024 * 1024


def open_image(
    reference_or_string: ImageReference | str,
    *,
    options: TransportOptions | None = None,
    platform: Platform | str | None = None,
) -> Image:
    """Open the image at a reference (or ``transport:details`` string) for reading.

    If the reference names an index, the instance for ``platform`` is chosen (default:
    ``options.platform``, else this machine's platform); :class:`~imagetypes.PlatformMismatchError`
    names the platforms available when none matches. The returned :class:`Image` owns the
    source and closes it when closed (use it as a context manager).
    """
    reference = (
        parse_reference(reference_or_string)
        if isinstance(reference_or_string, str)
        else reference_or_string
    )
    options = options or TransportOptions()
    if isinstance(platform, str):
        wanted = Platform.parse(platform)
    else:
        wanted = platform or options.platform or Platform.current()
    source = reference.open_source(options)
    try:
        raw, media_type = source.get_manifest()
        top = parse_manifest(raw, media_type or None)
        index: IndexManifest | None = None
        if isinstance(top, IndexManifest):
            index = top
            chosen = _choose_instance(top, wanted, reference)
            raw, media_type = source.get_manifest(chosen.digest)
            if len(raw) != chosen.size:
                raise SizeMismatchError(
                    f"manifest {chosen.digest} is {len(raw)} bytes, "
                    f"but the index says {chosen.size}",
                    expected=chosen.size,
                    actual=len(raw),
                )
            chosen.digest.verify(raw)
            manifest = parse_manifest(raw, media_type or chosen.media_type or None)
            if isinstance(manifest, IndexManifest):
                raise UnsupportedManifestTypeError(
                    f"instance {chosen.digest} of {reference} is itself an index"
                )
        else:
            manifest = top
        from .manifest import DockerSchema1Manifest

        if not isinstance(manifest, ImageManifest | DockerSchema1Manifest):
            raise UnsupportedManifestTypeError(
                f"{reference}: a {manifest.media_type} manifest cannot be opened as an image"
            )
        return Image(reference, source, manifest, index=index, options=options)
    except BaseException:
        source.close()
        raise


def read_manifest(
    reference_or_string: ImageReference | str,
    *,
    options: TransportOptions | None = None,
    instance: Digest | None = None,
) -> tuple[bytes, str]:
    """The manifest bytes, as stored, and media type at a reference.

    This is the top-level manifest (no instance of an index is chosen), or the instance with
    digest ``instance``.
    """
    reference = (
        parse_reference(reference_or_string)
        if isinstance(reference_or_string, str)
        else reference_or_string
    )
    with reference.open_source(options or TransportOptions()) as source:
        return source.get_manifest(instance)


def _choose_instance(
    index: IndexManifest, wanted: Platform, reference: ImageReference
) -> Descriptor:
    chosen = index.instance_for(wanted)
    if chosen is None:
        available = dict.fromkeys(str(d.platform) for d in index.manifests if d.platform)
        raise PlatformMismatchError(
            f"{reference}: no image for {wanted} in the index "
            f"(available: {', '.join(available) or 'none'})"
        )
    return chosen


class Image(Closing):
    """A read-only, parsed view of one image read from an :class:`~imagetypes.ImageSource`.

    Obtain one with :func:`open_image`; close it (or use ``with``) to close the source.

    A Docker schema 1 image (as old registries serve) has no config blob and no schema 2
    manifest until it is converted: :meth:`schema1_manifest` gives its manifest,
    :meth:`raw_manifest` its bytes, and :meth:`inspect`, :meth:`config` and
    :meth:`oci_config` the values skopeo derives from its v1 history (without diff IDs,
    which only reading the layers gives: copy the image with format ``v2s2`` or ``oci`` for
    those).
    """

    def __init__(
        self,
        reference: ImageReference,
        source: ImageSource,
        manifest: ImageManifest | DockerSchema1Manifest,
        *,
        index: IndexManifest | None = None,
        options: TransportOptions | None = None,
    ) -> None:
        self._reference = reference
        self._options = options or TransportOptions()
        self._source = source
        self._manifest = manifest
        self._index = index
        self._raw_config: bytes | None = None
        self._config: ImageConfig | None = None
        self._closed = False

    # -- identity --------------------------------------------------------------------------
    @property
    def reference(self) -> ImageReference:
        """The reference the image was opened from."""
        return self._reference

    @property
    def source(self) -> ImageSource:
        """The open source the image reads from."""
        return self._source

    @property
    def digest(self) -> Digest:
        """The digest of this image's manifest (the chosen instance when opened from an index).

        For a signed Docker schema 1 manifest, the digest registries and skopeo use: that of
        the payload without the signatures."""
        return _registry_digest(self._manifest)

    @property
    def top_digest(self) -> Digest:
        """The digest of the manifest the reference names (the index, when there is one)."""
        return self._index.digest if self._index is not None else self.digest

    @property
    def media_type(self) -> str:
        """The media type of this image's manifest."""
        return self._manifest.media_type

    @property
    def platform(self) -> Platform | None:
        """The platform the config declares (None when it names no os or architecture)."""
        config = self.config()
        if not config.os or not config.architecture:
            return None
        return Platform(config.os, config.architecture, config.variant or None)

    # -- content ---------------------------------------------------------------------------
    def manifest(self) -> ImageManifest:
        """The parsed manifest of this image.

        A Docker schema 1 image has none of this kind (:meth:`schema1_manifest` gives its
        manifest): :class:`~imagetypes.UnsupportedManifestTypeError`.
        """
        if isinstance(self._manifest, ImageManifest):
            return self._manifest
        raise UnsupportedManifestTypeError(
            f"{self._reference} is a Docker schema 1 image ({self._manifest.media_type}): it "
            "has no OCI or schema 2 manifest until converted (schema1_manifest() gives its "
            "manifest; copy it with format 'v2s2' or 'oci' to convert it)"
        )

    def schema1_manifest(self) -> DockerSchema1Manifest | None:
        """The manifest of a Docker schema 1 image; None for other images."""
        return None if isinstance(self._manifest, ImageManifest) else self._manifest

    def index(self) -> IndexManifest | None:
        """The top-level index the image was chosen from, or None."""
        return self._index

    def layers(self) -> tuple[Descriptor, ...]:
        """The layer descriptors, base layer first.

        For a Docker schema 1 image, every ``fsLayers`` blob as skopeo lists them (empty
        layers and repeats included), typed ``application/vnd.docker.image.rootfs.diff.tar.gzip``
        with size -1 (schema 1 records no sizes).
        """
        if isinstance(self._manifest, ImageManifest):
            return tuple(self._manifest.layers)
        return tuple(_unknown_size(d) for d in _schema1_blobs(self._manifest))

    def raw_manifest(self, media_type: str | None = None) -> bytes:
        """The manifest bytes as stored, or converted to ``media_type`` when one is given.

        A Docker schema 1 manifest is only given as stored (what ``skopeo inspect --raw``
        prints): converting it needs its layers' diff IDs, so asking for another type raises
        :class:`~imagetypes.UnsupportedConversionError` (copy the image to convert it).
        """
        if media_type is None or mt.normalize(media_type) == self._manifest.media_type:
            return self._manifest.raw
        if not isinstance(self._manifest, ImageManifest):
            raise UnsupportedConversionError(
                f"{self._reference}: converting its Docker schema 1 manifest to {media_type} "
                "needs the diff IDs of its layers, which only reading every layer gives: copy "
                "the image with format 'v2s2' or 'oci' instead"
            )
        return convert_manifest(self._manifest, media_type).raw

    def raw_config(self) -> bytes:
        """The config blob as stored, verified against its descriptor and size-bounded.

        A Docker schema 1 image has no config blob (skopeo prints nothing):
        :class:`~imagetypes.UnsupportedError`; :meth:`config` derives one.
        """
        if self._raw_config is None:
            self._raw_config = self._source.get_blob_bytes(
                self._image_manifest("has no config blob").config, limit=MAX_CONFIG_SIZE
            )
        return self._raw_config

    def config(self) -> ImageConfig:
        """The parsed image config.

        For a Docker schema 1 image, the schema 2 config its v1 history gives, as a copy to
        schema 2 builds it but without diff IDs.
        """
        if self._config is None:
            if isinstance(self._manifest, ImageManifest):
                self._config = ImageConfig.parse(self.raw_config())
            else:
                self._config = ImageConfig.parse(_schema1_config(self._manifest))
        return self._config

    def oci_config(self) -> dict[str, Any]:
        """The config as an OCI image config, as ``skopeo inspect --config`` prints it.

        For a Docker schema 1 image, the config its v1 history gives, with an empty diff ID
        per layer, as skopeo prints it.
        """
        if isinstance(self._manifest, ImageManifest):
            return oci_config_view(_config_object(self.raw_config()))
        obj = dict(_config_object(_schema1_config(self._manifest)))
        layers = _schema1_layer_list(self._manifest)
        obj["rootfs"] = {"type": "layers", "diff_ids": ["" for x in layers if not x.throwaway]}
        return oci_config_view(obj)

    def _image_manifest(self, what: str) -> ImageManifest:
        if isinstance(self._manifest, ImageManifest):
            return self._manifest
        raise UnsupportedError(
            f"{self._reference} is a Docker schema 1 image, which {what} "
            "(copy it with format 'v2s2' or 'oci' to convert it)"
        )

    def repository_tags(self) -> list[str]:
        """The tags of the image's repository, for an image in a registry; [] elsewhere.

        As skopeo does, a registry that refuses or lacks the tag list gives [] with a warning.
        """
        named = self._reference.docker_reference
        if named is None:
            return []
        try:
            registry = self._reference.transport.open_registry(named.domain, self._options)
        except UnsupportedError:
            return []  # a named image outside a registry (an archive, say)
        with registry:
            try:
                return list(registry.repository(named.path).tags())
            except ImageError as e:
                refused = "DENIED" in getattr(e, "codes", ())
                if not (refused or isinstance(e, NotFoundError | UnsupportedError)):
                    raise
                log.warning("the registry gives no tag list for %s (%s); skipping", named.name, e)
                return []

    def inspect(self, *, list_tags: bool = True) -> dict[str, Any]:
        """What ``skopeo inspect`` prints for this image, key for key.

        ``Digest`` is the digest of the top-level manifest (the index, when the image was chosen
        from one), as skopeo reports it. ``RepoTags`` lists the repository's tags for an image
        in a registry (unless ``list_tags`` is False). Maps (``Labels``, layer ``Annotations``)
        have their keys sorted, as Go writes them; values absent from the config are None
        (JSON null). ``LayersData`` is printed by skopeo 1.9.3 upstream, not by every
        distribution's build of it.

        For a Docker schema 1 image, the values come from its v1 history, as skopeo takes
        them: ``Tag`` (the tag the manifest names, when it names one) follows ``Name``, and
        ``LayersData`` has no media types or sizes.
        """
        if not isinstance(self._manifest, ImageManifest):
            return self._schema1_inspect(self._manifest, list_tags)
        manifest = self._manifest
        docker = manifest.media_type == mt.DOCKER_MANIFEST
        if not docker and manifest.config.media_type != mt.OCI_CONFIG:
            raise UnsupportedError(
                "unsupported image-specific operation on artifact with type "
                f"{manifest.config.media_type!r}"
            )
        cfg = _config_object(self.raw_config())
        top = _go_fields(cfg, _DOCKER_IMAGE_FIELDS if docker else _OCI_IMAGE_FIELDS)
        container = _go_fields(_object_or_empty(top.get("config"), "config"), ("Labels", "Env"))
        created = _go_time(top.get("created"), "created")
        if created is None and docker:
            created = _GO_ZERO_TIME  # a time.Time, not a pointer, in Docker's config struct
        out: dict[str, Any] = {}
        name = _docker_name(self._reference)
        if name:
            out["Name"] = name
        raw_layers = _raw_layer_objects(manifest)
        out.update(
            {
                "Digest": str(self.top_digest),
                "RepoTags": self.repository_tags() if list_tags else [],
                "Created": created,
                "DockerVersion": _go_str(top.get("docker_version"), "docker_version"),
                "Labels": _go_str_map(container.get("Labels"), "config.Labels"),
                "Architecture": _go_str(top.get("architecture"), "architecture"),
                "Os": _go_str(top.get("os"), "os"),
                "Layers": [str(d.digest) for d in manifest.layers],
                "LayersData": [
                    {
                        "MIMEType": d.media_type,
                        "Digest": str(d.digest),
                        "Size": d.size,
                        "Annotations": _go_str_map(raw.get("annotations"), "annotations"),
                    }
                    for d, raw in zip(manifest.layers, raw_layers, strict=True)
                ],
                "Env": _go_str_list(container.get("Env"), "config.Env"),
            }
        )
        return out

    def _schema1_inspect(self, manifest: DockerSchema1Manifest, list_tags: bool) -> dict[str, Any]:
        # containers/image: Schema1.Inspect decodes the top v1Compatibility as a
        # Schema2V1Image, whose created is a time.Time (zero when absent).
        layers = _schema1_layer_list(manifest)
        top = _go_fields(layers[-1].compat, _DOCKER_IMAGE_FIELDS)
        container = _go_fields(_object_or_empty(top.get("config"), "config"), ("Labels", "Env"))
        out: dict[str, Any] = {}
        name = _docker_name(self._reference)
        if name:
            out["Name"] = name
        if manifest.tag:
            out["Tag"] = manifest.tag
        out.update(
            {
                "Digest": str(self.top_digest),
                "RepoTags": self.repository_tags() if list_tags else [],
                "Created": _go_time(top.get("created"), "created") or _GO_ZERO_TIME,
                "DockerVersion": _go_str(top.get("docker_version"), "docker_version"),
                "Labels": _go_str_map(container.get("Labels"), "config.Labels"),
                "Architecture": _go_str(top.get("architecture"), "architecture"),
                "Os": _go_str(top.get("os"), "os"),
                "Layers": [str(x.digest) for x in layers],
                "LayersData": [
                    {"MIMEType": "", "Digest": str(x.digest), "Size": -1, "Annotations": None}
                    for x in layers
                ],
                "Env": _go_str_list(container.get("Env"), "config.Env"),
            }
        )
        return out

    # -- lifecycle -------------------------------------------------------------------------
    def save_docker_tar(
        self, target: str | os.PathLike[str] | IO[bytes], tags: Sequence[str] = ()
    ) -> None:
        """Write this image as a ``docker load``-able archive (the docker-archive format).

        ``target`` is a path, ``"-"`` for standard output, or a binary file object; ``tags``
        are the names (``name:tag``) recorded in the archive. This goes through the
        ``docker-archive`` transport's destination, the same code as
        ``imagetypes copy ... docker-archive:PATH``.
        """
        from .copy import CopyOptions
        from .plugins import get_transport

        save = getattr(get_transport("docker-archive"), "save_docker_tar", None)
        if save is None:
            raise UnsupportedError("the installed docker-archive transport cannot save images")
        platform = self.platform if self._index is not None else None
        options = CopyOptions(
            source_options=attrs.evolve(self._options, platform=platform or self._options.platform)
        )
        save(self._reference, target, tags, options=options)

    def close(self) -> None:
        """Close the source. Safe to call more than once."""
        if not self._closed:
            self._closed = True
            self._source.close()

    # -- display in IPython and Jupyter ------------------------------------------------------
    def _display_card(self) -> _display.Card:
        from . import _display

        # A closed image shows what it read before (reading now would fail or reopen nothing);
        # an unreadable config is shown in the card, so the rest of the image still displays.
        if self._closed and self._config is None:
            return _display.image_card(self, None, "not read (the image is closed)")
        try:
            config = self.config()
        except ImageError as e:
            return _display.image_card(self, None, f"unreadable: {e}")
        return _display.image_card(self, config)

    def _repr_html_(self) -> str:
        from . import _display

        return _display.render_html(self._display_card())

    def _repr_pretty_(self, p: _display.PrettyPrinter, cycle: bool) -> None:
        from . import _display

        _display.render_pretty(self._display_card(), p, cycle, repr(self))

    def __repr__(self) -> str:
        short = self.digest.hex[:12]
        extra = f" from index {self._index.digest.hex[:12]}" if self._index is not None else ""
        return f"<Image {str(self._reference)!r} {self.digest.algorithm}:{short}{extra}>"


# -- Docker schema 1 -----------------------------------------------------------------------------


def _registry_digest(manifest: ImageManifest | DockerSchema1Manifest) -> Digest:
    return manifest.digest if isinstance(manifest, ImageManifest) else manifest.canonical_digest


def _schema1_layer_list(manifest: DockerSchema1Manifest) -> list[Schema1Layer]:
    """Every layer, base first, as containers/image's ``Schema1.LayerInfos`` lists them."""
    from .copy._schema1 import schema1_layers  # only schema 1 images need the copy package

    return schema1_layers(manifest)


def _schema1_blobs(manifest: DockerSchema1Manifest) -> list[Digest]:
    return [layer.digest for layer in _schema1_layer_list(manifest)]


def _schema1_config(manifest: DockerSchema1Manifest) -> bytes:
    from .copy._schema1 import schema2_config

    return schema2_config(manifest, ())


def _unknown_size(digest: Digest) -> Descriptor:
    desc = Descriptor(mt.DOCKER_LAYER, digest, 0)
    object.__setattr__(desc, "size", -1)  # unknown: past the validator, as the copy engine does
    return desc


# -- manifest digests -------------------------------------------------------------------------


def manifest_digest(data: bytes) -> Digest:
    """The digest of a manifest's bytes, as registries compute it.

    For a signed Docker schema 1 manifest the JWS signatures are not part of the digested
    content: the digest covers the payload the signatures protect.
    """
    if mt.detect_manifest_media_type(data) == mt.DOCKER_SCHEMA1_SIGNED_MANIFEST:
        return Digest.from_bytes(_schema1_payload(data))
    return Digest.from_bytes(data)


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _schema1_payload(data: bytes) -> bytes:
    """The signed payload of a libtrust JWS-signed manifest (formatLength + formatTail)."""
    try:
        obj = json.loads(data)
        signatures = obj["signatures"]
        if not isinstance(signatures, list) or not signatures:
            raise ManifestError("a signed schema 1 manifest has no signatures")
        payload: bytes | None = None
        for signature in signatures:
            protected = json.loads(_b64url(signature["protected"]))
            length, tail = protected["formatLength"], _b64url(protected["formatTail"])
            if not isinstance(length, int) or not 0 <= length <= len(data):
                raise ManifestError(f"invalid formatLength {length!r} in a schema 1 signature")
            candidate = data[:length] + tail
            if payload is not None and candidate != payload:
                raise ManifestError("the signatures of a schema 1 manifest sign different payloads")
            payload = candidate
        assert payload is not None
        return payload
    except ManifestError:
        raise
    except (ValueError, KeyError, TypeError, binascii.Error) as e:
        raise ManifestError(f"malformed schema 1 signature: {e}") from e


# -- Go (encoding/json) semantics -------------------------------------------------------------
# skopeo decodes configs into Go structs and prints those. To print the same values we decode
# the same way: field names match case-insensitively, the last matching key wins, null leaves
# a zero value, and timestamps are re-formatted as Go's RFC 3339 (nanosecond) form.

_GO_ZERO_TIME = "0001-01-01T00:00:00Z"
_OCI_IMAGE_FIELDS = (
    "created", "author", "architecture", "variant", "os", "os.version", "os.features",
    "config", "rootfs", "history", "docker_version",
)  # fmt: skip
_DOCKER_IMAGE_FIELDS = ("created", "docker_version", "architecture", "os", "config")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?(Z|[+-]\d{2}:\d{2})"
)


def _config_object(raw: bytes) -> Mapping[str, Any]:
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestError(f"the image config is not valid JSON: {e}") from e
    if not isinstance(obj, dict):
        raise ManifestError("the image config is not a JSON object")
    return obj


def _go_fields(obj: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The JSON value Go's decoder assigns to each field of a struct with these JSON names."""
    names = tuple(names)
    exact = set(names)
    folded = {n.lower(): n for n in names}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = key if key in exact else folded.get(key.lower())
        if name is not None:
            out[name] = value
    return out


def _object_or_empty(value: Any, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ManifestError(f"config field {what} must be an object")
    return value


def _go_str(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ManifestError(f"config field {what} must be a string, not {type(value).__name__}")
    return value


def _go_str_list(value: Any, what: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise ManifestError(f"config field {what} must be a list of strings")
    return [_go_str(v, what) for v in value]


def _go_str_map(value: Any, what: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ManifestError(f"field {what} must map strings to strings")
    return {k: _go_str(value[k], what) for k in sorted(value)}


def _go_time(value: Any, what: str) -> str | None:
    """An RFC 3339 timestamp as Go's time.Time marshals it (None for null or absent)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ManifestError(f"config field {what} must be an RFC 3339 timestamp")
    m = _RFC3339.fullmatch(value)
    if m is None:
        raise ManifestError(f"config field {what} is not an RFC 3339 timestamp: {value!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    try:
        _dt.datetime(year, month, day, hour, minute, second)
    except ValueError as e:
        raise ManifestError(f"config field {what} is not a valid time: {value!r}") from e
    zone = m.group(8)
    if zone != "Z":
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            raise ManifestError(f"config field {what} has an invalid zone: {value!r}")
        if hours == 0 and minutes == 0:
            zone = "Z"
    # Go keeps nanoseconds (extra digits are cut) and drops trailing zeros.
    fraction = (m.group(7) or "")[:9].rstrip("0")
    base = value[: m.start(7) - 1] if m.group(7) else value[: m.start(8)]
    return f"{base}{'.' + fraction if fraction else ''}{zone}"


def _raw_layer_objects(manifest: ImageManifest) -> list[Mapping[str, Any]]:
    """The layers' JSON objects as stored (to tell an absent map from an empty one)."""
    layers = manifest.to_dict().get("layers")
    if not isinstance(layers, list) or len(layers) != len(manifest.layers):
        return [{} for _ in manifest.layers]
    return [obj if isinstance(obj, dict) else {} for obj in layers]


def _docker_name(reference: ImageReference) -> str | None:
    named = reference.docker_reference
    return named.name if named is not None else None


def oci_config_view(config: Mapping[str, Any]) -> dict[str, Any]:
    """An image config decoded into the OCI image-spec structure and encoded again.

    This is what ``skopeo inspect --config`` prints: fields OCI does not define are dropped,
    empty optional fields are left out, maps have sorted keys and times Go's format.
    """
    f = _go_fields(config, _OCI_IMAGE_FIELDS[:-1])
    out: dict[str, Any] = {}
    created = _go_time(f.get("created"), "created")
    if created is not None:
        out["created"] = created
    _put_str(out, "author", f.get("author"), omit_empty=True)
    _put_str(out, "architecture", f.get("architecture"), omit_empty=False)
    _put_str(out, "variant", f.get("variant"), omit_empty=True)
    _put_str(out, "os", f.get("os"), omit_empty=False)
    _put_str(out, "os.version", f.get("os.version"), omit_empty=True)
    features = _go_str_list(f.get("os.features"), "os.features")
    if features:
        out["os.features"] = features
    out["config"] = _oci_container_config(_object_or_empty(f.get("config"), "config"))
    rootfs = _go_fields(_object_or_empty(f.get("rootfs"), "rootfs"), ("type", "diff_ids"))
    out["rootfs"] = {
        "type": _go_str(rootfs.get("type"), "rootfs.type"),
        "diff_ids": _go_str_list(rootfs.get("diff_ids"), "rootfs.diff_ids"),
    }
    history = f.get("history")
    if history is not None and not isinstance(history, list):
        raise ManifestError("config field history must be a list")
    if history:
        out["history"] = [_oci_history(_object_or_empty(h, "history")) for h in history]
    return out


def _put_str(out: dict[str, Any], key: str, value: Any, *, omit_empty: bool) -> None:
    text = _go_str(value, key)
    if text or not omit_empty:
        out[key] = text


def _go_bool(value: Any, what: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ManifestError(f"config field {what} must be a boolean")
    return value


def _go_set(value: Any, what: str) -> dict[str, Any] | None:
    """A Go ``map[string]struct{}``: keys kept, every value an empty object."""
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        v is None or isinstance(v, dict) for v in value.values()
    ):
        raise ManifestError(f"config field {what} must map strings to objects")
    return {k: {} for k in sorted(value)}


def _oci_container_config(obj: Mapping[str, Any]) -> dict[str, Any]:
    names = (
        "User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels",
        "StopSignal", "ArgsEscaped",
    )  # fmt: skip
    f = _go_fields(obj, names)
    out: dict[str, Any] = {}
    _put_str(out, "User", f.get("User"), omit_empty=True)
    for key in ("ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes"):
        value: Any
        if key in ("ExposedPorts", "Volumes"):
            value = _go_set(f.get(key), f"config.{key}")
        else:
            value = _go_str_list(f.get(key), f"config.{key}")
        if value:
            out[key] = value
    _put_str(out, "WorkingDir", f.get("WorkingDir"), omit_empty=True)
    labels = _go_str_map(f.get("Labels"), "config.Labels")
    if labels:
        out["Labels"] = labels
    _put_str(out, "StopSignal", f.get("StopSignal"), omit_empty=True)
    if _go_bool(f.get("ArgsEscaped"), "config.ArgsEscaped"):
        out["ArgsEscaped"] = True
    return out


def _oci_history(obj: Mapping[str, Any]) -> dict[str, Any]:
    f = _go_fields(obj, ("created", "created_by", "author", "comment", "empty_layer"))
    out: dict[str, Any] = {}
    created = _go_time(f.get("created"), "history.created")
    if created is not None:
        out["created"] = created
    for key in ("created_by", "author", "comment"):
        _put_str(out, key, f.get(key), omit_empty=True)
    if _go_bool(f.get("empty_layer"), "history.empty_layer"):
        out["empty_layer"] = True
    return out
