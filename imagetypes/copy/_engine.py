"""copy_image(): instance selection, manifest conversion, the blob pipeline, commit."""

from __future__ import annotations

import functools
import io
import os
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import IO, cast

import attrs

from .. import mediatypes as mt
from ..compression import (
    Compression,
    compressing_reader,
    compression_threads,
    decompressing_reader,
    layer_compression,
    with_compression,
    zstd_available,
)
from ..descriptor import BlobInfo, Descriptor
from ..digest import Digest, Readable, VerifyingReader, close_stream
from ..errors import (
    CompressionError,
    CopyError,
    DigestChangeError,
    DigestMismatchError,
    ImageError,
    UnsupportedConversionError,
    UnsupportedError,
    UnsupportedManifestTypeError,
    VerificationError,
)
from ..manifest import (
    DockerManifest,
    DockerSchema1Manifest,
    ImageConfig,
    ImageManifest,
    IndexManifest,
    Manifest,
    OCIManifest,
    convert_manifest,
    parse_manifest,
)
from ..plugins import parse_reference
from ..retry import RetryAttempt, RetryPolicy
from ..types import (
    ImageDestination,
    ImageReference,
    ImageSource,
    LayerCompression,
    PutBlobOptions,
    TransportOptions,
)
from ._cache import (
    BlobInfoCache,
    BlobLocation,
    location_of,
    takes_location_hints,
    worth_recording,
)
from ._options import CopyOptions, CopyResult
from ._pipeline import UncompressedTap
from ._progress import (
    BlobDone,
    BlobOperation,
    BlobSkipped,
    BlobStarted,
    CopyCancelled,
    CopyDone,
    CopyStarted,
    ImageSkipped,
    LayerRecompressed,
    ManifestConverted,
    ManifestWritten,
    ProgressReader,
    Retrying,
    _Emitter,
)
from ._readahead import READ_AHEAD_MIN, ReadAhead
from ._schema1 import (
    GZIPPED_EMPTY_LAYER,
    Schema1Layer,
    check_schema1_convertible,
    prefers_schema2,
    put_empty_layer,
    renamed_schema1,
    schema1_layers,
    schema1_target,
    schema2_config,
    to_schema1,
    written_digest,
)
from ._trust import (
    Signer,
    SourceReads,
    check_policy,
    select_positions,
    select_system,
    signatures_to_store,
)

__all__ = ["copy_image"]

_IMAGE_FORMATS = {"oci": mt.OCI_MANIFEST, "v2s2": mt.DOCKER_MANIFEST}
_INDEX_FORMATS = {"oci": mt.OCI_INDEX, "v2s2": mt.DOCKER_MANIFEST_LIST}
_SCHEMA1_TYPES = frozenset({mt.DOCKER_SCHEMA1_MANIFEST, mt.DOCKER_SCHEMA1_SIGNED_MANIFEST})
_DOCKER_IMAGE_TYPES = frozenset({mt.DOCKER_MANIFEST})
#: Bound on a config blob read into memory (to check diff IDs).
_MAX_CONFIG_SIZE = 4 * 1024 * 1024
#: Layers the process compresses, decompresses or recompresses at once (the CPUs it may run on,
#: at least 2, at most 4); the others wait for a turn, holding nothing. The work is CPU-bound:
#: more streams than cores add no speed (4 x 64 MiB gzip -> zstd on 2 cores: as fast two at a
#: time as six), only memory, 15-20 MiB each (see _transform_turn).
transform_streams: int = max(2, min(4, compression_threads))


def copy_image(
    source: ImageReference | str,
    destination: ImageReference | str,
    options: CopyOptions | None = None,
) -> CopyResult:
    """Copy an image (or index with its images) from ``source`` to ``destination``.

    References may be given as ``transport:details`` strings. Nothing becomes visible at the
    destination unless the whole copy succeeds.

    On the way the engine converts manifests the destination cannot store (or that
    ``options.format`` asks to change), Docker schema 1 sources included (their layers are
    read to compute the diff IDs of the new image config), and changes layer compression
    where the destination or the options ask for it (compress, decompress, or recompress to
    ``dest_compress_format``), streaming each such layer through the (de)compressor in a
    worker thread; a decompressed layer must match the config's diff ID. When the
    destination already holds the identical manifest, nothing is written
    (:attr:`CopyResult.unchanged`).

    Errors raised by transports and the manifest code propagate unchanged
    (:class:`~imagetypes.DigestMismatchError` for a corrupt blob or a layer that does not
    match its diff ID, :class:`~imagetypes.PlatformMismatchError` when an index has no image
    for the platform, :class:`~imagetypes.UnsupportedConversionError`,
    :class:`~imagetypes.DigestChangeError` under ``preserve_digests``, ...); any other
    exception becomes a :class:`~imagetypes.CopyError` with the original chained as its cause.

    A blob whose put fails with a retryable error (:attr:`~imagetypes.ImageError.retryable`: a
    broken connection, a busy or failing registry, an upload that could not be resumed) is read
    from the source again and put again, as often as ``destination_options.retry`` allows (one
    budget per blob), each time reported as a :class:`~imagetypes.copy.Retrying` event. Failures
    of the source and content that does not verify are never retried.

    With ``options.policy``, the source's manifest(s) and signatures are read and the policy
    evaluated before the destination is even opened; a rejection raises
    :class:`~imagetypes.trust.PolicyRejectedError`. Signing (``options.sign_by``,
    ``options.sign_by_sigstore_private_key``) is checked before any blob moves (identity, keys,
    a destination that cannot store signatures) and happens over the final manifest bytes,
    before commit.
    """
    options = options if options is not None else CopyOptions()
    src_ref = parse_reference(source) if isinstance(source, str) else source
    dst_ref = parse_reference(destination) if isinstance(destination, str) else destination
    emit = _Emitter(options.progress)
    if emit.active:
        options = attrs.evolve(
            options,
            source_options=_reporting_retries(options.source_options, "source", emit),
            destination_options=_reporting_retries(
                options.destination_options, "destination", emit
            ),
        )
    try:
        with src_ref.open_source(options.source_options) as src:
            reads = SourceReads(src)
            if options.policy is not None:
                check_policy(options.policy, src_ref, reads, options)
            signer = Signer.from_options(options, dst_ref)
            # The destination is closed without commit when anything below raises, which
            # discards everything staged (the transports guarantee it).
            with dst_ref.open_destination(options.destination_options) as dst:
                if signer is not None and not dst.capabilities.supports_signatures:
                    raise UnsupportedError(
                        f"cannot sign: {dst_ref} cannot store signatures (a registry needs "
                        "lookaside storage or sigstore attachments configured in registries.d)"
                    )
                dst.note_source(src_ref)
                return _Copier(src, dst, options, reads, signer, emit).run()
    except ImageError:
        raise
    except Exception as e:
        raise CopyError(f"copying {src_ref} to {dst_ref} failed: {e}") from e


