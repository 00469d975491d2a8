"""The copy engine: move an image from any source to any destination, or many with sync().

:func:`copy_image` selects instances of an index (this machine's, all, a list of platforms -
optionally keeping the others as a sparse index - or the index alone), converts manifests the
destination cannot store (OCI <-> Docker schema 2, Docker schema 1 sources to either), changes
layer compression where the destination or :class:`CopyOptions` ask for it (compress,
decompress, recompress gzip <-> zstd, streamed in worker threads and checked against the
config's diff IDs), streams blobs (concurrently where both ends allow), writes manifests and
signatures and commits; nothing is visible at the destination unless everything succeeded.
``preserve_digests`` refuses any change that would alter a digest; ``skip_identical`` skips
an image the destination already holds; a :class:`BlobInfoCache` (``blob_info_cache``)
remembers where blobs were seen, so later pushes mount them and compressed layers are reused.

Trust: ``CopyOptions.policy`` (an :class:`imagetypes.trust.Policy`) is evaluated against the
source's manifest(s) and signatures before the destination is opened, so a rejected image
writes nothing; ``sign_by`` (GPG) and ``sign_by_sigstore_private_key`` sign every manifest
written, over its final bytes, as ``sign_identity`` or the destination's Docker reference.
Library callers get no policy check unless they pass one; the ``imagetypes`` command applies
the system's policy file, as skopeo does.

Progress is reported as :class:`ProgressEvent` s to an optional callback
(``CopyOptions.progress``); it is called from the blob worker threads, one call at a time.
:class:`EventCollector` is a ready callback that keeps the events in a list.

:func:`sync` copies every image of a repository, a registry, a folder of images or a YAML list
(``skopeo sync`` semantics) to a registry or a folder, several at a time, and returns a
:class:`SyncReport`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._cache import BlobInfoCache, BlobLocation, default_cache_path
    from ._engine import copy_image
    from ._options import (
        BlobInfoCacheSetting,
        CompressionFormat,
        CopyOptions,
        CopyResult,
        InstanceSelection,
        ManifestFormat,
    )
    from ._progress import (
        PROGRESS_INTERVAL,
        BlobDone,
        BlobOperation,
        BlobProgress,
        BlobSkipped,
        BlobStarted,
        CopyDone,
        CopyStarted,
        EventCollector,
        ImageSkipped,
        LayerRecompressed,
        ManifestConverted,
        ManifestWritten,
        ProgressEvent,
        Retrying,
        SignatureMethod,
        SigningManifest,
        StoringSignatures,
    )
    from ._sync import (
        SyncError,
        SyncImage,
        SyncOptions,
        SyncReport,
        SyncSource,
        list_sync_images,
        semver_constraint,
        sync,
    )

__all__ = [
    "PROGRESS_INTERVAL",
    "BlobDone",
    "BlobInfoCache",
    "BlobInfoCacheSetting",
    "BlobLocation",
    "BlobOperation",
    "BlobProgress",
    "BlobSkipped",
    "BlobStarted",
    "CompressionFormat",
    "CopyDone",
    "CopyOptions",
    "CopyResult",
    "CopyStarted",
    "EventCollector",
    "ImageSkipped",
    "InstanceSelection",
    "LayerRecompressed",
    "ManifestConverted",
    "ManifestFormat",
    "ManifestWritten",
    "ProgressEvent",
    "Retrying",
    "SignatureMethod",
    "SigningManifest",
    "StoringSignatures",
    "SyncError",
    "SyncImage",
    "SyncOptions",
    "SyncReport",
    "SyncSource",
    "copy_image",
    "default_cache_path",
    "list_sync_images",
    "semver_constraint",
    "sync",
]

# Each name is imported from its module on first use (PEP 562): the progress events (which the
# command needs to draw bars) do not bring in the engine, nor the options the SQLite cache.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "._cache": ("BlobInfoCache", "BlobLocation", "default_cache_path"),
    "._engine": ("copy_image",),
    "._options": (
        "BlobInfoCacheSetting",
        "CompressionFormat",
        "CopyOptions",
        "CopyResult",
        "InstanceSelection",
        "ManifestFormat",
    ),
    "._progress": (
        "PROGRESS_INTERVAL",
        "BlobDone",
        "BlobOperation",
        "BlobProgress",
        "BlobSkipped",
        "BlobStarted",
        "CopyDone",
        "CopyStarted",
        "EventCollector",
        "ImageSkipped",
        "LayerRecompressed",
        "ManifestConverted",
        "ManifestWritten",
        "ProgressEvent",
        "Retrying",
        "SignatureMethod",
        "SigningManifest",
        "StoringSignatures",
    ),
    "._sync": (
        "SyncError",
        "SyncImage",
        "SyncOptions",
        "SyncReport",
        "SyncSource",
        "list_sync_images",
        "semver_constraint",
        "sync",
    ),
}
if not TYPE_CHECKING:  # hidden from type checkers, so a misspelt name stays an error there
    from .._lazy import lazy_exports

    __getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
