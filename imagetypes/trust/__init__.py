"""Trust: signature policy, simple (GPG) and sigstore signatures, registry configuration.

- :class:`Policy` reads ``policy.json`` (containers-policy.json(5)) and decides whether an
  image may be used: :meth:`Policy.evaluate` raises :class:`PolicyRejectedError` naming the
  requirement that failed.
- :func:`sign_simple` / :func:`verify_simple`: GPG "simple signing" (containers-signature(5)),
  through the ``gpg`` program.
- :func:`generate_sigstore_key`, :func:`sign_sigstore`, :func:`verify_sigstore`: key-based,
  cosign-compatible sigstore signatures (the ``imagetypes[sigstore]`` extra).
- :class:`RegistriesConf`: ``registries.conf`` and drop-ins (mirrors, blocking, short names);
  :class:`RegistriesD`: ``registries.d`` lookaside signature storage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._errors import (
        BlockedRegistryError,
        GPGError,
        InvalidPolicyError,
        InvalidSignatureError,
        PolicyRejectedError,
        RegistriesConfError,
        SigstoreUnavailableError,
    )
    from ._identity import (
        ExactReference,
        ExactRepository,
        MatchExact,
        MatchRepoDigestOrExact,
        MatchRepository,
        RemapIdentity,
        SignedIdentity,
        parse_signed_identity,
    )
    from ._policy import (
        InsecureAcceptAnything,
        Policy,
        PolicyRequirement,
        Reject,
        SignedBaseLayer,
        SignedBy,
        SigstoreSigned,
        default_policy_path,
        image_reference_scope,
        policy_scope_namespaces,
    )
    from ._registries_conf import Endpoint, PullSource, RegistriesConf, Registry
    from ._registries_d import LookasideConfig, RegistriesD, lookaside_signature_url
    from ._signature import (
        SIGSTORE_SIGNATURE_ANNOTATION,
        SIGSTORE_SIGNATURE_MIME_TYPE,
        SignaturePayload,
        SigstoreSignature,
        SimpleSignature,
        VerifiedSignature,
        parse_signature_blob,
    )
    from ._sigstore import (
        SigstoreKeyError,
        generate_sigstore_key,
        sign_sigstore,
        sigstore_public_key,
        verify_sigstore,
    )
    from ._simple import sign_simple, verify_simple

__all__ = [
    "SIGSTORE_SIGNATURE_ANNOTATION",
    "SIGSTORE_SIGNATURE_MIME_TYPE",
    "BlockedRegistryError",
    "Endpoint",
    "ExactReference",
    "ExactRepository",
    "GPGError",
    "InsecureAcceptAnything",
    "InvalidPolicyError",
    "InvalidSignatureError",
    "LookasideConfig",
    "MatchExact",
    "MatchRepoDigestOrExact",
    "MatchRepository",
    "Policy",
    "PolicyRejectedError",
    "PolicyRequirement",
    "PullSource",
    "RegistriesConf",
    "RegistriesConfError",
    "RegistriesD",
    "Registry",
    "Reject",
    "RemapIdentity",
    "SignaturePayload",
    "SignedBaseLayer",
    "SignedBy",
    "SignedIdentity",
    "SigstoreKeyError",
    "SigstoreSignature",
    "SigstoreSigned",
    "SigstoreUnavailableError",
    "SimpleSignature",
    "VerifiedSignature",
    "default_policy_path",
    "generate_sigstore_key",
    "image_reference_scope",
    "lookaside_signature_url",
    "parse_signature_blob",
    "parse_signed_identity",
    "policy_scope_namespaces",
    "sign_sigstore",
    "sign_simple",
    "sigstore_public_key",
    "verify_sigstore",
    "verify_simple",
]

# Each name is imported from its module on first use (PEP 562): reading a policy does not load
# the sigstore (cryptography) or GPG code, nor registries.conf parsing, until they are asked for.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "._errors": (
        "BlockedRegistryError",
        "GPGError",
        "InvalidPolicyError",
        "InvalidSignatureError",
        "PolicyRejectedError",
        "RegistriesConfError",
        "SigstoreUnavailableError",
    ),
    "._identity": (
        "ExactReference",
        "ExactRepository",
        "MatchExact",
        "MatchRepoDigestOrExact",
        "MatchRepository",
        "RemapIdentity",
        "SignedIdentity",
        "parse_signed_identity",
    ),
    "._policy": (
        "InsecureAcceptAnything",
        "Policy",
        "PolicyRequirement",
        "Reject",
        "SignedBaseLayer",
        "SignedBy",
        "SigstoreSigned",
        "default_policy_path",
        "image_reference_scope",
        "policy_scope_namespaces",
    ),
    "._registries_conf": ("Endpoint", "PullSource", "RegistriesConf", "Registry"),
    "._registries_d": ("LookasideConfig", "RegistriesD", "lookaside_signature_url"),
    "._signature": (
        "SIGSTORE_SIGNATURE_ANNOTATION",
        "SIGSTORE_SIGNATURE_MIME_TYPE",
        "SignaturePayload",
        "SigstoreSignature",
        "SimpleSignature",
        "VerifiedSignature",
        "parse_signature_blob",
    ),
    "._sigstore": (
        "SigstoreKeyError",
        "generate_sigstore_key",
        "sign_sigstore",
        "sigstore_public_key",
        "verify_sigstore",
    ),
    "._simple": ("sign_simple", "verify_simple"),
}
if not TYPE_CHECKING:  # hidden from type checkers, so a misspelt name stays an error there
    from .._lazy import lazy_exports

    __getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