def open_cache(setting: object) -> BlobInfoCache | None:
    """The blob-info cache a ``CopyOptions.blob_info_cache`` value asks for."""
    if setting is False or setting is None:
        return None
    if setting is True:
        return BlobInfoCache()
    if isinstance(setting, BlobInfoCache):
        return setting
    if isinstance(setting, str | Path) or hasattr(setting, "__fspath__"):
        return BlobInfoCache(setting)
    raise TypeError(f"blob_info_cache must be a bool, a path or a BlobInfoCache, not {setting!r}")


# -- plans ------------------------------------------------------------------------------------


@attrs.define
class _LayerPlan:
    """What happens to one layer of an image."""

    #: Position in the written manifest's layers.
    position: int
    #: The layer as the source lists it (size -1 when unknown: schema 1).
    descriptor: Descriptor
    operation: BlobOperation = "copy"
    #: The compression the source's media type declares (None: not a known layer type, or
    #: schema 1, where it is detected from the content).
    source_compression: Compression | None = None
    #: The compression written, when the operation changes it.
    target_compression: Compression | None = None
    #: The expected digest of the uncompressed content (the config's diff ID), if known.
    diff_id: Digest | None = None
    #: Compute the uncompressed digest while the blob passes (schema 1 conversion).
    compute_diff_id: bool = False

    @property
    def key(self) -> tuple[Digest, str, str]:
        target = self.target_compression.value if self.target_compression else ""
        return (self.descriptor.digest, self.operation, target)


@attrs.define
class _Planned:
    """One image manifest to write: the source's, what changes, and (once known) the output."""

    source_digest: Digest
    source: ImageManifest | DockerSchema1Manifest
    target_type: str
    reason: str
    layers: list[_LayerPlan]
    signatures: Sequence[bytes]
    #: Changes that alter the manifest's digest, in words (for preserve_digests).
    changes: list[str] = attrs.field(factory=list)
    #: The manifest written, when known before blobs move, and after they did.
    output: Manifest | None = None
    #: The config bytes, when read during planning.
    config_data: bytes | None = None
    #: The manifest to write with the layers' final media types (digests as the source's).
    preview: ImageManifest | None = None
    #: The Docker schema 1 type to write (format v2s1): the plan is laid out as Docker schema
    #: 2 (``target_type``) and converted once the layers are at the destination.
    schema1: str | None = None


@attrs.frozen
class _Stored:
    """A blob as the destination holds it."""

    digest: Digest
    size: int
    #: The digest of its uncompressed content, when the copy learnt it.
    diff_id: Digest | None = None


@attrs.frozen
class _BlobJob:
    descriptor: Descriptor  # as the source lists it (the source may need urls etc.)
    media_type: str  # as the written manifest lists it
    is_config: bool
    layer_index: int | None
    layer: _LayerPlan | None = None
    data: bytes | None = None  # the blob's bytes, when already read


def _unknown_size(media_type: str, digest: Digest) -> Descriptor:
    """A descriptor whose size is unknown (-1), as schema 1 layers are.

    Descriptors validate sizes as non-negative; sources and VerifyingReader read -1 as
    "unknown", so the field is set past the validator.
    """
    desc = Descriptor(media_type, digest, 0)
    object.__setattr__(desc, "size", -1)
    return desc


def _known(size: int) -> int | None:
    return size if size >= 0 else None


