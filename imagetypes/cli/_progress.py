"""Rendering a copy's progress events on stderr: plain lines, or one updating terminal line."""

from __future__ import annotations

import logging
from typing import TextIO

from .. import mediatypes as mt
from ..copy import (
    BlobDone,
    BlobSkipped,
    ManifestConverted,
    ManifestWritten,
    ProgressEvent,
    Retrying,
)
from ..copy._progress import SigningManifest, StoringSignatures
from ..descriptor import Descriptor

__all__ = ["LineProgress", "human_size", "retry_line", "signature_line"]

log = logging.getLogger(__name__)

_CONFIG_TYPES = frozenset({mt.OCI_CONFIG, mt.DOCKER_CONFIG})
_SKIP_REASONS = {"present": "already exists", "foreign": "foreign layer"}


def human_size(size: int) -> str:
    """``1234567`` -> ``"1.2 MiB"``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _kind(descriptor: Descriptor) -> str:
    return "config" if descriptor.media_type in _CONFIG_TYPES else "blob"


def _manifest_line(event: ManifestWritten) -> str:
    if mt.is_index(event.media_type):
        return "Writing manifest list to image destination"
    return "Writing manifest to image destination"


def retry_line(event: Retrying) -> str:
    return (
        f"Retrying {event.operation} (attempt {event.attempt}) in {event.delay:.1f}s: "
        f"{event.reason}"
    )


def signature_line(event: ProgressEvent) -> str | None:
    """skopeo's line for a signing or storing event, None for other events."""
    if isinstance(event, SigningManifest):
        if event.method == "simple":
            return "Signing manifest using simple signing"
        return "Signing manifest using a sigstore signature"
    if isinstance(event, StoringSignatures):
        return "Storing list signatures" if event.index else "Storing signatures"
    return None


class LineProgress:
    """One line per finished blob and per manifest, for logs and pipes (as skopeo's)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def __call__(self, event: ProgressEvent) -> None:
        line: str | None = None
        if isinstance(event, BlobDone):
            d = event.descriptor
            line = f"Copying {_kind(d)} {d.digest} done {human_size(event.size)}"
        elif isinstance(event, BlobSkipped):
            d = event.descriptor
            reason = _SKIP_REASONS.get(event.reason, event.reason)
            line = f"Copying {_kind(d)} {d.digest} skipped: {reason}"
        elif isinstance(event, ManifestWritten):
            line = _manifest_line(event)
        elif isinstance(event, Retrying):
            line = retry_line(event)
        elif isinstance(event, SigningManifest | StoringSignatures):
            line = signature_line(event)
        elif isinstance(event, ManifestConverted):
            log.debug(
                "converting manifest %s from %s to %s: %s",
                event.digest,
                event.from_type,
                event.to_type,
                event.reason,
            )
        if line is not None:
            self._stream.write(line + "\n")
            self._stream.flush()
