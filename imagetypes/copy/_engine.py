"""copy_image(): instance selection, manifest conversion, the blob pipeline, commit."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait

import attrs

from .. import mediatypes as mt
from ..descriptor import BlobInfo, Descriptor
from ..digest import Digest
from ..errors import (
    CopyError,
    DigestMismatchError,
    ImageError,
    PlatformMismatchError,
    UnsupportedError,
    UnsupportedManifestTypeError,
)
from ..manifest import ImageManifest, IndexManifest, Manifest, convert_manifest, parse_manifest
from ..platform import Platform
from ..plugins import parse_reference
from ..types import (
    ImageDestination,
    ImageReference,
    ImageSource,
    LayerCompression,
    PutBlobOptions,
)
from ._options import CopyOptions, CopyResult
from ._progress import (
    BlobDone,
    BlobSkipped,
    BlobStarted,
    CopyCancelled,
    CopyDone,
    CopyStarted,
    ManifestConverted,
    ManifestWritten,
    ProgressReader,
    _Emitter,
)

__all__ = ["copy_image"]

_IMAGE_FORMATS = {"oci": mt.OCI_MANIFEST, "v2s2": mt.DOCKER_MANIFEST}
_INDEX_FORMATS = {"oci": mt.OCI_INDEX, "v2s2": mt.DOCKER_MANIFEST_LIST}
_UNCOMPRESSED = frozenset(
    {mt.OCI_LAYER, mt.OCI_NONDISTRIBUTABLE_LAYER, mt.DOCKER_UNCOMPRESSED_LAYER}
)
_COMPRESSED = frozenset(
    {
        mt.OCI_LAYER_GZIP,
        mt.OCI_LAYER_ZSTD,
        mt.OCI_NONDISTRIBUTABLE_LAYER_GZIP,
        mt.OCI_NONDISTRIBUTABLE_LAYER_ZSTD,
        mt.DOCKER_LAYER,
        mt.DOCKER_FOREIGN_LAYER,
    }
)


def copy_image(
    source: ImageReference | str,
    destination: ImageReference | str,
    options: CopyOptions | None = None,
) -> CopyResult:
    """Copy an image (or index with its images) from ``source`` to ``destination``.

    References may be given as ``transport:details`` strings. Nothing becomes visible at the
    destination unless the whole copy succeeds. Errors raised by transports and the manifest
    code propagate unchanged (:class:`~imagetypes.DigestMismatchError` for a corrupt blob,
    :class:`~imagetypes.PlatformMismatchError` when an index has no image for the platform,
    :class:`~imagetypes.UnsupportedConversionError`, ...); any other exception becomes a
    :class:`~imagetypes.CopyError` with the original chained as its cause.
    """
    options = options if options is not None else CopyOptions()
    src_ref = parse_reference(source) if isinstance(source, str) else source
    dst_ref = parse_reference(destination) if isinstance(destination, str) else destination
    try:
        # The destination is closed without commit when anything below raises, which
        # discards everything staged (the transports guarantee it).
        with (
            src_ref.open_source(options.source_options) as src,
            dst_ref.open_destination(options.destination_options) as dst,
        ):
            dst.note_source(src_ref)
            return _Copier(src, dst, options).run()
    except ImageError:
        raise
    except Exception as e:
        raise CopyError(f"copying {src_ref} to {dst_ref} failed: {e}") from e


@attrs.frozen
class _Planned:
    """One image manifest to write: the source's and what will be written."""

    source_digest: Digest
    source: ImageManifest
    output: Manifest
    signatures: Sequence[bytes]


@attrs.frozen
class _BlobJob:
    descriptor: Descriptor  # as the source lists it (the source may need urls etc.)
    media_type: str  # as the written manifest lists it
    is_config: bool
    layer_index: int | None