class _Copier:
    def __init__(
        self,
        src: ImageSource,
        dst: ImageDestination,
        options: CopyOptions,
        reads: SourceReads | None = None,
        signer: Signer | None = None,
        emit: _Emitter | None = None,
    ) -> None:
        self.src = src
        self.dst = dst
        self.options = options
        self.reads = reads if reads is not None else SourceReads(src)
        self.signer = signer
        self.emit = emit if emit is not None else _Emitter(options.progress)
        self.dst_caps = dst.capabilities
        self.cancel = threading.Event()
        self.converted = False
        self.blobs_copied = 0
        self.blobs_reused = 0
        self.bytes_copied = 0
        self.recompressed = 0
        self._count_lock = threading.Lock()
        self._stored: dict[tuple[Digest, str, str], _Stored] = {}
        self.cache = open_cache(options.blob_info_cache)
        self._src_location = location_of(src.reference)
        self._dst_location = location_of(dst.reference)
        self._seen_at_source: set[Digest] = set()
        self._seen_at_destination: set[Digest] = set()
        self._pairs: set[tuple[Digest, Digest, str]] = set()
        self._skipped: Manifest | None = None
        self._skipped_instances: tuple[Digest, ...] = ()
        #: Whether large blobs may be read ahead (see _run_jobs and _large).
        self._read_ahead = True
        #: Whether the source reads blobs from local storage (SourceCapabilities.local_reads).
        self._local_source = False
        #: Where the cache saw the blobs to copy, looked up in one query before they move.
        self._hints: dict[Digest, list[BlobLocation]] = {}

    # -- the copy ----------------------------------------------------------------------------
    def run(self) -> CopyResult:
        self.emit(CopyStarted(str(self.src.reference), str(self.dst.reference)))
        raw, media_type = self.reads.manifest(None)
        top = parse_manifest(raw, media_type or None)
        instances: tuple[Digest, ...] = ()
        written: Manifest | None
        if isinstance(top, IndexManifest):
            mode = self.options.instances
            if mode == "system":
                chosen = self._select_system(top)
                written = self._copy_single(self._instance_manifest(chosen.digest), chosen.digest)
            elif mode == "index-only":
                written = self._copy_index_only(top)
            else:
                copied = self._copy_index(top)
                written, instances = (copied[0], copied[1]) if copied else (None, ())
        elif isinstance(top, ImageManifest | DockerSchema1Manifest):
            written = self._copy_single(top, None)
        else:
            raise UnsupportedManifestTypeError(
                f"{self.src.reference}: copying {top.media_type} manifests is not supported"
            )
        if written is None:
            # The destination already holds this image: nothing written, nothing to commit.
            return self._unchanged(top)
        self.dst.commit()
        self._record_cache()
        result = CopyResult(
            manifest_digest=written_digest(written),
            media_type=written.media_type,
            manifest=written.raw,
            source_digest=top.digest,
            instance_digests=instances,
            blobs_copied=self.blobs_copied,
            blobs_reused=self.blobs_reused,
            bytes_copied=self.bytes_copied,
            converted=self.converted,
            layers_recompressed=self.recompressed,
        )
        self.emit(CopyDone(result))
        return result

    def _unchanged(self, top: Manifest) -> CopyResult:
        skipped = self._skipped
        if skipped is None:
            raise CopyError("internal error: a copy wrote nothing but skipped nothing")
        self._record_cache()
        result = CopyResult(
            manifest_digest=skipped.digest,
            media_type=skipped.media_type,
            manifest=skipped.raw,
            source_digest=top.digest,
            instance_digests=self._skipped_instances,
            converted=self.converted,
            unchanged=True,
        )
        self.emit(CopyDone(result))
        return result

    def _already_there(self, manifest: Manifest, signed: bool) -> bool:
        """True (and reported) when the destination holds exactly ``manifest``."""
        if not self.options.skip_identical or signed or self.signer is not None:
            return False
        if not self.dst.has_manifest(manifest.digest):
            return False
        self._skipped = manifest
        self.emit(ImageSkipped(manifest.digest, str(self.dst.reference)))
        return True

    def _copy_single(
        self, manifest: ImageManifest | DockerSchema1Manifest, instance: Digest | None
    ) -> Manifest | None:
        """Copy one image as the top-level manifest; ``instance`` if it comes from an index."""
        plan = self._plan(manifest, self._signatures(instance))
        self._check_preserved(plan.changes)
        if plan.output is not None and self._already_there(plan.output, bool(plan.signatures)):
            self._note_source_blobs([plan])
            return None
        self._copy_blobs([plan])
        output = self._finish(plan)
        self._put_manifest(output, instance=False)
        self.dst.put_signatures(self._with_new_signatures(plan.signatures, output))
        return output

    def _copy_index(self, index: IndexManifest) -> tuple[Manifest, tuple[Digest, ...]] | None:
        positions = self._select_instances(index)
        top_signatures = self._signatures(None)
        plans: list[_Planned] = []
        for pos in positions:
            desc = index.manifests[pos]
            plans.append(
                self._plan(self._instance_manifest(desc.digest), self._signatures(desc.digest))
            )
        # Decide what changes before moving any blob, so that an impossible, signature-breaking
        # or digest-changing copy fails early.
        target, _ = self._index_target(index)
        changes: list[str] = []
        dropped = len(index.manifests) - len(positions)
        if dropped and not self.options.keep_unselected:
            changes.append(
                f"dropping {dropped} of the {len(index.manifests)} entries of the index "
                "(instances not selected)"
            )
        if target != index.media_type:
            changes.append(f"converting the index from {index.media_type} to {target}")
        for plan in plans:
            changes += [f"instance {plan.source_digest}: {c}" for c in plan.changes]
        if changes and top_signatures:
            raise self._signature_change_error(index.media_type)
        self._check_preserved(changes)
        if all(p.output is not None for p in plans):
            predicted = self._index_output(index, positions, plans, report=False)
            signed = bool(top_signatures) or any(p.signatures for p in plans)
            if self._already_there(predicted, signed):
                self._skipped_instances = tuple(p.output.digest for p in plans if p.output)
                self._note_source_blobs(plans)
                return None
        self._copy_blobs(plans)
        for plan in plans:
            output = self._finish(plan)
            self._put_manifest(output, instance=True)
            self.dst.put_signatures(
                self._with_new_signatures(plan.signatures, output), output.digest
            )
        output = self._index_output(index, positions, plans, report=True)
        self._put_manifest(output, instance=False)
        self.dst.put_signatures(self._with_new_signatures(top_signatures, output))
        return output, tuple(p.output.digest for p in plans if p.output is not None)

    def _copy_index_only(self, index: IndexManifest) -> Manifest | None:
        """Write the index alone, none of the images it lists (``--multi-arch index-only``)."""
        signatures = self._signatures(None)
        target, reason = self._index_target(index)
        output: Manifest = index
        if target != index.media_type:
            if signatures:
                raise self._signature_change_error(index.media_type)
            self._check_preserved([f"converting the index from {index.media_type} to {target}"])
            output = convert_manifest(index, target)
            self._note_conversion(index, output, reason)
        if self._already_there(output, bool(signatures)):
            return None
        self._put_manifest(output, instance=False)
        self.dst.put_signatures(self._with_new_signatures(signatures, output))
        return output

    # -- choosing instances ------------------------------------------------------------------
    def _select_system(self, index: IndexManifest) -> Descriptor:
        return select_system(index, self.options, self.src.reference)

    def _select_instances(self, index: IndexManifest) -> list[int]:
        """Positions in the index of the instances to copy, in index order."""
        return select_positions(index, self.options, self.src.reference)

    def _instance_manifest(self, digest: Digest) -> ImageManifest:
        raw, media_type = self.reads.manifest(digest)  # checked against the digest
        manifest = parse_manifest(raw, media_type or None)
        if not isinstance(manifest, ImageManifest):
            raise UnsupportedManifestTypeError(
                f"{self.src.reference}: instance {digest} is a {manifest.media_type}, "
                "not an image manifest (nested indexes are not supported)"
            )
        return manifest

    # -- signatures and preserved digests ----------------------------------------------------
    def _signatures(self, instance: Digest | None) -> Sequence[bytes]:
        if self.options.remove_signatures:
            return []
        signatures = self.reads.signatures(instance)
        if signatures and not self.dst_caps.supports_signatures:
            raise UnsupportedError(
                f"{self.src.reference} is signed and {self.dst.reference} cannot store "
                "signatures; copy with remove_signatures=True to drop them"
            )
        return signatures

    def _with_new_signatures(self, signatures: Sequence[bytes], manifest: Manifest) -> list[bytes]:
        """The signatures to store with ``manifest``: those copied, then the new ones."""
        return signatures_to_store(self.signer, signatures, manifest, self.emit)

    def _signature_change_error(self, media_type: str) -> UnsupportedError:
        return UnsupportedError(
            f"the {media_type} manifest of {self.src.reference} must be modified to be written "
            f"to {self.dst.reference}, which would invalidate its signatures; copy with "
            "remove_signatures=True to drop them"
        )

    def _check_preserved(self, changes: Sequence[str]) -> None:
        if changes and self.options.preserve_digests:
            raise DigestChangeError(
                f"copying {self.src.reference} to {self.dst.reference} would change manifest "
                f"digests, which preserve_digests forbids: {'; '.join(changes)}",
                changes,
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

    def _image_target(self, media_type: str) -> tuple[str, str]:
        fmt = self.options.format
        if fmt == "v2s1":
            if media_type in _SCHEMA1_TYPES:
                return self._target_type(media_type, (media_type,), media_type)
            target = schema1_target(self.dst_caps.manifest_types, self.dst.reference)
            return target, "the format option asks for it"
        if media_type in _SCHEMA1_TYPES and fmt is None:
            # Prefer the format closest to schema 1 when a conversion is needed.
            candidates = (mt.DOCKER_MANIFEST, mt.OCI_MANIFEST, media_type)
            accepted = self.dst_caps.manifest_types
            if accepted is not None and media_type not in accepted:
                for candidate in candidates:
                    if candidate in accepted:
                        return candidate, f"{self.dst.reference} does not accept {media_type}"
            # A destination that lists schema 2 before schema 1 (a registry: most refuse
            # schema 1 pushes) takes schema 1 only when format v2s1 asks for it.
            preferred = prefers_schema2(accepted, media_type)
            if preferred is not None:
                return preferred, f"{self.dst.reference} prefers {preferred} to {media_type}"
            return self._target_type(media_type, candidates, None)
        return self._target_type(
            media_type, mt.IMAGE_MANIFEST_TYPES, _IMAGE_FORMATS[fmt] if fmt else None
        )

    def _index_target(self, index: IndexManifest) -> tuple[str, str]:
        fmt = self.options.format
        if fmt == "v2s1":
            raise UnsupportedConversionError(
                f"{self.src.reference} is an index ({index.media_type}); Docker schema 1 "
                "(format v2s1) has no manifest lists: copy a single image of it "
                "(instances='system')"
            )
        return self._target_type(
            index.media_type, mt.INDEX_TYPES, _INDEX_FORMATS[fmt] if fmt else None
        )

    def _compression_wish(self) -> tuple[LayerCompression, Compression | None]:
        opts = self.options
        fmt = Compression.parse(opts.dest_compress_format) if opts.dest_compress_format else None
        if opts.dest_decompress:
            return LayerCompression.DECOMPRESS, None
        if opts.dest_compress or fmt is not None:
            return LayerCompression.COMPRESS, fmt
        return self.dst_caps.layer_compression, None

    def _layer_plan(self, position: int, layer: Descriptor, target_type: str) -> _LayerPlan:
        plan = _LayerPlan(position, layer)
        source = layer_compression(layer.media_type)
        plan.source_compression = source
        if source is None or layer.urls or layer.media_type.endswith("+encrypted"):
            return plan  # not a layer we know, foreign, or encrypted: never touched
        mode, fmt = self._compression_wish()
        if mode is LayerCompression.COMPRESS:
            if source is Compression.NONE:
                plan.operation, plan.target_compression = "compress", fmt or Compression.GZIP
            elif fmt is not None and fmt is not source:
                plan.operation, plan.target_compression = "recompress", fmt
        elif mode is LayerCompression.DECOMPRESS and source is not Compression.NONE:
            plan.operation, plan.target_compression = "decompress", Compression.NONE
        final = plan.target_compression or source
        if final is Compression.ZSTD and target_type in _DOCKER_IMAGE_TYPES:
            raise UnsupportedConversionError(
                f"layer {position} ({layer.digest}) would be written zstd-compressed, which a "
                f"Docker schema 2 manifest cannot describe; write an OCI manifest (format "
                "'oci') or compress with gzip"
            )
        uses_zstd = Compression.ZSTD in (source, plan.target_compression)
        if plan.operation != "copy" and uses_zstd and not zstd_available():
            raise UnsupportedError(
                f"layer {position} ({layer.digest}) needs zstd, which is not installed "
                "(pip install imagetypes[zstd])"
            )
        return plan

    def _plan(
        self, manifest: ImageManifest | DockerSchema1Manifest, signatures: Sequence[bytes]
    ) -> _Planned:
        if isinstance(manifest, DockerSchema1Manifest):
            return self._plan_schema1(manifest, signatures)
        target, reason = self._image_target(manifest.media_type)
        schema1 = target if target in _SCHEMA1_TYPES else None
        if schema1 is not None:
            target = mt.DOCKER_MANIFEST  # schema 1 is made from the schema 2 form, in _finish
        layers = [self._layer_plan(i, layer, target) for i, layer in enumerate(manifest.layers)]
        plan = _Planned(manifest.digest, manifest, target, reason, layers, signatures)
        plan.schema1 = schema1
        if target != manifest.media_type or schema1 is not None:
            plan.changes.append(
                f"converting the manifest from {manifest.media_type} to {schema1 or target}"
            )
        changing = [lp for lp in layers if lp.operation != "copy"]
        for lp in changing:
            plan.changes.append(_describe_operation(lp))
        if changing:
            self._attach_diff_ids(plan, manifest)
        if plan.changes and signatures:
            raise self._signature_change_error(manifest.media_type)
        # Builds the manifest with the layers' new media types now, so that an impossible
        # conversion fails before any blob moves; exact when no layer changes.
        preview = self._build_output(plan, None)
        assert isinstance(preview, ImageManifest)
        plan.preview = preview
        if schema1 is not None:
            # The config becomes the top history entry; converting fails here, not after the
            # blobs moved, when the image has no schema 1 form.
            if plan.config_data is None:
                plan.config_data = self.src.get_blob_bytes(manifest.config, limit=_MAX_CONFIG_SIZE)
            check_schema1_convertible(preview, plan.config_data)
        elif not changing:
            plan.output = preview
            if target != manifest.media_type:
                self._note_conversion(manifest, preview, reason)
        return plan

    def _attach_diff_ids(self, plan: _Planned, manifest: ImageManifest) -> None:
        """Read the config, so that (de)compressed layers are checked against its diff IDs."""
        config = manifest.config
        if config.media_type not in (mt.OCI_CONFIG, mt.DOCKER_CONFIG):
            return
        data = self.src.get_blob_bytes(config, limit=_MAX_CONFIG_SIZE)
        plan.config_data = data
        try:
            diff_ids = ImageConfig.parse(data).diff_ids
        except ImageError:
            return  # not an image config we can read: nothing to check against
        if len(diff_ids) != len(manifest.layers):
            return
        for lp in plan.layers:
            lp.diff_id = diff_ids[lp.position]
            if lp.operation == "compress" and lp.descriptor.digest != lp.diff_id:
                raise DigestMismatchError(
                    f"{self.src.reference}: uncompressed layer {lp.position} has digest "
                    f"{lp.descriptor.digest}, but the config's diff ID is {lp.diff_id}",
                    expected=lp.diff_id,
                    actual=lp.descriptor.digest,
                )

    def _plan_schema1(
        self, manifest: DockerSchema1Manifest, signatures: Sequence[bytes]
    ) -> _Planned:
        target, reason = self._image_target(manifest.media_type)
        all_layers = schema1_layers(manifest)
        if target in _SCHEMA1_TYPES:
            # Kept as it is: every fsLayers blob is copied, none changed.
            if self._compression_wish()[0] is not self.dst_caps.layer_compression or (
                self.options.dest_compress_format
            ):
                raise UnsupportedError(
                    f"{self.src.reference} is a Docker schema 1 image; changing its layers' "
                    "compression needs converting it (format 'v2s2' or 'oci')"
                )
            unique: dict[Digest, Schema1Layer] = {}
            for layer in all_layers:
                unique.setdefault(layer.digest, layer)
            plans = [_LayerPlan(i, _unknown_size(mt.DOCKER_LAYER, d)) for i, d in enumerate(unique)]
            plan = _Planned(manifest.digest, manifest, target, reason, plans, signatures)
            plan.output = manifest
            # The name and tag it embeds must be the destination's (as containers/image does).
            renamed = renamed_schema1(manifest, self.dst.reference)
            if renamed is not None:
                plan.changes.append(
                    f"setting the name and tag the schema 1 manifest embeds from "
                    f"{manifest.name or '(none)'}:{manifest.tag or '(none)'} to "
                    f"{renamed.name}:{renamed.tag or '(none)'}"
                )
                if signatures:
                    raise self._signature_change_error(manifest.media_type)
                plan.output = renamed
            return plan
        if signatures:
            raise self._signature_change_error(manifest.media_type)
        plans = []
        for layer in (x for x in all_layers if not x.throwaway):
            desc = _unknown_size(mt.DOCKER_LAYER, layer.digest)
            lp = self._layer_plan(len(plans), desc, target)
            lp.source_compression = None  # detected from the content
            lp.compute_diff_id = True
            plans.append(lp)
        plan = _Planned(manifest.digest, manifest, target, reason, plans, signatures)
        plan.changes.append(f"converting the Docker schema 1 manifest to {target}")
        plan.changes += [_describe_operation(lp) for lp in plans if lp.operation != "copy"]
        return plan

    def _note_conversion(self, source: Manifest, output: Manifest, reason: str) -> None:
        self.converted = True
        self.emit(ManifestConverted(source.media_type, output.media_type, reason, source.digest))

    def _build_output(
        self, plan: _Planned, stored: dict[tuple[Digest, str, str], _Stored] | None
    ) -> Manifest:
        """The manifest to write, with the layers as stored (``None``: as the source has them)."""
        source = plan.source
        assert isinstance(source, ImageManifest)
        target = plan.target_type
        new: dict[int, tuple[Compression, Digest, int]] = {}
        for lp in plan.layers:
            if lp.operation == "copy":
                continue
            assert lp.target_compression is not None
            if stored is None:
                new[lp.position] = (lp.target_compression, lp.descriptor.digest, 0)
            else:
                blob = stored[lp.key]
                new[lp.position] = (lp.target_compression, blob.digest, blob.size)
        if not new:
            return source if target == source.media_type else convert_manifest(source, target)
        out: Manifest = source
        # Docker layer types have no zstd variant: convert Docker -> OCI before changing them,
        # and OCI -> Docker after (zstd is refused for Docker output up front).
        if target != source.media_type and isinstance(source, DockerManifest):
            out = convert_manifest(source, target)
        assert isinstance(out, ImageManifest)
        layers = list(out.layers)
        for position, (compression, digest, size) in new.items():
            old = layers[position]
            layers[position] = attrs.evolve(
                old,
                media_type=with_compression(old.media_type, compression),
                digest=digest,
                size=size,
            )
        out = out.replace_descriptors(layers=layers)
        if target != out.media_type:
            out = convert_manifest(out, target)
        return out

    def _finish(self, plan: _Planned) -> Manifest:
        """The manifest to write once the blobs are at the destination."""
        if plan.output is not None:
            return plan.output  # known before the blobs moved (no layer changed)
        source = plan.source
        if isinstance(source, DockerSchema1Manifest):
            output = self._finish_schema1(plan, source)
        else:
            output = self._build_output(plan, self._stored)
            if plan.schema1 is not None:
                output = self._finish_to_schema1(plan, output)
        plan.output = output
        if output.media_type != source.media_type:
            self._note_conversion(source, output, plan.reason or "layers changed")
        return output

    def _finish_schema1(self, plan: _Planned, source: DockerSchema1Manifest) -> Manifest:
        """Build the schema 2 config and manifest of a schema 1 image; store the config."""
        diff_ids: list[Digest] = []
        layers: list[Descriptor] = []
        for lp in plan.layers:
            blob = self._stored[lp.key]
            if blob.diff_id is None:
                raise CopyError(f"internal error: no diff ID computed for {lp.descriptor.digest}")
            diff_ids.append(blob.diff_id)
            layers.append(Descriptor(_schema1_layer_type(plan, lp), blob.digest, blob.size))
        config = schema2_config(source, diff_ids)
        # As containers/image: schema 1 -> schema 2, then (for OCI) the same config bytes under
        # the OCI config media type.
        oci = plan.target_type == mt.OCI_MANIFEST
        config_type = mt.OCI_CONFIG if oci else mt.DOCKER_CONFIG
        config_desc = Descriptor(config_type, Digest.from_bytes(config), len(config))
        self._transfer(_BlobJob(config_desc, config_type, True, None, data=config))
        if oci:
            return OCIManifest.build(config_desc, layers)
        return DockerManifest.build(config_desc, layers)

    def _finish_to_schema1(self, plan: _Planned, image: Manifest) -> Manifest:
        """The schema 1 manifest of the image as stored; store the empty layer it may list."""
        assert isinstance(image, ImageManifest)
        assert plan.schema1 is not None
        assert plan.config_data is not None
        output = to_schema1(image, plan.config_data, self.dst.reference, plan.schema1)
        reused = put_empty_layer(output, self.dst, self.emit)
        if reused is not None:
            self._count(reused=reused, size=0 if reused else len(GZIPPED_EMPTY_LAYER))
        return output

    def _index_output(
        self, index: IndexManifest, positions: list[int], plans: list[_Planned], *, report: bool
    ) -> Manifest:
        """The index to write: the chosen instances, their new digests, the new type."""
        target, reason = self._index_target(index)
        replaced: dict[Digest, Descriptor] = {}
        for plan in plans:
            out = plan.output
            assert out is not None
            if out.digest != plan.source_digest:
                replaced[plan.source_digest] = Descriptor(out.media_type, out.digest, len(out.raw))
        # Re-serialise only when something changes, so an untouched index keeps its digest.
        output: Manifest = index
        if len(positions) != len(index.manifests) and not self.options.keep_unselected:
            output = index.replace_manifests(index.manifests[pos] for pos in positions)
        # convert_manifest points the entries of converted instances at their new manifests
        # (also when the index keeps its type), and returns the index as it is otherwise.
        converted = convert_manifest(output, target, instance_map=replaced)
        if report and target != index.media_type:
            self._note_conversion(index, converted, reason or "its instances were converted")
        return converted

    # -- blobs -------------------------------------------------------------------------------
    def _copy_blobs(self, plans: list[_Planned]) -> None:
        jobs: dict[tuple[Digest, str, str], _BlobJob] = {}
        for plan in plans:
            out = plan.output
            out_types: dict[Digest, str] = {}
            if isinstance(out, ImageManifest):
                out_types = {d.digest: d.media_type for d in (out.config, *out.layers)}
            src = plan.source
            if isinstance(src, ImageManifest) and plan.schema1 is None:  # schema 1 has no config
                config = src.config
                jobs.setdefault(
                    (config.digest, "copy", ""),
                    _BlobJob(
                        config,
                        out_types.get(config.digest, config.media_type),
                        True,
                        None,
                        data=plan.config_data,
                    ),
                )
            for lp in plan.layers:
                desc = lp.descriptor
                if plan.preview is not None:
                    media_type = plan.preview.layers[lp.position].media_type
                elif isinstance(src, DockerSchema1Manifest) and plan.output is None:
                    media_type = _schema1_layer_type(plan, lp)
                else:
                    media_type = out_types.get(desc.digest, desc.media_type)
                jobs.setdefault(lp.key, _BlobJob(desc, media_type, False, lp.position, lp))
        self._run_jobs(list(jobs.values()))

    def _run_jobs(self, jobs: list[_BlobJob]) -> None:
        if self.cache is not None and takes_location_hints(self.dst):
            # One query for all, here, rather than one per blob from the workers, which would
            # queue for the process's one cache connection.
            self._hints = self.cache.locations_of(job.descriptor.digest for job in jobs)
        src_caps = self.src.capabilities
        parallel = src_caps.concurrent_blob_reads and self.dst_caps.concurrent_blob_writes
        workers = min(self.options.concurrency if parallel else 1, len(jobs))
        # Large blobs moving at once overlap each other already: read-ahead threads would
        # only add memory (measured: no faster with four 64 MiB layers).
        self._read_ahead = workers <= 1 or sum(map(_large, jobs)) <= 1
        self._local_source = src_caps.local_reads
        if workers <= 1:
            for job in jobs:
                self._transfer(job)
            return
        futures: list[Future[None]] = []
        failure: BaseException | None = None
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="imagetypes-copy") as pool:
            try:
                futures = [pool.submit(self._transfer, job) for job in jobs]
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
        try:
            if desc.urls and self.dst_caps.accepts_foreign_layers:
                self._count(reused=True)
                self._keep(job, _Stored(desc.digest, desc.size))
                self.emit(BlobSkipped(desc, "foreign"))
                return
            where = (self._dst_location.transport, self._dst_location.scope, desc.digest)
            with _sole_writer(where):
                if self._try_reuse(job):
                    return
                self._copy_blob(job)
        except (ImageError, CopyCancelled):
            raise
        except Exception as e:
            raise CopyError(f"copying blob {desc.digest} failed: {e}") from e

    def _keep(self, job: _BlobJob, stored: _Stored) -> None:
        """Record where a blob ended up (for the manifest and for the cache)."""
        desc = job.descriptor
        lp = job.layer
        key = lp.key if lp is not None else (desc.digest, "copy", "")
        pairs: list[tuple[Digest, Digest, str]] = []
        if lp is not None and stored.diff_id is not None:
            # Schema 1 layers are taken to be gzip-compressed, as containers/image does.
            before = lp.source_compression or (Compression.GZIP if lp.compute_diff_id else None)
            after = lp.target_compression or before
            if after is not None:
                pairs.append((stored.digest, stored.diff_id, after.value))
            if before is not None and stored.digest != desc.digest:
                pairs.append((desc.digest, stored.diff_id, before.value))
        with self._count_lock:
            self._stored[key] = stored
            if not desc.urls:
                self._seen_at_source.add(desc.digest)
                self._seen_at_destination.add(stored.digest)
            self._pairs.update(pairs)

    # -- reuse ---------------------------------------------------------------------------------
    def _hint_locations(self, digest: Digest) -> None:
        """Tell the destination where the cache saw the blob (so a registry can mount it)."""
        if self.cache is None or not takes_location_hints(self.dst):
            return  # no cache, or a destination that would ignore the hints: skip the look-up
        refs: list[ImageReference] = []
        known = self._hints.get(digest)
        for location in known if known is not None else self.cache.locations(digest):
            if location.scope == self._dst_location.scope and (
                location.transport == self._dst_location.transport
            ):
                continue
            try:
                refs.append(parse_reference(location.reference))
            except ImageError:
                continue  # a transport no longer installed, or an old spelling
        if refs:
            self.dst.note_blob_locations(digest, refs)

    def _reuse(self, job: _BlobJob, digest: Digest, size: int | None) -> Descriptor | None:
        self._hint_locations(digest)
        return self.dst.try_reusing_blob(BlobInfo(job.media_type, digest, size))

    def _try_reuse(self, job: _BlobJob) -> bool:
        """Skip the transfer when the destination has the blob (in the form to be written)."""
        desc = job.descriptor
        lp = job.layer
        operation = lp.operation if lp is not None else "copy"
        hit: Descriptor | None = None
        diff_id: Digest | None = None
        if operation == "copy":
            hit = self._reuse(job, desc.digest, _known(desc.size))
            if hit is not None and lp is not None and lp.compute_diff_id:
                diff_id = self.cache.uncompressed_digest(desc.digest) if self.cache else None
                if diff_id is None:
                    # Schema 1 conversion needs the diff ID: read the blob, upload nothing.
                    diff_id = self._hash_uncompressed(job)
        elif lp is not None and operation == "decompress":
            uncompressed = lp.diff_id or (
                self.cache.uncompressed_digest(desc.digest) if self.cache else None
            )
            if uncompressed is not None:
                hit = self._reuse(job, uncompressed, None)
                diff_id = uncompressed
        elif lp is not None and self.cache is not None and lp.target_compression is not None:
            uncompressed = lp.diff_id
            if uncompressed is None and lp.source_compression is Compression.NONE:
                uncompressed = desc.digest
            if uncompressed is None:
                uncompressed = self.cache.uncompressed_digest(desc.digest)
            if uncompressed is not None:
                for candidate in self.cache.compressed_digests(
                    uncompressed, lp.target_compression.value
                ):
                    hit = self._reuse(job, candidate, None)
                    if hit is not None:
                        diff_id = uncompressed
                        break
        if hit is None:
            return False
        stored = _Stored(hit.digest, hit.size if hit.size >= 0 else 0, diff_id)
        self._keep(job, stored)
        self._count(reused=True)
        shown = Descriptor(job.media_type, hit.digest, stored.size)
        self.emit(BlobSkipped(desc, "present", None if hit.digest == desc.digest else shown))
        return True

    def _hash_uncompressed(self, job: _BlobJob) -> Digest:
        with _transform_turn(job.descriptor, self.cancel), self._open(job) as raw:
            tap = UncompressedTap(ProgressReader(raw, job.descriptor, _Emitter(None), self.cancel))
            while tap.read(1024 * 1024):
                pass
        return tap.uncompressed_digest

    # -- transfer ------------------------------------------------------------------------------
    def _open(self, job: _BlobJob, watch: _SourceWatch | None = None) -> VerifyingReader:
        desc = job.descriptor
        if job.data is not None:
            return VerifyingReader(io.BytesIO(job.data), desc.digest, desc.size)
        if watch is None:
            raw: Readable = self.src.get_blob_stream(desc)
        else:
            raw = watch.open(lambda: self.src.get_blob_stream(desc))
        return VerifyingReader(raw, desc.digest, _known(desc.size))

    def _copy_blob(self, job: _BlobJob) -> None:
        desc = job.descriptor
        lp = job.layer
        operation: BlobOperation = lp.operation if lp is not None else "copy"
        self.emit(BlobStarted(desc, operation))
        # One budget per blob. Each try reads the blob from the source again and rebuilds the
        # whole pipeline ((de)compression, hashing): a failed put consumed the stream.
        delays = iter(self._retry_policy().delays())
        tries = 0
        while True:
            watch = _SourceWatch()
            try:
                with _transform_turn(desc, self.cancel) if operation != "copy" else nullcontext():
                    stored, diff_id, size = self._put_once(job, operation, watch)
                break
            except Exception as e:
                if not _worth_another_try(e, watch.error):
                    raise
                delay = next(delays, None)
                if delay is None:
                    raise
                tries += 1
                self._retrying_blob(desc, tries, delay, e)
        self._keep(job, _Stored(stored.digest, stored.size, diff_id))
        self._count(size=size, recompressed=operation != "copy")
        self.emit(BlobDone(desc, size))
        if lp is not None and operation != "copy":
            assert lp.target_compression is not None
            before = lp.source_compression or Compression.GZIP
            self.emit(
                LayerRecompressed(
                    desc,
                    Descriptor(job.media_type, stored.digest, stored.size),
                    operation,
                    before.value,
                    lp.target_compression.value,
                )
            )

    def _put_once(
        self, job: _BlobJob, operation: BlobOperation, watch: _SourceWatch
    ) -> tuple[Descriptor, Digest | None, int]:
        """Read the blob from the source and put it: what was stored, its diff ID, bytes read."""
        desc = job.descriptor
        lp = job.layer
        options = PutBlobOptions(is_config=job.is_config, layer_index=job.layer_index)
        diff_id: Digest | None = None
        with ExitStack() as stack:
            raw = stack.enter_context(self._open(job, watch))
            local = watch.regular_file or self._local_source
            if self._read_ahead and local and _large(job):
                # Hashing a file's blob in a thread of its own while the destination writes
                # it to disk (readinto) paid on 2 cores; feeding an upload (read) did not, so
                # that reads straight through. Network sources are not read ahead: with 2
                # cores the extra thread made pulls and registry-to-registry copies slower.
                # Archive members are local too (SourceCapabilities.local_reads): oci-archive
                # -> oci of a 512 MiB layer 0.79-0.91 -> 0.51 s, 12-27% less CPU.
                # Closed before raw (LIFO): stops and joins the thread, whatever happened.
                ahead = ReadAhead(raw, threaded_reads=False)
                raw = stack.enter_context(ahead)
            stack.enter_context(_blame_corruption(raw))
            reader = ProgressReader(raw, desc, self.emit, self.cancel)
            if lp is None or operation == "copy":
                tap = UncompressedTap(reader) if lp is not None and lp.compute_diff_id else None
                stream: Readable = tap if tap is not None else reader
                info = BlobInfo(job.media_type, desc.digest, _known(desc.size))
                if self.options.link_blobs != "never" and _whole_blob_file(watch.file, desc):
                    # Byte for byte from a local file: a destination of files may clone or
                    # link it (reading the stream all the same, to verify it).
                    options = attrs.evolve(
                        options, source_file=watch.file, link_blobs=self.options.link_blobs
                    )
                stored = self.dst.put_blob(stream, info, options)
                if stored.digest != desc.digest:
                    # A destination changing a blob would need the manifest rewritten to match.
                    raise UnsupportedError(
                        f"{self.dst.reference} stored blob {desc.digest} as {stored.digest}; "
                        "destinations must store blobs as they are given"
                    )
                if tap is not None:
                    diff_id = tap.uncompressed_digest
                elif lp is not None and lp.source_compression is Compression.NONE:
                    diff_id = desc.digest
            else:
                assert lp.target_compression is not None
                uncompressed: Readable = reader
                checked: VerifyingReader | None = None
                if operation != "compress":
                    checked = VerifyingReader(
                        decompressing_reader(reader, lp.source_compression),
                        lp.diff_id,
                        description=f"uncompressed layer {desc.digest}",
                    )
                    uncompressed = checked
                stream = uncompressed
                if operation != "decompress":
                    # The descriptor's size picks zstd's mode (part of the output, so never the
                    # load); release() stops its threads if the put ends early.
                    compressed = compressing_reader(
                        uncompressed,
                        lp.target_compression,
                        self.options.dest_compress_level,
                        size_hint=_known(desc.size),
                    )
                    stack.callback(compressed.release)
                    stream = compressed
                digest = lp.diff_id if operation == "decompress" else None
                try:
                    stored = self.dst.put_blob(stream, BlobInfo(job.media_type, digest), options)
                except DigestMismatchError as e:
                    if checked is None or e.expected != lp.diff_id or lp.diff_id is None:
                        raise
                    raise DigestMismatchError(
                        f"{self.src.reference}: layer {lp.position} ({desc.digest}) decompresses "
                        f"to content with digest {e.actual}, but the image config's diff ID is "
                        f"{lp.diff_id}",
                        expected=lp.diff_id,
                        actual=e.actual,
                    ) from e
                diff_id = checked.digest if checked is not None else desc.digest
        return stored, diff_id, reader.size

    def _retry_policy(self) -> RetryPolicy:
        """How often a blob is put again: the destination's policy (put failures are its)."""
        options = self.options.destination_options
        return options.retry if options is not None else RetryPolicy()

    def _retrying_blob(
        self, desc: Descriptor, attempt: int, delay: float, error: Exception
    ) -> None:
        """Report that a blob is put again (as a destination retry), then wait before it."""
        what = RetryAttempt(f"copying blob {desc.digest}", attempt, delay, str(error))
        options = self.options.destination_options
        hook = options.on_retry if options is not None else None
        if hook is not None:
            # copy_image made this hook report Retrying events too (_reporting_retries).
            hook(what)
        else:
            self.emit(Retrying("destination", what.operation, attempt, delay, what.reason))
        if self.cancel.wait(delay):
            raise CopyCancelled(f"copy of {desc.digest} abandoned")

    def _count(self, *, reused: bool = False, size: int = 0, recompressed: bool = False) -> None:
        with self._count_lock:
            if reused:
                self.blobs_reused += 1
            else:
                self.blobs_copied += 1
                self.bytes_copied += size
            if recompressed:
                self.recompressed += 1

    # -- the cache -----------------------------------------------------------------------------
    def _note_source_blobs(self, plans: list[_Planned]) -> None:
        """Remember the blobs of images not copied (identical at the destination)."""
        for plan in plans:
            src = plan.source
            if isinstance(src, ImageManifest):
                for desc in (src.config, *src.layers):
                    if not desc.urls:
                        self._seen_at_source.add(desc.digest)
                        self._seen_at_destination.add(desc.digest)

    def _record_cache(self) -> None:
        if self.cache is None:
            return
        if not (self._pairs or worth_recording(self.src.reference, self.dst)):
            return  # nothing a later copy could use: leave the cache file closed
        entries: list[tuple[Digest, BlobLocation]] = []
        entries += [(d, self._src_location) for d in sorted(self._seen_at_source)]
        entries += [(d, self._dst_location) for d in sorted(self._seen_at_destination)]
        self.cache.record_locations(entries)
        self.cache.record_uncompressed(sorted(self._pairs, key=str))

    # -- writing -----------------------------------------------------------------------------
    def _put_manifest(self, manifest: Manifest, *, instance: bool) -> None:
        self.dst.put_manifest(
            manifest.raw, manifest.media_type, manifest.digest if instance else None
        )
        self.emit(ManifestWritten(manifest.digest, manifest.media_type, instance))


