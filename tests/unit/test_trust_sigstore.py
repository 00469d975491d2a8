"""Key-based sigstore signatures: key files, signing, verification, cosign/skopeo vectors."""

from __future__ import annotations

import base64
import json

import pytest

pytest.importorskip("cryptography")

from imagetypes import Digest, Reference
from imagetypes.image import manifest_digest
from imagetypes.trust import (
    SIGSTORE_SIGNATURE_ANNOTATION,
    InvalidSignatureError,
    Policy,
    PolicyRejectedError,
    SigstoreKeyError,
    SigstoreSignature,
    SigstoreSigned,
    SigstoreUnavailableError,
    _sigstore,
    generate_sigstore_key,
    parse_signature_blob,
    sign_sigstore,
    sigstore_public_key,
    verify_sigstore,
)
from imagetypes.trust._secretbox import secretbox_open, secretbox_seal

# -- vectors made by other implementations ---------------------------------------------------

# containers/image's test fixtures (Apache-2.0): an image signed by cosign, and one signed by
# skopeo (containers/image 5.21) with a sigstore key, both verifiable with COSIGN_PUB.
FIXTURE_MANIFEST = (
    b'{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",'
    b'"config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1512,'
    b'"digest":"sha256:961769676411f082461f9ef46626dd7a2d1e2b2a38e6a44364bcbecf51e66dd4"},'
    b'"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip",'
    b'"size":2896510,'
    b'"digest":"sha256:9d16cba9fb961d1aafec9542f2bf7cb64acfc55245f9e4eb5abecd4cdc38d749"}]}'
)
COSIGN_PUB = (
    b"-----BEGIN PUBLIC KEY-----\n"
    b"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEFNLqFhf4fiN6o/glAuYnq2jYUeL0\n"
    b"vRuLu/z39pmbVwS9ff5AYnlwaP9sxREajdLY9ynM6G1sy6AAmb7Z63TsLg==\n"
    b"-----END PUBLIC KEY-----\n"
)
COSIGN_SIGNATURE = (
    b'\x00sigstore-json\n{"mimeType":"application/vnd.dev.cosign.simplesigning.v1+json",'
    b'"payload":"eyJjcml0aWNhbCI6eyJpZGVudGl0eSI6eyJkb2NrZXItcmVmZXJlbmNlIjoiMTkyLjE2OC42NC4y'
    b"OjUwMDAvY29zaWduLXNpZ25lZC1zaW5nbGUtc2FtcGxlIn0sImltYWdlIjp7ImRvY2tlci1tYW5pZmVzdC1kaWdl"
    b"c3QiOiJzaGEyNTY6NjM0YThmMzViNWYxNmRjZjRhYWEwODIyYWRjMGIxOTY0YmI3ODZmY2ExMmY2ODMxZGU4ZGRj"
    b"NDVlNTk4NmEwMCJ9LCJ0eXBlIjoiY29zaWduIGNvbnRhaW5lciBpbWFnZSBzaWduYXR1cmUifSwib3B0aW9uYWwi"
    b'Om51bGx9","annotations":{"dev.cosignproject.cosign/signature":"MEYCIQDmtamqYPjMg81nqeBhp'
    b'trPls44aA/r7PwLmspINJY4MwIhANKRpqe2E9UCBtGFdPoz/8jAbaQm4uP4h+IpwKTE6ClR"}}'
)
SKOPEO_SIGNATURE = (
    b'\x00sigstore-json\n{"mimeType":"application/vnd.dev.cosign.simplesigning.v1+json",'
    b'"payload":"eyJjcml0aWNhbCI6eyJpZGVudGl0eSI6eyJkb2NrZXItcmVmZXJlbmNlIjoiMTkyLjE2OC42NC4y'
    b"OjUwMDAvc2tvcGVvLXNpZ25lZDp0YWcifSwiaW1hZ2UiOnsiZG9ja2VyLW1hbmlmZXN0LWRpZ2VzdCI6InNoYTI1"
    b"Njo2MzRhOGYzNWI1ZjE2ZGNmNGFhYTA4MjJhZGMwYjE5NjRiYjc4NmZjYTEyZjY4MzFkZThkZGM0NWU1OTg2YTAw"
    b"In0sInR5cGUiOiJjb3NpZ24gY29udGFpbmVyIGltYWdlIHNpZ25hdHVyZSJ9LCJvcHRpb25hbCI6eyJjcmVhdG9y"
    b'IjoiY29udGFpbmVycy9pbWFnZSA1LjIxLjItZGV2IiwidGltZXN0YW1wIjoxNjU3Mjk2NjA5fX0=",'
    b'"annotations":{"dev.cosignproject.cosign/signature":"MEUCIAhoI92AgO+sWjr6N+QjEDQE9Wwg1oa'
    b'DDcaJIlALUqRlAiEA9+iphb/7b5T13Wy7KnlXMUM17uYTgEkUl97pu3GD/5M="}}'
)
# A private key written by `cosign generate-key-pair` with an empty password, published as a
# test vector, and its public key.
COSIGN_PRIVATE_KEY = (
    b"-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\n"
    b"eyJrZGYiOnsibmFtZSI6InNjcnlwdCIsInBhcmFtcyI6eyJOIjozMjc2OCwiciI6\n"
    b"OCwicCI6MX0sInNhbHQiOiJlRHVYMWRQMGtIWVRnK0xkbjcxM0tjbFVJaU92eFVX\n"
    b"VXgvNi9BbitFVk5BPSJ9LCJjaXBoZXIiOnsibmFtZSI6Im5hY2wvc2VjcmV0Ym94\n"
    b"Iiwibm9uY2UiOiJwaWhLL2txNmFXa2hqSVVHR3RVUzhTVkdHTDNIWWp4TCJ9LCJj\n"
    b"aXBoZXJ0ZXh0Ijoidm81SHVWRVFWcUZ2WFlQTTVPaTVaWHM5a255bndZU2dvcyth\n"
    b"VklIeHcrOGFPamNZNEtvVjVmL3lHRHR0K3BHV2toanJPR1FLOWdBbmtsazFpQ0c5\n"
    b"a2czUXpPQTZsU2JRaHgvZlowRVRZQ0hLeElncEdPRVRyTDlDenZDemhPZXVSOXJ6\n"
    b"TDcvRjBBVy9vUDVqZXR3dmJMNmQxOEhjck9kWE8yVmYxY2w0YzNLZjVRcnFSZzlN\n"
    b"dlRxQWFsNXJCNHNpY1JaMVhpUUJjb0YwNHc9PSJ9\n"
    b"-----END ENCRYPTED COSIGN PRIVATE KEY-----\n"
)
COSIGN_PRIVATE_KEY_PUB = (
    b"-----BEGIN PUBLIC KEY-----\n"
    b"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEu78QgxOOcao6U91CSzEXxrKhvFTt\n"
    b"JHNy+eX6EMePtDm8CnDF9HSwnTlD0itGJ/XHPQA5YX10fJAqI1y+ehlFMw==\n"
    b"-----END PUBLIC KEY-----\n"
)

