"""imagetypes: move container images between registries, OCI layouts, directories and archives."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .copy import (
        CopyOptions,
        CopyResult,
        EventCollector,
        ProgressEvent,
        SyncOptions,
        SyncReport,
        copy_image,
        sync,
    )
    from .descriptor import BlobInfo, Descriptor
    from .digest import Digest, Readable, VerifyingReader, copy_to_fd, verify_stream
    from .errors import (
        ArchiveError,
        BlobNotFoundError,
        CompressionError,
        CopyError,
        DigestChangeError,
        DigestMismatchError,
        DuplicateTransportError,
        ImageError,
        InvalidDigestError,
        InvalidPlatformError,
        InvalidReferenceError,
        LayoutError,
        ManifestError,
        ManifestNotFoundError,
        ManifestTooLargeError,
        NotFoundError,
        PlatformMismatchError,
        SizeMismatchError,
        TransportError,
        UnknownTransportError,
        UnsupportedConversionError,
        UnsupportedError,
        UnsupportedManifestTypeError,
        VerificationError,
    )
    from .image import Image, manifest_digest, open_image, read_manifest
    from .manifest import (
        DockerManifest,
        DockerManifestList,
        DockerSchema1Manifest,
        ImageConfig,
        ImageManifest,
        IndexManifest,
        Manifest,
        OCIIndex,
        OCIManifest,
        convert_manifest,
        parse_manifest,
    )
    from .platform import Platform
    from .plugins import (
        TransportInfo,
        get_transport,
        list_transports,
        open_registry,
        parse_reference,
        register_transport,
        reset_transports,
    )
    from .reference import Reference
    from .retry import RetryAttempt, RetryPolicy
    from .types import (
        Credentials,
        DestinationCapabilities,
        ImageDestination,
        ImageReference,
        ImageSource,
        LayerCompression,
        PutBlobOptions,
        Registry,
        Repository,
        SourceCapabilities,
        Transport,
        TransportOptions,
    )

__version__ = "0.1.0.dev0"

__all__ = [
    "ArchiveError",
    "BlobInfo",
    "BlobNotFoundError",
    "CompressionError",
    "CopyError",
    "CopyOptions",
    "CopyResult",
    "Credentials",
    "Descriptor",
    "DestinationCapabilities",
    "Digest",
    "DigestChangeError",
    "DigestMismatchError",
    "DockerManifest",
    "DockerManifestList",
    "DockerSchema1Manifest",
    "DuplicateTransportError",
    "EventCollector",
    "Image",
    "ImageConfig",
    "ImageDestination",
    "ImageError",
    "ImageManifest",
    "ImageReference",
    "ImageSource",
    "IndexManifest",
    "InvalidDigestError",
    "InvalidPlatformError",
    "InvalidReferenceError",
    "LayerCompression",
    "LayoutError",
    "Manifest",
    "ManifestError",
    "ManifestNotFoundError",
    "ManifestTooLargeError",
    "NotFoundError",
    "OCIIndex",
    "OCIManifest",
    "Platform",
    "PlatformMismatchError",
    "ProgressEvent",
    "PutBlobOptions",
    "Readable",
    "Reference",
    "Registry",
    "Repository",
    "RetryAttempt",
    "RetryPolicy",
    "SizeMismatchError",
    "SourceCapabilities",
    "SyncOptions",
    "SyncReport",
    "Transport",
    "TransportError",
    "TransportInfo",
    "TransportOptions",
    "UnknownTransportError",
    "UnsupportedConversionError",
    "UnsupportedError",
    "UnsupportedManifestTypeError",
    "VerificationError",
    "VerifyingReader",
    "__version__",
    "convert_manifest",
    "copy_image",
    "copy_to_fd",
    "get_transport",
    "list_transports",
    "manifest_digest",
    "open_image",
    "open_registry",
    "parse_manifest",
    "parse_reference",
    "read_manifest",
    "register_transport",
    "reset_transports",
    "sync",
    "verify_stream",
]

# Every name above is imported from its module on first use (PEP 562), so `import imagetypes`
# (and the `imagetypes` command) pays only for the parts a program touches: a copy between two
# layouts never loads the trust, registry or cache code. The TYPE_CHECKING imports above tell
# type checkers and IDEs the same thing statically; tests/unit/test_startup.py keeps the two in
# step.
_EXPORTS: dict[str, tuple[str, ...]] = {
    ".copy": (
        "CopyOptions",
        "CopyResult",
        "EventCollector",
        "ProgressEvent",
        "SyncOptions",
        "SyncReport",
        "copy_image",
        "sync",
    ),
    ".descriptor": ("BlobInfo", "Descriptor"),
    ".digest": ("Digest", "Readable", "VerifyingReader", "copy_to_fd", "verify_stream"),
    ".errors": (
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
        "TransportError",
        "UnknownTransportError",
        "UnsupportedConversionError",
        "UnsupportedError",
        "UnsupportedManifestTypeError",
        "VerificationError",
    ),
    ".image": ("Image", "manifest_digest", "open_image", "read_manifest"),
    ".manifest": (
        "DockerManifest",
        "DockerManifestList",
        "DockerSchema1Manifest",
        "ImageConfig",
        "ImageManifest",
        "IndexManifest",
        "Manifest",
        "OCIIndex",
        "OCIManifest",
        "convert_manifest",
        "parse_manifest",
    ),
    ".platform": ("Platform",),
    ".plugins": (
        "TransportInfo",
        "get_transport",
        "list_transports",
        "open_registry",
        "parse_reference",
        "register_transport",
        "reset_transports",
    ),
    ".reference": ("Reference",),
    ".retry": ("RetryAttempt", "RetryPolicy"),
    ".types": (
        "Credentials",
        "DestinationCapabilities",
        "ImageDestination",
        "ImageReference",
        "ImageSource",
        "LayerCompression",
        "PutBlobOptions",
        "Registry",
        "Repository",
        "SourceCapabilities",
        "Transport",
        "TransportOptions",
    ),
}
_MODULE_OF: dict[str, str] = {name: module for module, names in _EXPORTS.items() for name in names}


if not TYPE_CHECKING:  # hidden from type checkers, so a misspelt name stays an error there

    def __getattr__(name: str) -> object:
        module = _MODULE_OF.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(import_module(module, __name__), name)
        globals()[name] = value  # later look-ups find it without calling this function
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
