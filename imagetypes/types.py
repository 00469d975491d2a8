"""The abstract base classes every transport implements, and the option objects they take.

A :class:`Transport` turns text into an :class:`ImageReference`; a reference opens an
:class:`ImageSource` to read or an :class:`ImageDestination` to write. Transports that know
about collections of images (registries) also offer :class:`Registry` and :class:`Repository`.
The copy engine and :class:`~imagetypes.Image` see nothing but these classes.

Methods take option objects (frozen attrs classes with defaults) rather than growing keyword
arguments, so new options never break a plugin's signatures.
"""

from __future__ import annotations

import enum
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, Literal, TypeVar

import attrs

from ._closing import Closing
from .descriptor import BlobInfo, Descriptor
from .digest import Digest, Readable, VerifyingReader
from .errors import UnsupportedError
from .platform import Platform
from .retry import RetryAttempt, RetryPolicy

if TYPE_CHECKING:
    from ._display import Listing
    from .image import Image
    from .reference import Reference

__all__ = [
    "LINK_MODES",
    "SHARED_STATE_OPTION",
    "Credentials",
    "DestinationCapabilities",
    "ImageDestination",
    "ImageReference",
    "ImageSource",
    "LayerCompression",
    "LinkMode",
    "PutBlobOptions",
    "Registry",
    "Repository",
    "SharedState",
    "SourceCapabilities",
    "Transport",
    "TransportOptions",
]


def _mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return dict(value) if value else {}


@attrs.frozen
class Credentials:
    """A user name and secret for a registry. The secret never appears in a repr."""

    username: str
    password: str = attrs.field(repr=False)

    @classmethod
    def parse(cls, text: str) -> Credentials:
        """Parse skopeo's ``USER[:PASSWORD]`` spelling (an empty password when none is given)."""
        user, _, password = text.partition(":")
        if not user:
            from .errors import InvalidReferenceError

            raise InvalidReferenceError("credentials need a user name: USER[:PASSWORD]")
        return cls(user, password)


@attrs.frozen(kw_only=True)
class TransportOptions:
    """Settings for opening sources, destinations and registries.

    Every field has a default, so ``TransportOptions()`` is always valid; transports ignore the
    fields that do not concern them. ``extra`` carries plugin-specific settings, keyed
    ``"<transport>.<setting>"``.
    """

    #: The platform to choose from an index when one image is wanted (default: this machine).
    platform: Platform | None = None
    #: A folder for temporary files (default: the system's, or next to the destination).
    tmpdir: str | None = None
    #: Verify TLS (and refuse plain http). None means the default: verify.
    tls_verify: bool | None = None
    #: A folder with ``*.crt`` (CA), ``*.cert`` and ``*.key`` (client) files, as certs.d.
    cert_dir: str | None = None
    #: Explicit credentials; they win over every auth file.
    credentials: Credentials | None = attrs.field(default=None, repr=False)
    #: A bearer token to send as is (skopeo's ``--registry-token``).
    registry_token: str | None = attrs.field(default=None, repr=False)
    #: Path of an auth.json to read credentials from (skopeo's ``--authfile``).
    authfile: str | None = None
    #: Use no credentials at all, even when an auth file has some.
    no_creds: bool = False
    #: How failed requests and blob transfers are retried.
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    #: Called (from any thread) before each retry a transport makes, and before the copy
    #: engine puts a blob again.
    on_retry: Callable[[RetryAttempt], None] | None = attrs.field(
        default=None, eq=False, repr=False
    )
    #: Plugin-specific settings.
    extra: Mapping[str, Any] = attrs.field(factory=dict, converter=_mapping, hash=False)


class LayerCompression(enum.Enum):
    """What a destination wants done to layers: keep them, compress them, decompress them."""

    PRESERVE = "preserve"
    COMPRESS = "compress"
    DECOMPRESS = "decompress"


@attrs.frozen(kw_only=True)
class SourceCapabilities:
    """What an :class:`ImageSource` can do, declared so the copy engine can adapt."""

    #: ``get_blob`` may be called from several threads at once.
    concurrent_blob_reads: bool = True
    #: ``get_blob_stream`` accepts an ``offset`` (used to resume cut downloads).
    ranged_reads: bool = False
    #: Blobs are read from local storage (files, or members of an archive on disk): the copy
    #: engine reads a large one ahead, and hashes it, in a thread of its own while the
    #: destination writes. Leave it off for a network source, where that thread cost more
    #: than it saved (measured on 2 cores). A stream that is a regular file is read ahead
    #: whatever this says.
    local_reads: bool = False


