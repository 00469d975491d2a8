"""Copy flags shared by ``copy`` and ``sync`` (compression, digests, cache), and the progress
renderers: per-blob bars on a terminal, plain lines with periodic summaries elsewhere."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from ..copy import ProgressEvent

# The progress events and line formats are imported by the renderers that use them: building
# the command's parser (for --help, --version, any command) must not load the copy package.

__all__ = [
    "BlobBars",
    "SummaryLines",
    "add_compression_flags",
    "compression_options",
    "make_progress",
]

#: Seconds between two summary lines when stderr is not a terminal.
SUMMARY_INTERVAL = 10.0
_BAR_WIDTH = 24
_REDRAW_INTERVAL = 0.1


def add_compression_flags(parser: argparse.ArgumentParser) -> None:
    """``--dest-compress`` and friends, ``--preserve-digests``, the blob-info cache flags."""
    group = parser.add_argument_group("layers and digests")
    group.add_argument("--dest-compress", action="store_true", help="compress uncompressed layers")
    group.add_argument(
        "--dest-decompress",
        action="store_true",
        help="decompress layers (checked against the config's diff IDs)",
    )
    group.add_argument(
        "--dest-compress-format",
        choices=("gzip", "zstd"),
        metavar="FORMAT",
        help="compress layers with FORMAT (gzip or zstd), recompressing others",
    )
    group.add_argument(
        "--dest-compress-level",
        type=int,
        metavar="LEVEL",
        help="compression level (gzip 1-9, zstd's levels)",
    )
    group.add_argument(
        "--preserve-digests",
        action="store_true",
        help="fail rather than change any manifest digest (conversion, recompression, ...)",
    )
    group.add_argument(
        "--link-blobs",
        choices=("never", "reflink", "hardlink"),  # LINK_MODES: imagetypes.types is not loaded here
        default="reflink",
        help="between local layouts (oci:, dir:): clone blobs where the filesystem can "
        "(reflink, the default), hard-link them where both are on one filesystem (hardlink: "
        "the copies share files), or always write the bytes (never); blobs are verified "
        "whichever way",
    )
    cache = group.add_mutually_exclusive_group()
    cache.add_argument(
        "--blob-info-cache",
        metavar="PATH",
        help="blob-info cache file (default: $XDG_CACHE_HOME/imagetypes/blobinfo.sqlite)",
    )
    cache.add_argument(
        "--no-blob-info-cache",
        action="store_true",
        help="do not use or update the blob-info cache",
    )
    group.add_argument(
        "--progress-interval",
        type=float,
        default=SUMMARY_INTERVAL,
        metavar="SECONDS",
        help=f"seconds between summary lines when stderr is not a terminal "
        f"(default {SUMMARY_INTERVAL:g})",
    )
    # Only ``copy`` picks platforms of an index (``--platform``); sync copies all or one.
    if "--platform" in parser._option_string_actions:
        parser.add_argument(
            "--multi-arch-unselected",
            choices=("strip", "keep"),
            default="strip",
            help="with --platform, what the written index does with the images not copied: "
            "strip their entries (default; the index digest changes) or keep them (a sparse "
            "index, pointing at manifests the destination may not have)",
        )


def compression_options(args: argparse.Namespace) -> dict[str, Any]:
    """The CopyOptions fields the flags of :func:`add_compression_flags` ask for."""
    cache: bool | str = True
    if getattr(args, "no_blob_info_cache", False):
        cache = False
    elif getattr(args, "blob_info_cache", None):
        cache = str(args.blob_info_cache)
    return {
        "dest_compress": bool(args.dest_compress),
        "dest_decompress": bool(args.dest_decompress),
        "dest_compress_format": args.dest_compress_format,
        "dest_compress_level": args.dest_compress_level,
        "preserve_digests": bool(args.preserve_digests),
        "blob_info_cache": cache,
        "link_blobs": args.link_blobs,
        "keep_unselected": getattr(args, "multi_arch_unselected", "strip") == "keep",
    }


def make_progress(
    quiet: bool, stream: TextIO | None = None, interval: float = SUMMARY_INTERVAL
) -> BlobBars | SummaryLines | None:
    """The renderer for ``stream`` (default stderr): bars on a terminal, lines elsewhere."""
    if quiet:
        return None
    stream = stream if stream is not None else sys.stderr
    if stream.isatty() and os.environ.get("TERM") != "dumb":
        return BlobBars(stream)
    return SummaryLines(stream, interval)


class _Totals:
    """Blobs and bytes of one or more copies, for summaries."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.sizes: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.finished = 0
        self.skipped = 0

    def update(self, event: ProgressEvent) -> None:
        from ..copy import BlobDone, BlobProgress, BlobSkipped, BlobStarted

        if isinstance(event, BlobStarted):
            key = str(event.descriptor.digest)
            self.sizes[key] = max(event.descriptor.size, 0)
            self.done.setdefault(key, 0)
        elif isinstance(event, BlobProgress):
            self.done[str(event.descriptor.digest)] = event.bytes_done
        elif isinstance(event, BlobDone):
            self.done[str(event.descriptor.digest)] = event.size
            self.finished += 1
        elif isinstance(event, BlobSkipped):
            self.skipped += 1

    @property
    def bytes_done(self) -> int:
        return sum(self.done.values())

    def line(self, prefix: str) -> str:
        from ._progress import human_size

        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.bytes_done / elapsed
        return (
            f"{prefix}: {self.finished} blobs copied, {self.skipped} skipped, "
            f"{human_size(self.bytes_done)} in {elapsed:.1f}s ({human_size(int(rate))}/s)"
        )


