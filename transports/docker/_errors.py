"""Typed errors for registry failures, built from the distribution error JSON a registry returns."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import attrs

from imagetypes.errors import (
    BlobNotFoundError,
    ImageError,
    ManifestNotFoundError,
    NotFoundError,
    UnsupportedError,
)

__all__ = [
    "AccessDeniedError",
    "AuthenticationError",
    "BlobUnknownError",
    "ErrorDetail",
    "ManifestUnknownError",
    "RegistryConnectionError",
    "RegistryError",
    "RegistryTLSError",
    "RegistryUnsupportedError",
    "RepositoryNotFoundError",
    "TooManyRequestsError",
    "parse_error_details",
]


@attrs.frozen
class ErrorDetail:
    """One entry of a registry's ``errors`` list: a code such as ``MANIFEST_UNKNOWN``, a message."""

    code: str
    message: str = ""
    detail: Any = attrs.field(default=None, eq=False)

    def __str__(self) -> str:
        text = self.code
        if self.message:
            text += f": {self.message}"
        if self.detail not in (None, "", {}, []):
            text += f" ({json.dumps(self.detail, sort_keys=True)[:300]})"
        return text


class RegistryError(ImageError):
    """A registry answered with an error (or could not be reached).

    ``status`` is the HTTP status (``None`` when no answer came), ``errors`` what the registry
    said, decoded from its error JSON. ``retryable`` (see :attr:`ImageError.retryable`) is set
    for statuses the client's :class:`~imagetypes.RetryPolicy` retries and for uploads that
    could not be resumed.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        errors: Sequence[ErrorDetail] = (),
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.errors = tuple(errors)
        if retryable is not None:
            self.retryable = retryable

    @property
    def codes(self) -> tuple[str, ...]:
        """The error codes the registry sent (``("MANIFEST_UNKNOWN",)``)."""
        return tuple(e.code for e in self.errors)


class AuthenticationError(RegistryError):
    """The registry refused the credentials (or their absence): 401 / ``UNAUTHORIZED``."""


class AccessDeniedError(RegistryError):
    """Authenticated, but not allowed to do this: 403 / ``DENIED``."""


class TooManyRequestsError(RegistryError):
    """The registry is rate limiting us (429 / ``TOOMANYREQUESTS``) and retries ran out."""


class RegistryUnsupportedError(RegistryError, UnsupportedError):
    """The registry does not offer this operation (405 / ``UNSUPPORTED``, e.g. deletion off)."""


class RepositoryNotFoundError(RegistryError, NotFoundError):
    """No such repository (``NAME_UNKNOWN``)."""


class ManifestUnknownError(RegistryError, ManifestNotFoundError):
    """The registry has no manifest for that tag or digest."""


class BlobUnknownError(RegistryError, BlobNotFoundError):
    """The registry has no blob with that digest."""


class RegistryConnectionError(RegistryError):
    """The registry could not be reached, or the connection broke."""

    retryable = True


class RegistryTLSError(RegistryConnectionError):
    """TLS failed: the certificate was not trusted, or the server does not speak TLS."""

    # A matter of configuration: trying again cannot help.
    retryable = False


def parse_error_details(body: bytes) -> tuple[ErrorDetail, ...]:
    """The ``errors`` of a distribution error body; empty when the body is not one."""
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ()
    if not isinstance(obj, dict):
        return ()
    raw = obj.get("errors")
    if not isinstance(raw, list):
        # OAuth-style token server errors: {"error": "...", "error_description": "..."}
        if isinstance(obj.get("error"), str):
            desc = obj.get("error_description")
            return (ErrorDetail(obj["error"], desc if isinstance(desc, str) else ""),)
        return ()
    out = []
    for item in raw:
        if isinstance(item, dict) and isinstance(item.get("code"), str):
            msg = item.get("message")
            out.append(
                ErrorDetail(item["code"], msg if isinstance(msg, str) else "", item.get("detail"))
            )
    return tuple(out)
