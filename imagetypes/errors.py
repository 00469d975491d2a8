"""The exception tree of imagetypes.

Every error the library raises on purpose is an :class:`ImageError`, so a caller can catch
broadly or precisely::

    ImageError
    ├── InvalidReferenceError (ValueError)      a string is not a valid image name or reference
    ├── InvalidDigestError (ValueError)         a string is not a valid digest
    ├── InvalidPlatformError (ValueError)       a string is not os/arch[/variant]
    ├── ManifestError                           a manifest cannot be parsed or is invalid
    │   └── ManifestTooLargeError               a manifest exceeds the size bound
    ├── VerificationError                       content does not match what was promised
    │   ├── DigestMismatchError                 bytes hash to another digest
    │   ├── SizeMismatchError                   more or fewer bytes than the descriptor says
    │   └── SourceChangedError                  a source file changed while it was cloned/linked
    ├── NotFoundError (LookupError)             something asked for does not exist
    │   ├── ManifestNotFoundError               no manifest for that tag, name or digest
    │   └── BlobNotFoundError                   no blob with that digest
    ├── UnsupportedError                        the operation is not possible here
    │   ├── UnsupportedConversionError          a manifest cannot be converted faithfully
    │   ├── UnsupportedManifestTypeError        a media type nobody here understands
    │   └── DigestChangeError                   preserve_digests, but a digest would change
    ├── TransportError                          transport lookup and plugin problems
    │   ├── UnknownTransportError               no transport of that name is installed
    │   └── DuplicateTransportError             two plugins claim one name
    ├── LayoutError                             an on-disk image store is malformed
    ├── ArchiveError                            a tar archive is malformed or unsafe
    ├── CompressionError                        compressed data is corrupt or cannot be made
    ├── PlatformMismatchError (NotFoundError)   no instance of an index matches the platform
    └── CopyError                               a copy failed; the cause is chained

An error whose :attr:`ImageError.retryable` is true says that the same operation may succeed if
tried again (a broken connection, a busy or failing server, an upload that could not be
resumed); the copy engine transfers a blob again only after such an error.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ArchiveError",
    "BlobNotFoundError",
    "CompressionError",
    "CopyError",
    "DigestChangeError",
    "DigestMismatchError",
    "DuplicateTransportError",
    "ImageError",
    "InvalidDigestError",
    "InvalidPlatformError",
    "InvalidReferenceError",
    "LayoutError",
    "ManifestError",
    "ManifestNotFoundError",
    "ManifestTooLargeError",
    "NotFoundError",
    "PlatformMismatchError",
    "SizeMismatchError",
    "SourceChangedError",
    "TransportError",
    "UnknownTransportError",
    "UnsupportedConversionError",
    "UnsupportedError",
    "UnsupportedManifestTypeError",
    "VerificationError",
]


class ImageError(Exception):
    """The base of every error imagetypes raises on purpose."""

    #: True when trying the same operation again may succeed: the connection broke, the server
    #: was busy or failing, an upload could not be resumed. Transports set it (on a class or an
    #: instance); the copy engine puts a blob again after such an error, within the
    #: destination's :class:`~imagetypes.RetryPolicy`. False for everything that would only
    #: fail again: corrupt content, refused credentials, missing objects, bad input.
    retryable: bool = False


class InvalidReferenceError(ImageError, ValueError):
    """A string is not a valid image name, reference or transport reference."""


class InvalidDigestError(ImageError, ValueError):
    """A string is not a valid digest (``algorithm:hex``)."""


class InvalidPlatformError(ImageError, ValueError):
    """A string is not a valid platform (``os/architecture[/variant]``)."""


class ManifestError(ImageError):
    """A manifest (or index, or config) cannot be parsed, or breaks its schema."""


class ManifestTooLargeError(ManifestError):
    """A manifest is larger than the bound imagetypes accepts."""


class VerificationError(ImageError):
    """Content does not match the digest or size it was promised to have."""


class DigestMismatchError(VerificationError):
    """Content hashes to a different digest than expected."""

    def __init__(self, message: str, *, expected: object = None, actual: object = None) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class SizeMismatchError(VerificationError):
    """Content has a different length than expected."""

    def __init__(self, message: str, *, expected: int | None = None, actual: int | None = None):
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class SourceChangedError(VerificationError):
    """A source's file changed while it was read to be cloned or linked: what was placed in the
    destination may not be what was verified."""


class NotFoundError(ImageError, LookupError):
    """Something that was asked for does not exist."""


class ManifestNotFoundError(NotFoundError):
    """No manifest exists for the tag, name or digest asked for."""


class BlobNotFoundError(NotFoundError):
    """No blob exists with the digest asked for."""


class PlatformMismatchError(NotFoundError):
    """No instance of an index or manifest list matches the requested platform."""


class UnsupportedError(ImageError):
    """The operation is not possible with this transport, image or configuration."""


class UnsupportedConversionError(UnsupportedError):
    """A manifest cannot be converted to the requested format without losing information."""


class UnsupportedManifestTypeError(UnsupportedError):
    """A manifest media type that imagetypes (or a destination) does not handle."""


class DigestChangeError(UnsupportedError):
    """Digests were to be preserved, but the copy would change a manifest's digest.

    :attr:`changes` lists what would have changed, in words.
    """

    def __init__(self, message: str, changes: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.changes = tuple(changes)


class TransportError(ImageError):
    """Finding or loading a transport failed."""


class UnknownTransportError(TransportError, LookupError):
    """No transport with the requested name is installed."""


class DuplicateTransportError(TransportError):
    """Two installed plugins register a transport under the same name."""


class LayoutError(ImageError):
    """An on-disk image store (OCI layout, directory) is malformed."""


class ArchiveError(ImageError):
    """A tar archive is malformed or unsafe to read."""


class CompressionError(ImageError):
    """Compressed data is corrupt or truncated, or cannot be produced."""


class CopyError(ImageError):
    """A copy failed. The underlying error is chained as ``__cause__``."""
