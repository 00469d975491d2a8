"""File names and small file helpers of the ``dir:`` format (containers/image's directory).

A directory image holds:

- ``version``: ``Directory Transport Version: 1.1`` and a newline;
- ``manifest.json``: the top-level manifest (an image manifest, or an index / manifest list);
- ``<hex>.manifest.json``: the manifest of each instance of an index;
- ``<hex>``: each blob (config, layer), named by the encoded part of its digest only;
- ``signature-1``, ``signature-2``, ...: signatures of the top-level manifest;
- ``<hex>.signature-1``, ...: signatures of an instance.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from imagetypes.blobfiles import read_bounded
from imagetypes.digest import Digest
from imagetypes.errors import LayoutError

__all__ = [
    "MANIFEST_FILE",
    "VERSION",
    "VERSION_FILE",
    "NotAnImageDirectoryError",
    "blob_name",
    "check_version",
    "create_temp_file",
    "manifest_name",
    "signature_name",
]

#: The exact content of the ``version`` file containers/image writes (and that we write).
VERSION = b"Directory Transport Version: 1.1\n"
VERSION_FILE = "version"
MANIFEST_FILE = "manifest.json"

# Every 1.x release keeps the file names above; a 2.x might not, so it is refused.
_VERSION_RE = re.compile(rb"Directory Transport Version: (\d+)\.(\d+)\r?\n?")


class NotAnImageDirectoryError(LayoutError):
    """A directory holds files but is not a ``dir:`` image, so it will not be overwritten."""


def blob_name(digest: Digest) -> str:
    """The file name of a blob: the encoded digest, whatever the algorithm (as containers/image)."""
    return digest.hex


def manifest_name(instance: Digest | None) -> str:
    """The file name of the top-level manifest, or of an instance's manifest."""
    return MANIFEST_FILE if instance is None else f"{instance.hex}.manifest.json"


def signature_name(index: int, instance: Digest | None) -> str:
    """The file name of the ``index``-th (0-based) signature; files are numbered from 1."""
    if instance is None:
        return f"signature-{index + 1}"
    return f"{instance.hex}.signature-{index + 1}"


def check_version(root: Path) -> bool:
    """Whether ``root`` has a ``version`` file; raise :class:`LayoutError` if it names no 1.x.

    A ``version`` that does not say ``Directory Transport Version: 1.<minor>`` means the
    directory is something else, or a future format whose layout we do not know.
    """
    try:
        data = read_bounded(root / VERSION_FILE, 1024)
    except FileNotFoundError:
        return False
    match = _VERSION_RE.fullmatch(data)
    if match is None:
        raise NotAnImageDirectoryError(
            f"{root}: the version file does not say 'Directory Transport Version: 1.x'"
        )
    if match.group(1) != b"1":
        raise LayoutError(
            f"{root}: unsupported directory transport version "
            f"{match.group(1).decode()}.{match.group(2).decode()} (only 1.x is understood)"
        )
    return True


def create_temp_file(directory: Path, prefix: str) -> tuple[int, Path]:
    """Create a new, uniquely named file in ``directory``; return its descriptor and path.

    Unlike :func:`tempfile.mkstemp` (mode 0600) the file gets 0666 minus the umask, the mode
    any other file the user writes gets, so the finished image is readable as usual.
    """
    for _ in range(100):
        path = directory / f"{prefix}{secrets.token_hex(8)}"
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            fd = os.open(path, flags, 0o666)
        except FileExistsError:
            continue
        return fd, path
    raise FileExistsError(f"could not create a unique temporary file in {directory}")
