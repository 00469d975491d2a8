"""Writing an image to a ``dir:`` directory, atomically.

containers/image writes straight into the target directory after emptying it, so an aborted
copy leaves a half-written (or empty) directory. Here everything is written to a staging
directory beside the target (``.<name>.imagetypes-XXXX``); ``commit()`` swaps it in with two
renames, and closing without a commit deletes it, leaving the target exactly as it was.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import secrets
import shutil
import stat
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagetypes.blobfiles import store_blob
from imagetypes.descriptor import BlobInfo, Descriptor
from imagetypes.digest import Digest, Readable, verify_stream
from imagetypes.errors import (
    DigestMismatchError,
    ImageError,
    LayoutError,
    ManifestTooLargeError,
    UnsupportedError,
)
from imagetypes.types import (
    DestinationCapabilities,
    ImageDestination,
    ImageSource,
    LayerCompression,
    PutBlobOptions,
    TransportOptions,
)

from ._layout import (
    VERSION,
    VERSION_FILE,
    NotAnImageDirectoryError,
    blob_name,
    check_version,
    create_temp_file,
    manifest_name,
    signature_name,
)

if TYPE_CHECKING:
    from ._reference import DirReference

__all__ = ["DirImageDestination"]

log = logging.getLogger(__name__)

_OPEN, _COMMITTED, _CLOSED = "open", "committed", "closed"


def _layer_compression(reference: DirReference, options: TransportOptions) -> LayerCompression:
    compress = bool(options.extra.get("dir.compress"))
    decompress = bool(options.extra.get("dir.decompress"))
    if compress and decompress:
        raise UnsupportedError(f"{reference}: cannot both compress and decompress layers")
    if compress:
        return LayerCompression.COMPRESS
    if decompress:
        return LayerCompression.DECOMPRESS
    return LayerCompression.PRESERVE


def _make_unique_dir(parent: Path, prefix: str) -> Path:
    for _ in range(100):
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            # 0777 minus the umask, as a directory created by `mkdir` (or containers/image).
            path.mkdir(0o777)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"could not create a unique directory in {parent}")


def _unused_name(parent: Path, prefix: str) -> Path:
    while True:
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        if not os.path.lexists(path):
            return path


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DirImageDestination(ImageDestination):
    """Writes one image (or an index with its instances) to a ``dir:`` directory."""

    def __init__(self, reference: DirReference, options: TransportOptions) -> None:
        self._reference = reference
        self._compression = _layer_compression(reference, options)
        # Work on the real directory so that a symlink to it stays a symlink after the swap.
        target = Path(os.path.realpath(reference.path))
        if target.parent == target:
            raise LayoutError(f"{reference}: cannot write an image over the filesystem root")
        self._target = target
        self._check_target()
        self._created_parents = self._make_parents(target.parent)
        try:
            self._staging = _make_unique_dir(target.parent, f".{target.name}.imagetypes-")
            self._write_file(VERSION_FILE, VERSION)
        except BaseException:
            if hasattr(self, "_staging"):
                shutil.rmtree(self._staging, ignore_errors=True)
            self._remove_created_parents()
            raise
        self._lock = threading.Lock()
        self._blobs: dict[Digest, int] = {}
        self._has_manifest = False
        self._state = _OPEN

    # -- properties ------------------------------------------------------------------------
    @property
    def reference(self) -> DirReference:
        return self._reference

    @property
    def capabilities(self) -> DestinationCapabilities:
        return DestinationCapabilities(
            manifest_types=None,
            concurrent_blob_writes=True,
            layer_compression=self._compression,
            supports_signatures=True,
        )

    # -- writing ---------------------------------------------------------------------------
    def has_manifest(self, digest: Digest) -> bool:
        """Whether the directory already holds an image whose manifest is ``digest``."""
        try:
            data = (self._target / manifest_name(None)).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return False
        return Digest.from_bytes(data, digest.algorithm) == digest

    def try_reusing_blob(self, info: BlobInfo) -> Descriptor | None:
        """The blob's descriptor if it was already put in this session; else ``None``."""
        self._check_open()
        if info.digest is None:
            return None
        with self._lock:
            size = self._blobs.get(info.digest)
        if size is None:
            return None
        return Descriptor(info.media_type, info.digest, size)

    def put_blob(
        self, stream: Readable, info: BlobInfo, options: PutBlobOptions | None = None
    ) -> Descriptor:
        """Stream a blob into the staging directory, verifying it against ``info``.

        The blob gets its final name only after the whole stream was read and verified; on a
        mismatch (or any error) the partial file is removed. A blob whose source file
        ``options`` name is cloned or hard-linked where allowed and possible
        (:func:`imagetypes.blobfiles.store_blob`), and still read to its end to verify it.
        """
        self._check_open()
        reader = verify_stream(stream, info.digest, info.size)
        fd, tmp = create_temp_file(self._staging, ".blob-")
        try:
            try:
                store_blob(reader, fd, tmp, options)
            finally:
                os.close(fd)
            digest = reader.digest
            os.replace(tmp, self._staging / blob_name(digest))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        with self._lock:
            self._blobs[digest] = reader.size
        return Descriptor(info.media_type, digest, reader.size)

    def put_manifest(
        self, manifest: bytes, media_type: str, instance: Digest | None = None
    ) -> None:
        """Store the top-level manifest, or an instance's (which must have that digest).

        The media type is not stored; readers tell it from the bytes, as containers/image does.
        """
        self._check_open()
        if len(manifest) > ImageSource.MAX_MANIFEST_SIZE:
            raise ManifestTooLargeError(
                f"{self._reference}: manifest of {len(manifest)} bytes is over the "
                f"{ImageSource.MAX_MANIFEST_SIZE} byte limit"
            )
        if instance is not None:
            actual = Digest.from_bytes(manifest, instance.algorithm)
            if actual != instance:
                # A reader verifies instance manifests, so this image would be unreadable.
                raise DigestMismatchError(
                    f"{self._reference}: manifest for instance {instance} has digest {actual}",
                    expected=instance,
                    actual=actual,
                )
        self._write_file(manifest_name(instance), bytes(manifest))
        if instance is None:
            self._has_manifest = True

    def put_signatures(self, signatures: Sequence[bytes], instance: Digest | None = None) -> None:
        """Store signatures as ``signature-N`` (``<hex>.signature-N``), replacing earlier ones."""
        self._check_open()
        index = 0
        while True:
            old = self._staging / signature_name(index, instance)
            if not old.exists():
                break
            old.unlink()
            index += 1
        for index, signature in enumerate(signatures):
            self._write_file(signature_name(index, instance), bytes(signature))

    def commit(self) -> None:
        """Replace the target directory with the staged image in one swap."""
        self._check_open()
        if not self._has_manifest:
            raise LayoutError(f"{self._reference}: commit() before the manifest was written")
        _fsync_dir(self._staging)
        target, parent = self._target, self._target.parent
        # Check again: the directory may have been filled with something else since open.
        exists = self._check_target()
        aside: Path | None = None
        if exists:
            os.chmod(self._staging, stat.S_IMODE(os.stat(target).st_mode))
            if _exchange(self._staging, target):
                # One atomic step: the target now holds the new image, staging the old one.
                self._state = _COMMITTED
                _fsync_dir(parent)
                self._remove_previous(self._staging)
                return
            aside = _unused_name(parent, f".{target.name}.imagetypes-old-")
            os.rename(target, aside)
        try:
            os.rename(self._staging, target)
        except BaseException:
            if aside is not None:
                try:
                    os.rename(aside, target)
                except OSError as e:
                    raise LayoutError(
                        f"{self._reference}: commit failed and the previous content could not "
                        f"be put back; it is kept in {aside}"
                    ) from e
            raise
        self._state = _COMMITTED
        _fsync_dir(parent)
        if aside is not None:
            self._remove_previous(aside)

    def _remove_previous(self, path: Path) -> None:
        try:
            shutil.rmtree(path)
        except OSError as e:
            # The new image is in place; failing the commit now would misreport it.
            log.warning("%s: could not remove the previous content %s: %s", self._target, path, e)

    def close(self) -> None:
        """Discard everything staged unless committed; leaves the target as it was."""
        if getattr(self, "_state", _CLOSED) != _OPEN:
            self._state = _CLOSED
            return
        self._state = _CLOSED
        with contextlib.suppress(FileNotFoundError):  # removed by someone else: nothing to undo
            shutil.rmtree(self._staging)
        self._remove_created_parents()

    # -- helpers ---------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._state != _OPEN:
            raise ImageError(f"{self._reference}: the destination is already {self._state}")

    def _check_target(self) -> bool:
        """Whether the target exists; raise if it is something we must not overwrite."""
        target = self._target
        try:
            st = os.stat(target)
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(st.st_mode):
            raise NotAnImageDirectoryError(f"{self._reference}: {target} is not a directory")
        with os.scandir(target) as entries:
            empty = next(entries, None) is None
        if not empty and not check_version(target):
            raise NotAnImageDirectoryError(
                f"{self._reference}: {target} is not empty and has no version file, so it is "
                "not a dir: image; refusing to overwrite it"
            )
        return True

    def _make_parents(self, parent: Path) -> list[Path]:
        missing: list[Path] = []
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        created: list[Path] = []
        try:
            for path in reversed(missing):
                path.mkdir(0o777)
                created.append(path)
        except BaseException:
            self._created_parents = created
            self._remove_created_parents()
            raise
        return created

    def _remove_created_parents(self) -> None:
        for path in reversed(self._created_parents):
            try:
                path.rmdir()
            except OSError:
                # Someone else put something there meanwhile; it is theirs now.
                break
        self._created_parents = []

    def _write_file(self, name: str, data: bytes) -> None:
        fd, tmp = create_temp_file(self._staging, ".file-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._staging / name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_renameat2: Any = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories atomically (Linux ``renameat2(RENAME_EXCHANGE)``).

    False where the system cannot (another OS, an old kernel, a file system without it); the
    caller then falls back to two renames, which a crash between them can interrupt.
    """
    global _renameat2
    if sys.platform != "linux":
        return False
    if _renameat2 is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            func = libc.renameat2
        except (OSError, AttributeError):
            _renameat2 = False
            return False
        func.argtypes = [
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_uint,
        ]
        func.restype = ctypes.c_int
        _renameat2 = func
    if _renameat2 is False:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))
