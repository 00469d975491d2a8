"""Signature storage formats and the signed payload of containers-signature(5).

A stored signature (a ``signature-N`` file of the ``dir:`` transport, a lookaside file, what
``ImageSource.get_signatures`` returns) is either an OpenPGP message ("simple signing"), or a
zero byte, a format name and a newline followed by the format's data; ``sigstore-json`` data is
a JSON object holding a cosign payload and its annotations.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from typing import Literal

import attrs

from ..digest import SUPPORTED_ALGORITHMS, Digest
from ..errors import InvalidDigestError, InvalidReferenceError
from ..image import manifest_digest
from ..reference import Reference
from ._errors import InvalidSignatureError
from ._identity import SignedIdentity
from ._json import decode_base64, go_json, load_json, object_fields

__all__ = [
    "SIGSTORE_PAYLOAD_TYPE",
    "SIGSTORE_SIGNATURE_ANNOTATION",
    "SIGSTORE_SIGNATURE_MIME_TYPE",
    "SIMPLE_SIGNING_PAYLOAD_TYPE",
    "SignaturePayload",
    "SigstoreSignature",
    "SimpleSignature",
    "VerifiedSignature",
    "parse_signature_blob",
]

#: ``critical.type`` of a simple-signing payload.
SIMPLE_SIGNING_PAYLOAD_TYPE = "atomic container signature"
#: ``critical.type`` of a sigstore (cosign) payload.
SIGSTORE_PAYLOAD_TYPE = "cosign container image signature"
#: The media type of a cosign signature payload.
SIGSTORE_SIGNATURE_MIME_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
#: The annotation holding the base64 signature of a sigstore payload.
SIGSTORE_SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"

_SIMPLE_SIGNING_FORMAT = b"simple-signing"
_SIGSTORE_FORMAT = b"sigstore-json"
# First bytes of an OpenPGP message: compressed data, one-pass signature or signature packets,
# old or new packet format (as containers/image recognizes them).
_OPENPGP_FIRST_BYTES = frozenset(
    {0xA0, 0xA1, 0xA2, 0xA3, 0xC8, 0x90, 0x91, 0x92, 0x3D, 0xC4, 0x88, 0x89, 0x8A, 0x8B, 0xC2}
)
#: Upper bound of a signature blob or payload; real ones are a few hundred bytes.
MAX_SIGNATURE_SIZE = 4 * 1024 * 1024


@attrs.frozen
class SimpleSignature:
    """A simple-signing signature: an OpenPGP message wrapping the JSON payload."""

    data: bytes

    def to_blob(self) -> bytes:
        """The stored form (the OpenPGP message itself)."""
        return self.data


@attrs.frozen
class SigstoreSignature:
    """A sigstore signature: a cosign payload plus annotations holding its signature."""

    payload: bytes
    annotations: Mapping[str, str] = attrs.field(factory=dict)
    mime_type: str = SIGSTORE_SIGNATURE_MIME_TYPE

    def to_blob(self) -> bytes:
        """The stored form containers/image and skopeo write (``\\0sigstore-json\\n{...}``)."""
        # Field order is that of containers/image's struct; annotations are a sorted map.
        body = (
            b'{"mimeType":'
            + go_json(self.mime_type)
            + b',"payload":'
            + go_json(base64.b64encode(self.payload).decode("ascii"))
            + b',"annotations":'
            + go_json(dict(self.annotations))
            + b"}"
        )
        return b"\x00" + _SIGSTORE_FORMAT + b"\n" + body


def parse_signature_blob(blob: bytes) -> SimpleSignature | SigstoreSignature:
    """Recognize a stored signature's format and split it into its parts."""
    if not blob:
        raise InvalidSignatureError("empty signature")
    if len(blob) > MAX_SIGNATURE_SIZE:
        raise InvalidSignatureError(f"signature of {len(blob)} bytes is too large")
    if blob[0] in _OPENPGP_FIRST_BYTES:
        return SimpleSignature(blob)
    if blob[0] != 0:
        raise InvalidSignatureError(
            f"unrecognized signature format, starting with byte {blob[0]:#04x}"
        )
    name, newline, chunk = blob[1:].partition(b"\n")
    if not newline:
        raise InvalidSignatureError("invalid signature format: no newline after the format name")
    if any(b < 32 or b >= 0x7F for b in name):
        raise InvalidSignatureError("invalid signature format name: not printable ASCII")
    if name == _SIMPLE_SIGNING_FORMAT:
        return SimpleSignature(chunk)
    if name != _SIGSTORE_FORMAT:
        raise InvalidSignatureError(f"unrecognized signature format {name.decode()!r}")
    obj = load_json(chunk, InvalidSignatureError, "sigstore signature")
    if not isinstance(obj, dict):
        raise InvalidSignatureError("sigstore signature must be a JSON object")
    mime_type = obj.get("mimeType", "")
    annotations = obj.get("annotations") or {}
    if not isinstance(mime_type, str) or not isinstance(annotations, dict):
        raise InvalidSignatureError("sigstore signature has invalid mimeType or annotations")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()):
        raise InvalidSignatureError("sigstore signature annotations must map strings to strings")
    payload = obj.get("payload")
    data = b"" if payload is None else decode_base64(payload, InvalidSignatureError, "payload")
    return SigstoreSignature(data, annotations, mime_type)


# -- the payload -----------------------------------------------------------------------------


