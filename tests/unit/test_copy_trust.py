"""The copy engine and trust: policies checked before anything is written, signing on copy."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import attrs
import pytest
from gpgkit import Key, key_pair
from imagebuilder import BuiltImage, make_image, make_multiarch, write_oci_layout

from imagetypes import Digest, Platform, Reference, TransportOptions, UnsupportedError
from imagetypes.copy import CopyOptions, copy_image
from imagetypes.image import manifest_digest
from imagetypes.trust import (
    GPGError,
    InvalidSignatureError,
    Policy,
    PolicyRejectedError,
    SigstoreSignature,
    parse_signature_blob,
    sign_simple,
    verify_simple,
)

REF = "quay.io/ns/app:1.0"
EXACT = {"type": "exactReference", "dockerReference": REF}

needs_gpg = pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Key, Key]]:
    if shutil.which("gpg") is None:
        pytest.skip("gpg is not installed")
    with key_pair(tmp_path_factory.mktemp("gpg")) as pair:
        yield pair


@pytest.fixture
def image() -> BuiltImage:
    return make_image(seed=11, layer_sizes=(300, 200))


def write_dir_image(path: Path, image: BuiltImage, signatures: Sequence[bytes] = ()) -> Path:
    """A dir: image written by hand (the layout containers/image uses)."""
    path.mkdir(parents=True)
    (path / "version").write_text("Directory Transport Version: 1.1\n")
    (path / "manifest.json").write_bytes(image.manifest)
    for digest, blob in image.blobs.items():
        (path / digest.hex).write_bytes(blob)
    for index, signature in enumerate(signatures, 1):
        (path / f"signature-{index}").write_bytes(signature)
    return path


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (including hidden ones) with its bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(root.rglob("*"))
    }


def signed_by_policy(key: Key, identity: Mapping[str, object] = EXACT) -> Policy:
    requirement = {
        "type": "signedBy",
        "keyType": "GPGKeys",
        "keyData": base64.b64encode(key.public).decode(),
        "signedIdentity": dict(identity),
    }
    document = {
        "default": [{"type": "reject"}],
        "transports": {"dir": {"": [requirement]}, "oci": {"": [requirement]}},
    }
    return Policy.parse(json.dumps(document))


ACCEPT = Policy.insecure_accept_anything()
REJECT = Policy.parse('{"default": [{"type": "reject"}]}')


# -- the policy ------------------------------------------------------------------------------


def test_rejecting_policy_writes_nothing(tmp_path: Path, image: BuiltImage) -> None:
    src = write_dir_image(tmp_path / "src", image)
    before = snapshot(tmp_path)
    with pytest.raises(PolicyRejectedError, match="rejected by policy") as info:
        copy_image(f"dir:{src}", f"dir:{tmp_path / 'out' / 'dst'}", CopyOptions(policy=REJECT))
    assert info.value.requirement == "reject"
    assert not (tmp_path / "out").exists()  # not even the parent folder was created
    assert snapshot(tmp_path) == before


def test_accepting_policy_copies(tmp_path: Path, image: BuiltImage) -> None:
    src = write_dir_image(tmp_path / "src", image)
    result = copy_image(f"dir:{src}", f"dir:{tmp_path / 'dst'}", CopyOptions(policy=ACCEPT))
    assert (tmp_path / "dst" / "manifest.json").read_bytes() == image.manifest
    assert result.manifest_digest == image.digest


def test_policy_is_evaluated_before_the_destination_is_opened(
    tmp_path: Path, image: BuiltImage
) -> None:
    """An existing OCI layout stays byte-identical when the policy rejects the source."""
    src = write_dir_image(tmp_path / "src", image)
    layout = write_oci_layout(tmp_path / "layout", {"old": make_image(seed=3)})
    before = snapshot(layout)
    with pytest.raises(PolicyRejectedError):
        copy_image(f"dir:{src}", f"oci:{layout}:new", CopyOptions(policy=REJECT))
    assert snapshot(layout) == before


@needs_gpg
@pytest.mark.parametrize(
    ("signer", "trusted", "signed_as", "message"),
    [
        (None, 0, REF, "no signature exists"),  # a signature is required, there is none
        (0, 1, REF, "not among the trusted keys"),  # signed with another key
        (0, 0, "quay.io/ns/other:1.0", "not accepted"),  # a mismatched identity
    ],
)
def test_signed_by_policy_refuses_and_writes_nothing(
    keys: tuple[Key, Key],
    image: BuiltImage,
    tmp_path: Path,
    signer: int | None,
    trusted: int,
    signed_as: str,
    message: str,
) -> None:
    sigs = []
    if signer is not None:
        key = keys[signer]
        sigs.append(sign_simple(image.manifest, signed_as, key.fingerprint, gpg_home=key.home))
    src = write_dir_image(tmp_path / "src", image, sigs)
    layout = write_oci_layout(tmp_path / "layout", {"old": make_image(seed=4)})
    before = snapshot(tmp_path)
    policy = signed_by_policy(keys[trusted])
    for destination in (f"dir:{tmp_path / 'dst'}", f"oci:{layout}:new"):
        with pytest.raises(PolicyRejectedError, match=message) as info:
            copy_image(f"dir:{src}", destination, CopyOptions(policy=policy))
        assert info.value.requirement == "signedBy"
        assert snapshot(tmp_path) == before


@needs_gpg
def test_signed_by_policy_accepts_a_good_signature(
    keys: tuple[Key, Key], image: BuiltImage, tmp_path: Path
) -> None:
    one, _ = keys
    sig = sign_simple(image.manifest, REF, one.fingerprint, gpg_home=one.home)
    src = write_dir_image(tmp_path / "src", image, [sig])
    copy_image(f"dir:{src}", f"dir:{tmp_path / 'dst'}", CopyOptions(policy=signed_by_policy(one)))
    assert (tmp_path / "dst" / "signature-1").read_bytes() == sig
    # remove_signatures drops them from the copy, but the policy still sees them.
    copy_image(
        f"dir:{src}",
        f"dir:{tmp_path / 'bare'}",
        CopyOptions(policy=signed_by_policy(one), remove_signatures=True),
    )
    assert (tmp_path / "bare" / "manifest.json").exists()
    assert not (tmp_path / "bare" / "signature-1").exists()


def test_policy_scope_is_the_source_path(tmp_path: Path, image: BuiltImage) -> None:
    """A scope naming the source folder applies; another folder's does not."""
    src = write_dir_image(tmp_path / "src", image)
    document = {
        "default": [{"type": "insecureAcceptAnything"}],
        "transports": {"dir": {str(src.resolve()): [{"type": "reject"}]}},
    }
    policy = Policy.parse(json.dumps(document))
    with pytest.raises(PolicyRejectedError) as info:
        copy_image(f"dir:{src}", f"dir:{tmp_path / 'dst'}", CopyOptions(policy=policy))
    assert info.value.scope == str(src.resolve())
    other = write_dir_image(tmp_path / "other", image)
    copy_image(f"dir:{other}", f"dir:{tmp_path / 'dst'}", CopyOptions(policy=policy))
    assert (tmp_path / "dst" / "manifest.json").exists()


