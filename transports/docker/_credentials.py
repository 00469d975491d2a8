"""Where registry credentials come from: the single seam credential discovery plugs into."""

from __future__ import annotations

from imagetypes.types import Credentials, TransportOptions

from ._authfile import IDENTITY_TOKEN_USER, find_credentials

__all__ = ["IDENTITY_TOKEN_USER", "resolve_credentials"]


def resolve_credentials(
    registry_host: str, repository: str | None, options: TransportOptions
) -> Credentials | None:
    """The credentials to use for ``repository`` on ``registry_host`` (``HOST[:PORT]``).

    Explicit ``options.credentials`` win; ``options.no_creds`` means none at all; else auth
    files (``options.authfile``, the containers auth.json search path, docker's config) and
    credential helpers, as containers-auth.json(5) says.
    """
    return find_credentials(registry_host, repository, options)