def _large(job: _BlobJob) -> bool:
    """A blob worth a read-ahead thread (reading and hashing it while the destination writes
    it): not in memory, and large (below :data:`READ_AHEAD_MIN` bytes the overlap saves less
    than the thread costs), or of unknown size (schema 1 layers)."""
    size = job.descriptor.size
    return job.data is None and (size < 0 or size >= READ_AHEAD_MIN)


def _whole_blob_file(file: IO[bytes] | None, desc: Descriptor) -> bool:
    """Whether ``file`` is the blob and nothing else: read from its start, of the blob's size."""
    tell = getattr(file, "tell", None)  # a source's stream may be a file-like wrapper
    if file is None or tell is None or desc.size < 0:
        return False
    try:
        return bool(tell() == 0) and os.fstat(file.fileno()).st_size == desc.size
    except (OSError, ValueError):
        return False


def _is_regular_file(stream: object) -> bool:
    """Whether ``stream`` reads a regular file (has a ``fileno()`` that is one)."""
    fileno = getattr(stream, "fileno", None)
    if fileno is None:
        return False
    try:
        return stat.S_ISREG(os.fstat(fileno()).st_mode)
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        return False


def _schema1_layer_type(plan: _Planned, lp: _LayerPlan) -> str:
    """The media type of a converted schema 1 layer (taken to be gzip unless recompressed)."""
    base = mt.OCI_LAYER if plan.target_type == mt.OCI_MANIFEST else mt.DOCKER_UNCOMPRESSED_LAYER
    return with_compression(base, lp.target_compression or Compression.GZIP)


