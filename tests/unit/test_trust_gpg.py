"""Simple signing with real GPG keys, and signedBy policy evaluation on top of it."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from imagetypes import Digest, Reference
from imagetypes.image import manifest_digest
from imagetypes.trust import (
    ExactReference,
    ExactRepository,
    GPGError,
    InvalidSignatureError,
    MatchExact,
    MatchRepoDigestOrExact,
    MatchRepository,
    Policy,
    PolicyRejectedError,
    RemapIdentity,
    SigstoreSignature,
    sign_simple,
    verify_simple,
)

pytestmark = pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed")

MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:" + "a" * 64,
            "size": 2,
        },
        "layers": [],
    },
    separators=(",", ":"),
).encode()
OTHER_MANIFEST = MANIFEST.replace(b'"size":2', b'"size":3')


@attrs.frozen
class Key:
    home: Path
    fingerprint: str
    public: bytes
    passphrase: str | None = None


def _gpg(home: Path, *args: str, stdin: bytes = b"") -> bytes:
    return subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--no-tty", *args],
        input=stdin,
        capture_output=True,
        check=True,
    ).stdout


def make_key(home: Path, name: str, passphrase: str | None = None) -> Key:
    home.mkdir(mode=0o700)
    # No passphrase caching, so a wrong passphrase is always noticed.
    (home / "gpg-agent.conf").write_text("default-cache-ttl 0\nmax-cache-ttl 0\n")
    _gpg(
        home,
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        passphrase or "",
        "--quick-gen-key",
        f"{name} <{name.lower().replace(' ', '.')}@example.com>",
        "ed25519",
        "sign",
        "never",
    )
    listing = _gpg(home, "--list-keys", "--with-colons").decode()
    fingerprint = next(
        line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr")
    )
    return Key(home, fingerprint, _gpg(home, "--export", fingerprint), passphrase)


def _kill_agent(home: Path) -> None:
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Key]]:
    root = tmp_path_factory.mktemp("gpg")
    made = {
        "one": make_key(root / "one", "Key One"),
        "two": make_key(root / "two", "Key Two"),
        "locked": make_key(root / "locked", "Key Locked", passphrase="correct horse"),
    }
    yield made
    for key in made.values():
        _kill_agent(key.home)


def sign(key: Key, ref: str, manifest: bytes = MANIFEST) -> bytes:
    return sign_simple(manifest, ref, key.fingerprint, gpg_home=key.home, passphrase=key.passphrase)


def _payload(signature: bytes, key: Key) -> dict[str, object]:
    content = _gpg(key.home, "--decrypt", stdin=signature)
    result = json.loads(content)
    assert isinstance(result, dict)
    return result


# -- simple signing --------------------------------------------------------------------------


def test_signature_payload_has_the_documented_format(keys: dict[str, Key]) -> None:
    sig = sign(keys["one"], "quay.io/ns/app:1.0")
    payload = _payload(sig, keys["one"])
    assert payload["critical"] == {
        "type": "atomic container signature",
        "image": {"docker-manifest-digest": str(Digest.from_bytes(MANIFEST))},
        "identity": {"docker-reference": "quay.io/ns/app:1.0"},
    }
    optional = payload["optional"]
    assert isinstance(optional, dict)
    assert optional["creator"] == "imagetypes"
    assert isinstance(optional["timestamp"], int)


def test_sign_and_verify_round_trip(keys: dict[str, Key]) -> None:
    sig = sign(keys["one"], "quay.io/ns/app:1.0")
    verified = verify_simple(sig, MANIFEST, keys["one"].public, identity="quay.io/ns/app:1.0")
    assert verified.format == "simple-signing"
    assert verified.docker_reference == "quay.io/ns/app:1.0"
    assert verified.docker_manifest_digest == manifest_digest(MANIFEST)
    assert verified.key_fingerprint == keys["one"].fingerprint


def test_passphrase_protected_key(keys: dict[str, Key]) -> None:
    key = keys["locked"]
    sig = sign(key, "quay.io/ns/app:1.0")
    assert verify_simple(sig, MANIFEST, key.public, identity="quay.io/ns/app:1.0")
    with pytest.raises(GPGError, match="signing with key"):
        sign_simple(
            MANIFEST, "quay.io/ns/app:1.0", key.fingerprint, gpg_home=key.home, passphrase="wrong"
        )


def test_identity_is_normalized_like_docker(keys: dict[str, Key]) -> None:
    sig = sign(keys["one"], "busybox:latest")
    verified = verify_simple(
        sig, MANIFEST, keys["one"].public, identity="docker.io/library/busybox:latest"
    )
    assert verified.docker_reference == "busybox:latest"


def test_wrong_key_is_rejected(keys: dict[str, Key]) -> None:
    sig = sign(keys["one"], "quay.io/ns/app:1.0")
    with pytest.raises(InvalidSignatureError, match="not among the trusted keys"):
        verify_simple(sig, MANIFEST, keys["two"].public, identity="quay.io/ns/app:1.0")


def test_fingerprint_filter(keys: dict[str, Key]) -> None:
    sig = sign(keys["one"], "quay.io/ns/app:1.0")
    both = [keys["one"].public, keys["two"].public]
    verify_simple(
        sig,
        MANIFEST,
        both,
        identity="quay.io/ns/app:1.0",
        fingerprints=[keys["one"].fingerprint.lower()],
    )
    with pytest.raises(InvalidSignatureError, match="is not accepted"):
        verify_simple(
            sig,
            MANIFEST,
            both,
            identity="quay.io/ns/app:1.0",
            fingerprints=[keys["two"].fingerprint],
        )


def test_mismatched_manifest_is_rejected(keys: dict[str, Key]) -> None:
    sig = sign(keys["one"], "quay.io/ns/app:1.0")
    with pytest.raises(InvalidSignatureError, match="does not match the manifest"):
        verify_simple(sig, OTHER_MANIFEST, keys["one"].public, identity="quay.io/ns/app:1.0")


def test_mismatched_identity_is_rejected(keys: dict[str, Key]) -> None:
    sig = sign(keys["one"], "quay.io/ns/app:1.0")
    with pytest.raises(InvalidSignatureError, match="does not match the expected"):
        verify_simple(sig, MANIFEST, keys["one"].public, identity="quay.io/ns/app:2.0")


def test_tampered_signature_is_rejected(keys: dict[str, Key]) -> None:
    sig = bytearray(sign(keys["one"], "quay.io/ns/app:1.0"))
    sig[len(sig) // 2] ^= 0x01
    with pytest.raises(InvalidSignatureError):
        verify_simple(bytes(sig), MANIFEST, keys["one"].public, identity="quay.io/ns/app:1.0")


def test_unsigned_data_and_garbage_are_rejected(keys: dict[str, Key]) -> None:
    with pytest.raises(InvalidSignatureError):
        verify_simple(
            b"\x00simple-signing\nnot a signature",
            MANIFEST,
            keys["one"].public,
            identity="quay.io/ns/app:1.0",
        )
    with pytest.raises(InvalidSignatureError, match="unrecognized signature format"):
        verify_simple(b"{}", MANIFEST, keys["one"].public, identity="quay.io/ns/app:1.0")
    with pytest.raises(InvalidSignatureError, match="no GPG public keys"):
        verify_simple(
            sign(keys["one"], "quay.io/a/b:1"), MANIFEST, b"not a key", identity="quay.io/a/b:1"
        )


def test_a_signature_of_another_payload_type_is_rejected(keys: dict[str, Key]) -> None:
    payload = json.dumps(
        {
            "critical": {
                "type": "something else",
                "image": {"docker-manifest-digest": str(Digest.from_bytes(MANIFEST))},
                "identity": {"docker-reference": "quay.io/a/b:1"},
            },
            "optional": {},
        }
    ).encode()
    sig = _gpg(keys["one"].home, "--sign", stdin=payload)
    with pytest.raises(InvalidSignatureError, match="unrecognized signature type"):
        verify_simple(sig, MANIFEST, keys["one"].public, identity="quay.io/a/b:1")


def test_sign_needs_a_tag_or_digest(keys: dict[str, Key]) -> None:
    from imagetypes import InvalidReferenceError

    with pytest.raises(InvalidReferenceError, match="tag or a digest"):
        sign(keys["one"], "quay.io/ns/app")


def test_sign_with_unknown_key_fails_clearly(keys: dict[str, Key]) -> None:
    with pytest.raises(GPGError, match="signing with key"):
        sign_simple(MANIFEST, "quay.io/a/b:1", "0" * 40, gpg_home=keys["one"].home)


# -- signedBy policies -----------------------------------------------------------------------


def _policy(requirement: dict[str, object], scope: str = "quay.io/ns") -> Policy:
    return Policy.parse(
        json.dumps(
            {
                "default": [{"type": "reject"}],
                "transports": {"docker": {scope: [requirement]}},
            }
        )
    )


def _signed_by(
    key: Key, identity: dict[str, object] | None = None, **extra: object
) -> dict[str, object]:
    req: dict[str, object] = {
        "type": "signedBy",
        "keyType": "GPGKeys",
        "keyData": base64.b64encode(key.public).decode(),
    }
    if identity is not None:
        req["signedIdentity"] = identity
    req.update(extra)
    return req


def _evaluate(
    policy: Policy, ref: str, signatures: list[bytes], manifest: bytes = MANIFEST
) -> None:
    reference = Reference.parse(ref)
    scope = f"{reference.name}@{reference.digest}" if reference.digest else str(reference)
    policy.evaluate(scope, "docker", reference, manifest, signatures)


def test_signed_by_accepts_a_good_signature(keys: dict[str, Key]) -> None:
    sig = sign(keys["one"], "quay.io/ns/app:1.0")
    _evaluate(_policy(_signed_by(keys["one"])), "quay.io/ns/app:1.0", [sig])


def test_signed_by_key_path_and_key_paths(keys: dict[str, Key], tmp_path: Path) -> None:
    one, two = tmp_path / "one.gpg", tmp_path / "two.gpg"
    one.write_bytes(keys["one"].public)
    two.write_bytes(keys["two"].public)
    sig = sign(keys["two"], "quay.io/ns/app:1.0")
    base = {"type": "signedBy", "keyType": "GPGKeys"}
    _evaluate(_policy({**base, "keyPaths": [str(one), str(two)]}), "quay.io/ns/app:1.0", [sig])
    with pytest.raises(PolicyRejectedError, match="not among the trusted keys"):
        _evaluate(_policy({**base, "keyPath": str(one)}), "quay.io/ns/app:1.0", [sig])
    with pytest.raises(PolicyRejectedError, match="cannot read the GPG keyring"):
        _evaluate(
            _policy({**base, "keyPath": str(tmp_path / "missing")}), "quay.io/ns/app:1.0", [sig]
        )


def test_signed_by_requires_a_signature(keys: dict[str, Key]) -> None:
    with pytest.raises(PolicyRejectedError, match="no signature exists") as info:
        _evaluate(_policy(_signed_by(keys["one"])), "quay.io/ns/app:1.0", [])
    assert info.value.requirement == "signedBy"
    assert info.value.scope == "quay.io/ns"
    assert "transports.docker['quay.io/ns']" in str(info.value)


def test_signed_by_with_the_wrong_key(keys: dict[str, Key]) -> None:
    sig = sign(keys["two"], "quay.io/ns/app:1.0")
    with pytest.raises(PolicyRejectedError, match="not among the trusted keys"):
        _evaluate(_policy(_signed_by(keys["one"])), "quay.io/ns/app:1.0", [sig])


def test_signed_by_with_a_mismatched_identity(keys: dict[str, Key]) -> None:
    sig = sign(keys["one"], "quay.io/ns/other:1.0")
    with pytest.raises(PolicyRejectedError, match=r"identity quay.io/ns/other:1.0 is not accepted"):
        _evaluate(_policy(_signed_by(keys["one"])), "quay.io/ns/app:1.0", [sig])


def test_signed_by_with_a_modified_manifest(keys: dict[str, Key]) -> None:
    sig = sign(keys["one"], "quay.io/ns/app:1.0")
    with pytest.raises(PolicyRejectedError, match="does not match the manifest"):
        _evaluate(_policy(_signed_by(keys["one"])), "quay.io/ns/app:1.0", [sig], OTHER_MANIFEST)


def test_one_good_signature_among_bad_ones_is_enough(keys: dict[str, Key]) -> None:
    bad = sign(keys["two"], "quay.io/ns/app:1.0")
    good = sign(keys["one"], "quay.io/ns/app:1.0")
    _evaluate(_policy(_signed_by(keys["one"])), "quay.io/ns/app:1.0", [bad, good])
    with pytest.raises(PolicyRejectedError, match="none of the signatures were accepted") as info:
        _evaluate(_policy(_signed_by(keys["one"])), "quay.io/ns/app:1.0", [bad, bad])
    assert info.value.requirement == "signedBy"
    assert len(info.value.reasons) == 2
    assert all("not among the trusted keys" in r for r in info.value.reasons)


def test_sigstore_signatures_are_ignored_by_signed_by(keys: dict[str, Key]) -> None:
    other = SigstoreSignature(b"{}", {}).to_blob()
    with pytest.raises(PolicyRejectedError, match="no signature exists"):
        _evaluate(_policy(_signed_by(keys["one"])), "quay.io/ns/app:1.0", [other])


DIGEST_REF = "quay.io/ns/app@" + str(Digest.from_bytes(MANIFEST))


@pytest.mark.parametrize(
    ("identity", "signed_as", "image_ref", "accepted"),
    [
        ({"type": "matchExact"}, "quay.io/ns/app:1.0", "quay.io/ns/app:1.0", True),
        ({"type": "matchExact"}, "quay.io/ns/app:1.0", "quay.io/ns/app:2.0", False),
        ({"type": "matchExact"}, "quay.io/ns/app:1.0", DIGEST_REF, False),
        ({"type": "matchRepoDigestOrExact"}, "quay.io/ns/app:1.0", DIGEST_REF, True),
        ({"type": "matchRepoDigestOrExact"}, "quay.io/ns/app:1.0", "quay.io/ns/app:2.0", False),
        ({"type": "matchRepository"}, "quay.io/ns/app:1.0", "quay.io/ns/app:2.0", True),
        ({"type": "matchRepository"}, "quay.io/ns/other:1.0", "quay.io/ns/app:1.0", False),
        (
            {"type": "exactReference", "dockerReference": "example.com/up/app:v1"},
            "example.com/up/app:v1",
            "quay.io/ns/app:1.0",
            True,
        ),
        (
            {"type": "exactReference", "dockerReference": "example.com/up/app:v1"},
            "example.com/up/app:v2",
            "quay.io/ns/app:1.0",
            False,
        ),
        (
            {"type": "exactRepository", "dockerRepository": "example.com/up/app"},
            "example.com/up/app:v9",
            "quay.io/ns/app:1.0",
            True,
        ),
        (
            {"type": "exactRepository", "dockerRepository": "example.com/up/app"},
            "example.com/up/other:v9",
            "quay.io/ns/app:1.0",
            False,
        ),
        (
            {"type": "remapIdentity", "prefix": "quay.io/ns", "signedPrefix": "example.com/up"},
            "example.com/up/app:1.0",
            "quay.io/ns/app:1.0",
            True,
        ),
        (
            {"type": "remapIdentity", "prefix": "quay.io/ns", "signedPrefix": "example.com/up"},
            "quay.io/ns/app:1.0",
            "quay.io/ns/app:1.0",
            False,
        ),
    ],
)
def test_signed_identity_rules(
    keys: dict[str, Key],
    identity: dict[str, object],
    signed_as: str,
    image_ref: str,
    accepted: bool,
) -> None:
    sig = sign(keys["one"], signed_as)
    policy = _policy(_signed_by(keys["one"], identity))
    if accepted:
        _evaluate(policy, image_ref, [sig])
    else:
        with pytest.raises(PolicyRejectedError, match="is not accepted"):
            _evaluate(policy, image_ref, [sig])


def test_identity_objects_match_directly() -> None:
    image = Reference.parse("quay.io/ns/app:1.0")
    assert MatchExact().matches(image, "quay.io/ns/app:1.0")
    assert not MatchExact().matches(None, "quay.io/ns/app:1.0")
    assert MatchRepoDigestOrExact().matches(image, "quay.io/ns/app:1.0")
    assert not MatchRepoDigestOrExact().matches(image, "quay.io/ns/app")
    assert MatchRepository().matches(image, "quay.io/ns/app")
    assert ExactReference("busybox:1").matches(None, "docker.io/library/busybox:1")
    assert ExactRepository("busybox").matches(None, "docker.io/library/busybox:2")
    remap = RemapIdentity("quay.io/ns", "example.com/up")
    assert remap.matches(image, "example.com/up/app:1.0")
    # Only whole path components are remapped.
    assert not remap.matches(Reference.parse("quay.io/nsx/app:1.0"), "example.com/upx/app:1.0")


def test_default_requirement_applies_when_no_scope_matches(keys: dict[str, Key]) -> None:
    sig = sign(keys["one"], "docker.io/library/busybox:1")
    with pytest.raises(PolicyRejectedError, match=r"\(default, requirement 1 of 1, reject\)"):
        _evaluate(_policy(_signed_by(keys["one"])), "docker.io/library/busybox:1", [sig])
