"""``docker-archive:PATH[:NAME[:TAG]]`` / ``docker-archive:PATH:@INDEX`` and the transport."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

import attrs

from imagetypes.digest import Digest
from imagetypes.errors import InvalidReferenceError
from imagetypes.reference import Reference
from imagetypes.types import ImageReference, Transport, TransportOptions

if TYPE_CHECKING:
    from imagetypes.copy import CopyOptions, CopyResult

    from ._destination import DockerArchiveDestination, DockerArchiveWriter
    from ._source import DockerArchiveSource

__all__ = [
    "ADDITIONAL_TAGS",
    "ArchiveImage",
    "DockerArchiveReference",
    "DockerArchiveTransport",
    "normalize_tag",
    "transport",
]

#: ``TransportOptions.extra`` key: more names to record for the image written (skopeo's
#: ``--additional-tag``), a sequence of ``NAME:TAG`` strings or references.
ADDITIONAL_TAGS = "docker-archive.additional_tags"


def normalize_tag(name: str | Reference) -> Reference:
    """``name`` as a normalized, tagged reference (``latest`` added when it has no tag).

    :class:`InvalidReferenceError` when it carries a digest: archives record tags only.
    """
    ref = name if isinstance(name, Reference) else Reference.parse(name)
    if ref.digest is not None:
        raise InvalidReferenceError(
            f"docker-archive does not support digest references: {ref} (use NAME:TAG)"
        )
    return ref.with_default_tag()


class DockerArchiveTransport(Transport):
    """Images in a ``docker save`` tar archive (skopeo's ``docker-archive:``)."""

    name = "docker-archive"

    def parse_reference(self, text: str) -> DockerArchiveReference:
        """Parse ``PATH``, ``PATH:NAME[:TAG]`` or ``PATH:@INDEX`` (path ends at the 1st ``:``)."""
        if not text:
            raise InvalidReferenceError(
                "a docker-archive: reference needs a path: docker-archive:PATH[:NAME[:TAG]]"
            )
        path, sep, rest = text.partition(":")
        if not sep:
            return DockerArchiveReference(path)
        if rest.startswith("@"):
            digits = rest[1:]
            if not digits.isdigit() or not digits.isascii():
                raise InvalidReferenceError(
                    f"invalid docker-archive: source index {rest!r}: expected @ and a number"
                )
            return DockerArchiveReference(path, index=int(digits))
        return DockerArchiveReference(path, rest)

    def list_archive_images(
        self, path: str | os.PathLike[str], options: TransportOptions | None = None
    ) -> list[ArchiveImage]:
        """The images of the archive at ``path``, in manifest.json order."""
        from ._source import list_archive_images

        return list_archive_images(path, options)

    def save_docker_tar(
        self,
        source: ImageReference | str,
        target: str | os.PathLike[str] | IO[bytes],
        tags: Sequence[str | Reference] = (),
        *,
        options: CopyOptions | None = None,
        overwrite: bool = True,
    ) -> CopyResult:
        """Write the image at ``source`` as a ``docker load``-able archive (see
        :func:`~imagetypes_transports.docker_archive.save_docker_tar`); reachable through
        ``get_transport("docker-archive")`` by code that must not import transports."""
        from ._destination import save_docker_tar

        return save_docker_tar(source, target, tags, options=options, overwrite=overwrite)


#: The transport instance registered under the entry point ``docker-archive``.
transport = DockerArchiveTransport()


@attrs.frozen
class ArchiveImage:
    """One image of a docker-archive file, as :func:`list_archive_images` describes it."""

    #: The image's position in manifest.json (``PATH:@INDEX``).
    index: int
    #: The names it is tagged with, as stored (``docker.io/library/busybox:latest``).
    repo_tags: tuple[str, ...]
    #: The digest of its config, i.e. its image ID.
    config_digest: Digest
    #: The number of layers.
    layers: int
    #: A reference that opens this image (``docker-archive:PATH:@INDEX``).
    reference: DockerArchiveReference = attrs.field(eq=False, repr=False)


class DockerArchiveReference(ImageReference):
    """An image in a docker-archive file: the path and, optionally, a tag or an index.

    For reading, the tag (or the ``@INDEX`` position) chooses one image of a multi-image
    archive; without either the archive must hold exactly one. For writing, the tag (and
    any additional tags) are recorded as the image's ``RepoTags``. The path is kept as
    written; ``-`` means standard output for writing and standard input for reading.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        name: str | Reference | None = None,
        *,
        index: int | None = None,
        writer: DockerArchiveWriter | None = None,
        additional_tags: Sequence[str | Reference] = (),
    ) -> None:
        text = os.fspath(path)
        if not isinstance(text, str) or not text:
            raise InvalidReferenceError("a docker-archive: reference needs a path")
        if ":" in text:
            raise InvalidReferenceError(
                f"invalid docker-archive: reference: colon in path {text!r} is not supported"
            )
        if "\x00" in text:
            raise InvalidReferenceError("invalid docker-archive: path: contains a NUL byte")
        if name is not None and index is not None:
            raise InvalidReferenceError(
                "invalid docker-archive: reference: cannot use both a tag and a source index"
            )
        if index is not None and index < 0:
            raise InvalidReferenceError(f"invalid docker-archive: source index @{index}")
        try:
            self._named = normalize_tag(name) if name is not None else None
            self._additional = tuple(normalize_tag(t) for t in additional_tags)
        except InvalidReferenceError as e:
            raise InvalidReferenceError(f"invalid docker-archive: reference: {e}") from e
        self._path = text
        self._index = index
        self._writer = writer

    @property
    def transport(self) -> DockerArchiveTransport:
        return transport

    @property
    def path(self) -> str:
        """The archive's path, as given."""
        return self._path

    @property
    def index(self) -> int | None:
        """The position of the image in the archive's manifest.json, when chosen by ``@INDEX``."""
        return self._index

    @property
    def docker_reference(self) -> Reference | None:
        """The tag naming the image (``docker.io/library/busybox:latest``), if any."""
        return self._named

    @property
    def tags(self) -> tuple[Reference, ...]:
        """Every tag recorded for the image written: the name, then the additional tags."""
        return ((self._named,) if self._named else ()) + self._additional

    @property
    def writer(self) -> DockerArchiveWriter | None:
        """The multi-image writer this reference adds to, if it was made by one."""
        return self._writer

    def string_within_transport(self) -> str:
        if self._named is not None:
            return f"{self._path}:{self._named}"
        if self._index is not None:
            return f"{self._path}:@{self._index}"
        return self._path

    def open_source(self, options: TransportOptions | None = None) -> DockerArchiveSource:
        """Open the image for reading (a compressed or piped archive is spooled first)."""
        from ._source import DockerArchiveSource

        return DockerArchiveSource(self, options or TransportOptions())

    def open_destination(self, options: TransportOptions | None = None) -> DockerArchiveDestination:
        """Prepare to write the image as a new archive at the path (or into :attr:`writer`).

        A non-empty regular file at the path is refused, as skopeo does; nothing appears at
        the path before ``commit()``. ``options.extra[ADDITIONAL_TAGS]`` adds tags.
        """
        from ._destination import DockerArchiveDestination

        if self._index is not None:
            raise InvalidReferenceError(
                f"{self}: a destination cannot name a source index @{self._index}"
            )
        return DockerArchiveDestination(self, options or TransportOptions())