@attrs.frozen(kw_only=True)
class DestinationCapabilities:
    """What an :class:`ImageDestination` accepts, declared so the copy engine can adapt."""

    #: Manifest media types the destination can store, preferred first; None means any.
    manifest_types: tuple[str, ...] | None = None
    #: ``put_blob`` may be called from several threads at once.
    concurrent_blob_writes: bool = True
    #: What to do to layers on the way in.
    layer_compression: LayerCompression = LayerCompression.PRESERVE
    #: Signatures can be stored (``put_signatures`` with a non-empty list works).
    supports_signatures: bool = False
    #: Layers with ``urls`` (foreign / non-distributable) are kept as references, not copied.
    accepts_foreign_layers: bool = False
    #: Only an image for the running OS may be written (a container engine's storage).
    must_match_runtime_os: bool = False
    #: A put_blob needs the digest up front (it cannot compute one while streaming).
    needs_digest_up_front: bool = False


#: How a destination storing files may place a blob that the source holds as a local file:
#: ``"reflink"`` clones it where the filesystem can (copy-on-write: nothing is shared once
#: either side changes, so this is the default), ``"hardlink"`` links it (the destination's blob
#: *is* the source's file: same inode, same permissions) where both are on one filesystem and
#: else clones it, ``"never"`` always writes the bytes. Each falls back to writing the bytes.
LinkMode = Literal["never", "reflink", "hardlink"]
LINK_MODES: tuple[LinkMode, ...] = ("never", "reflink", "hardlink")


@attrs.frozen(kw_only=True)
class PutBlobOptions:
    """Options for :meth:`ImageDestination.put_blob`."""

    #: The blob is a config rather than a layer.
    is_config: bool = False
    #: The index of the layer in its manifest, if it is one.
    layer_index: int | None = None
    #: The open local file the stream reads, from its start, when that file holds exactly the
    #: blob (the copy engine sets it for a blob copied byte for byte from a source's file). A
    #: destination that stores files may clone or link it instead of writing the bytes, as
    #: :attr:`link_blobs` allows (:func:`imagetypes.blobfiles.store_blob`); it must still read
    #: the stream to its end, since that is what verifies the blob.
    source_file: IO[bytes] | None = None
    #: What :attr:`source_file` may be turned into (see :data:`LinkMode`).
    link_blobs: LinkMode = "reflink"


class Transport(ABC):
    """A kind of place images live in (``oci``, ``dir``, ``docker``, ...).

    A plugin subclasses this and registers an instance (or the class) under the entry point
    group ``imagetypes.transports``.
    """

    #: The transport's name, the part before the first ``:`` in ``oci:./layout:tag``.
    name: str

    @abstractmethod
    def parse_reference(self, text: str) -> ImageReference:
        """Parse the part of a reference after ``name:``.

        Raise :class:`~imagetypes.InvalidReferenceError` if it is malformed.
        """

    def open_registry(self, location: str, options: TransportOptions | None = None) -> Registry:
        """Open a collection of repositories (for transports that have one)."""
        raise UnsupportedError(f"the {self.name} transport has no registries")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class ImageReference(ABC):
    """Where one image lives, in a given transport. ``str()`` gives ``transport:details``."""

    @property
    @abstractmethod
    def transport(self) -> Transport:
        """The transport this reference belongs to."""

    @abstractmethod
    def string_within_transport(self) -> str:
        """The reference without the transport prefix; parses back to an equal reference."""

    @property
    def docker_reference(self) -> Reference | None:
        """The registry-style name (``docker.io/library/busybox:latest``), if there is one."""
        return None

    @abstractmethod
    def open_source(self, options: TransportOptions | None = None) -> ImageSource:
        """Open the image for reading."""

    @abstractmethod
    def open_destination(self, options: TransportOptions | None = None) -> ImageDestination:
        """Open the location for writing an image; nothing is visible before ``commit()``."""

    def delete(self, options: TransportOptions | None = None) -> None:
        """Delete the image at this reference."""
        raise UnsupportedError(f"the {self.transport.name} transport cannot delete images")

    def __str__(self) -> str:
        return f"{self.transport.name}:{self.string_within_transport()}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {str(self)!r}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageReference):
            return NotImplemented
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


