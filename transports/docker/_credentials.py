"""Where registry credentials come from: the single seam credential discovery plugs into."""

from __future__ import annotations

from imagetypes.types import Credentials, TransportOptions

__all__ = ["IDENTITY_TOKEN_USER", "resolve_credentials"]

#: The user name that marks the password as an OAuth2 identity (refresh) token, as docker does.
IDENTITY_TOKEN_USER = "<token>"


def resolve_credentials(
    registry_host: str, repository: str | None, options: TransportOptions
) -> Credentials | None:
    """The credentials to use for ``repository`` on ``registry_host`` (``HOST[:PORT]``).

    Explicit ``options.credentials`` win; ``options.no_creds`` means none at all. Auth files
    (``options.authfile``, the containers auth.json search path, docker's config) are looked
    up here too once that lands, so every caller gets the same answer.
    """
    if options.no_creds:
        return None
    if options.credentials is not None:
        return options.credentials
    return None