def _describe_operation(lp: _LayerPlan) -> str:
    what = {
        "compress": "compressing",
        "decompress": "decompressing",
        "recompress": "recompressing",
    }[lp.operation]
    target = lp.target_compression.value if lp.target_compression else ""
    source = lp.source_compression.value if lp.source_compression else "?"
    detail = {
        "compress": f"with {target}",
        "decompress": f"({source})",
        "recompress": f"from {source} to {target}",
    }[lp.operation]
    return f"{what} layer {lp.position} ({lp.descriptor.digest}) {detail}"


@contextmanager
def _blame_corruption(source: VerifyingReader) -> Iterator[None]:
    """Report corrupt compressed data as the digest mismatch it usually is.

    Bytes that fail to decompress are most often bytes that are not what the descriptor
    promised; reading the rest of the (verifying) source stream says so when that is the case.
    """
    try:
        yield
    except CompressionError:
        source.read_to_end()
        raise


class _SourceWatch:
    """Remembers what a source raised while a blob was opened or read from it.

    A failed put is tried again only for failures of the destination: the source's own retry
    policy already covers reading the blob (a registry source resumes a cut download with a
    Range request, one budget per blob), so reading it all again would spend that budget twice.
    """

    def __init__(self) -> None:
        self.error: BaseException | None = None
        #: The source's own stream, when it reads a regular file (see :meth:`_Copier._put_once`).
        self.file: IO[bytes] | None = None

    @property
    def regular_file(self) -> bool:
        return self.file is not None

    def open(self, opener: Callable[[], Readable]) -> Readable:
        try:
            raw = opener()
        except BaseException as e:
            self.error = e
            raise
        self.file = cast("IO[bytes]", raw) if _is_regular_file(raw) else None
        # Offer readinto only where the source has it: readers test for it to fill their
        # buffers without a copy.
        return _WatchedFile(raw, self) if hasattr(raw, "readinto") else _WatchedStream(raw, self)