class ImageSource(Closing, ABC):
    """Reads one image (or index with its instances) from a transport.

    A transport implements :meth:`get_manifest` and :meth:`get_blob_stream`; verification and
    the convenience methods are derived here.
    """

    #: Bound on a manifest's size; anything larger is refused.
    MAX_MANIFEST_SIZE = 4 * 1024 * 1024

    @property
    @abstractmethod
    def reference(self) -> ImageReference:
        """The reference this source was opened from."""

    @property
    def capabilities(self) -> SourceCapabilities:
        """What this source can do."""
        return SourceCapabilities()

    @abstractmethod
    def get_manifest(self, instance: Digest | None = None) -> tuple[bytes, str]:
        """The manifest bytes and media type: the top-level one, or the instance with that digest.

        Bytes are returned as stored, so their digest is the manifest's digest.
        """

    @abstractmethod
    def get_blob_stream(self, descriptor: Descriptor, offset: int = 0) -> Readable:
        """A raw, unverified stream of a blob's bytes, starting at ``offset``.

        ``offset`` is only non-zero when :attr:`SourceCapabilities.ranged_reads` is declared.
        Raise :class:`~imagetypes.BlobNotFoundError` if there is no such blob.
        """

    def get_blob(self, descriptor: Descriptor) -> VerifyingReader:
        """A stream of the blob that fails at EOF unless digest and size match the descriptor."""
        return VerifyingReader(self.get_blob_stream(descriptor), descriptor.digest, descriptor.size)

    def get_blob_bytes(self, descriptor: Descriptor, limit: int | None = None) -> bytes:
        """The whole (verified) blob in memory; for configs and other small blobs.

        ``limit`` bounds the size accepted; a descriptor claiming more is refused up front.
        """
        from .errors import ManifestTooLargeError

        if limit is not None and descriptor.size > limit:
            raise ManifestTooLargeError(
                f"blob {descriptor.digest} is {descriptor.size} bytes, over the {limit} byte limit"
            )
        with self.get_blob(descriptor) as reader:
            return reader.read()

    def get_signatures(self, instance: Digest | None = None) -> list[bytes]:
        """The signatures stored with the image (or instance); none by default."""
        return []


class ImageDestination(Closing, ABC):
    """Writes one image (or index with its instances) to a transport.

    The order of calls is: blobs (``try_reusing_blob`` / ``put_blob``), instance manifests,
    the top-level manifest, signatures, then :meth:`commit`. Nothing is visible to readers
    before ``commit()``; closing without it discards everything staged.
    """

    @property
    @abstractmethod
    def reference(self) -> ImageReference:
        """The reference this destination was opened for."""

    @property
    def capabilities(self) -> DestinationCapabilities:
        """What this destination accepts."""
        return DestinationCapabilities()

    def note_source(self, reference: ImageReference) -> None:
        """Learn where the image being written comes from, before any blob is written.

        A destination may use it to avoid transfers, e.g. a registry mounts blobs from
        another repository of the same registry. The default ignores it.
        """

    def note_blob_locations(self, digest: Digest, references: Sequence[ImageReference]) -> None:
        """Learn other places a blob was seen (from a blob-info cache), before it is written.

        A registry destination may mount the blob from one of them. The default ignores it.
        """

    def has_manifest(self, digest: Digest) -> bool:
        """True when the destination already holds exactly this manifest under its reference.

        Lets the copy engine skip an image that is already there. The default says no.
        """
        return False

    def try_reusing_blob(self, info: BlobInfo) -> Descriptor | None:
        """If the destination already has this blob, return its descriptor; else ``None``.

        Called before ``put_blob``; a hit means the copy engine skips the transfer.
        """
        return None

    @abstractmethod
    def put_blob(
        self, stream: Readable, info: BlobInfo, options: PutBlobOptions | None = None
    ) -> Descriptor:
        """Store a blob read from ``stream``; return its descriptor.

        The stream must be read to its end. When ``info.digest`` or ``info.size`` are given the
        content is verified against them (use :func:`~imagetypes.digest.verify_stream`, which
        does not hash twice a stream a source already verifies); a mismatch raises and stores
        nothing.
        """

    @abstractmethod
    def put_manifest(
        self, manifest: bytes, media_type: str, instance: Digest | None = None
    ) -> None:
        """Store a manifest: an index instance when ``instance`` is given, else the top one."""

    def put_signatures(self, signatures: Sequence[bytes], instance: Digest | None = None) -> None:
        """Store signatures for the image; the default refuses any."""
        if signatures:
            raise UnsupportedError(
                f"the {self.reference.transport.name} transport cannot store signatures"
            )

    @abstractmethod
    def commit(self) -> None:
        """Make everything written visible, atomically where the storage allows."""


