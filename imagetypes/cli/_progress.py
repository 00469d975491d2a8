"""Rendering a copy's progress events on stderr: plain lines, or one updating terminal line."""

from __future__ import annotations

import logging
from typing import TextIO

from .. import mediatypes as mt
from ..copy import (
    BlobDone,
    BlobProgress,
    BlobSkipped,
    BlobStarted,
    CopyDone,
    ManifestConverted,
    ManifestWritten,
    ProgressEvent,
)
from ..descriptor import Descriptor

__all__ = ["LineProgress", "TerminalProgress", "human_size"]

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


class TerminalProgress:
    """A single status line, rewritten in place, summing up the blobs in flight and done."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._sizes: dict[str, int] = {}
        self._done: dict[str, int] = {}
        self._finished = 0
        self._line_open = False

    def _status(self) -> str:
        total = sum(self._sizes.values())
        copied = sum(self._done.values())
        return (
            f"Copying blobs: {self._finished}/{len(self._sizes)} done, "
            f"{human_size(copied)} / {human_size(total)}"
        )

    def _rewrite(self, text: str) -> None:
        self._stream.write("\r\x1b[K" + text)
        self._stream.flush()
        self._line_open = True

    def _print(self, text: str) -> None:
        prefix = "\r\x1b[K" if self._line_open else ""
        self._stream.write(prefix + text + "\n")
        self._stream.flush()
        self._line_open = False

    def __call__(self, event: ProgressEvent) -> None:
        if isinstance(event, BlobStarted):
            key = str(event.descriptor.digest)
            self._sizes[key] = max(event.descriptor.size, 0)
            self._done.setdefault(key, 0)
            self._rewrite(self._status())
        elif isinstance(event, BlobProgress):
            self._done[str(event.descriptor.digest)] = event.bytes_done
            self._rewrite(self._status())
        elif isinstance(event, BlobDone | BlobSkipped):
            key = str(event.descriptor.digest)
            self._sizes.setdefault(key, max(event.descriptor.size, 0))
            self._done[key] = event.size if isinstance(event, BlobDone) else self._sizes[key]
            self._finished += 1
            self._rewrite(self._status())
        elif isinstance(event, ManifestWritten):
            if self._line_open:
                self._print(self._status())
            self._print(_manifest_line(event))
        elif isinstance(event, CopyDone) and self._line_open:
            self._print(self._status())

    def close(self) -> None:
        """End the status line, if one is open (after a failure, for instance)."""
        if self._line_open:
            self._stream.write("\n")
            self._stream.flush()
            self._line_open = False
