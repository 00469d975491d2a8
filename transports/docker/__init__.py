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
- ``docker.upload_chunk_size``: the largest PATCH of an upload, in bytes (default 0: each blob
  is streamed in one PATCH); ``docker.monolithic_limit``: blobs up to this size go in one PUT
  (default 2 MiB);
- ``docker.upload_replay_window``: how many of the last bytes sent are kept to resume a failed
  PATCH (default 4 MiB);
- ``docker.direct_read_min``: blobs at least this large, over plain HTTP/1.1, are read straight
  from the socket after httpx's buffer (default :data:`DIRECT_READ_MIN`, 1 MiB; negative: never);
- ``docker.http_transport``: an ``httpx.BaseTransport`` to send requests through;
- ``docker.registries_conf``: the registries.conf (a path or a
  :class:`~imagetypes.trust.RegistriesConf`) for blocking, insecure registries, location
  rewriting and pull mirrors (default: ``$CONTAINERS_REGISTRIES_CONF``, else the user's or the
  system's file);
- ``docker.registries_d``: the registries.d directory (a path or a
  :class:`~imagetypes.trust.RegistriesD`) saying where signatures live: lookaside storage,
  sigstore attachments (default: the user's, else the system's directory).
"""

from __future__ import annotations

from imagetypes.types import Credentials, TransportOptions

from ._auth import RegistryAuth, Scope
from ._client import DIRECT_READ_MIN, BlobReader, ManifestInfo, RegistryClient, endpoint_host
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
from ._mirrors import REGISTRIES_CONF_OPTION
from ._reference import DockerReference, DockerTransport, transport
from ._registry import PAGE_SIZE_OPTION, DockerRegistry, DockerRepository
from ._signatures import REGISTRIES_D_OPTION, SignatureStorage, sigstore_attachment_tag
from ._source import DockerImageSource
from ._tls import TLSConfigError

__all__ = [
    "DIRECT_READ_MIN",
    "MOUNT_FROM_OPTION",
    "PAGE_SIZE_OPTION",
    "REGISTRIES_CONF_OPTION",
    "REGISTRIES_D_OPTION",
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
    "SignatureStorage",
    "TLSConfigError",
    "TooManyRequestsError",
    "endpoint_host",
    "open_registry",
    "resolve_credentials",
    "sigstore_attachment_tag",
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