MANIFEST = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'


@pytest.fixture(scope="module")
def key_pair() -> tuple[bytes, bytes]:
    return generate_sigstore_key("s3cret")


def test_secretbox_matches_nacl() -> None:
    # The test vector of Go's nacl/secretbox, produced by the C implementation of NaCl.
    box = secretbox_seal(bytes([3]) * 64, bytes([2]) * 24, bytes([1]) * 32)
    assert box.hex() == (
        "8442bc313f4626f1359e3b50122b6ce6fe66ddfe7d39d14e637eb4fd5b45beadab55198df6ab5368439792"
        "a23c87db70acb6156dc5ef957ac04f6276cf6093b84be77ff0849cc33e34b7254d5a8f65ad"
    )
    assert secretbox_open(box, bytes([2]) * 24, bytes([1]) * 32) == bytes([3]) * 64
    for i in range(len(box)):
        corrupted = bytearray(box)
        corrupted[i] ^= 0x20
        assert secretbox_open(bytes(corrupted), bytes([2]) * 24, bytes([1]) * 32) is None


def test_cosign_generated_key_decrypts() -> None:
    assert sigstore_public_key(COSIGN_PRIVATE_KEY, "") == COSIGN_PRIVATE_KEY_PUB
    with pytest.raises(SigstoreKeyError, match="wrong passphrase"):
        sigstore_public_key(COSIGN_PRIVATE_KEY, "not the password")