class _WatchedStream:
    """A source's raw blob stream that tells its :class:`_SourceWatch` what it raised."""

    def __init__(self, raw: Readable, watch: _SourceWatch) -> None:
        self._raw = raw
        self._watch = watch

    def read(self, size: int = -1, /) -> bytes:
        try:
            return self._raw.read(size)
        except BaseException as e:
            self._watch.error = e
            raise

    def close(self) -> None:
        close_stream(self._raw)


class _WatchedFile(_WatchedStream):
    """A watched stream over a source stream that has ``readinto``."""

    def readinto(self, buffer: bytearray | memoryview) -> int | None:
        try:
            n: int | None = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        except BaseException as e:
            self._watch.error = e
            raise
        return n


def _worth_another_try(error: BaseException, source_error: BaseException | None) -> bool:
    """Whether putting a blob again (from a fresh read of the source) may succeed.

    Only errors that say so (:attr:`ImageError.retryable`: a broken connection, a busy
    server, an upload that could not be resumed), and never when the source failed or content
    did not verify, wherever in the chain of causes: a corrupt source must fail, not loop.
    """
    if not (isinstance(error, ImageError) and error.retryable):
        return False
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if cause is source_error or isinstance(cause, VerificationError):
            return False
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return True


def _reporting_retries(
    options: TransportOptions | None, side: str, emit: _Emitter
) -> TransportOptions:
    """``options`` with an ``on_retry`` that also reports retries as :class:`Retrying` events."""
    base = options if options is not None else TransportOptions()
    previous = base.on_retry

    def on_retry(attempt: RetryAttempt) -> None:
        emit(Retrying(side, attempt.operation, attempt.attempt, attempt.delay, attempt.reason))
        if previous is not None:
            previous(attempt)

    return attrs.evolve(base, on_retry=on_retry)


