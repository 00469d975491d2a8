"""The ``docker-archive:`` transport: images in a ``docker save`` tar archive.

``docker-archive:PATH[:NAME[:TAG]]`` or ``docker-archive:PATH:@INDEX``. Reading accepts what
``docker save`` (every version) and skopeo write, compressed or not, from a file or a pipe, and
never unpacks the archive; a multi-image archive is listed with :func:`list_archive_images`
and an image chosen by tag or position. Writing streams a new archive (to a file, renamed
into place at commit, or to standard output with ``-``); :class:`DockerArchiveWriter` writes
several images into one archive, and :func:`save_docker_tar` one image.
"""

from __future__ import annotations

import os

from imagetypes.types import TransportOptions

from ._destination import (
    LAYER_COMPRESSION,
    DockerArchiveDestination,
    DockerArchiveWriter,
    save_docker_tar,
)
from ._reference import (
    ADDITIONAL_TAGS,
    ArchiveImage,
    DockerArchiveReference,
    DockerArchiveTransport,
    transport,
)
from ._source import DockerArchiveSource

__all__ = [
    "ADDITIONAL_TAGS",
    "LAYER_COMPRESSION",
    "ArchiveImage",
    "DockerArchiveDestination",
    "DockerArchiveReference",
    "DockerArchiveSource",
    "DockerArchiveTransport",
    "DockerArchiveWriter",
    "list_archive_images",
    "save_docker_tar",
    "transport",
]


def list_archive_images(
    path: str | os.PathLike[str], options: TransportOptions | None = None
) -> list[ArchiveImage]:
    """The images of the docker-archive file at ``path``: position, tags, config digest."""
    return transport.list_archive_images(path, options)
