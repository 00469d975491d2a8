"""Trust on the command line against skopeo: each side accepts what the other signs, policies
agree, standalone-sign / standalone-verify interoperate both ways, --additional-tag, and
signing into a registry's lookaside storage (--registries.d).

Sigstore: Debian's skopeo 1.9.3 is built with sigstore disabled, so it can neither sign with
nor verify sigstore keys; those paths are tested against our own policy only
(tests/unit/test_cli_trust.py and tests/unit/test_copy_trust.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from gpgkit import Key, key_pair
from imagebuilder import BuiltImage, make_image
from registry_fixtures import RunningRegistry

from imagetypes.trust import verify_simple

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed"),
    pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed"),
]

REF = "quay.io/ns/app:1.0"
EXACT = {"type": "exactReference", "dockerReference": REF}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Key, Key]]:
    with key_pair(tmp_path_factory.mktemp("gpg")) as pair:
        yield pair


def _env(home: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CONTAINERS_REGISTRIES_CONF", None)
    if home is not None:
        env["GNUPGHOME"] = str(home)
    return env


def skopeo(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["skopeo", *args], capture_output=True, text=True, env=_env(home), timeout=120, check=False
    )


def ours(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagetypes", *args],
        capture_output=True,
        text=True,
        env=_env(home),
        timeout=120,
        check=False,
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


def policy_file(
    path: Path,
    key: Key,
    identity: Mapping[str, object] = EXACT,
    transports: Sequence[str] = ("dir",),
) -> Path:
    """A policy requiring a signature by ``key`` (in a keyring file) for ``transports``."""
    keyring = path.with_suffix(".gpg")
    keyring.write_bytes(key.public)
    requirement = {
        "type": "signedBy",
        "keyType": "GPGKeys",
        "keyPath": str(keyring),
        "signedIdentity": dict(identity),
    }
    document = {
        "default": [{"type": "reject"}],
        "transports": {t: {"": [requirement]} for t in transports},
    }
    path.write_text(json.dumps(document))
    return path


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def image() -> BuiltImage:
    return make_image(seed=31, layer_sizes=(400,))


# -- copy --sign-by, both ways ----------------------------------------------------------------


def test_skopeo_accepts_our_copy_sign_by(
    keys: tuple[Key, Key], image: BuiltImage, tmp_path: Path
) -> None:
    one, two = keys
    src = write_dir_image(tmp_path / "src", image)
    signed = tmp_path / "signed"
    result = ours(
        "--insecure-policy", "copy", "-q", "--sign-by", one.fingerprint, "--sign-identity", REF,
        f"dir:{src}", f"dir:{signed}", home=one.home,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    manifest, sig = signed / "manifest.json", signed / "signature-1"
    verified = skopeo(
        "standalone-verify", str(manifest), REF, one.fingerprint, str(sig), home=one.home
    )
    assert verified.returncode == 0, verified.stderr
    assert f"digest {image.digest}" in verified.stdout
    # skopeo's policy requiring our key accepts the signed copy; requiring another, refuses.
    accept = policy_file(tmp_path / "one.json", one)
    ok = skopeo("--policy", str(accept), "copy", f"dir:{signed}", f"dir:{tmp_path / 'by-skopeo'}")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "by-skopeo" / "signature-1").read_bytes() == sig.read_bytes()
    refuse = policy_file(tmp_path / "two.json", two)
    bad = skopeo("--policy", str(refuse), "copy", f"dir:{signed}", f"dir:{tmp_path / 'no'}")
    assert bad.returncode != 0
    assert "rejected" in bad.stderr.lower()


def test_our_policy_accepts_skopeos_copy_sign_by(
    keys: tuple[Key, Key], image: BuiltImage, tmp_path: Path
) -> None:
    one, two = keys
    src = write_dir_image(tmp_path / "src", image)
    signed = tmp_path / "signed"
    result = skopeo(
        "--insecure-policy", "copy", "--sign-by", one.fingerprint, "--sign-identity", REF,
        f"dir:{src}", f"dir:{signed}", home=one.home,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    accept = policy_file(tmp_path / "one.json", one)
    ok = ours("--policy", str(accept), "copy", "-q", f"dir:{signed}", f"dir:{tmp_path / 'copy'}")
    assert ok.returncode == 0, ok.stderr
    copied = (tmp_path / "copy" / "signature-1").read_bytes()
    assert copied == (signed / "signature-1").read_bytes()
    # Another key, or another identity: refused, nothing written, like skopeo.
    layout_before = snapshot(tmp_path)
    for policy in (
        policy_file(tmp_path / "two.json", two),
        policy_file(
            tmp_path / "other-id.json",
            one,
            {"type": "exactReference", "dockerReference": "quay.io/ns/other:1.0"},
        ),
    ):
        layout_before = snapshot(tmp_path)
        mine = ours("--policy", str(policy), "copy", f"dir:{signed}", f"dir:{tmp_path / 'no'}")
        assert mine.returncode == 1
        assert "rejected by the signature policy" in mine.stderr
        assert snapshot(tmp_path) == layout_before
        theirs = skopeo("--policy", str(policy), "copy", f"dir:{signed}", f"dir:{tmp_path / 'no'}")
        assert theirs.returncode != 0
        shutil.rmtree(tmp_path / "no", ignore_errors=True)  # skopeo leaves an empty folder


def test_policies_agree_on_unsigned_and_rejected_images(
    keys: tuple[Key, Key], image: BuiltImage, tmp_path: Path
) -> None:
    one, _ = keys
    src = write_dir_image(tmp_path / "src", image)
    reject = tmp_path / "reject.json"
    reject.write_text('{"default": [{"type": "reject"}]}')
    for policy in (reject, policy_file(tmp_path / "signed.json", one)):
        mine = ours("--policy", str(policy), "copy", f"dir:{src}", f"dir:{tmp_path / 'a'}")
        theirs = skopeo("--policy", str(policy), "copy", f"dir:{src}", f"dir:{tmp_path / 'b'}")
        assert mine.returncode == 1
        assert theirs.returncode != 0
        assert not (tmp_path / "a").exists()


def test_missing_policy_file_fails_in_both(image: BuiltImage, tmp_path: Path) -> None:
    src = write_dir_image(tmp_path / "src", image)
    missing = str(tmp_path / "missing.json")
    mine = ours("--policy", missing, "copy", f"dir:{src}", f"dir:{tmp_path / 'a'}")
    theirs = skopeo("--policy", missing, "copy", f"dir:{src}", f"dir:{tmp_path / 'b'}")
    assert mine.returncode == 1
    assert theirs.returncode != 0
    assert "loading" in mine.stderr
    assert "loading" in theirs.stderr.lower()
    assert missing in mine.stderr
    assert missing in theirs.stderr


# -- standalone-sign / standalone-verify -------------------------------------------------------


def test_our_standalone_sign_skopeo_verifies(
    keys: tuple[Key, Key], image: BuiltImage, tmp_path: Path
) -> None:
    one, two = keys
    manifest, sig = tmp_path / "manifest.json", tmp_path / "sig"
    manifest.write_bytes(image.manifest)
    signed = ours(
        "standalone-sign", str(manifest), REF, one.fingerprint, "-o", str(sig), home=one.home
    )
    assert signed.returncode == 0, signed.stderr
    assert signed.stdout == ""
    theirs = skopeo(
        "standalone-verify", str(manifest), REF, one.fingerprint, str(sig), home=one.home
    )
    assert theirs.returncode == 0, theirs.stderr
    mine = ours("standalone-verify", str(manifest), REF, one.fingerprint, str(sig), home=one.home)
    assert mine.returncode == 0, mine.stderr
    # skopeo 1.9.3 prints "Signature verified, digest D"; newer skopeo and we also name the key.
    assert theirs.stdout == f"Signature verified, digest {image.digest}\n"
    assert mine.stdout == (
        f"Signature verified using fingerprint {one.fingerprint}, digest {image.digest}\n"
    )
    # Both refuse another identity and another key.
    for ref, fingerprint in (("quay.io/ns/app:2", one.fingerprint), (REF, two.fingerprint)):
        args = ("standalone-verify", str(manifest), ref, fingerprint, str(sig))
        assert skopeo(*args, home=one.home).returncode != 0
        assert ours(*args, home=one.home).returncode == 1


def test_skopeo_standalone_sign_we_verify(
    keys: tuple[Key, Key], image: BuiltImage, tmp_path: Path
) -> None:
    one, two = keys
    manifest, sig = tmp_path / "manifest.json", tmp_path / "sig"
    manifest.write_bytes(image.manifest)
    signed = skopeo(
        "standalone-sign", str(manifest), REF, one.fingerprint, "-o", str(sig), home=one.home
    )
    assert signed.returncode == 0, signed.stderr
    mine = ours("standalone-verify", str(manifest), REF, one.fingerprint, str(sig), home=one.home)
    assert mine.returncode == 0, mine.stderr
    match = re.fullmatch(r"Signature verified using fingerprint (\w+), digest (\S+)\n", mine.stdout)
    assert match is not None
    assert match.groups() == (one.fingerprint, str(image.digest))
    # With the public key in a file instead of the keyring; and refusing another key's file.
    (tmp_path / "one.gpg").write_bytes(one.public)
    (tmp_path / "two.gpg").write_bytes(two.public)
    with_file = ("standalone-verify", "--public-key-file")
    assert (
        ours(*with_file, str(tmp_path / "one.gpg"), str(manifest), REF, "any", str(sig)).returncode
        == 0
    )
    refused = ours(*with_file, str(tmp_path / "two.gpg"), str(manifest), REF, "any", str(sig))
    assert refused.returncode == 1
    assert refused.stderr.startswith("imagetypes: error: ")


# -- --additional-tag ----------------------------------------------------------------------------


def test_skopeo_finds_our_additional_tags(image: BuiltImage, tmp_path: Path) -> None:
    src = write_dir_image(tmp_path / "src", image)
    archive = tmp_path / "out.tar"
    result = ours(
        "--insecure-policy", "copy", "-q", "--additional-tag", "example.com/extra:2",
        "--additional-tag", "other:3", f"dir:{src}", f"docker-archive:{archive}:first:1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for name in ("first:1", "example.com/extra:2", "other:3", "docker.io/library/other:3"):
        inspected = skopeo("inspect", f"docker-archive:{archive}:{name}")
        assert inspected.returncode == 0, (name, inspected.stderr)
        info = json.loads(inspected.stdout)
        assert info["Digest"] != ""
        assert info["Labels"] == {"org.example.seed": "31"}
    missing = skopeo("inspect", f"docker-archive:{archive}:nope:9")
    assert missing.returncode != 0


# -- signing into a registry (lookaside storage from --registries.d) ------------------------------


def test_sign_into_registry_lookaside(
    keys: tuple[Key, Key], image: BuiltImage, tmp_path: Path, registry: RunningRegistry
) -> None:
    one, two = keys
    store = tmp_path / "sigstore"
    conf = tmp_path / "registries.d"
    conf.mkdir()
    (conf / "default.yaml").write_text(f"default-docker:\n  lookaside: {store.as_uri()}\n")
    src = write_dir_image(tmp_path / "src", image)
    target = f"docker://{registry.host}/trust/cli:1"
    identity = {"type": "matchRepoDigestOrExact"}
    pushed = ours(
        "--insecure-policy", "--registries.d", str(conf), "copy", "-q", "--dest-tls-verify=false",
        "--sign-by", one.fingerprint, f"dir:{src}", target, home=one.home,
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    sigs = list(store.rglob("signature-1"))
    assert len(sigs) == 1
    # Signed as the destination's own reference.
    verified = verify_simple(
        sigs[0].read_bytes(), image.manifest, one.public, identity=f"{registry.host}/trust/cli:1"
    )
    assert verified.docker_manifest_digest == image.digest
    # skopeo, reading the same lookaside under a policy requiring our key, accepts it.
    accept = policy_file(tmp_path / "one.json", one, identity, transports=("docker",))
    pulled = skopeo(
        "--registries.d", str(conf), "--policy", str(accept), "copy", "--src-tls-verify=false",
        target, f"dir:{tmp_path / 'pulled'}",
    )  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr
    # And so do we; another key is refused by both.
    mine = ours(
        "--registries.d", str(conf), "--policy", str(accept), "copy", "-q",
        "--src-tls-verify=false", target, f"dir:{tmp_path / 'ours'}",
    )  # fmt: skip
    assert mine.returncode == 0, mine.stderr
    refuse = policy_file(tmp_path / "two.json", two, identity, transports=("docker",))
    for tool in (ours, skopeo):
        result = tool(
            "--registries.d", str(conf), "--policy", str(refuse), "copy",
            "--src-tls-verify=false", target, f"dir:{tmp_path / 'refused'}",
        )  # fmt: skip
        assert result.returncode != 0
    # Without lookaside storage, a registry destination cannot take a signature: refused
    # before anything is pushed.
    empty = tmp_path / "empty.d"
    empty.mkdir()
    nowhere = ours(
        "--insecure-policy", "--registries.d", str(empty), "copy", "-q", "--dest-tls-verify=false",
        "--sign-by", one.fingerprint, f"dir:{src}", f"docker://{registry.host}/trust/none:1",
        home=one.home,
    )  # fmt: skip
    assert nowhere.returncode == 1
    assert "signature" in nowhere.stderr
