"""The ``docker:`` transport: images in container registries (``docker://NAME[:TAG|@DIGEST]``).

A client for the distribution (OCI registry) API over httpx: manifests, blobs (resumable
downloads, monolithic and chunked uploads, cross-repository mounts), tags and catalog,
referrers, deletion; authentication (anonymous, basic, bearer tokens, OAuth2 identity
tokens); TLS per registry from certs.d folders.

Settings beyond :class:`~imagetypes.TransportOptions` go in its ``extra`` mapping:

- ``docker.mount_from``: repositories (or references) on the same registry to mount blobs from;
- ``docker.page_size``: page size for tags and catalog listings;
- ``docker.event_hooks``: httpx event hooks (``{"request": [...], "response": [...]}``);
- ``docker.timeout``: network timeout in seconds (default 60);
- ``docker.upload_chunk_size`` / ``docker.monolithic_limit``: upload chunking, in bytes;
- ``docker.http_transport``: an ``httpx.BaseTransport`` to send requests through.
"""

from __future__ import annotations

from imagetypes.types import Credentials, TransportOptions

from ._auth import RegistryAuth, Scope
from ._client import BlobReader, ManifestInfo, RegistryClient, endpoint_host
from ._credentials import resolve_credentials
from ._destination import MOUNT_FROM_OPTION, DockerImageDestination
from ._errors import (
    AccessDeniedError,
    AuthenticationError,
    BlobUnknownError,
    ErrorDetail,
    ManifestUnknownError,
    RegistryConnectionError,
    RegistryError,
    RegistryTLSError,
    RegistryUnsupportedError,
    RepositoryNotFoundError,
    TooManyRequestsError,
)
from ._reference import DockerReference, DockerTransport, transport
from ._registry import PAGE_SIZE_OPTION, DockerRegistry, DockerRepository
from ._source import DockerImageSource
from ._tls import TLSConfigError

__all__ = [
    "MOUNT_FROM_OPTION",
    "PAGE_SIZE_OPTION",
    "AccessDeniedError",
    "AuthenticationError",
    "BlobReader",
    "BlobUnknownError",
    "DockerImageDestination",
    "DockerImageSource",
    "DockerReference",
    "DockerRegistry",
    "DockerRepository",
    "DockerTransport",
    "ErrorDetail",
    "ManifestInfo",
    "ManifestUnknownError",
    "RegistryAuth",
    "RegistryClient",
    "RegistryConnectionError",
    "RegistryError",
    "RegistryTLSError",
    "RegistryUnsupportedError",
    "RepositoryNotFoundError",
    "Scope",
    "TLSConfigError",
    "TooManyRequestsError",
    "endpoint_host",
    "open_registry",
    "resolve_credentials",
    "transport",
]


def open_registry(
    location: str,
    *,
    tls_verify: bool | None = None,
    cert_dir: str | None = None,
    credentials: Credentials | None = None,
    authfile: str | None = None,
    options: TransportOptions | None = None,
) -> DockerRegistry:
    """Open a registry (``docker://HOST[:PORT]`` or ``HOST[:PORT]``) to list and search it.

    The keyword arguments override the matching fields of ``options``.
    """
    import attrs

    opts = options or TransportOptions()
    opts = attrs.evolve(
        opts,
        tls_verify=opts.tls_verify if tls_verify is None else tls_verify,
        cert_dir=cert_dir or opts.cert_dir,
        credentials=credentials or opts.credentials,
        authfile=authfile or opts.authfile,
    )
    return DockerRegistry.open(location, opts)
