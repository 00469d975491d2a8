"""The ``zip:`` transport: an image stored in a zip file (an example imagetypes plugin).

``zip:PATH`` names a zip file laid out like skopeo's ``dir:`` format: ``version``,
``manifest.json``, one entry per blob named by its encoded digest, ``<hex>.manifest.json`` for
each instance of an index, and ``signature-N`` / ``<hex>.signature-N``. Blobs are stored
uncompressed in the zip (layers are compressed already).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from imagetypes import (
    BlobInfo,
    BlobNotFoundError,
    Descriptor,
    DestinationCapabilities,
    Digest,
    ImageDestination,
    ImageError,
    ImageReference,
    ImageSource,
    InvalidReferenceError,
    LayoutError,
    ManifestNotFoundError,
    ManifestTooLargeError,
    PutBlobOptions,
    Readable,
    SourceCapabilities,
    Transport,
    TransportOptions,
    verify_stream,
)
from imagetypes.digest import CHUNK_SIZE
from imagetypes.mediatypes import detect_manifest_media_type

__all__ = [
    "VERSION",
    "ZipImageDestination",
    "ZipImageSource",
    "ZipReference",
    "ZipTransport",
    "transport",
]

__version__ = "0.1.0"

#: The content of the ``version`` entry (that of skopeo's ``dir:`` format).
VERSION = b"Directory Transport Version: 1.1\n"
_VERSION_ENTRY = "version"


def _blob_entry(digest: Digest) -> str:
    return digest.hex if digest.algorithm == "sha256" else f"{digest.algorithm}-{digest.hex}"


def _manifest_entry(instance: Digest | None) -> str:
    return "manifest.json" if instance is None else f"{_blob_entry(instance)}.manifest.json"


def _signature_entry(index: int, instance: Digest | None) -> str:
    name = f"signature-{index + 1}"
    return name if instance is None else f"{_blob_entry(instance)}.{name}"


class ZipTransport(Transport):
    """Images stored in zip files."""

    name = "zip"

    def parse_reference(self, text: str) -> ZipReference:
        """Parse ``PATH`` (the part after ``zip:``)."""
        return ZipReference(text)


class ZipReference(ImageReference):
    """``zip:PATH``: the zip file at ``PATH`` (kept as written)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        text = os.fspath(path)
        if not text or "\x00" in text:
            raise InvalidReferenceError(f"invalid zip: reference {text!r}: expected zip:PATH")
        self._path = text

    @property
    def transport(self) -> ZipTransport:
        return transport

    @property
    def path(self) -> Path:
        return Path(self._path)

    def string_within_transport(self) -> str:
        return self._path

    def open_source(self, options: TransportOptions | None = None) -> ZipImageSource:
        return ZipImageSource(self)

    def open_destination(self, options: TransportOptions | None = None) -> ZipImageDestination:
        return ZipImageDestination(self, options or TransportOptions())

    def delete(self, options: TransportOptions | None = None) -> None:
        """Remove the zip file."""
        _open_image_zip(self).close()  # refuse to delete a file that holds no image
        self.path.unlink()


def _open_image_zip(reference: ZipReference) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(reference.path)
    except FileNotFoundError:
        raise ManifestNotFoundError(f"{reference}: no such file") from None
    except (zipfile.BadZipFile, OSError) as e:
        raise LayoutError(f"{reference}: not a readable zip file: {e}") from e
    try:
        version = archive.read(_VERSION_ENTRY)
    except KeyError:
        archive.close()
        raise LayoutError(f"{reference}: the zip file has no version entry") from None
    if not version.startswith(b"Directory Transport Version: 1."):
        archive.close()
        raise LayoutError(f"{reference}: unsupported version {version[:60]!r}")
    return archive


class ZipImageSource(ImageSource):
    """Reads an image from a zip file."""

    def __init__(self, reference: ZipReference) -> None:
        self._reference = reference
        self._zip = _open_image_zip(reference)
        self._names = set(self._zip.namelist())

    @property
    def reference(self) -> ZipReference:
        return self._reference

    @property
    def capabilities(self) -> SourceCapabilities:
        # One ZipFile is shared by the streams; keep the copy engine to one at a time.
        return SourceCapabilities(concurrent_blob_reads=False)

    def get_manifest(self, instance: Digest | None = None) -> tuple[bytes, str]:
        name = _manifest_entry(instance)
        if name not in self._names:
            what = f"instance {instance}" if instance else "manifest"
            raise ManifestNotFoundError(f"{self._reference}: no {what}")
        if self._zip.getinfo(name).file_size > self.MAX_MANIFEST_SIZE:
            raise ManifestTooLargeError(f"{self._reference}: {name} is too large")
        data = self._zip.read(name)
        return data, detect_manifest_media_type(data)

    def get_blob_stream(self, descriptor: Descriptor, offset: int = 0) -> Readable:
        name = _blob_entry(descriptor.digest)
        if name not in self._names:
            raise BlobNotFoundError(f"{self._reference}: no blob {descriptor.digest}")
        stream: IO[bytes] = self._zip.open(name)
        return stream

    def get_signatures(self, instance: Digest | None = None) -> list[bytes]:
        signatures: list[bytes] = []
        while (name := _signature_entry(len(signatures), instance)) in self._names:
            signatures.append(self._zip.read(name))
        return signatures

    def close(self) -> None:
        self._zip.close()