def test_generated_key_format(key_pair: tuple[bytes, bytes]) -> None:
    private, public = key_pair
    assert private.startswith(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    assert private.endswith(b"-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    body = b"".join(private.splitlines()[1:-1])
    envelope = json.loads(base64.b64decode(body))
    assert envelope["kdf"]["name"] == "scrypt"
    assert envelope["kdf"]["params"] == {"N": 32768, "r": 8, "p": 1}
    assert len(base64.b64decode(envelope["kdf"]["salt"])) == 32
    assert envelope["cipher"]["name"] == "nacl/secretbox"
    assert len(base64.b64decode(envelope["cipher"]["nonce"])) == 24
    assert public.startswith(b"-----BEGIN PUBLIC KEY-----\n")
    assert sigstore_public_key(private, "s3cret") == public
    with pytest.raises(SigstoreKeyError, match="wrong passphrase"):
        sigstore_public_key(private, "wrong")


def test_unsupported_key_files() -> None:
    with pytest.raises(SigstoreKeyError, match="not a PEM file"):
        sigstore_public_key(b"garbage", "")
    with pytest.raises(SigstoreKeyError, match="unsupported private key type"):
        sigstore_public_key(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "")


def test_sign_and_verify(key_pair: tuple[bytes, bytes]) -> None:
    private, public = key_pair
    payload, annotations = sign_sigstore(MANIFEST, "quay.io/ns/app:1", private, "s3cret")
    claims = json.loads(payload)
    assert claims["critical"] == {
        "type": "cosign container image signature",
        "image": {"docker-manifest-digest": str(Digest.from_bytes(MANIFEST))},
        "identity": {"docker-reference": "quay.io/ns/app:1"},
    }
    assert set(annotations) == {SIGSTORE_SIGNATURE_ANNOTATION}
    blob = SigstoreSignature(payload, annotations).to_blob()
    assert blob.startswith(b"\x00sigstore-json\n")
    verified = verify_sigstore(blob, MANIFEST, public, identity="quay.io/ns/app:1")
    assert verified.format == "sigstore"
    assert verified.docker_manifest_digest == manifest_digest(MANIFEST)
    assert verified.creator == "imagetypes"


def test_verification_failures(key_pair: tuple[bytes, bytes]) -> None:
    private, public = key_pair
    payload, annotations = sign_sigstore(MANIFEST, "quay.io/ns/app:1", private, "s3cret")
    sig = SigstoreSignature(payload, annotations)
    with pytest.raises(InvalidSignatureError, match="verification failed"):
        verify_sigstore(sig, MANIFEST, COSIGN_PUB, identity="quay.io/ns/app:1")
    with pytest.raises(InvalidSignatureError, match="does not match the manifest"):
        verify_sigstore(sig, MANIFEST + b" ", public, identity="quay.io/ns/app:1")
    with pytest.raises(InvalidSignatureError, match="does not match the expected"):
        verify_sigstore(sig, MANIFEST, public, identity="quay.io/ns/app:2")
    tampered = SigstoreSignature(payload.replace(b"app:1", b"app:2"), annotations)
    with pytest.raises(InvalidSignatureError, match="verification failed"):
        verify_sigstore(tampered, MANIFEST, public, identity="quay.io/ns/app:2")
    with pytest.raises(InvalidSignatureError, match="annotation is missing"):
        verify_sigstore(
            SigstoreSignature(payload, {}), MANIFEST, public, identity="quay.io/ns/app:1"
        )
    other = SigstoreSignature(payload, annotations, mime_type="application/x-other")
    with pytest.raises(InvalidSignatureError, match="not a signature"):
        verify_sigstore(other, MANIFEST, public, identity="quay.io/ns/app:1")


def test_cosign_and_skopeo_signatures_verify() -> None:
    cosign = verify_sigstore(
        COSIGN_SIGNATURE,
        FIXTURE_MANIFEST,
        COSIGN_PUB,
        identity="192.168.64.2:5000/cosign-signed-single-sample",
    )
    assert cosign.creator is None
    skopeo = verify_sigstore(
        SKOPEO_SIGNATURE,
        FIXTURE_MANIFEST,
        COSIGN_PUB,
        identity="192.168.64.2:5000/skopeo-signed:tag",
    )
    assert skopeo.creator == "containers/image 5.21.2-dev"
    assert skopeo.timestamp == 1657296609


def test_stored_form_is_byte_identical_to_containers_image() -> None:
    for blob in (COSIGN_SIGNATURE, SKOPEO_SIGNATURE):
        parsed = parse_signature_blob(blob)
        assert isinstance(parsed, SigstoreSignature)
        assert parsed.to_blob() == blob


def test_sigstore_signed_policy(key_pair: tuple[bytes, bytes]) -> None:
    private, public = key_pair
    ref = Reference.parse("quay.io/ns/app:1")
    payload, annotations = sign_sigstore(MANIFEST, ref, private, "s3cret")
    blob = SigstoreSignature(payload, annotations).to_blob()
    policy = Policy.parse(
        json.dumps(
            {
                "default": [{"type": "reject"}],
                "transports": {
                    "docker": {
                        "quay.io": [
                            {"type": "sigstoreSigned", "keyData": base64.b64encode(public).decode()}
                        ]
                    }
                },
            }
        )
    )
    policy.evaluate(str(ref), "docker", ref, MANIFEST, [blob])
    with pytest.raises(PolicyRejectedError, match="no signature exists"):
        policy.evaluate(str(ref), "docker", ref, MANIFEST, [])
    other = Reference.parse("quay.io/ns/other:1")
    with pytest.raises(PolicyRejectedError, match="is not accepted") as info:
        policy.evaluate(str(other), "docker", other, MANIFEST, [blob])
    assert info.value.requirement == "sigstoreSigned"
    wrong_key = Policy((SigstoreSigned(key_data=COSIGN_PUB),))
    with pytest.raises(PolicyRejectedError, match="verification failed"):
        wrong_key.evaluate(str(ref), "docker", ref, MANIFEST, [blob])


def test_sigstore_signed_policy_with_skopeo_vector() -> None:
    ref = Reference.parse("192.168.64.2:5000/skopeo-signed:tag")
    policy = Policy((SigstoreSigned(key_data=COSIGN_PUB),))
    policy.evaluate(str(ref), "docker", ref, FIXTURE_MANIFEST, [SKOPEO_SIGNATURE])


def test_without_cryptography_the_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sigstore, "_HAVE_CRYPTOGRAPHY", False)
    with pytest.raises(SigstoreUnavailableError, match=r"imagetypes\[sigstore\]"):
        generate_sigstore_key("x")
    with pytest.raises(SigstoreUnavailableError, match=r"imagetypes\[sigstore\]"):
        verify_sigstore(COSIGN_SIGNATURE, FIXTURE_MANIFEST, COSIGN_PUB, identity="a.io/b")