# -- signing with GPG ------------------------------------------------------------------------


@needs_gpg
def test_sign_by_signs_the_manifest_written(
    keys: tuple[Key, Key], image: BuiltImage, tmp_path: Path
) -> None:
    one, _ = keys
    src = write_dir_image(tmp_path / "src", image)
    options = CopyOptions(sign_by=one.fingerprint, gpg_home=str(one.home), sign_identity=REF)
    result = copy_image(f"dir:{src}", f"dir:{tmp_path / 'dst'}", options)
    written = (tmp_path / "dst" / "manifest.json").read_bytes()
    sig = (tmp_path / "dst" / "signature-1").read_bytes()
    assert not (tmp_path / "dst" / "signature-2").exists()
    verified = verify_simple(sig, written, one.public, identity=REF)
    assert verified.docker_manifest_digest == result.manifest_digest
    assert verified.key_fingerprint == one.fingerprint
    # And the signed copy passes a policy that requires the key.
    copy_image(
        f"dir:{tmp_path / 'dst'}",
        f"dir:{tmp_path / 'again'}",
        CopyOptions(policy=signed_by_policy(one)),
    )
    assert (tmp_path / "again" / "signature-1").read_bytes() == sig


@needs_gpg
def test_signature_is_over_the_converted_manifest(
    keys: tuple[Key, Key], image: BuiltImage, tmp_path: Path
) -> None:
    one, _ = keys
    src = write_dir_image(tmp_path / "src", image)
    options = CopyOptions(
        sign_by=one.fingerprint, gpg_home=str(one.home), sign_identity=REF, format="v2s2"
    )
    result = copy_image(f"dir:{src}", f"dir:{tmp_path / 'dst'}", options)
    assert result.converted
    written = (tmp_path / "dst" / "manifest.json").read_bytes()
    assert written != image.manifest
    sig = (tmp_path / "dst" / "signature-1").read_bytes()
    verified = verify_simple(sig, written, one.public, identity=REF)
    assert verified.docker_manifest_digest == manifest_digest(written)
    with pytest.raises(InvalidSignatureError, match="does not match the manifest"):
        verify_simple(sig, image.manifest, one.public, identity=REF)