_transform_turns = threading.Condition()
_transforming = 0


@contextmanager
def _transform_turn(desc: Descriptor, cancel: threading.Event) -> Iterator[None]:
    """Hold one of the process's :data:`transform_streams` turns (waiting, unless the copy is
    abandoned meanwhile). A holder never waits for another turn nor for a blob's sole writer
    (taken before), so turns cannot deadlock."""
    global _transforming
    with _transform_turns:
        while _transforming >= max(1, transform_streams):
            if cancel.is_set():
                raise CopyCancelled(f"copy of {desc.digest} abandoned")
            _transform_turns.wait(0.1)
        _transforming += 1
    try:
        yield
    finally:
        with _transform_turns:
            _transforming -= 1
            _transform_turns.notify()
        # A stream's codec buffers come and go in chunks of about 1 MiB, which glibc serves
        # from the arena of the thread at work and keeps there once freed: every worker thread
        # that ever transformed a layer held on to 15-20 MiB. Sixteen 16 MiB layers, six
        # workers: 152 MiB peak, 138 MiB with two turns, 63 MiB with two turns and this, as
        # fast. Giving the memory back costs microseconds.
        trim = _malloc_trim()
        if trim is not None:
            trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], object] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS, Windows)."""
    try:
        import ctypes

        return cast("Callable[[int], object]", ctypes.CDLL(None).malloc_trim)
    except (ImportError, OSError, AttributeError, TypeError):
        return None


_writers_lock = threading.Lock()
_writers: dict[tuple[str, str, Digest], tuple[threading.Lock, int]] = {}


def _start_afresh_after_fork() -> None:
    """In a forked child: the turns and writers' locks held by the parent's threads are not
    this process's (those threads do not exist in it); else the child's copies could wait for
    them forever."""
    global _transform_turns, _transforming, _writers_lock
    _transform_turns = threading.Condition()
    _transforming = 0
    _writers_lock = threading.Lock()
    _writers.clear()


os.register_at_fork(after_in_child=_start_afresh_after_fork)


@contextmanager
def _sole_writer(key: tuple[str, str, Digest]) -> Iterator[None]:
    """Let one copy in this process at a time transfer a blob to one destination repository.

    Concurrent copies that share layers (``sync``, threads calling ``copy_image``) would
    otherwise upload the same blob into the same repository at once; the second now waits and
    then finds the blob there. Keys are dropped when nobody holds or waits for them.
    """
    with _writers_lock:
        lock, users = _writers.get(key, (threading.Lock(), 0))
        _writers[key] = (lock, users + 1)
    try:
        with lock:
            yield
    finally:
        with _writers_lock:
            lock, users = _writers[key]
            if users == 1:
                del _writers[key]
            else:
                _writers[key] = (lock, users - 1)