class SummaryLines:
    """Plain lines for logs and pipes: one per blob done or skipped (as skopeo's), and a summary
    of bytes, rate and blobs done every ``interval`` seconds while blobs move. Thread-safe (sync
    reports several copies at once)."""

    def __init__(self, stream: TextIO, interval: float = SUMMARY_INTERVAL) -> None:
        from ._progress import LineProgress

        self._stream = stream
        self._lines = LineProgress(stream)
        self._interval = interval
        self._totals = _Totals()
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def _write(self, line: str) -> None:
        self._stream.write(line + "\n")
        self._stream.flush()

    def __call__(self, event: ProgressEvent) -> None:
        from ..copy import BlobDone, BlobProgress, BlobSkipped, ImageSkipped, LayerRecompressed
        from ._progress import human_size

        with self._lock:
            self._totals.update(event)
            self._lines(event)
            if isinstance(event, LayerRecompressed):
                self._write(
                    f"Layer {event.source.digest} {event.operation}ed "
                    f"({event.from_compression} -> {event.to_compression}): "
                    f"{event.stored.digest} {human_size(event.stored.size)}"
                )
            elif isinstance(event, ImageSkipped):
                self._write(f"Skipping {event.destination}: it already holds {event.digest}")
            now = time.monotonic()
            if (
                isinstance(event, BlobProgress | BlobDone | BlobSkipped)
                and now - self._last >= self._interval
            ):
                self._write(self._totals.line("Progress"))
                self._last = now

    def close(self) -> None:
        """Nothing to clean up (lines are complete)."""


class BlobBars:
    """Per-blob progress bars on a terminal, redrawn in place; finished blobs stay as lines."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._sizes: dict[str, int] = {}
        self._done: dict[str, int] = {}
        self._ops: dict[str, str] = {}
        self._active: list[str] = []
        self._drawn = 0
        self._last_draw = 0.0
        self._lock = threading.Lock()

    def _bar(self, key: str) -> str:
        from ._progress import human_size

        size, done = self._sizes.get(key, 0), self._done.get(key, 0)
        op = self._ops.get(key, "copy")
        label = "Copying" if op == "copy" else op.capitalize() + "ing"
        short = key.split(":", 1)[-1][:12]
        if size > 0:
            filled = min(_BAR_WIDTH, done * _BAR_WIDTH // size)
            bar = "=" * filled + (">" if filled < _BAR_WIDTH else "") + " " * (_BAR_WIDTH - filled)
            return (
                f"{label} blob {short} [{bar[:_BAR_WIDTH]}] {human_size(done)} / {human_size(size)}"
            )
        return f"{label} blob {short} {human_size(done)}"

    def _draw(self, permanent: list[str], *, force: bool) -> None:
        now = time.monotonic()
        if not force and not permanent and now - self._last_draw < _REDRAW_INTERVAL:
            return
        out: list[str] = []
        if self._drawn:
            out.append(f"\x1b[{self._drawn}F")
        out += ["\x1b[K" + line + "\n" for line in permanent]
        live = [self._bar(key) for key in self._active]
        out += ["\x1b[K" + line + "\n" for line in live]
        out.append("\x1b[J")
        self._stream.write("".join(out))
        self._stream.flush()
        self._drawn = len(live)
        self._last_draw = now

    def __call__(self, event: ProgressEvent) -> None:
        from ..copy import (
            BlobDone,
            BlobProgress,
            BlobSkipped,
            BlobStarted,
            ImageSkipped,
            LayerRecompressed,
            ManifestWritten,
            Retrying,
        )
        from ._progress import human_size, retry_line, signature_line

        with self._lock:
            permanent: list[str] = []
            force = False
            if isinstance(event, BlobStarted):
                key = str(event.descriptor.digest)
                self._sizes[key] = max(event.descriptor.size, 0)
                self._done[key] = 0
                self._ops[key] = event.operation
                self._active.append(key)
                force = True
            elif isinstance(event, BlobProgress):
                self._done[str(event.descriptor.digest)] = event.bytes_done
            elif isinstance(event, BlobDone):
                key = str(event.descriptor.digest)
                if key in self._active:
                    self._active.remove(key)
                permanent.append(f"Copying blob {key} done {human_size(event.size)}")
            elif isinstance(event, BlobSkipped):
                key = str(event.descriptor.digest)
                why = "already exists" if event.reason == "present" else "foreign layer"
                permanent.append(f"Copying blob {key} skipped: {why}")
            elif isinstance(event, LayerRecompressed):
                permanent.append(
                    f"Layer {event.source.digest} -> {event.stored.digest} "
                    f"({event.from_compression} -> {event.to_compression})"
                )
            elif isinstance(event, ImageSkipped):
                permanent.append(f"Skipping {event.destination}: already up to date")
            elif isinstance(event, ManifestWritten):
                permanent.append("Writing manifest to image destination")
            elif isinstance(event, Retrying):
                permanent.append(retry_line(event))
            elif (line := signature_line(event)) is not None:
                permanent.append(line)
            else:
                return
            self._draw(permanent, force=force)

    def close(self) -> None:
        """Leave the terminal below the last line drawn."""
        with self._lock:
            if self._drawn:
                self._active.clear()
                self._draw([], force=True)


ProgressCallback = Callable[["ProgressEvent"], None]