class _Copier:
    def __init__(self, src: ImageSource, dst: ImageDestination, options: CopyOptions) -> None:
        self.src = src
        self.dst = dst
        self.options = options
        self.emit = _Emitter(options.progress)
        self.dst_caps = dst.capabilities
        self.cancel = threading.Event()
        self.converted = False
        self.blobs_copied = 0
        self.blobs_reused = 0
        self.bytes_copied = 0
        self._count_lock = threading.Lock()

    # -- the copy ----------------------------------------------------------------------------
    def run(self) -> CopyResult:
        self.emit(CopyStarted(str(self.src.reference), str(self.dst.reference)))
        raw, media_type = self.src.get_manifest()
        top = parse_manifest(raw, media_type or None)
        if isinstance(top, IndexManifest):
            if self.options.instances == "system":
                chosen = self._select_system(top)
                written = self._copy_single(self._instance_manifest(chosen.digest), chosen.digest)
                instances: tuple[Digest, ...] = ()
            else:
                written, instances = self._copy_index(top)
        elif isinstance(top, ImageManifest):
            written = self._copy_single(top, None)
            instances = ()
        else:
            raise UnsupportedManifestTypeError(
                f"{self.src.reference}: copying {top.media_type} manifests is not supported"
            )
        self.dst.commit()
        result = CopyResult(
            manifest_digest=written.digest,
            media_type=written.media_type,
            manifest=written.raw,
            source_digest=top.digest,
            instance_digests=instances,
            blobs_copied=self.blobs_copied,
            blobs_reused=self.blobs_reused,
            bytes_copied=self.bytes_copied,
            converted=self.converted,
        )
        self.emit(CopyDone(result))
        return result

    def _copy_single(self, manifest: ImageManifest, instance: Digest | None) -> Manifest:
        """Copy one image as the top-level manifest; ``instance`` if it comes from an index."""
        plan = self._plan(manifest, self._signatures(instance))
        self._copy_blobs([plan])
        self._put_manifest(plan.output, instance=False)
        self.dst.put_signatures(list(plan.signatures))
        return plan.output

    def _copy_index(self, index: IndexManifest) -> tuple[Manifest, tuple[Digest, ...]]:
        positions = self._select_instances(index)
        top_signatures = self._signatures(None)
        plans: list[_Planned] = []
        for pos in positions:
            desc = index.manifests[pos]
            plans.append(
                self._plan(self._instance_manifest(desc.digest), self._signatures(desc.digest))
            )
        # Decide the index's output before moving any blob, so that an impossible or
        # signature-breaking change fails early.
        replaced = {
            p.source_digest: Descriptor(p.output.media_type, p.output.digest, len(p.output.raw))
            for p in plans
            if p.output.digest != p.source_digest
        }
        output = self._index_output(index, positions, replaced)
        if output.raw != index.raw and top_signatures:
            raise self._signature_change_error(index.media_type)
        self._copy_blobs(plans)
        for plan in plans:
            self._put_manifest(plan.output, instance=True)
            self.dst.put_signatures(list(plan.signatures), plan.output.digest)
        self._put_manifest(output, instance=False)
        self.dst.put_signatures(list(top_signatures))
        return output, tuple(p.output.digest for p in plans)

    # -- choosing instances ------------------------------------------------------------------
    def _select_system(self, index: IndexManifest) -> Descriptor:
        src_opts = self.options.source_options
        wanted = src_opts.platform if src_opts and src_opts.platform else Platform.current()
        desc = index.instance_for(wanted)
        if desc is None:
            raise self._mismatch(index, [wanted])
        return desc

    def _select_instances(self, index: IndexManifest) -> list[int]:
        """Positions in the index of the instances to copy, in index order."""
        if self.options.instances == "all":
            return list(range(len(index.manifests)))
        assert not isinstance(self.options.instances, str)
        chosen: set[int] = set()
        missing: list[Platform] = []
        for wanted in self.options.instances:
            desc = index.instance_for(wanted)
            if desc is None:
                missing.append(wanted)
            else:
                chosen.add(index.manifests.index(desc))
        if missing:
            raise self._mismatch(index, missing)
        return sorted(chosen)

    def _mismatch(self, index: IndexManifest, wanted: list[Platform]) -> PlatformMismatchError:
        available = ", ".join(str(d.platform) for d in index.manifests if d.platform) or "none"
        asked = ", ".join(str(p) for p in wanted)
        return PlatformMismatchError(
            f"{self.src.reference} has no image for {asked} (available platforms: {available})"
        )

    def _instance_manifest(self, digest: Digest) -> ImageManifest:
        raw, media_type = self.src.get_manifest(digest)
        actual = Digest.from_bytes(raw, digest.algorithm)
        if actual != digest:
            raise DigestMismatchError(
                f"{self.src.reference}: manifest {digest} has digest {actual}",
                expected=digest,
                actual=actual,
            )
        manifest = parse_manifest(raw, media_type or None)
        if not isinstance(manifest, ImageManifest):
            raise UnsupportedManifestTypeError(
                f"{self.src.reference}: instance {digest} is a {manifest.media_type}, "
                "not an image manifest (nested indexes are not supported)"
            )
        return manifest

    # -- signatures --------------------------------------------------------------------------
    def _signatures(self, instance: Digest | None) -> Sequence[bytes]:
        if self.options.remove_signatures:
            return []
        signatures = self.src.get_signatures(instance)
        if signatures and not self.dst_caps.supports_signatures:
            raise UnsupportedError(
                f"{self.src.reference} is signed and {self.dst.reference} cannot store "
                "signatures; copy with remove_signatures=True to drop them"
            )
        return signatures

    def _signature_change_error(self, media_type: str) -> UnsupportedError:
        return UnsupportedError(
            f"the {media_type} manifest of {self.src.reference} must be modified to be written "
            f"to {self.dst.reference}, which would invalidate its signatures; copy with "
            "remove_signatures=True to drop them"
        )

    # -- manifest formats --------------------------------------------------------------------
    def _target_type(
        self, media_type: str, candidates: tuple[str, ...], forced: str | None
    ) -> tuple[str, str]:
        """The media type to write and why it differs from ``media_type`` ("" if it does not)."""
        accepted = self.dst_caps.manifest_types
        if forced is not None:
            if accepted is not None and forced not in accepted:
                raise UnsupportedManifestTypeError(
                    f"{self.dst.reference} does not accept {forced}, the format asked for "
                    f"(it accepts: {', '.join(accepted)})"
                )
            return forced, "" if forced == media_type else "the format option asks for it"
        if accepted is None or media_type in accepted:
            return media_type, ""
        for candidate in accepted:
            if candidate in candidates:
                return candidate, f"{self.dst.reference} does not accept {media_type}"
        raise UnsupportedManifestTypeError(
            f"{self.dst.reference} accepts none of {', '.join(candidates)} "
            f"(it accepts: {', '.join(accepted)})"
        )

    def _check_layer_compression(self, manifest: ImageManifest) -> None:
        """Refuse up front a destination that wants layers (de)compressed: not implemented."""
        wanted = self.dst_caps.layer_compression
        if wanted is LayerCompression.PRESERVE:
            return
        to_change = _UNCOMPRESSED if wanted is LayerCompression.COMPRESS else _COMPRESSED
        if any(layer.media_type in to_change for layer in manifest.layers):
            verb = "compressed" if wanted is LayerCompression.COMPRESS else "decompressed"
            raise UnsupportedError(
                f"{self.dst.reference} asks for layers to be {verb}; changing layer "
                "compression while copying is not supported yet"
            )

    def _plan(self, manifest: ImageManifest, signatures: Sequence[bytes]) -> _Planned:
        self._check_layer_compression(manifest)
        fmt = self.options.format
        target, reason = self._target_type(
            manifest.media_type, mt.IMAGE_MANIFEST_TYPES, _IMAGE_FORMATS[fmt] if fmt else None
        )
        output: Manifest = manifest
        if target != manifest.media_type:
            if signatures:
                raise self._signature_change_error(manifest.media_type)
            output = convert_manifest(manifest, target)
            self._note_conversion(manifest, output, reason)
        return _Planned(manifest.digest, manifest, output, signatures)

    def _note_conversion(self, source: Manifest, output: Manifest, reason: str) -> None:
        self.converted = True
        self.emit(ManifestConverted(source.media_type, output.media_type, reason, source.digest))

    def _index_output(
        self, index: IndexManifest, positions: list[int], replaced: dict[Digest, Descriptor]
    ) -> Manifest:
        """The index to write: only the chosen instances, their new digests, the new type."""
        fmt = self.options.format
        target, reason = self._target_type(
            index.media_type, mt.INDEX_TYPES, _INDEX_FORMATS[fmt] if fmt else None
        )
        # Re-serialise only when something changes, so an untouched index keeps its digest.
        output: Manifest = index
        if len(positions) != len(index.manifests):
            output = index.replace_manifests(index.manifests[pos] for pos in positions)
        # convert_manifest points the entries of converted instances at their new manifests
        # (also when the index keeps its type), and returns the index as it is otherwise.
        converted = convert_manifest(output, target, instance_map=replaced)
        if target != index.media_type:
            self._note_conversion(index, converted, reason or "its instances were converted")
        return converted

    # -- blobs -------------------------------------------------------------------------------
    def _copy_blobs(self, plans: list[_Planned]) -> None:
        jobs: dict[Digest, _BlobJob] = {}
        for plan in plans:
            out = plan.output
            out_types: dict[Digest, str] = {}
            if isinstance(out, ImageManifest):
                out_types = {d.digest: d.media_type for d in (out.config, *out.layers)}
            src = plan.source
            jobs.setdefault(
                src.config.digest,
                _BlobJob(
                    src.config, out_types.get(src.config.digest, src.config.media_type), True, None
                ),
            )
            for i, layer in enumerate(src.layers):
                jobs.setdefault(
                    layer.digest,
                    _BlobJob(layer, out_types.get(layer.digest, layer.media_type), False, i),
                )
        src_caps = self.src.capabilities
        parallel = src_caps.concurrent_blob_reads and self.dst_caps.concurrent_blob_writes
        workers = min(self.options.concurrency if parallel else 1, len(jobs))
        if workers <= 1:
            for job in jobs.values():
                self._transfer(job)
            return
        futures: list[Future[None]] = []
        failure: BaseException | None = None
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="imagetypes-copy") as pool:
            try:
                futures = [pool.submit(self._transfer, job) for job in jobs.values()]
                wait(futures, return_when=FIRST_EXCEPTION)
                failure = next(
                    (
                        f.exception()
                        for f in futures
                        if f.done() and not f.cancelled() and f.exception()
                    ),
                    None,
                )
            except BaseException:  # e.g. KeyboardInterrupt while waiting: stop the workers too
                self._abandon(futures)
                raise
            if failure is not None:
                self._abandon(futures)
            # Leaving the with-block waits for running workers, before the destination closes.
        if failure is not None:
            raise failure
        for f in futures:
            f.result()

    def _abandon(self, futures: list[Future[None]]) -> None:
        """Drop queued transfers; running ones stop at their next read (CopyCancelled)."""
        self.cancel.set()
        for f in futures:
            f.cancel()

    def _transfer(self, job: _BlobJob) -> None:
        desc = job.descriptor
        if self.cancel.is_set():
            raise CopyCancelled(f"copy of {desc.digest} abandoned")
        info = BlobInfo(job.media_type, desc.digest, desc.size)
        try:
            if desc.urls and self.dst_caps.accepts_foreign_layers:
                self._count(reused=True)
                self.emit(BlobSkipped(desc, "foreign"))
                return
            if self.dst.try_reusing_blob(info) is not None:
                self._count(reused=True)
                self.emit(BlobSkipped(desc, "present"))
                return
            self.emit(BlobStarted(desc))
            with self.src.get_blob(desc) as raw:
                reader = ProgressReader(raw, desc, self.emit, self.cancel)
                stored = self.dst.put_blob(
                    reader,
                    info,
                    PutBlobOptions(is_config=job.is_config, layer_index=job.layer_index),
                )
            if stored.digest != desc.digest:
                # Recompression on the way in would need the manifest rewritten to match.
                raise UnsupportedError(
                    f"{self.dst.reference} stored blob {desc.digest} as {stored.digest}; "
                    "changing layers while copying is not supported"
                )
            self._count(size=reader.size)
            self.emit(BlobDone(desc, reader.size))
        except (ImageError, CopyCancelled):
            raise
        except Exception as e:
            raise CopyError(f"copying blob {desc.digest} failed: {e}") from e

    def _count(self, *, reused: bool = False, size: int = 0) -> None:
        with self._count_lock:
            if reused:
                self.blobs_reused += 1
            else:
                self.blobs_copied += 1
                self.bytes_copied += size

    # -- writing -----------------------------------------------------------------------------
    def _put_manifest(self, manifest: Manifest, *, instance: bool) -> None:
        self.dst.put_manifest(
            manifest.raw, manifest.media_type, manifest.digest if instance else None
        )
        self.emit(ManifestWritten(manifest.digest, manifest.media_type, instance))
