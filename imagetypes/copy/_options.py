"""The options a copy takes and the result it returns."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

import attrs

from ..digest import Digest
from ..errors import InvalidPlatformError
from ..platform import Platform
from ..types import TransportOptions

if TYPE_CHECKING:
    from ._progress import ProgressEvent

__all__ = ["CopyOptions", "CopyResult", "InstanceSelection", "ManifestFormat"]

#: ``"system"``, ``"all"``, or the platforms to copy out of an index.
InstanceSelection = Literal["system", "all"] | tuple[Platform, ...]
#: A manifest format to force: ``"oci"`` (OCI manifest / index) or ``"v2s2"`` (Docker schema 2).
ManifestFormat = Literal["oci", "v2s2"]

_FORMATS = ("oci", "v2s2")


def _instances(value: str | Sequence[Platform | str]) -> InstanceSelection:
    if value == "system":
        return "system"
    if value == "all":
        return "all"
    if isinstance(value, str):
        # A lone platform string ("linux/arm64") is taken as a one-element selection.
        return (Platform.parse(value),)
    platforms: list[Platform] = []
    for item in value:
        plat = item if isinstance(item, Platform) else Platform.parse(item)
        if plat not in platforms:
            platforms.append(plat)
    if not platforms:
        raise InvalidPlatformError("instances: an empty platform list selects nothing to copy")
    return tuple(platforms)


def _check_format(instance: object, attribute: object, value: object) -> None:
    if value is not None and value not in _FORMATS:
        raise ValueError(f"format must be None, 'oci' or 'v2s2', not {value!r}")


@attrs.frozen(kw_only=True)
class CopyOptions:
    """How :func:`~imagetypes.copy.copy_image` copies an image. Every field has a default.

    Invalid values raise ``ValueError`` (:class:`~imagetypes.InvalidPlatformError` for a
    malformed platform) when the options are built.
    """

    #: What to copy when the source is an index (OCI index / Docker manifest list):
    #:
    #: - ``"system"``: the one image for ``source_options.platform`` (default: this machine);
    #:   the destination receives that image's manifest alone, as ``skopeo copy`` does.
    #: - ``"all"``: the index and every image it lists, as ``skopeo copy --all``.
    #: - a sequence of platforms (``Platform`` or ``"os/arch[/variant]"``): those images, and
    #:   an index listing only them (other entries are removed, as containers/image does when
    #:   copying a platform subset; digests of the index therefore change).
    #:
    #: A source that is a single image is copied as it is whatever this says.
    instances: InstanceSelection = attrs.field(default="system", converter=_instances)
    #: Force the manifest format written: ``"oci"`` or ``"v2s2"`` (None: keep the source's
    #: format when the destination accepts it, else convert to one it accepts).
    format: ManifestFormat | None = attrs.field(default=None, validator=_check_format)
    #: Blobs copied at the same time, where both source and destination allow it.
    concurrency: int = attrs.field(default=6, validator=attrs.validators.ge(1))
    #: Receives :class:`~imagetypes.copy.ProgressEvent` s. It is called from worker threads,
    #: but never concurrently (calls are serialised). If it raises, the copy fails.
    progress: Callable[[ProgressEvent], None] | None = attrs.field(
        default=None, eq=False, repr=False
    )
    #: Options for opening the source.
    source_options: TransportOptions | None = None
    #: Options for opening the destination.
    destination_options: TransportOptions | None = None
    #: Do not copy signatures. Without it, signatures are copied, and a copy of a signed image
    #: fails when the destination cannot store signatures or the manifest must be modified.
    remove_signatures: bool = False


@attrs.frozen(kw_only=True)
class CopyResult:
    """What :func:`~imagetypes.copy.copy_image` wrote."""

    #: Digest of the top-level manifest written (the image, or the index).
    manifest_digest: Digest
    #: Its media type.
    media_type: str
    #: Its bytes, as written.
    manifest: bytes = attrs.field(repr=False)
    #: Digest of the source's top-level manifest.
    source_digest: Digest
    #: Digests of the instance manifests written under an index (empty for a single image).
    instance_digests: tuple[Digest, ...] = ()
    #: Blobs transferred from the source.
    blobs_copied: int = 0
    #: Blobs not transferred: already present at the destination (or foreign layers the
    #: destination keeps as references).
    blobs_reused: int = 0
    #: Bytes transferred from the source.
    bytes_copied: int = 0
    #: True if any manifest was converted to another format.
    converted: bool = False
