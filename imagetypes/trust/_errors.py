"""The errors of :mod:`imagetypes.trust`."""

from __future__ import annotations

from ..errors import ImageError, UnsupportedError, VerificationError

__all__ = [
    "BlockedRegistryError",
    "GPGError",
    "InvalidPolicyError",
    "InvalidSignatureError",
    "PolicyRejectedError",
    "RegistriesConfError",
    "SigstoreUnavailableError",
]


class InvalidPolicyError(ImageError, ValueError):
    """A signature policy (``policy.json``) is malformed, or uses something unknown."""


class PolicyRejectedError(ImageError):
    """The signature policy does not allow the image.

    :attr:`requirement` is the type of the requirement that failed (``"reject"``,
    ``"signedBy"``, ...), :attr:`scope` the policy scope that applied (``""`` for a transport's
    default, ``None`` for the global default) and :attr:`reasons` why each signature, if any,
    was refused.
    """

    def __init__(
        self,
        message: str,
        *,
        requirement: str | None = None,
        transport: str | None = None,
        scope: str | None = None,
        reasons: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.requirement = requirement
        self.transport = transport
        self.scope = scope
        self.reasons = reasons


class InvalidSignatureError(VerificationError):
    """A signature is malformed, does not verify, or does not match the image or identity."""


class GPGError(ImageError):
    """The ``gpg`` program is missing or failed (importing keys or signing)."""


class SigstoreUnavailableError(UnsupportedError):
    """Sigstore signing or verification needs the ``imagetypes[sigstore]`` extra."""


class RegistriesConfError(ImageError, ValueError):
    """A ``registries.conf`` or ``registries.d`` file is malformed or inconsistent."""


class BlockedRegistryError(ImageError):
    """``registries.conf`` blocks the registry an image would be pulled from."""