class ZipImageDestination(ImageDestination):
    """Stages an image in a temporary directory; ``commit()`` writes the zip file atomically."""

    def __init__(self, reference: ZipReference, options: TransportOptions) -> None:
        self._reference = reference
        self._target = Path(os.path.realpath(reference.path))
        self._existing: dict[Digest, int] = {}
        if self._target.exists():
            # Refuse to replace a file that is not one of ours; remember its blobs for reuse.
            with _open_image_zip(reference) as archive:
                for info in archive.infolist():
                    with contextlib.suppress(ImageError):
                        self._existing[Digest.parse(f"sha256:{info.filename}")] = info.file_size
        self._staging = Path(tempfile.mkdtemp(prefix="imagetypes-zip-", dir=options.tmpdir))
        self._lock = threading.Lock()
        self._blobs: dict[Digest, int] = {}
        self._reused: set[Digest] = set()
        self._manifests: dict[str, bytes] = {}
        self._signatures: dict[Digest | None, list[bytes]] = {}
        self._state = "open"

    @property
    def reference(self) -> ZipReference:
        return self._reference

    @property
    def capabilities(self) -> DestinationCapabilities:
        return DestinationCapabilities(supports_signatures=True)

    def _check_open(self) -> None:
        if self._state != "open":
            raise ImageError(f"{self._reference}: the destination is {self._state}")

    def try_reusing_blob(self, info: BlobInfo) -> Descriptor | None:
        self._check_open()
        if info.digest is None:
            return None
        with self._lock:
            size = self._blobs.get(info.digest)
            if size is None and info.digest in self._existing:
                size = self._existing[info.digest]
                self._reused.add(info.digest)
        return None if size is None else Descriptor(info.media_type, info.digest, size)

    def put_blob(
        self, stream: Readable, info: BlobInfo, options: PutBlobOptions | None = None
    ) -> Descriptor:
        self._check_open()
        reader = verify_stream(stream, info.digest, info.size)
        fd, tmp = tempfile.mkstemp(dir=self._staging, prefix=".blob-")
        try:
            with os.fdopen(fd, "wb") as f:
                while chunk := reader.read(CHUNK_SIZE):
                    f.write(chunk)
            digest = reader.digest  # set only once EOF passed verification
            os.replace(tmp, self._staging / _blob_entry(digest))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        with self._lock:
            self._blobs[digest] = reader.size
        return Descriptor(info.media_type, digest, reader.size)

    def put_manifest(
        self, manifest: bytes, media_type: str, instance: Digest | None = None
    ) -> None:
        self._check_open()
        if instance is not None:
            # Readers verify instance manifests: refuse one that could never be read back.
            instance.verify(bytes(manifest))
        with self._lock:
            self._manifests[_manifest_entry(instance)] = bytes(manifest)

    def put_signatures(self, signatures: Sequence[bytes], instance: Digest | None = None) -> None:
        self._check_open()
        with self._lock:
            self._signatures[instance] = [bytes(s) for s in signatures]

    def commit(self) -> None:
        self._check_open()
        if "manifest.json" not in self._manifests:
            raise LayoutError(f"{self._reference}: commit() before the manifest was written")
        parent = self._target.parent
        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=parent, prefix=f".{self._target.name}.", suffix=".tmp")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as archive:
                    archive.writestr(_VERSION_ENTRY, VERSION)
                    self._write_reused(archive)
                    for digest in sorted(self._blobs):
                        name = _blob_entry(digest)
                        archive.write(self._staging / name, name)
                    for name, data in sorted(self._manifests.items()):
                        archive.writestr(name, data)
                    for instance, signatures in self._signatures.items():
                        for i, signature in enumerate(signatures):
                            archive.writestr(_signature_entry(i, instance), signature)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self._target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._state = "committed"
        self._cleanup()

    def _write_reused(self, archive: zipfile.ZipFile) -> None:
        reused = sorted(self._reused - set(self._blobs))
        if not reused:
            return
        with _open_image_zip(self._reference) as old:
            for digest in reused:
                name = _blob_entry(digest)
                try:
                    src = old.open(name)
                except KeyError:
                    raise LayoutError(
                        f"{self._reference}: blob {digest} vanished from the zip file"
                    ) from None
                with src, archive.open(name, "w", force_zip64=True) as dst:
                    shutil.copyfileobj(src, dst, CHUNK_SIZE)

    def _cleanup(self) -> None:
        shutil.rmtree(self._staging, ignore_errors=True)

    def close(self) -> None:
        """Discard everything staged unless committed; the zip file stays as it was."""
        if self._state == "open":
            self._state = "closed"
        self._cleanup()


#: The transport instance registered under the ``imagetypes.transports`` entry point ``zip``.
transport = ZipTransport()