@needs_gpg
def test_sign_by_keeps_existing_signatures_unless_removed(
    keys: tuple[Key, Key], image: BuiltImage, tmp_path: Path
) -> None:
    one, two = keys
    old = sign_simple(image.manifest, REF, two.fingerprint, gpg_home=two.home)
    src = write_dir_image(tmp_path / "src", image, [old])
    options = CopyOptions(sign_by=one.fingerprint, gpg_home=str(one.home), sign_identity=REF)
    copy_image(f"dir:{src}", f"dir:{tmp_path / 'kept'}", options)
    assert (tmp_path / "kept" / "signature-1").read_bytes() == old
    new = (tmp_path / "kept" / "signature-2").read_bytes()
    assert verify_simple(new, image.manifest, one.public, identity=REF).key_fingerprint == (
        one.fingerprint
    )
    removed = attrs.evolve(options, remove_signatures=True)
    copy_image(f"dir:{src}", f"dir:{tmp_path / 'removed'}", removed)
    only = (tmp_path / "removed" / "signature-1").read_bytes()
    assert not (tmp_path / "removed" / "signature-2").exists()
    verify_simple(only, image.manifest, one.public, identity=REF)


@needs_gpg
def test_sign_all_instances_of_an_index(keys: tuple[Key, Key], tmp_path: Path) -> None:
    one, _ = keys
    index = make_multiarch(seed=5)
    layout = write_oci_layout(tmp_path / "layout", {"multi": index})
    options = CopyOptions(
        instances="all", sign_by=one.fingerprint, gpg_home=str(one.home), sign_identity=REF
    )
    copy_image(f"oci:{layout}:multi", f"dir:{tmp_path / 'dst'}", options)
    dst = tmp_path / "dst"
    top = (dst / "manifest.json").read_bytes()
    assert Digest.from_bytes(top) == index.digest
    verify_simple((dst / "signature-1").read_bytes(), top, one.public, identity=REF)
    for img in index.images:
        sig = (dst / f"{img.digest.hex}.signature-1").read_bytes()
        verified = verify_simple(sig, img.manifest, one.public, identity=REF)
        assert verified.docker_manifest_digest == img.digest
    # A policy requiring the key accepts each instance of the signed copy (as containers/image
    # checks them), and refuses an unsigned index.
    copy_image(
        f"dir:{dst}",
        f"dir:{tmp_path / 'again'}",
        CopyOptions(instances="all", policy=signed_by_policy(one)),
    )
    with pytest.raises(PolicyRejectedError, match="no signature exists"):
        copy_image(
            f"oci:{layout}:multi",
            f"dir:{tmp_path / 'refused'}",
            CopyOptions(instances="all", policy=signed_by_policy(one)),
        )
    assert not (tmp_path / "refused").exists()
    # Copying the index alone, the index itself is judged (signed above, unsigned in the layout).
    only = CopyOptions(instances="index-only", policy=signed_by_policy(one))
    copy_image(f"dir:{dst}", f"dir:{tmp_path / 'index-only'}", only)
    assert (tmp_path / "index-only" / "manifest.json").read_bytes() == top
    with pytest.raises(PolicyRejectedError, match="no signature exists"):
        copy_image(f"oci:{layout}:multi", f"dir:{tmp_path / 'refused'}", only)
    assert not (tmp_path / "refused").exists()


@needs_gpg
def test_system_instance_is_judged_by_its_own_signatures(
    keys: tuple[Key, Key], tmp_path: Path
) -> None:
    one, _ = keys
    index = make_multiarch(seed=6)
    layout = write_oci_layout(tmp_path / "layout", {"multi": index})
    signed = tmp_path / "signed"
    copy_image(
        f"oci:{layout}:multi",
        f"dir:{signed}",
        CopyOptions(
            instances="all", sign_by=one.fingerprint, gpg_home=str(one.home), sign_identity=REF
        ),
    )
    # Drop the arm64 instance's signature: choosing arm64 is now refused, amd64 accepted.
    arm64 = index.images[1]
    (signed / f"{arm64.digest.hex}.signature-1").unlink()
    policy = signed_by_policy(one)

    def options(platform: str) -> CopyOptions:
        return CopyOptions(
            policy=policy, source_options=TransportOptions(platform=Platform.parse(platform))
        )

    copy_image(f"dir:{signed}", f"dir:{tmp_path / 'amd64'}", options("linux/amd64"))
    assert (tmp_path / "amd64" / "manifest.json").read_bytes() == index.images[0].manifest
    with pytest.raises(PolicyRejectedError):
        copy_image(f"dir:{signed}", f"dir:{tmp_path / 'arm64'}", options("linux/arm64/v8"))
    assert not (tmp_path / "arm64").exists()


def test_signing_needs_an_identity(tmp_path: Path, image: BuiltImage) -> None:
    src = write_dir_image(tmp_path / "src", image)
    with pytest.raises(UnsupportedError, match="sign_identity"):
        copy_image(f"dir:{src}", f"dir:{tmp_path / 'dst'}", CopyOptions(sign_by="ABCDEF"))
    assert not (tmp_path / "dst").exists()


