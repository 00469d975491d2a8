"""Writing an image as a new OCI layout archive, streaming.

Blobs go into the tar stream as they arrive (``blobs/<alg>/<hex>``); ``index.json`` and
``oci-layout`` are written last, at commit. The archive is written to a temporary file beside
the target and renamed into place at commit (closing without commit leaves no file), or
streamed to standard output with ``-``. A blob whose digest is unknown until it was read gets
its header rewritten in place (or, on a pipe, is spooled to a temporary file first).
"""

from __future__ import annotations

import threading
from io import BytesIO
from typing import TYPE_CHECKING

from imagetypes import mediatypes as mt
from imagetypes.descriptor import BlobInfo, Descriptor
from imagetypes.digest import Digest, Readable, VerifyingReader, verify_stream
from imagetypes.errors import (
    ImageError,
)
from imagetypes.types import (
    DestinationCapabilities,
    ImageDestination,
    LayerCompression,
    PutBlobOptions,
    TransportOptions,
)

from ..docker_archive._tar import TarStreamWriter
from ..oci._layout import (
    BLOBS_DIR,
    INDEX_FILE,
    LAYOUT_FILE,
    LAYOUT_FILE_CONTENT,
    REF_NAME_ANNOTATION,
    add_entry,
    check_manifest_to_store,
    dumps,
    new_index,
)
from ._source import blob_member

if TYPE_CHECKING:
    from ._reference import OCIArchiveReference

__all__ = ["ACCEPT_UNCOMPRESSED_LAYERS", "OCIArchiveDestination"]

#: ``TransportOptions.extra`` key: keep uncompressed layers as they are (skopeo's
#: ``--dest-oci-accept-uncompressed-layers``); by default layers are compressed, as skopeo does.
ACCEPT_UNCOMPRESSED_LAYERS = "oci-archive.accept_uncompressed_layers"


class OCIArchiveDestination(ImageDestination):
    """Writes one image (or an index with its images) as a new OCI layout archive."""

    def __init__(self, reference: OCIArchiveReference, options: TransportOptions) -> None:
        self._reference = reference
        extra = options.extra
        self._accept_uncompressed = bool(
            extra.get(ACCEPT_UNCOMPRESSED_LAYERS, extra.get("oci.accept_uncompressed_layers"))
        )
        # Blob files as skopeo's oci-archive has them (0644), not read-only as in docker-archive.
        self._tar = TarStreamWriter(
            reference.path, where=str(reference), tmpdir=options.tmpdir, file_mode=0o644
        )
        self._lock = threading.Lock()
        self._blobs: dict[Digest, int] = {}
        self._dirs: set[str] = set()
        self._top: Descriptor | None = None
        self._state = "open"

    @property
    def reference(self) -> OCIArchiveReference:
        return self._reference

    @property
    def capabilities(self) -> DestinationCapabilities:
        return DestinationCapabilities(
            manifest_types=(mt.OCI_MANIFEST, mt.OCI_INDEX),
            concurrent_blob_writes=False,
            layer_compression=(
                LayerCompression.PRESERVE
                if self._accept_uncompressed
                else LayerCompression.COMPRESS
            ),
            supports_signatures=False,
            accepts_foreign_layers=True,
        )

    def _check_open(self) -> None:
        if self._state != "open":
            raise ImageError(f"{self._reference}: the destination is already {self._state}")

    def _ensure_dirs(self, algorithm: str) -> None:
        for name in (BLOBS_DIR, f"{BLOBS_DIR}/{algorithm}"):
            if name not in self._dirs:
                self._tar.add_dir(name)
                self._dirs.add(name)

    def try_reusing_blob(self, info: BlobInfo) -> Descriptor | None:
        """A blob already written in this session is reused."""
        self._check_open()
        if info.digest is None:
            return None
        with self._lock:
            size = self._blobs.get(info.digest)
        if size is None or (info.size is not None and info.size >= 0 and info.size != size):
            return None
        return Descriptor(info.media_type, info.digest, size, annotations=info.annotations)

    def _store(self, reader: VerifyingReader, size: int | None) -> tuple[Digest, int]:
        with self._lock:
            self._check_open()
            expected = reader.expected_digest
            if expected is not None and expected in self._blobs:
                reader.read_to_end()  # already written: read (and verify) but store once
                return reader.digest, reader.size
            algorithm = expected.algorithm if expected is not None else "sha256"
            self._ensure_dirs(algorithm)
            if expected is not None and size is not None:
                self._tar.add_stream(blob_member(expected), reader, size)
            else:
                self._tar.add_unsized(
                    reader,
                    lambda: blob_member(reader.digest),
                    lambda _: reader.digest in self._blobs,
                )
            self._blobs[reader.digest] = reader.size
            return reader.digest, reader.size

    def put_blob(
        self, stream: Readable, info: BlobInfo, options: PutBlobOptions | None = None
    ) -> Descriptor:
        size = info.size if info.size is not None and info.size >= 0 else None
        digest, written = self._store(verify_stream(stream, info.digest, size), size)
        return Descriptor(info.media_type, digest, written, annotations=info.annotations)

    def put_manifest(
        self, manifest: bytes, media_type: str, instance: Digest | None = None
    ) -> None:
        """Store an OCI manifest or index as a blob; the top one becomes the index.json entry."""
        kind, expected = check_manifest_to_store(manifest, media_type, instance, self._reference)
        self._store(VerifyingReader(BytesIO(manifest), expected, len(manifest)), len(manifest))
        if instance is None:
            name = self._reference.ref_name
            annotations = {REF_NAME_ANNOTATION: name} if name is not None else {}
            self._top = Descriptor(kind, expected, len(manifest), annotations=annotations)

    def commit(self) -> None:
        """Write index.json and oci-layout and finish the archive."""
        self._check_open()
        if self._top is None:
            raise ImageError(f"{self._reference}: commit() before the manifest was written")
        index = new_index()
        add_entry(index, self._top)
        self._tar.add_bytes(LAYOUT_FILE, LAYOUT_FILE_CONTENT)
        self._tar.add_bytes(INDEX_FILE, dumps(index))
        self._tar.commit()
        self._state = "committed"

    def close(self) -> None:
        """Without a commit, discard the archive (no file is left at the path)."""
        if self._state == "open":
            self._tar.abort()
        self._state = "closed"