@attrs.frozen
class SignaturePayload:
    """The claims inside a signature (untrusted until its signature is verified)."""

    docker_manifest_digest: str
    docker_reference: str
    creator: str | None = None
    timestamp: int | None = None

    def to_json(self, payload_type: str) -> bytes:
        """The payload as containers/image writes it."""
        if not self.docker_manifest_digest or not self.docker_reference:
            raise ValueError("a signature payload needs a manifest digest and a reference")
        optional: dict[str, object] = {}
        if self.creator is not None:
            optional["creator"] = self.creator
        if self.timestamp is not None:
            optional["timestamp"] = self.timestamp
        return go_json(
            {
                "critical": {
                    "type": payload_type,
                    "image": {"docker-manifest-digest": self.docker_manifest_digest},
                    "identity": {"docker-reference": self.docker_reference},
                },
                "optional": optional,
            }
        )

    @classmethod
    def parse(cls, data: bytes, payload_type: str) -> SignaturePayload:
        """Parse strictly, as containers/image does; wrong structure or type is an error."""
        err = InvalidSignatureError
        obj = object_fields(
            load_json(data, err, "signature payload"),
            err,
            "the signature payload",
            required=("critical", "optional"),
        )
        creator: str | None = None
        timestamp: int | None = None
        optional = obj["optional"]
        # A sigstore payload may have "optional": null; simple signing requires an object.
        if not (optional is None and payload_type == SIGSTORE_PAYLOAD_TYPE):
            if not isinstance(optional, dict):
                raise err("'optional' in the signature payload must be a JSON object")
            if "creator" in optional:
                if not isinstance(optional["creator"], str):
                    raise err("optional.creator in the signature payload must be a string")
                creator = optional["creator"]
            if "timestamp" in optional:
                value = optional["timestamp"]
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise err("optional.timestamp in the signature payload must be a number")
                if value != int(value):
                    raise err("optional.timestamp in the signature payload is not an integer")
                timestamp = int(value)
        critical = object_fields(
            obj["critical"], err, "critical", required=("type", "image", "identity")
        )
        if critical["type"] != payload_type:
            raise err(f"unrecognized signature type {critical['type']!r}")
        image = object_fields(
            critical["image"], err, "critical.image", required=("docker-manifest-digest",)
        )
        identity = object_fields(
            critical["identity"], err, "critical.identity", required=("docker-reference",)
        )
        digest, reference = image["docker-manifest-digest"], identity["docker-reference"]
        if not isinstance(digest, str) or not isinstance(reference, str):
            raise err("the digest and reference in a signature payload must be strings")
        return cls(digest, reference, creator, timestamp)


def new_payload(
    manifest: bytes, docker_reference: str | Reference, creator: str | None
) -> SignaturePayload:
    """The payload that signs ``manifest`` as ``docker_reference``, stamped with the time."""
    text = str(docker_reference)
    try:
        ref = Reference.parse(text)
    except InvalidReferenceError as e:
        raise InvalidReferenceError(f"cannot sign as {text!r}: {e}") from e
    if ref.is_name_only:
        raise InvalidReferenceError(
            f"cannot sign as {text!r}: the identity needs a tag or a digest"
        )
    return SignaturePayload(str(manifest_digest(manifest)), text, creator, int(time.time()))


@attrs.frozen
class VerifiedSignature:
    """What a signature that passed verification says."""

    #: ``"simple-signing"`` or ``"sigstore"``.
    format: Literal["simple-signing", "sigstore"]
    docker_manifest_digest: Digest
    docker_reference: str
    #: The fingerprint of the (primary) GPG key that made a simple signature.
    key_fingerprint: str | None = None
    creator: str | None = None
    timestamp: int | None = None


def manifest_matches_digest(manifest: bytes, expected: str) -> bool:
    """Whether ``manifest``'s canonical digest is ``expected`` (schema 1 aware)."""
    try:
        wanted = Digest.parse(expected)
    except InvalidDigestError:
        return False
    if wanted.algorithm == "sha256":
        return manifest_digest(manifest) == wanted
    if wanted.algorithm in SUPPORTED_ALGORITHMS:
        return Digest.from_bytes(manifest, wanted.algorithm) == wanted
    return False


def check_claims(
    payload: SignaturePayload,
    manifest: bytes,
    identity: str | Reference | SignedIdentity,
    image_reference: Reference | None,
) -> Digest:
    """Check a verified payload against the manifest and the identity rule; its digest."""
    if not manifest_matches_digest(manifest, payload.docker_manifest_digest):
        raise InvalidSignatureError(
            f"signature for digest {payload.docker_manifest_digest} does not match the manifest"
        )
    if isinstance(identity, SignedIdentity):
        if not identity.matches(image_reference, payload.docker_reference):
            shown = (
                "an image without a Docker reference"
                if image_reference is None
                else (str(image_reference))
            )
            raise InvalidSignatureError(
                f"signature for identity {payload.docker_reference} is not accepted for "
                f"{shown} ({identity.type})"
            )
    else:
        expected = identity if isinstance(identity, Reference) else Reference.parse(identity)
        try:
            signed = Reference.parse(payload.docker_reference)
        except InvalidReferenceError as e:
            raise InvalidSignatureError(
                f"invalid docker reference {payload.docker_reference!r} in the signature"
            ) from e
        if str(signed) != str(expected):
            raise InvalidSignatureError(
                f"signature for identity {payload.docker_reference} does not match "
                f"the expected {expected}"
            )
    return Digest.parse(payload.docker_manifest_digest)