def test_sign_identity_must_have_a_tag_or_digest() -> None:
    with pytest.raises(ValueError, match="fully specified"):
        CopyOptions(sign_identity="quay.io/ns/app")
    assert CopyOptions(sign_identity="busybox:1").sign_identity == Reference.parse(
        "docker.io/library/busybox:1"
    )


@needs_gpg
def test_destination_that_cannot_store_signatures(
    keys: tuple[Key, Key], image: BuiltImage, tmp_path: Path
) -> None:
    one, _ = keys
    src = write_dir_image(tmp_path / "src", image)
    archive = tmp_path / "out.tar"
    options = CopyOptions(sign_by=one.fingerprint, gpg_home=str(one.home))
    with pytest.raises(UnsupportedError, match="cannot store signatures"):
        copy_image(f"dir:{src}", f"docker-archive:{archive}:{REF}", options)
    assert not archive.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


@needs_gpg
def test_unknown_gpg_key_fails_before_writing(
    keys: tuple[Key, Key], image: BuiltImage, tmp_path: Path
) -> None:
    one, _ = keys
    src = write_dir_image(tmp_path / "src", image)
    options = CopyOptions(sign_by="0" * 40, gpg_home=str(one.home), sign_identity=REF)
    with pytest.raises(GPGError, match="not found"):
        copy_image(f"dir:{src}", f"dir:{tmp_path / 'dst'}", options)
    assert not (tmp_path / "dst").exists()


# -- signing with sigstore -------------------------------------------------------------------


@pytest.fixture(scope="module")
def sigstore_keys() -> tuple[tuple[bytes, bytes], tuple[bytes, bytes]]:
    pytest.importorskip("cryptography")
    from imagetypes.trust import generate_sigstore_key

    return generate_sigstore_key("one phrase"), generate_sigstore_key("two phrase")


def sigstore_policy(public: bytes) -> Policy:
    requirement = {
        "type": "sigstoreSigned",
        "keyData": base64.b64encode(public).decode(),
        "signedIdentity": EXACT,
    }
    return Policy.parse(
        json.dumps({"default": [{"type": "reject"}], "transports": {"dir": {"": [requirement]}}})
    )


def test_sigstore_signing(
    sigstore_keys: tuple[tuple[bytes, bytes], tuple[bytes, bytes]],
    image: BuiltImage,
    tmp_path: Path,
) -> None:
    (private, public), (_, other_public) = sigstore_keys
    key_file = tmp_path / "key.private"
    key_file.write_bytes(private)
    src = write_dir_image(tmp_path / "src", image)
    dst = tmp_path / "dst"
    options = CopyOptions(
        sign_by_sigstore_private_key=key_file, sign_passphrase="one phrase", sign_identity=REF
    )
    copy_image(f"dir:{src}", f"dir:{dst}", options)
    blob = (dst / "signature-1").read_bytes()
    assert blob.startswith(b"\x00sigstore-json\n")
    assert isinstance(parse_signature_blob(blob), SigstoreSignature)
    # Our policy accepts it with the right key and refuses it with another.
    copy_image(f"dir:{dst}", f"dir:{tmp_path / 'ok'}", CopyOptions(policy=sigstore_policy(public)))
    assert (tmp_path / "ok" / "signature-1").read_bytes() == blob
    with pytest.raises(PolicyRejectedError, match="sigstoreSigned"):
        copy_image(
            f"dir:{dst}",
            f"dir:{tmp_path / 'refused'}",
            CopyOptions(policy=sigstore_policy(other_public)),
        )
    assert not (tmp_path / "refused").exists()
    # The key may be given as bytes too.
    copy_image(
        f"dir:{src}",
        f"dir:{tmp_path / 'bytes'}",
        attrs.evolve(options, sign_by_sigstore_private_key=private),
    )
    copy_image(
        f"dir:{tmp_path / 'bytes'}",
        f"dir:{tmp_path / 'bytes-ok'}",
        CopyOptions(policy=sigstore_policy(public)),
    )


def test_sigstore_wrong_passphrase_fails_before_writing(
    sigstore_keys: tuple[tuple[bytes, bytes], tuple[bytes, bytes]],
    image: BuiltImage,
    tmp_path: Path,
) -> None:
    (private, _), _ = sigstore_keys
    src = write_dir_image(tmp_path / "src", image)
    options = CopyOptions(
        sign_by_sigstore_private_key=private, sign_passphrase="wrong", sign_identity=REF
    )
    with pytest.raises(InvalidSignatureError):
        copy_image(f"dir:{src}", f"dir:{tmp_path / 'dst'}", options)
    assert not (tmp_path / "dst").exists()
