"""Simple signing (containers-signature(5)): GPG signatures over a JSON claim.

The claim names the manifest digest and the Docker reference the image is signed as. Signing
and verification run the ``gpg`` program; verification imports only the given public keys into
a throwaway GnuPG home, so nothing else on the machine is trusted.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence

from ..reference import Reference
from ._errors import InvalidSignatureError
from ._gpg import ephemeral_home, gpg_sign, gpg_verify, import_keys
from ._identity import SignedIdentity
from ._signature import (
    SIMPLE_SIGNING_PAYLOAD_TYPE,
    SignaturePayload,
    SigstoreSignature,
    VerifiedSignature,
    check_claims,
    new_payload,
    parse_signature_blob,
)

__all__ = ["DEFAULT_CREATOR", "sign_simple", "verify_simple"]

#: ``optional.creator`` written into the signatures imagetypes makes.
DEFAULT_CREATOR = "imagetypes"


def sign_simple(
    manifest: bytes,
    docker_reference: str | Reference,
    key_id: str,
    *,
    gpg_home: str | os.PathLike[str] | None = None,
    passphrase: str | None = None,
    creator: str | None = DEFAULT_CREATOR,
) -> bytes:
    """Sign ``manifest`` as ``docker_reference`` with the GPG key ``key_id``.

    ``docker_reference`` must have a tag or digest. ``gpg_home`` is the GnuPG home holding
    the secret key (default: ``$GNUPGHOME`` or ``~/.gnupg``). Returns the signature as stored
    (an OpenPGP message), what ``skopeo standalone-sign`` writes.
    """
    payload = new_payload(manifest, docker_reference, creator)
    return gpg_sign(
        payload.to_json(SIMPLE_SIGNING_PAYLOAD_TYPE),
        key_id,
        home=gpg_home,
        passphrase=passphrase,
    )


def verify_simple(
    signature: bytes,
    manifest: bytes,
    public_keys: bytes | Sequence[bytes],
    *,
    identity: str | Reference | SignedIdentity,
    image_reference: Reference | None = None,
    fingerprints: Collection[str] | None = None,
) -> VerifiedSignature:
    """Verify a simple signature of ``manifest``; raise :class:`InvalidSignatureError` if bad.

    ``public_keys`` is one GPG keyring (binary or armored) or several. Only signatures by
    those keys are accepted, and with ``fingerprints`` only by those of them. ``identity``
    is either the exact reference the signature must claim (as ``skopeo standalone-verify``
    checks) or a :class:`SignedIdentity` rule judged against ``image_reference``.
    """
    keyrings = [public_keys] if isinstance(public_keys, bytes) else list(public_keys)
    parsed = parse_signature_blob(signature)
    if isinstance(parsed, SigstoreSignature):
        raise InvalidSignatureError("this is a sigstore signature, not a simple signature")
    with ephemeral_home() as home:
        trusted = import_keys(home, keyrings)
        if not trusted:
            raise InvalidSignatureError("no GPG public keys could be imported")
        if fingerprints is not None:
            wanted = {f.upper().replace(" ", "") for f in fingerprints}
            trusted = [f for f in trusted if f in wanted]
        verified = gpg_verify(home, parsed.data)
    if verified.primary_fingerprint not in trusted and verified.signing_fingerprint not in trusted:
        raise InvalidSignatureError(
            f"signature by key {verified.primary_fingerprint} is not accepted"
        )
    payload = SignaturePayload.parse(verified.content, SIMPLE_SIGNING_PAYLOAD_TYPE)
    digest = check_claims(payload, manifest, identity, image_reference)
    return VerifiedSignature(
        format="simple-signing",
        docker_manifest_digest=digest,
        docker_reference=payload.docker_reference,
        key_fingerprint=verified.primary_fingerprint,
        creator=payload.creator,
        timestamp=payload.timestamp,
    )