class Repository(ABC):
    """A named collection of images, addressed by tag or digest."""

    @property
    @abstractmethod
    def name(self) -> str:
        """The repository name (``library/busybox``)."""

    @abstractmethod
    def tags(self) -> Iterator[str]:
        """The repository's tags, fetched lazily."""

    @abstractmethod
    def reference(self, tag_or_digest: str) -> ImageReference:
        """A reference to one image of the repository."""

    def image(self, tag_or_digest: str, options: TransportOptions | None = None) -> Image:
        """Open one image of the repository."""
        from .image import open_image

        return open_image(self.reference(tag_or_digest), options=options)

    def images(self, options: TransportOptions | None = None) -> Iterator[Image]:
        """Open every tagged image in turn (each must be closed by the caller)."""
        for tag in self.tags():
            yield self.image(tag, options=options)

    def listing(self, limit: int | None = 1000) -> Listing:
        """The repository's tags (at most ``limit``; ``None``: all) as a :class:`Listing`.

        A listing is a sequence of names that displays itself as a table in IPython and
        Jupyter.
        """
        from ._display import listing

        return listing(self.tags(), title=f"Tags of {self.name}", limit=limit)


class Registry(Closing, ABC):
    """A collection of repositories (a registry server, a multi-image store)."""

    @abstractmethod
    def repositories(self) -> Iterator[str]:
        """Repository names (the catalog), fetched lazily."""

    @abstractmethod
    def repository(self, name: str) -> Repository:
        """One repository by name."""

    def search(self, term: str) -> Iterator[Mapping[str, Any]]:
        """Search the registry, where it offers a search endpoint."""
        raise UnsupportedError("this registry offers no search")

    def listing(self, limit: int | None = 1000) -> Listing:
        """The repository names (at most ``limit``; ``None``: all) as a :class:`Listing`.

        A listing is a sequence of names that displays itself as a table in IPython and
        Jupyter; the catalog is read no further than ``limit`` names.
        """
        from ._display import listing

        return listing(self.repositories(), title="Repositories", limit=limit)


_S = TypeVar("_S")

#: ``TransportOptions.extra`` key of a :class:`SharedState`: :func:`~imagetypes.copy.sync`
#: passes one to the transports, which keep there what the images of the sync share (registry
#: clients).
SHARED_STATE_OPTION = "imagetypes.shared_state"


class SharedState:
    """What transports keep for the images of one run (a sync, or a caller's batch of copies).

    Passed in ``TransportOptions.extra[SHARED_STATE_OPTION]``; a transport that finds it keeps
    state there under its own key (the docker transport: one registry client per registry and
    repository, instead of one per image, each with its own connections, credentials and
    ``/v2/`` ping). :meth:`close` closes what was kept; whoever made the state closes it once
    the last image is done. Safe across threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, Any] = {}
        self._closed = False

    def __repr__(self) -> str:
        with self._lock:
            return f"<SharedState {sorted(self._items)}>"

    def get(self, key: str, factory: Callable[[], _S]) -> _S:
        """The object kept under ``key``, made by ``factory()`` on first use."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the shared state of a finished run was used")
            if key not in self._items:
                self._items[key] = factory()
            item: _S = self._items[key]
            return item

    def close(self) -> None:
        """Close what was kept (objects with a ``close()``), newest first."""
        with self._lock:
            self._closed = True
            items, self._items = list(self._items.values()), {}
        first: BaseException | None = None
        for item in reversed(items):
            close = getattr(item, "close", None)
            if close is None:
                continue
            try:
                close()
            except Exception as e:  # close the others, then report the first failure
                first = first or e
        if first is not None:
            raise first

    def attach(self, options: TransportOptions | None) -> TransportOptions:
        """``options`` carrying this state (unless they carry a state of their own already)."""
        options = options if options is not None else TransportOptions()
        if SHARED_STATE_OPTION in options.extra:
            return options
        return attrs.evolve(options, extra={**options.extra, SHARED_STATE_OPTION: self})

    def __enter__(self) -> SharedState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
