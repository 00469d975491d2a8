"""The options a copy takes and the result it returns."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal, Union

import attrs

from ..digest import Digest
from ..errors import InvalidPlatformError, InvalidReferenceError
from ..platform import Platform
from ..reference import Reference
from ..types import LINK_MODES, LinkMode, TransportOptions

if TYPE_CHECKING:
    from ..trust import Policy
    from ._cache import BlobInfoCache
    from ._progress import ProgressEvent

__all__ = [
    "BlobInfoCacheSetting",
    "CompressionFormat",
    "CopyOptions",
    "CopyResult",
    "InstanceSelection",
    "ManifestFormat",
]

#: ``"system"``, ``"all"``, ``"index-only"``, or the platforms to copy out of an index.
InstanceSelection = Literal["system", "all", "index-only"] | tuple[Platform, ...]
#: A manifest format to force: ``"oci"`` (OCI manifest / index), ``"v2s2"`` (Docker schema 2)
#: or ``"v2s1"`` (Docker schema 1, single images only).
ManifestFormat = Literal["oci", "v2s2", "v2s1"]
#: A layer compression format to write.
CompressionFormat = Literal["gzip", "zstd"]
#: ``True`` (the default cache file), ``False`` (no cache), a path, or a cache object.
BlobInfoCacheSetting = Union[bool, str, "os.PathLike[str]", "BlobInfoCache"]

_FORMATS = ("oci", "v2s2", "v2s1")
_COMPRESSION_FORMATS = ("gzip", "zstd")


def _instances(value: str | Sequence[Platform | str]) -> InstanceSelection:
    if value in ("system", "all", "index-only"):
        return value  # type: ignore[return-value]
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
        raise ValueError(f"format must be None, 'oci', 'v2s2' or 'v2s1', not {value!r}")


def _check_compression_format(instance: object, attribute: object, value: object) -> None:
    if value is not None and value not in _COMPRESSION_FORMATS:
        raise ValueError(f"dest_compress_format must be None, 'gzip' or 'zstd', not {value!r}")


def _check_cache(instance: object, attribute: object, value: object) -> None:
    from ._cache import BlobInfoCache

    if not isinstance(value, bool | str | os.PathLike | BlobInfoCache):
        raise ValueError(
            f"blob_info_cache must be True, False, a path or a BlobInfoCache, not {value!r}"
        )


def _sign_identity(value: Reference | str | None) -> Reference | None:
    ref = value if value is None or isinstance(value, Reference) else Reference.parse(value)
    if ref is not None and ref.is_name_only:
        raise InvalidReferenceError(
            f"sign_identity must be a fully specified reference (with a tag or digest): {ref}"
        )
    return ref


def _check_policy(instance: object, attribute: object, value: Policy | None) -> None:
    from ..trust import Policy

    if value is not None and not isinstance(value, Policy):
        raise ValueError(f"policy must be None or an imagetypes.trust.Policy, not {value!r}")


def _check_level(instance: object, attribute: object, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"dest_compress_level must be None or an integer, not {value!r}")


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
    #: - ``"all"``: the index and every image it lists, as ``skopeo copy --all``
    #:   (``--multi-arch all``).
    #: - ``"index-only"``: the index alone, unchanged, without any of the images it lists
    #:   (``skopeo copy --multi-arch index-only``). Destinations that check that an index's
    #:   entries exist (registries, among them the CNCF distribution registry, and the in-memory
    #:   test transport) refuse such an index unless they already hold the images; an OCI layout
    #:   or a ``dir:`` accepts it.
    #: - a sequence of platforms (``Platform`` or ``"os/arch[/variant]"``): those images, and
    #:   an index listing only them (other entries are removed, as containers/image does when
    #:   asked to strip a sparse list; digests of the index therefore change) - unless
    #:   :attr:`keep_unselected` is set.
    #:
    #: A source that is a single image is copied as it is whatever this says.
    instances: InstanceSelection = attrs.field(default="system", converter=_instances)
    #: With a platform list in :attr:`instances`: keep the entries of the images not copied in
    #: the written index, pointing at manifests the destination may not have (a "sparse" index,
    #: containers/image's default when copying specific images). The index then keeps its
    #: digest unless an instance had to be converted. Registries that check an index's entries
    #: refuse a sparse index whose missing images they do not already hold.
    keep_unselected: bool = False
    #: Force the manifest format written: ``"oci"``, ``"v2s2"`` or ``"v2s1"`` (None: keep the
    #: source's format when the destination accepts it, else convert to one it accepts).
    #: ``"v2s1"`` writes Docker schema 1 as containers/image does: signed with an ephemeral key
    #: (``...manifest.v1+prettyjws``) when the ``cryptography`` package is installed, else
    #: unsigned (``...manifest.v1+json``) where the destination accepts that; an index, an
    #: artifact, or an image whose config history does not describe its layers cannot be
    #: written as schema 1 (:class:`~imagetypes.UnsupportedConversionError`).
    #: Schema 1 *sources* are converted to schema 2 or OCI whenever the format or the
    #: destination asks for it (their layers are read to compute the diff IDs).
    format: ManifestFormat | None = attrs.field(default=None, validator=_check_format)
    #: Compress layers that are not compressed (skopeo's ``--dest-compress``), with
    #: :attr:`dest_compress_format` (default gzip). Without it (and without
    #: :attr:`dest_decompress`), the destination's wish
    #: (:attr:`~imagetypes.DestinationCapabilities.layer_compression`) decides: an OCI layout
    #: asks for compression, a ``dir:`` keeps layers as they are.
    dest_compress: bool = False
    #: Decompress compressed layers (skopeo's ``--dest-decompress``). The uncompressed content
    #: is checked against the image config's ``rootfs.diff_ids``.
    dest_decompress: bool = attrs.field(default=False)
    #: The format to compress layers with (skopeo's ``--dest-compress-format``). Setting it also
    #: asks for compression, and layers compressed in another format are recompressed
    #: (gzip -> zstd needs the ``zstd`` extra). zstd layers cannot be described by Docker
    #: schema 2 manifests: asking for zstd with a Docker-format output fails.
    dest_compress_format: CompressionFormat | None = attrs.field(
        default=None, validator=_check_compression_format
    )
    #: The compression level (skopeo's ``--dest-compress-level``): zlib's 1-9 for gzip, zstd's
    #: levels for zstd. None: the format's default.
    dest_compress_level: int | None = attrs.field(default=None, validator=_check_level)
    #: Refuse any change that would alter a manifest's digest (conversion, layer
    #: (re)compression, dropping instances from an index): the copy fails with
    #: :class:`~imagetypes.DigestChangeError` naming the change, before any blob moves.
    preserve_digests: bool = False
    #: A cache of where blobs were seen and of compressed/uncompressed digest pairs, shared by
    #: copies (and processes): ``True`` uses ``$XDG_CACHE_HOME/imagetypes/blobinfo.sqlite``
    #: (default ``~/.cache``), a path names another file, a
    #: :class:`~imagetypes.copy.BlobInfoCache` is used as it is, ``False`` (the default)
    #: uses none. With a cache, a push to a registry mounts blobs from other repositories of
    #: that registry where earlier copies saw them, and compressed layers known from earlier
    #: runs are reused instead of compressed again.
    blob_info_cache: BlobInfoCacheSetting = attrs.field(
        default=False, eq=False, validator=_check_cache
    )
    #: How a blob copied byte for byte from a source's local file (``oci:``, ``dir:``) is placed
    #: in a destination that stores files (``oci:``, ``dir:``): ``"reflink"`` (the default)
    #: clones it where the filesystem can (btrfs, XFS: copy-on-write, no data written, nothing
    #: shared once either side changes), ``"hardlink"`` links it where both are on one
    #: filesystem (the destination's blob is the source's inode: no space used, but a change
    #: to one is a change to both), ``"never"`` always writes the bytes. Every blob is read
    #: and verified whichever way it is placed, and each falls back to writing the bytes.
    link_blobs: LinkMode = attrs.field(
        default="reflink", validator=attrs.validators.in_(LINK_MODES)
    )
    #: Blobs copied at the same time, where both source and destination allow it. Layers that
    #: are (re)compressed are processed by these workers too, in parallel.
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
    #: Signatures made with :attr:`sign_by` / :attr:`sign_by_sigstore_private_key` are still
    #: added.
    remove_signatures: bool = False
    #: Skip the copy when the destination already holds the identical manifest under the
    #: destination reference (one HEAD-like check, where the destination can answer it:
    #: :attr:`CopyResult.unchanged`), as ``skopeo sync`` does (containers/image's
    #: ``OptimizeDestinationImageAlreadyExists``); :func:`~imagetypes.copy.sync` sets it. Only
    #: possible when the written manifest is known before any blob moves (no layer is
    #: (re)compressed) and no signature is to be copied. Off by default, as in ``skopeo copy``:
    #: a plain copy re-reads and verifies every blob it needs.
    skip_identical: bool = False
    #: The signature policy (:class:`~imagetypes.trust.Policy`) the source image must satisfy.
    #: It is evaluated after the source's manifest and signatures are read and before the
    #: destination is opened: for each image copied (the image, the instance chosen from an
    #: index, or every instance copied out of it; the index itself with ``"index-only"``), as
    #: containers/image does. A rejection raises :class:`~imagetypes.trust.PolicyRejectedError`
    #: and nothing is written. ``None`` (the default for library callers) checks no policy;
    #: the ``imagetypes copy`` command applies the system's policy file as skopeo does (see
    #: :meth:`~imagetypes.trust.Policy.load`).
    policy: Policy | None = attrs.field(default=None, eq=False, validator=_check_policy)
    #: Sign what is written with this GPG key (an ID or fingerprint), "simple signing"
    #: (skopeo's ``--sign-by``). Each manifest written (the image; with an index, each instance
    #: and the index) is signed over its final bytes, after any conversion, as
    #: :attr:`sign_identity` or else the destination's Docker reference; the signatures are
    #: added to those copied (none with :attr:`remove_signatures`) before commit.
    sign_by: str | None = None
    #: Sign with this sigstore private key (an encrypted PEM, as ``generate_sigstore_key`` or
    #: ``cosign generate-key-pair`` write; its bytes or a path), decrypted with
    #: :attr:`sign_passphrase` (skopeo's ``--sign-by-sigstore-private-key``).
    sign_by_sigstore_private_key: bytes | str | os.PathLike[str] | None = attrs.field(
        default=None, repr=False
    )
    #: The identity signatures claim (a reference with a tag or digest); default: the
    #: destination's Docker reference. A destination without one (``dir:``, ``oci:``) needs it.
    sign_identity: Reference | None = attrs.field(default=None, converter=_sign_identity)
    #: The passphrase of the GPG key (``sign_by``) or of the sigstore private key.
    sign_passphrase: str | None = attrs.field(default=None, repr=False)
    #: The GnuPG home holding the ``sign_by`` key (default: ``$GNUPGHOME``, else ``~/.gnupg``).
    gpg_home: str | os.PathLike[str] | None = None

    def __attrs_post_init__(self) -> None:
        if self.dest_compress and self.dest_decompress:
            raise ValueError("dest_compress and dest_decompress cannot both be set")
        if self.dest_decompress and self.dest_compress_format is not None:
            raise ValueError("dest_decompress cannot be combined with dest_compress_format")
        if self.keep_unselected and isinstance(self.instances, str):
            raise ValueError(
                "keep_unselected (--multi-arch-unselected keep) needs a list of platforms in "
                "instances (--platform): it says what happens to the images not selected"
            )


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
    #: Layers compressed, decompressed or recompressed on the way.
    layers_recompressed: int = 0
    #: True when the destination already held this exact image, so nothing was written.
    unchanged: bool = False
