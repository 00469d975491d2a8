"""The copy engine: move an image from any source to any destination.

:func:`copy_image` selects instances of an index, converts manifests the destination cannot
store, streams blobs (concurrently where both ends allow), writes manifests and signatures and
commits; nothing is visible at the destination unless everything succeeded. Progress is
reported as :class:`ProgressEvent` s to an optional callback (``CopyOptions.progress``); it is
called from the blob worker threads, one call at a time. :class:`EventCollector` is a ready
callback that keeps the events in a list.
"""

from __future__ import annotations

from ._engine import copy_image
from ._options import CopyOptions, CopyResult, InstanceSelection, ManifestFormat
from ._progress import (
    PROGRESS_INTERVAL,
    BlobDone,
    BlobProgress,
    BlobSkipped,
    BlobStarted,
    CopyDone,
    CopyStarted,
    EventCollector,
    ManifestConverted,
    ManifestWritten,
    ProgressEvent,
)

__all__ = [
    "PROGRESS_INTERVAL",
    "BlobDone",
    "BlobProgress",
    "BlobSkipped",
    "BlobStarted",
    "CopyDone",
    "CopyOptions",
    "CopyResult",
    "CopyStarted",
    "EventCollector",
    "InstanceSelection",
    "ManifestConverted",
    "ManifestFormat",
    "ManifestWritten",
    "ProgressEvent",
    "copy_image",
]
