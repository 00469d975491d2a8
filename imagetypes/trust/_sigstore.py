"""Key-based sigstore (cosign-compatible) signatures.

A sigstore signature is a JSON payload (containers-signature(5) claims with type
``cosign container image signature``) signed with a private key; the base64 signature travels
in the ``dev.cosignproject.cosign/signature`` annotation. Keys are the files
``cosign generate-key-pair`` and ``skopeo generate-sigstore-key`` write: a PEM
``ENCRYPTED SIGSTORE PRIVATE KEY`` (scrypt + NaCl secretbox around a PKCS#8 key) and a PEM
``PUBLIC KEY``. The asymmetric cryptography needs the ``cryptography`` package
(``pip install 'imagetypes[sigstore]'``).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from ..reference import Reference
from ._errors import InvalidSignatureError, SigstoreUnavailableError
from ._identity import SignedIdentity
from ._secretbox import decrypt_envelope, encrypt_envelope
from ._signature import (
    SIGSTORE_PAYLOAD_TYPE,
    SIGSTORE_SIGNATURE_ANNOTATION,
    SIGSTORE_SIGNATURE_MIME_TYPE,
    SignaturePayload,
    SigstoreSignature,
    VerifiedSignature,
    check_claims,
    new_payload,
    parse_signature_blob,
)

__all__ = [
    "SigstoreKeyError",
    "generate_sigstore_key",
    "sign_sigstore",
    "sigstore_public_key",
    "verify_sigstore",
]

_PEM_TYPE = "ENCRYPTED SIGSTORE PRIVATE KEY"
_LEGACY_PEM_TYPE = "ENCRYPTED COSIGN PRIVATE KEY"
_PEM_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)\r?\n?-----END \1-----", re.DOTALL)
#: ``optional.creator`` written into sigstore payloads imagetypes makes.
DEFAULT_CREATOR = "imagetypes"


try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    _HAVE_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover - exercised only without the extra
    _HAVE_CRYPTOGRAPHY = False


class SigstoreKeyError(InvalidSignatureError):
    """A sigstore key file is malformed, of an unsupported kind, or cannot be decrypted."""


def _require_cryptography() -> None:
    if not _HAVE_CRYPTOGRAPHY:
        raise SigstoreUnavailableError(
            "sigstore signatures need the 'cryptography' package: "
            "pip install 'imagetypes[sigstore]'"
        )


def _pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    blocks = []
    for match in _PEM_RE.finditer(data):
        body = b"".join(line.strip() for line in match.group(2).splitlines() if b":" not in line)
        try:
            blocks.append((match.group(1).decode(), base64.b64decode(body, validate=True)))
        except binascii.Error as e:
            raise SigstoreKeyError(f"invalid base64 in PEM block {match.group(1)!r}") from e
    return blocks


def _to_bytes(value: str | bytes | None) -> bytes:
    if value is None:
        return b""
    return value.encode("utf-8") if isinstance(value, str) else value


def generate_sigstore_key(passphrase: str | bytes) -> tuple[bytes, bytes]:
    """A new ECDSA P-256 key pair as (encrypted private key PEM, public key PEM).

    The files are what ``cosign generate-key-pair`` writes; cosign, skopeo and podman read
    them (``--sign-by-sigstore-private-key`` and a ``sigstoreSigned`` policy ``keyPath``).
    """
    _require_cryptography()
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    envelope = encrypt_envelope(der, _to_bytes(passphrase))
    body = base64.encodebytes(envelope).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    private_pem = (
        f"-----BEGIN {_PEM_TYPE}-----\n".encode()
        + b"\n".join(lines)
        + f"\n-----END {_PEM_TYPE}-----\n".encode()
    )
    public_pem: bytes = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def _load_private_key(private_key: bytes, passphrase: str | bytes | None) -> Any:
    _require_cryptography()
    blocks = _pem_blocks(private_key)
    if not blocks:
        raise SigstoreKeyError("the private key is not a PEM file")
    kind, data = blocks[0]
    if kind not in (_PEM_TYPE, _LEGACY_PEM_TYPE):
        raise SigstoreKeyError(
            f"unsupported private key type {kind!r}: expected {_PEM_TYPE!r} "
            "(from cosign generate-key-pair or skopeo generate-sigstore-key)"
        )
    der = decrypt_envelope(data, _to_bytes(passphrase), SigstoreKeyError)
    try:
        return serialization.load_der_private_key(der, password=None)
    except ValueError as e:
        raise SigstoreKeyError(f"cannot parse the decrypted private key: {e}") from e


def sigstore_public_key(private_key: bytes, passphrase: str | bytes | None) -> bytes:
    """The public key PEM that belongs to an encrypted sigstore private key."""
    key = _load_private_key(private_key, passphrase)
    public: bytes = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return public


def sign_sigstore(
    manifest: bytes,
    docker_reference: str | Reference,
    private_key: bytes,
    passphrase: str | bytes | None,
    *,
    creator: str | None = DEFAULT_CREATOR,
) -> tuple[bytes, dict[str, str]]:
    """Sign ``manifest`` as ``docker_reference`` with an encrypted sigstore private key.

    Returns the payload and its annotations (with ``dev.cosignproject.cosign/signature``):
    what a registry stores as a cosign signature layer. ``SigstoreSignature(payload,
    annotations).to_blob()`` is the form skopeo keeps in ``dir:`` and lookaside storage.
    """
    key = _load_private_key(private_key, passphrase)
    payload = new_payload(manifest, docker_reference, creator).to_json(SIGSTORE_PAYLOAD_TYPE)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        raw = key.sign(payload, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPrivateKey):
        raw = key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.sign(payload)
    else:
        raise SigstoreKeyError(f"unsupported private key type {type(key).__name__}")
    signature = base64.b64encode(raw).decode("ascii")
    return payload, {SIGSTORE_SIGNATURE_ANNOTATION: signature}


def _load_public_key(public_key: bytes) -> Any:
    _require_cryptography()
    try:
        return serialization.load_pem_public_key(public_key)
    except ValueError as e:
        raise SigstoreKeyError(f"invalid sigstore public key: {e}") from e


def _verify_raw(key: Any, signature: bytes, payload: bytes) -> None:
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, payload)
        else:
            raise SigstoreKeyError(f"unsupported public key type {type(key).__name__}")
    except InvalidSignature as e:
        raise InvalidSignatureError(
            "cryptographic signature verification failed: the signature was not made by "
            "this key over this payload"
        ) from e


def verify_sigstore(
    signature: bytes | SigstoreSignature,
    manifest: bytes,
    public_key: bytes,
    *,
    identity: str | Reference | SignedIdentity,
    image_reference: Reference | None = None,
) -> VerifiedSignature:
    """Verify a sigstore signature of ``manifest`` with a PEM public key.

    ``signature`` is a stored blob (``\\0sigstore-json\\n...``) or a parsed
    :class:`SigstoreSignature` (e.g. built from a registry's payload and annotations).
    ``identity`` works as for :func:`verify_simple`.
    """
    sig = parse_signature_blob(signature) if isinstance(signature, bytes) else signature
    if not isinstance(sig, SigstoreSignature):
        raise InvalidSignatureError("this is a simple signature, not a sigstore signature")
    if sig.mime_type != SIGSTORE_SIGNATURE_MIME_TYPE:
        raise InvalidSignatureError(
            f"sigstore attachment of type {sig.mime_type!r} is not a signature"
        )
    encoded = sig.annotations.get(SIGSTORE_SIGNATURE_ANNOTATION)
    if encoded is None:
        raise InvalidSignatureError(f"the {SIGSTORE_SIGNATURE_ANNOTATION} annotation is missing")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except binascii.Error as e:
        raise InvalidSignatureError(f"invalid base64 in the signature annotation: {e}") from e
    _verify_raw(_load_public_key(public_key), raw, sig.payload)
    payload = SignaturePayload.parse(sig.payload, SIGSTORE_PAYLOAD_TYPE)
    digest = check_claims(payload, manifest, identity, image_reference)
    return VerifiedSignature(
        format="sigstore",
        docker_manifest_digest=digest,
        docker_reference=payload.docker_reference,
        creator=payload.creator,
        timestamp=payload.timestamp,
    )
