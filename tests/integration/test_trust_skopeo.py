"""Signatures against skopeo: each side verifies what the other signs, and policies agree."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from gpgkit import Key, key_pair
from imagebuilder import BuiltImage, make_image

from imagetypes import Reference
from imagetypes.trust import (
    InvalidSignatureError,
    Policy,
    PolicyRejectedError,
    SigstoreSignature,
    generate_sigstore_key,
    parse_signature_blob,
    sign_simple,
    verify_sigstore,
    verify_simple,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed"),
    pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed"),
]

REF = "quay.io/ns/app:1.0"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Key, Key]]:
    with key_pair(tmp_path_factory.mktemp("gpg")) as pair:
        yield pair


def skopeo(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if home is not None:
        env["GNUPGHOME"] = str(home)
    return subprocess.run(
        ["skopeo", *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def write_dir_image(path: Path, image: BuiltImage, signatures: Sequence[bytes] = ()) -> Path:
    path.mkdir(parents=True)
    (path / "version").write_text("Directory Transport Version: 1.1\n")
    (path / "manifest.json").write_bytes(image.manifest)
    for digest, blob in image.blobs.items():
        (path / digest.hex).write_bytes(blob)
    for index, signature in enumerate(signatures, 1):
        (path / f"signature-{index}").write_bytes(signature)
    return path


@pytest.fixture
def image() -> BuiltImage:
    return make_image(seed=7, layer_sizes=(512,))


def test_skopeo_verifies_our_signature(
    keys: tuple[Key, Key], image: BuiltImage, tmp_path: Path
) -> None:
    one, two = keys
    (tmp_path / "manifest.json").write_bytes(image.manifest)
    (tmp_path / "sig").write_bytes(
        sign_simple(image.manifest, REF, one.fingerprint, gpg_home=one.home)
    )
    ok = skopeo(
        "standalone-verify",
        str(tmp_path / "manifest.json"),
        REF,
        one.fingerprint,
        str(tmp_path / "sig"),
        home=one.home,
    )
    assert ok.returncode == 0, ok.stderr
    assert f"Signature verified, digest {image.digest}" in ok.stdout
    wrong_ref = skopeo(
        "standalone-verify",
        str(tmp_path / "manifest.json"),
        "quay.io/ns/app:2",
        one.fingerprint,
        str(tmp_path / "sig"),
        home=one.home,
    )
    assert wrong_ref.returncode != 0
    wrong_key = skopeo(
        "standalone-verify",
        str(tmp_path / "manifest.json"),
        REF,
        two.fingerprint,
        str(tmp_path / "sig"),
        home=one.home,
    )
    assert wrong_key.returncode != 0


def test_we_verify_skopeos_signature(
    keys: tuple[Key, Key], image: BuiltImage, tmp_path: Path
) -> None:
    one, two = keys
    (tmp_path / "manifest.json").write_bytes(image.manifest)
    result = skopeo(
        "standalone-sign",
        str(tmp_path / "manifest.json"),
        REF,
        one.fingerprint,
        "-o",
        str(tmp_path / "sig"),
        home=one.home,
    )
    assert result.returncode == 0, result.stderr
    signature = (tmp_path / "sig").read_bytes()
    verified = verify_simple(signature, image.manifest, one.public, identity=REF)
    assert verified.docker_reference == REF
    assert verified.key_fingerprint == one.fingerprint
    assert verified.creator is not None
    assert verified.creator.startswith("atomic")
    with pytest.raises(InvalidSignatureError):
        verify_simple(signature, image.manifest, two.public, identity=REF)


def test_skopeo_copy_sign_by_is_accepted_by_our_policy(
    keys: tuple[Key, Key], image: BuiltImage, tmp_path: Path
) -> None:
    one, two = keys
    src = write_dir_image(tmp_path / "src", image)
    policy_file = tmp_path / "insecure.json"
    policy_file.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
    result = skopeo(
        "--policy", str(policy_file), "copy", "--sign-by", one.fingerprint,
        "--sign-identity", REF, f"dir:{src}", f"dir:{tmp_path / 'dst'}", home=one.home,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    dst = tmp_path / "dst"
    signatures = [dst / "signature-1"]
    assert not (dst / "signature-2").exists()
    manifest = (dst / "manifest.json").read_bytes()
    blobs = [p.read_bytes() for p in signatures]
    # dir: has no Docker reference, so the policy names the identity it expects.
    identity = {"type": "exactReference", "dockerReference": REF}
    Policy.parse(json.dumps(_policy_document(one, identity))).evaluate(
        str(dst), "dir", None, manifest, blobs
    )
    with pytest.raises(PolicyRejectedError, match="not among the trusted keys"):
        Policy.parse(json.dumps(_policy_document(two, identity))).evaluate(
            str(dst), "dir", None, manifest, blobs
        )


def _policy_document(key: Key, identity: Mapping[str, object]) -> dict[str, object]:
    return {
        "default": [{"type": "reject"}],
        "transports": {
            "dir": {
                "": [
                    {
                        "type": "signedBy",
                        "keyType": "GPGKeys",
                        "keyData": base64.b64encode(key.public).decode(),
                        "signedIdentity": identity,
                    }
                ]
            }
        },
    }


@pytest.mark.parametrize(
    ("signer", "trusted", "signed_as", "accepted"),
    [
        (0, 0, REF, True),
        (0, 1, REF, False),  # signed by another key
        (0, 0, "quay.io/ns/other:1.0", False),  # mismatched identity
    ],
)
def test_skopeo_and_our_policy_agree(
    keys: tuple[Key, Key],
    image: BuiltImage,
    tmp_path: Path,
    signer: int,
    trusted: int,
    signed_as: str,
    accepted: bool,
) -> None:
    sig = sign_simple(
        image.manifest, signed_as, keys[signer].fingerprint, gpg_home=keys[signer].home
    )
    src = write_dir_image(tmp_path / "src", image, [sig])
    document = _policy_document(keys[trusted], {"type": "exactReference", "dockerReference": REF})
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps(document))
    result = skopeo("--policy", str(policy_file), "copy", f"dir:{src}", f"dir:{tmp_path / 'dst'}")
    ours = Policy.load(policy_file)
    if accepted:
        assert result.returncode == 0, result.stderr
        ours.evaluate(str(src), "dir", None, image.manifest, [sig])
        assert (tmp_path / "dst" / "signature-1").read_bytes() == sig
    else:
        assert result.returncode != 0
        assert "rejected" in result.stderr.lower() or "not accepted" in result.stderr.lower()
        with pytest.raises(PolicyRejectedError):
            ours.evaluate(str(src), "dir", None, image.manifest, [sig])


def test_skopeo_rejects_policies_we_reject(tmp_path: Path, image: BuiltImage) -> None:
    src = write_dir_image(tmp_path / "src", image)
    policy_file = tmp_path / "policy.json"
    policy_file.write_text('{"default": [{"type": "insecureAcceptAnything", "typo": 1}]}')
    result = skopeo("--policy", str(policy_file), "copy", f"dir:{src}", f"dir:{tmp_path / 'd'}")
    assert result.returncode != 0
    with pytest.raises(Exception, match="unknown key 'typo'"):
        Policy.load(policy_file)


def test_skopeo_sigstore_signing_with_our_key(image: BuiltImage, tmp_path: Path) -> None:
    private, public = generate_sigstore_key("pass phrase")
    (tmp_path / "key").write_bytes(private)
    (tmp_path / "pass").write_text("pass phrase")
    src = write_dir_image(tmp_path / "src", image)
    policy_file = tmp_path / "insecure.json"
    policy_file.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
    result = skopeo(
        "--policy",
        str(policy_file),
        "copy",
        "--sign-by-sigstore-private-key",
        str(tmp_path / "key"),
        "--sign-passphrase-file",
        str(tmp_path / "pass"),
        "--sign-identity",
        REF,
        f"dir:{src}",
        f"dir:{tmp_path / 'dst'}",
    )
    if "sigstore disabled" in result.stderr:
        pytest.skip("this skopeo is built without sigstore support (Debian)")
    assert result.returncode == 0, result.stderr
    blob = (tmp_path / "dst" / "signature-1").read_bytes()
    assert isinstance(parse_signature_blob(blob), SigstoreSignature)
    verified = verify_sigstore(blob, image.manifest, public, identity=Reference.parse(REF))
    assert verified.docker_reference == REF
