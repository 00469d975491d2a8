"""The OCI image layout on disk: ``oci-layout``, ``index.json`` and ``blobs/<alg>/<hex>``.

:class:`OCILayout` reads a layout and performs the few changes that must be made under the
layout's lock (updating ``index.json``, deleting an image). The lock is an exclusive
``flock`` on a descriptor of the layout directory itself, so no lock file is ever left behind
and every imagetypes process writing to the same layout is serialised at commit time.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import secrets
import stat
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagetypes import mediatypes as mt
from imagetypes.blobfiles import read_bounded
from imagetypes.descriptor import Descriptor
from imagetypes.digest import Digest
from imagetypes.errors import (
    DigestMismatchError,
    ImageError,
    InvalidReferenceError,
    LayoutError,
    ManifestError,
    ManifestNotFoundError,
    ManifestTooLargeError,
    UnsupportedManifestTypeError,
)

if TYPE_CHECKING:
    from ._reference import OCIReference

__all__ = [
    "BLOBS_DIR",
    "INDEX_FILE",
    "LAYOUT_FILE",
    "LAYOUT_FILE_CONTENT",
    "REF_NAME_ANNOTATION",
    "OCILayout",
    "check_manifest_to_store",
    "validate_ref_name",
]

#: The annotation holding an index.json entry's name (the ``REF`` of ``oci:PATH:REF``).
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
BLOBS_DIR = "blobs"
#: What we write into ``oci-layout`` for a new layout.
LAYOUT_FILE_CONTENT = b'{"imageLayoutVersion":"1.0.0"}'

#: Bound on index.json: it lists every image of a layout, so it may exceed a manifest's bound.
MAX_INDEX_SIZE = 64 * 1024 * 1024
_MAX_LAYOUT_FILE_SIZE = 64 * 1024
#: Bound on a manifest read while walking a layout (same as ImageSource.MAX_MANIFEST_SIZE).
_MAX_MANIFEST_SIZE = 4 * 1024 * 1024

# The grammar of org.opencontainers.image.ref.name (image-spec annotations.md), which is also
# what containers/image accepts as the REF of oci:PATH:REF.
_ALNUM = r"[A-Za-z0-9]+"
_SEPARATOR = r"(?:[-._:@+]|--)"
_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_REF_NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")

#: Mode of blob, index.json and oci-layout files, as skopeo and umoci write them.
FILE_MODE = 0o644
#: Mode of the layout's directories.
DIR_MODE = 0o755


def validate_ref_name(name: str) -> None:
    """Raise :class:`InvalidReferenceError` unless ``name`` is a valid image ref name."""
    if not _REF_NAME_RE.fullmatch(name):
        raise InvalidReferenceError(
            f"invalid OCI image name {name!r}: expected components of letters and digits "
            "joined by '-', '.', '_', ':', '@', '+' or '--', separated by '/'"
        )


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (renames, new files) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path) -> list[Path]:
    """Create ``path`` and missing parents (mode 0755); return those created, outermost first."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    created: list[Path] = []
    for d in reversed(missing):
        try:
            os.mkdir(d, DIR_MODE)
        except FileExistsError:
            continue  # created by someone else meanwhile: theirs, not ours to remove
        created.append(d)
    return created


def create_unique_file(directory: Path, prefix: str) -> tuple[int, Path]:
    """Create a new file named ``prefix<random>`` in ``directory``; return its fd and path."""
    for _ in range(100):
        path = directory / f"{prefix}{secrets.token_hex(8)}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except FileExistsError:
            continue
        return fd, path
    raise FileExistsError(f"could not create a unique temporary file in {directory}")


