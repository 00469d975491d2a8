"""Writing an image into an OCI layout, invisibly until ``commit()``.

Blobs and manifests are first written to a staging directory:

- when the layout directory does not exist yet, a sibling ``.<name>.imagetypes-XXXX`` that
  becomes a complete layout and is renamed into place at commit;
- when it exists, a hidden ``.imagetypes-staging-XXXX`` inside it, whose blobs are renamed
  into ``blobs/<alg>/`` at commit, before index.json is rewritten under the layout's lock.

Closing without commit removes the staging directory (and any parent directory it needed),
so the file system is left as it was.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from imagetypes import mediatypes as mt
from imagetypes.blobfiles import store_blob
from imagetypes.descriptor import BlobInfo, Descriptor
from imagetypes.digest import Digest, Readable, VerifyingReader, verify_stream
from imagetypes.errors import (
    BlobNotFoundError,
    ImageError,
    LayoutError,
)
from imagetypes.types import (
    DestinationCapabilities,
    ImageDestination,
    LayerCompression,
    PutBlobOptions,
    TransportOptions,
)

from ._layout import (
    BLOBS_DIR,
    DIR_MODE,
    FILE_MODE,
    INDEX_FILE,
    LAYOUT_FILE,
    LAYOUT_FILE_CONTENT,
    REF_NAME_ANNOTATION,
    add_entry,
    check_manifest_to_store,
    create_unique_file,
    dumps,
    entry_ref_name,
    fsync_dir,
    is_exists_error,
    make_dirs,
    new_index,
    write_file_atomic,
)

if TYPE_CHECKING:
    from ._reference import OCIReference

__all__ = ["ACCEPT_UNCOMPRESSED_LAYERS", "OCIImageDestination"]

#: ``TransportOptions.extra`` key: keep uncompressed layers as they are (skopeo's
#: ``--dest-oci-accept-uncompressed-layers``); by default layers are compressed, as skopeo does.
ACCEPT_UNCOMPRESSED_LAYERS = "oci.accept_uncompressed_layers"

_STAGING_PREFIX = ".imagetypes-staging-"


class OCIImageDestination(ImageDestination):
    """Writes one image (or index with its instances) into an OCI layout."""

    def __init__(self, reference: OCIReference, options: TransportOptions) -> None:
        self._reference = reference
        self._layout = reference.layout
        self._path = reference.path
        self._accept_uncompressed = bool(options.extra.get(ACCEPT_UNCOMPRESSED_LAYERS, False))
        self._lock = threading.Lock()
        self._staging: Path | None = None
        self._created_dirs: list[Path] = []
        self._staged: dict[Digest, int] = {}
        self._reused: dict[Digest, int] = {}
        self._top: Descriptor | None = None
        self._finished = False
        if os.path.lexists(self._path):
            if not self._path.is_dir():
                raise LayoutError(f"{self._path} exists and is not a directory")
            self._in_place = True
            # Fail now rather than at commit on a layout we could not update.
            self._layout.check_layout_file(required=False)
            if os.path.lexists(self._layout.index_path):
                self._layout.read_index_json()
        else:
            self._in_place = False

    @property
    def reference(self) -> OCIReference:
        return self._reference

    @property
    def capabilities(self) -> DestinationCapabilities:
        return DestinationCapabilities(
            # As containers/image: only OCI types; the copy engine converts Docker ones.
            manifest_types=(mt.OCI_MANIFEST, mt.OCI_INDEX),
            concurrent_blob_writes=True,
            layer_compression=(
                LayerCompression.PRESERVE
                if self._accept_uncompressed
                else LayerCompression.COMPRESS
            ),
            supports_signatures=False,
            accepts_foreign_layers=True,
        )

    # -- staging ---------------------------------------------------------------------------
    def _ensure_staging(self) -> Path:
        with self._lock:
            if self._finished:
                raise ImageError(f"the destination {self._reference} is already closed")
            if self._staging is None:
                if self._in_place:
                    parent, prefix = self._path, _STAGING_PREFIX
                else:
                    parent, prefix = self._path.parent, f".{self._path.name}.imagetypes-"
                    self._created_dirs = make_dirs(parent)
                staging = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
                # mkdtemp makes 0700; in the new-layout case this becomes the layout itself.
                os.chmod(staging, DIR_MODE)
                self._staging = staging
            return self._staging

    def _store(
        self, reader: VerifyingReader, options: PutBlobOptions | None = None
    ) -> tuple[Digest, int]:
        """Stream ``reader`` into the staging area; keep the file only once EOF verified it.

        A blob whose source file ``options`` name is cloned or hard-linked where allowed and
        possible (:func:`imagetypes.blobfiles.store_blob`), still read to its end to verify it.
        """
        staging = self._ensure_staging()
        fd, tmp = create_unique_file(staging, "tmp-")
        try:
            try:
                if store_blob(reader, fd, tmp, options, sync=False) != "hardlink":
                    os.fchmod(fd, FILE_MODE)  # a hard link keeps the source's inode as it is
                    os.fsync(fd)
            finally:
                os.close(fd)
            digest = reader.digest
            target_dir = staging / BLOBS_DIR / digest.algorithm
            target_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            os.replace(tmp, target_dir / digest.hex)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        with self._lock:
            self._staged[digest] = reader.size
        return digest, reader.size

    # -- the API ---------------------------------------------------------------------------
    def try_reusing_blob(self, info: BlobInfo) -> Descriptor | None:
        if info.digest is None:
            return None
        wanted = info.size if info.size is not None and info.size >= 0 else None
        with self._lock:
            size = self._staged.get(info.digest)
        if size is None and self._in_place:
            size = self._layout.blob_size(info.digest)
            if size is not None and (wanted is None or wanted == size):
                with self._lock:
                    self._reused[info.digest] = size
        if size is None or (wanted is not None and wanted != size):
            return None
        return Descriptor(info.media_type, info.digest, size, annotations=info.annotations)

    def has_manifest(self, digest: Digest) -> bool:
        """Whether the layout already lists ``digest`` under this reference's name."""
        name = self._reference.ref_name
        if name is None or not self._in_place or not os.path.lexists(self._layout.index_path):
            return False
        listed = any(
            entry.digest == digest and entry_ref_name(entry) == name
            for entry in self._layout.entries()
        )
        return listed and self._layout.blob_size(digest) is not None

    def put_blob(
        self, stream: Readable, info: BlobInfo, options: PutBlobOptions | None = None
    ) -> Descriptor:
        size = info.size if info.size is not None and info.size >= 0 else None
        digest, written = self._store(verify_stream(stream, info.digest, size), options)
        return Descriptor(info.media_type, digest, written, annotations=info.annotations)

    def put_manifest(
        self, manifest: bytes, media_type: str, instance: Digest | None = None
    ) -> None:
        kind, expected = check_manifest_to_store(manifest, media_type, instance, self._reference)
        self._store(VerifyingReader(io.BytesIO(manifest), expected, len(manifest)))
        if instance is None:
            name = self._reference.ref_name
            annotations = {REF_NAME_ANNOTATION: name} if name is not None else {}
            with self._lock:
                self._top = Descriptor(kind, expected, len(manifest), annotations=annotations)

    def commit(self) -> None:
        with self._lock:
            if self._finished:
                raise ImageError(f"the destination {self._reference} is already closed")
            top, staging = self._top, self._staging
        if top is None or staging is None:
            raise ImageError("commit() needs the top-level manifest: call put_manifest() first")
        if self._in_place or not self._commit_new_layout(staging, top):
            self._commit_into_layout(staging, top)
            shutil.rmtree(staging)
        with self._lock:
            self._staging = None
            self._finished = True

    def close(self) -> None:
        with self._lock:
            if self._finished:
                return
            self._finished = True
            staging, self._staging = self._staging, None
        if staging is not None:
            shutil.rmtree(staging)
        for directory in reversed(self._created_dirs):
            try:
                os.rmdir(directory)
            except OSError as e:
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    break  # someone else put something there meanwhile: it is theirs now
                raise

    # -- commit ----------------------------------------------------------------------------
    def _commit_new_layout(self, staging: Path, top: Descriptor) -> bool:
        """Complete the staging directory as a layout and rename it into place.

        Returns False, leaving the blobs staged, when the layout appeared meanwhile.
        """
        index = new_index()
        add_entry(index, top)
        blobs = staging / BLOBS_DIR
        for algorithm_dir in blobs.iterdir():
            fsync_dir(algorithm_dir)
        fsync_dir(blobs)
        write_file_atomic(staging, LAYOUT_FILE, LAYOUT_FILE_CONTENT)
        write_file_atomic(staging, INDEX_FILE, dumps(index))
        try:
            os.rename(staging, self._path)
        except OSError as e:
            if not is_exists_error(e):
                raise
            # Someone created the layout since we were opened: merge into it instead.
            os.unlink(staging / INDEX_FILE)
            os.unlink(staging / LAYOUT_FILE)
            return False
        fsync_dir(self._path.parent)
        return True

    def _commit_into_layout(self, staging: Path, top: Descriptor) -> None:
        """Move the staged blobs into the layout and record the image, under its lock."""
        if not self._path.is_dir():
            raise LayoutError(f"{self._path} is no longer a directory")
        layout = self._layout
        with self._lock:
            staged = dict(self._staged)
            reused = dict(self._reused)
        with layout.lock():
            layout.check_layout_file(required=False)
            exists = os.path.lexists(layout.index_path)
            index = layout.read_index_json() if exists else new_index()
            for digest in reused:
                if digest not in staged and layout.blob_size(digest) is None:
                    raise BlobNotFoundError(
                        f"blob {digest} was removed from {self._path} while the image was written"
                    )
            blobs_dir = self._path / BLOBS_DIR
            new_blobs_dir = not blobs_dir.is_dir()
            touched: set[Path] = set()
            for digest, size in staged.items():
                if layout.blob_size(digest) == size:
                    continue  # already there (same digest, same size): keep the stored file
                target = layout.blob_path(digest)
                if not target.parent.is_dir():
                    target.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
                    touched.add(blobs_dir)
                os.replace(staging / BLOBS_DIR / digest.algorithm / digest.hex, target)
                touched.add(target.parent)
            for directory in touched:
                fsync_dir(directory)
            if new_blobs_dir:
                fsync_dir(self._path)
            layout.write_layout_file_if_missing()
            add_entry(index, top)
            layout.write_index_json(index)