def write_file_atomic(directory: Path, name: str, data: bytes) -> None:
    """Write ``directory/name`` so that readers see the old or the new content, never a mix."""
    fd, tmp = create_unique_file(directory, f"{name}.tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), FILE_MODE)
            os.fsync(f.fileno())
        os.replace(tmp, directory / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(directory)


def dumps(obj: Any) -> bytes:
    """Compact JSON, as containers/image writes index.json."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def new_index() -> dict[str, Any]:
    """The content of index.json of an empty layout."""
    return {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}


def parse_index(data: bytes, where: Path) -> dict[str, Any]:
    """Parse and check index.json; :class:`LayoutError` (naming ``where``) if it is malformed.

    The parsed object is returned as it is, so unknown fields survive a rewrite.
    """
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise LayoutError(f"{where}: index.json is not valid JSON: {e}") from e
    if not isinstance(obj, dict):
        raise LayoutError(f"{where}: index.json must hold a JSON object")
    manifests = obj.get("manifests", [])
    if manifests is None:
        manifests = []
    if not isinstance(manifests, list):
        raise LayoutError(f"{where}: the manifests of index.json must be a list")
    for i, entry in enumerate(manifests):
        try:
            Descriptor.from_dict(entry)
        except ImageError as e:
            raise LayoutError(f"{where}: entry {i} of index.json is invalid: {e}") from e
    obj["manifests"] = manifests
    return obj


def entry_ref_name(entry: Descriptor | dict[str, Any]) -> str | None:
    """The ref name annotation of an index.json entry, if it has one."""
    annotations = entry.annotations if isinstance(entry, Descriptor) else entry.get("annotations")
    if not annotations:
        return None
    name = annotations.get(REF_NAME_ANNOTATION)
    return name if isinstance(name, str) and name else None


def add_entry(index: dict[str, Any], entry: Descriptor) -> None:
    """Record ``entry`` in a parsed index.json, as containers/image's destination does.

    An entry with the same ref name is replaced (containers/image 5.23 instead strips the old
    entry's name and keeps it, which leaves unreachable images behind). An unnamed entry with
    the same digest is replaced too, so writing the same image twice without a name does not
    duplicate it. Otherwise the entry is appended. Other entries are kept untouched, fields and
    all.
    """
    manifests: list[Any] = index.setdefault("manifests", [])
    name = entry_ref_name(entry)
    if name is not None:
        manifests[:] = [m for m in manifests if entry_ref_name(m) != name]
    new = entry.to_dict()
    for i, m in enumerate(manifests):
        if m.get("digest") == str(entry.digest) and entry_ref_name(m) is None:
            manifests[i] = new
            return
    manifests.append(new)


@contextlib.contextmanager
def _flock(directory: Path) -> Iterator[None]:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the lock


def _manifest_children(data: bytes, follow_subject: bool) -> tuple[list[Digest], list[Digest]]:
    """(blobs, child manifests) a manifest or index names; nothing when it is not JSON."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return [], []
    if not isinstance(obj, dict):
        return [], []

    def digests(value: Any) -> list[Digest]:
        items = value if isinstance(value, list) else [value]
        out = []
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("digest"), str):
                # A digest we cannot parse names no file we could store: nothing to walk.
                with contextlib.suppress(ImageError):
                    out.append(Digest.parse(item["digest"]))
        return out

    blobs = (
        digests(obj.get("config")) + digests(obj.get("layers", [])) + digests(obj.get("blobs", []))
    )
    children = digests(obj.get("manifests", []))
    if follow_subject:
        children += digests(obj.get("subject"))
    return blobs, children


class OCILayout:
    """An OCI image layout directory: read its index, find images, locate blobs.

    Constructing one touches nothing on disk; every method reads the current state.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(os.path.abspath(path))

    def __repr__(self) -> str:
        return f"OCILayout({str(self.path)!r})"

    # -- paths -----------------------------------------------------------------------------
    def blob_path(self, digest: Digest) -> Path:
        """Where the blob with ``digest`` is stored (it may not exist)."""
        return self.path / BLOBS_DIR / digest.algorithm / digest.hex

    @property
    def index_path(self) -> Path:
        return self.path / INDEX_FILE

    @property
    def layout_file_path(self) -> Path:
        return self.path / LAYOUT_FILE

    # -- checks and the index --------------------------------------------------------------
    def exists(self) -> bool:
        """Whether the directory holds a layout (an ``index.json``)."""
        return self.index_path.is_file()

    def check_layout_file(self, *, required: bool = True) -> None:
        """Raise :class:`LayoutError` unless ``oci-layout`` names a 1.x layout.

        With ``required=False`` a missing file is accepted (a destination writes it).
        """
        try:
            data = read_bounded(self.layout_file_path, _MAX_LAYOUT_FILE_SIZE)
        except FileNotFoundError:
            if not required:
                return
            if not self.path.is_dir():
                raise LayoutError(f"{self.path}: no such OCI layout directory") from None
            raise LayoutError(
                f"{self.path}: not an OCI image layout (no oci-layout file)"
            ) from None
        except ManifestTooLargeError as e:
            raise LayoutError(f"{self.path}: the oci-layout file is too large") from e
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise LayoutError(f"{self.path}: the oci-layout file is not valid JSON") from e
        version = obj.get("imageLayoutVersion") if isinstance(obj, dict) else None
        if not isinstance(version, str) or version.split(".", 1)[0] != "1":
            raise LayoutError(
                f"{self.path}: unsupported imageLayoutVersion {version!r} in oci-layout "
                "(only 1.x is understood)"
            )

    def read_index_json(self) -> dict[str, Any]:
        """The parsed index.json, unknown fields included; :class:`LayoutError` if malformed."""
        try:
            data = read_bounded(self.index_path, MAX_INDEX_SIZE)
        except FileNotFoundError:
            raise LayoutError(f"{self.path}: not an OCI image layout (no index.json)") from None
        except ManifestTooLargeError as e:
            raise LayoutError(f"{self.path}: index.json is too large") from e
        except IsADirectoryError:
            raise LayoutError(f"{self.path}: index.json is not a file") from None
        return parse_index(data, self.path)

    def entries(self) -> list[Descriptor]:
        """The descriptors listed in index.json, in order."""
        self.check_layout_file()
        return [Descriptor.from_dict(m) for m in self.read_index_json()["manifests"]]

    def ref_names(self) -> list[str]:
        """The names (``org.opencontainers.image.ref.name``) of the images, in index order."""
        names = (entry_ref_name(e) for e in self.entries())
        return [n for n in names if n is not None]

    def reference(self, ref_name: str | None = None) -> OCIReference:
        """An ``oci:`` reference to the image named ``ref_name`` in this layout."""
        from ._reference import OCIReference

        return OCIReference(self.path, ref_name)

    def resolve(self, ref_name: str | None) -> Descriptor:
        """The index.json entry for ``ref_name``; with none, the only entry there is.

        Raise :class:`ManifestNotFoundError` (naming the images there are) when there is no
        such entry, or when no name is given and the layout does not hold exactly one image.
        """
        entries = self.entries()
        return self._pick(entries, ref_name)[1]

    def _pick(self, entries: Sequence[Descriptor], ref_name: str | None) -> tuple[int, Descriptor]:
        if ref_name is None:
            if len(entries) == 1:
                return 0, entries[0]
            if not entries:
                raise ManifestNotFoundError(f"the OCI layout {self.path} holds no images")
            raise ManifestNotFoundError(
                f"the OCI layout {self.path} holds {len(entries)} images; "
                f"name one as oci:{self.path}:NAME ({self._describe_names(entries)})"
            )
        for i, entry in enumerate(entries):
            if entry_ref_name(entry) != ref_name:
                continue
            media_type = mt.normalize(entry.media_type)
            if media_type and media_type not in mt.MANIFEST_TYPES:
                raise UnsupportedManifestTypeError(
                    f"{ref_name!r} in {self.path} is a {media_type!r}, not an image or index"
                )
            return i, entry
        raise ManifestNotFoundError(
            f"no image named {ref_name!r} in the OCI layout {self.path} "
            f"({self._describe_names(entries)})"
        )

    @staticmethod
    def _describe_names(entries: Sequence[Descriptor]) -> str:
        names = [n for n in (entry_ref_name(e) for e in entries) if n is not None]
        unnamed = len(entries) - len(names)
        parts = []
        if names:
            parts.append("available: " + ", ".join(repr(n) for n in names))
        else:
            parts.append("no image has a name")
        if unnamed and names:
            parts.append(f"and {unnamed} unnamed")
        return " ".join(parts)

    # -- blobs -----------------------------------------------------------------------------
    def blob_size(self, digest: Digest) -> int | None:
        """The size of the stored blob, or None if there is none."""
        try:
            st = os.stat(self.blob_path(digest))
        except FileNotFoundError:
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def read_manifest(self, digest: Digest, limit: int = _MAX_MANIFEST_SIZE) -> bytes:
        """A manifest blob, verified against ``digest``.

        :class:`ManifestNotFoundError` if absent, :class:`ManifestTooLargeError` over
        ``limit``, :class:`DigestMismatchError` if the file does not hash to ``digest``.
        """
        try:
            data = read_bounded(self.blob_path(digest), limit)
        except FileNotFoundError:
            raise ManifestNotFoundError(
                f"manifest {digest} is missing from the OCI layout {self.path}"
            ) from None
        actual = Digest.from_bytes(data, digest.algorithm)
        if actual != digest:
            raise DigestMismatchError(
                f"{self.blob_path(digest)}: content hashes to {actual}, not {digest}",
                expected=digest,
                actual=actual,
            )
        return data

    # -- locked changes --------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the layout's exclusive lock (a ``flock`` on the directory itself)."""
        with _flock(self.path):
            yield

    def write_index_json(self, index: dict[str, Any]) -> None:
        """Replace index.json atomically. Call with :meth:`lock` held."""
        write_file_atomic(self.path, INDEX_FILE, dumps(index))

    def write_layout_file_if_missing(self) -> None:
        """Write ``oci-layout`` unless there is one. Call with :meth:`lock` held."""
        if not os.path.lexists(self.layout_file_path):
            write_file_atomic(self.path, LAYOUT_FILE, LAYOUT_FILE_CONTENT)

    def _closure(self, roots: Iterable[Digest], *, follow_subject: bool) -> set[Digest]:
        """Every blob reachable from the manifests ``roots`` (included)."""
        seen: set[Digest] = set()
        pending = list(roots)
        while pending:
            digest = pending.pop()
            if digest in seen:
                continue
            seen.add(digest)
            try:
                data = self.read_manifest(digest)
            except (ManifestNotFoundError, ManifestTooLargeError, DigestMismatchError):
                # Not a readable manifest: its own file is accounted for, and it names nothing
                # we could walk. Deletion only removes what the deleted image reaches, so an
                # unreadable blob elsewhere cannot make us delete too much.
                continue
            blobs, children = _manifest_children(data, follow_subject)
            seen.update(blobs)
            pending.extend(children)
        return seen

    def delete(self, ref_name: str | None) -> list[Digest]:
        """Remove an image's entry from index.json and the blobs no other entry needs.

        Returns the digests of the blobs deleted. :class:`ManifestNotFoundError` if there is
        no such image. Runs under the layout's lock.
        """
        self.check_layout_file()
        with self.lock():
            index = self.read_index_json()
            raw_entries: list[Any] = index["manifests"]
            entries = [Descriptor.from_dict(m) for m in raw_entries]
            position, _ = self._pick(entries, ref_name)
            if ref_name is None:
                removed_positions = {position}
            else:
                removed_positions = {
                    i for i, e in enumerate(entries) if entry_ref_name(e) == ref_name
                }
            removed = [e for i, e in enumerate(entries) if i in removed_positions]
            kept = [e for i, e in enumerate(entries) if i not in removed_positions]
            index["manifests"] = [
                m for i, m in enumerate(raw_entries) if i not in removed_positions
            ]
            # The index first: a crash after it leaves unreferenced blobs, never an entry
            # pointing at deleted ones.
            self.write_index_json(index)
            needed = self._closure((e.digest for e in kept), follow_subject=True)
            garbage = self._closure((e.digest for e in removed), follow_subject=False) - needed
            deleted = []
            for digest in sorted(garbage):
                try:
                    os.unlink(self.blob_path(digest))
                except FileNotFoundError:
                    continue
                deleted.append(digest)
            for algorithm in {d.algorithm for d in deleted}:
                fsync_dir(self.path / BLOBS_DIR / algorithm)
            return deleted


def is_exists_error(error: OSError) -> bool:
    """Whether a rename failed because the target exists and is a non-empty directory."""
    return error.errno in (errno.EEXIST, errno.ENOTEMPTY)


def check_manifest_to_store(
    manifest: bytes, media_type: str, instance: Digest | None, where: object
) -> tuple[str, Digest]:
    """Check a manifest an OCI layout (or archive) is asked to store; return its type and digest.

    Refuses one over the size bound, one whose bytes contradict ``media_type``, any type but
    OCI manifests and indexes, and an instance whose bytes do not hash to ``instance``.
    """
    from imagetypes.types import ImageSource

    limit = ImageSource.MAX_MANIFEST_SIZE
    if len(manifest) > limit:
        raise ManifestTooLargeError(
            f"{where}: the manifest is {len(manifest)} bytes, over the {limit} byte limit"
        )
    detected = mt.detect_manifest_media_type(manifest)
    given = mt.normalize(media_type)
    if given and detected and given != detected:
        raise ManifestError(
            f"{where}: the manifest was given as {given!r} but its content is {detected!r}"
        )
    kind = given or detected
    if kind not in (mt.OCI_MANIFEST, mt.OCI_INDEX):
        raise UnsupportedManifestTypeError(
            f"an OCI layout stores only OCI manifests and indexes, not {kind or 'unknown'!r}"
        )
    expected = instance if instance is not None else Digest.from_bytes(manifest)
    actual = Digest.from_bytes(manifest, expected.algorithm)
    if actual != expected:
        raise DigestMismatchError(
            f"{where}: the manifest of instance {instance} hashes to {actual}",
            expected=expected,
            actual=actual,
        )
    return kind, expected
