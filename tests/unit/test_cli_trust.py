"""Trust on the command line: --policy and friends, copy's signing flags, standalone-sign and
-verify, generate-sigstore-key, --additional-tag, the docker transport's configuration flags."""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import stat
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from gpgkit import Key, gpg_keys
from imagebuilder import BuiltImage, make_image

from imagetypes.cli import _build_parser, _transport_options, main
from imagetypes.trust import verify_simple

REF = "quay.io/ns/app:1.0"
EXACT = {"type": "exactReference", "dockerReference": REF}
REJECT = '{"default": [{"type": "reject"}]}'
ACCEPT = '{"default": [{"type": "insecureAcceptAnything"}]}'

needs_gpg = pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Key, Key, Key]]:
    if shutil.which("gpg") is None:
        pytest.skip("gpg is not installed")
    # No passphrase caching, so the passphrase file is what unlocks the key every time.
    with gpg_keys(
        tmp_path_factory.mktemp("gpg"),
        "one",
        "two",
        "locked",
        passphrases={"locked": "open sesame"},
        cache_passphrase=False,
    ) as (one, two, locked):
        yield one, two, locked


@pytest.fixture
def image() -> BuiltImage:
    return make_image(seed=21, layer_sizes=(256,))


def write_dir_image(path: Path, image: BuiltImage, signatures: Sequence[bytes] = ()) -> Path:
    path.mkdir(parents=True)
    (path / "version").write_text("Directory Transport Version: 1.1\n")
    (path / "manifest.json").write_bytes(image.manifest)
    for digest, blob in image.blobs.items():
        (path / digest.hex).write_bytes(blob)
    for index, signature in enumerate(signatures, 1):
        (path / f"signature-{index}").write_bytes(signature)
    return path


def error_line(err: str) -> str:
    lines = [x for x in err.splitlines() if not x.startswith("imagetypes: warning: ")]
    assert len(lines) == 1, err
    assert lines[0].startswith("imagetypes: error: ")
    return lines[0]


@pytest.fixture
def src(tmp_path: Path, image: BuiltImage) -> Path:
    return write_dir_image(tmp_path / "src", image)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home folder of our own, so the user's policy.json is the test's."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("HOME", str(path))
    return path


# -- the policy ------------------------------------------------------------------------------


def test_policy_flag_rejects(
    tmp_path: Path, src: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(REJECT)
    dst = tmp_path / "dst"
    # Before the subcommand, as skopeo's global flag, and after it.
    for argv in (
        ["--policy", str(policy), "copy", "-q", f"dir:{src}", f"dir:{dst}"],
        ["copy", "-q", "--policy", str(policy), f"dir:{src}", f"dir:{dst}"],
    ):
        assert main(argv) == 1
        line = error_line(capsys.readouterr().err)
        assert "rejected by the signature policy" in line
        assert "is rejected by policy" in line
        assert not dst.exists()


def test_insecure_policy_skips_the_check(
    tmp_path: Path, src: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(REJECT)
    argv = ["--insecure-policy", "--policy", str(policy), "copy", "-q"]
    assert main([*argv, f"dir:{src}", f"dir:{tmp_path / 'dst'}"]) == 0
    assert (tmp_path / "dst" / "manifest.json").exists()
    capsys.readouterr()


def test_user_policy_is_the_default(
    tmp_path: Path, src: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (home / ".config" / "containers").mkdir(parents=True)
    (home / ".config" / "containers" / "policy.json").write_text(REJECT)
    assert main(["copy", "-q", f"dir:{src}", f"dir:{tmp_path / 'dst'}"]) == 1
    assert "rejected" in error_line(capsys.readouterr().err)
    assert not (tmp_path / "dst").exists()
    (home / ".config" / "containers" / "policy.json").write_text(ACCEPT)
    assert main(["copy", "-q", f"dir:{src}", f"dir:{tmp_path / 'dst'}"]) == 0


def test_missing_policy_file_is_an_error(
    tmp_path: Path, src: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere" / "policy.json"
    assert main(["--policy", str(missing), "copy", f"dir:{src}", f"dir:{tmp_path / 'dst'}"]) == 1
    line = error_line(capsys.readouterr().err)
    assert "error loading the trust policy" in line
    assert str(missing) in line
    assert "--insecure-policy" in line
    assert not (tmp_path / "dst").exists()


def test_no_policy_anywhere_warns_and_copies(
    tmp_path: Path,
    src: Path,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A machine without the containers tools has neither the user's nor the system's file.
    import imagetypes.trust._policy as policy_module

    monkeypatch.setattr(policy_module, "SYSTEM_POLICY_PATH", tmp_path / "etc" / "policy.json")
    assert main(["copy", "-q", f"dir:{src}", f"dir:{tmp_path / 'dst'}"]) == 0
    assert (tmp_path / "dst" / "manifest.json").exists()
    err = capsys.readouterr().err
    assert "warning: no trust policy" in err
    assert "--policy FILE" in err


def test_invalid_policy_file_is_an_error(
    tmp_path: Path, src: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text('{"default": [{"type": "insecureAcceptAnything", "typo": 1}]}')
    assert main(["--policy", str(policy), "copy", f"dir:{src}", f"dir:{tmp_path / 'dst'}"]) == 1
    assert "typo" in error_line(capsys.readouterr().err)


def test_sync_applies_the_policy(
    tmp_path: Path, src: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(REJECT)
    argv = ["--policy", str(policy), "sync", "-q", "--src", "dir", "--dest", "docker"]
    assert main([*argv, str(src), "127.0.0.1:1/ns"]) == 1
    assert "rejected" in capsys.readouterr().err


# -- signing on copy -------------------------------------------------------------------------


@needs_gpg
def test_copy_sign_by_uses_gnupghome(
    keys: tuple[Key, Key, Key],
    tmp_path: Path,
    src: Path,
    home: Path,
    image: BuiltImage,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    one = keys[0]
    monkeypatch.setenv("GNUPGHOME", str(one.home))
    dst = tmp_path / "dst"
    argv = ["--insecure-policy", "copy", "-q", "--sign-by", one.fingerprint]
    assert main([*argv, "--sign-identity", REF, f"dir:{src}", f"dir:{dst}"]) == 0
    sig = (dst / "signature-1").read_bytes()
    assert verify_simple(sig, image.manifest, one.public, identity=REF).key_fingerprint == (
        one.fingerprint
    )
    # A policy requiring that key accepts the copy.
    policy = tmp_path / "policy.json"
    requirement = {
        "type": "signedBy",
        "keyType": "GPGKeys",
        "keyData": base64.b64encode(one.public).decode(),
        "signedIdentity": EXACT,
    }
    policy.write_text(json.dumps({"default": [requirement]}))
    assert main(["--policy", str(policy), "copy", "-q", f"dir:{dst}", f"dir:{tmp_path / 'b'}"]) == 0
    assert (tmp_path / "b" / "signature-1").read_bytes() == sig
    # Without an identity, a dir: destination cannot be signed.
    assert main([*argv, f"dir:{src}", f"dir:{tmp_path / 'c'}"]) == 1
    assert "--sign-identity" in error_line(capsys.readouterr().err)
    assert not (tmp_path / "c").exists()


@needs_gpg
def test_copy_sign_passphrase_file_unlocks_a_gpg_key(
    keys: tuple[Key, Key, Key],
    tmp_path: Path,
    src: Path,
    home: Path,
    image: BuiltImage,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    locked = keys[2]
    monkeypatch.setenv("GNUPGHOME", str(locked.home))
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text("open sesame\nsecond line is ignored\n")
    bad.write_text("wrong\n")
    argv = ["--insecure-policy", "copy", "-q", "--sign-by", locked.fingerprint]
    argv += ["--sign-identity", REF]
    assert main([*argv, "--sign-passphrase-file", str(bad), f"dir:{src}", f"dir:{tmp_path / 'x'}"])
    assert "signing with key" in error_line(capsys.readouterr().err)
    assert not (tmp_path / "x").exists()
    dst = tmp_path / "dst"
    assert main([*argv, "--sign-passphrase-file", str(good), f"dir:{src}", f"dir:{dst}"]) == 0
    verify_simple((dst / "signature-1").read_bytes(), image.manifest, locked.public, identity=REF)


def test_passphrase_file_with_both_signers_is_a_usage_error(
    tmp_path: Path, src: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pass").write_text("x\n")
    argv = ["--insecure-policy", "copy", "--sign-by", "ABC", "--sign-by-sigstore-private-key"]
    argv += [str(tmp_path / "key"), "--sign-passphrase-file", str(tmp_path / "pass")]
    assert main([*argv, f"dir:{src}", f"dir:{tmp_path / 'dst'}"]) == 2
    assert "only one of --sign-by" in capsys.readouterr().err


def test_sign_identity_without_tag_is_a_usage_error(
    tmp_path: Path, src: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--insecure-policy", "copy", "--sign-by", "ABC", "--sign-identity", "quay.io/ns/app"]
    assert main([*argv, f"dir:{src}", f"dir:{tmp_path / 'dst'}"]) == 2
    assert "fully specified" in capsys.readouterr().err


# -- sigstore ------------------------------------------------------------------------------------


def test_generate_sigstore_key_then_sign_and_verify(
    tmp_path: Path, src: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("cryptography")
    (tmp_path / "pass").write_text("key pass\n")
    (tmp_path / "other-pass").write_text("other\n")
    prefix = str(tmp_path / "mykey")
    argv = ["generate-sigstore-key", "--output-prefix", prefix, "--passphrase-file"]
    assert main([*argv, str(tmp_path / "pass")]) == 0
    out = capsys.readouterr().out
    assert out == f'Key written to "{prefix}.private" and "{prefix}.pub"\n'
    private, public = Path(f"{prefix}.private"), Path(f"{prefix}.pub")
    assert private.read_bytes().startswith(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----")
    assert public.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    # Never overwritten.
    before = (private.read_bytes(), public.read_bytes())
    assert main([*argv, str(tmp_path / "pass")]) == 1
    assert "refusing to overwrite" in error_line(capsys.readouterr().err)
    assert (private.read_bytes(), public.read_bytes()) == before
    other = str(tmp_path / "other")
    other_argv = ["generate-sigstore-key", "--output-prefix", other, "--passphrase-file"]
    assert main([*other_argv, str(tmp_path / "other-pass")]) == 0
    capsys.readouterr()

    dst = tmp_path / "dst"
    copy = ["--insecure-policy", "copy", "-q", "--sign-by-sigstore-private-key", str(private)]
    copy += ["--sign-passphrase-file", str(tmp_path / "pass"), "--sign-identity", REF]
    assert main([*copy, f"dir:{src}", f"dir:{dst}"]) == 0
    assert (dst / "signature-1").read_bytes().startswith(b"\x00sigstore-json\n")

    def policy_for(public_key: Path) -> Path:
        requirement = {
            "type": "sigstoreSigned",
            "keyPath": str(public_key),
            "signedIdentity": EXACT,
        }
        path = tmp_path / f"policy-{public_key.stem}.json"
        path.write_text(json.dumps({"default": [requirement]}))
        return path

    ok = ["--policy", str(policy_for(public)), "copy", "-q", f"dir:{dst}"]
    assert main([*ok, f"dir:{tmp_path / 'accepted'}"]) == 0
    refused = ["--policy", str(policy_for(Path(f"{other}.pub"))), "copy", "-q", f"dir:{dst}"]
    assert main([*refused, f"dir:{tmp_path / 'refused'}"]) == 1
    assert "sigstoreSigned" in error_line(capsys.readouterr().err)
    assert not (tmp_path / "refused").exists()
    # A wrong passphrase fails before anything is written.
    wrong = [*copy[:-4], "--sign-passphrase-file", str(tmp_path / "other-pass")]
    assert main([*wrong, "--sign-identity", REF, f"dir:{src}", f"dir:{tmp_path / 'w'}"]) == 1
    capsys.readouterr()
    assert not (tmp_path / "w").exists()


def test_sigstore_passphrase_needs_a_terminal(
    tmp_path: Path, src: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["generate-sigstore-key", "--output-prefix", str(tmp_path / "k")]) == 1
    assert "standard input is not a terminal" in error_line(capsys.readouterr().err)
    assert not (tmp_path / "k.private").exists()


# -- standalone-sign / standalone-verify ----------------------------------------------------------


@needs_gpg
def test_standalone_sign_and_verify(
    keys: tuple[Key, Key, Key],
    tmp_path: Path,
    image: BuiltImage,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    one, two, _ = keys
    monkeypatch.setenv("GNUPGHOME", str(one.home))
    manifest = tmp_path / "manifest.json"
    manifest.write_bytes(image.manifest)
    sig = tmp_path / "sig"
    assert main(["standalone-sign", str(manifest), REF, one.fingerprint, "-o", str(sig)]) == 0
    assert capsys.readouterr().out == ""
    verify_simple(sig.read_bytes(), image.manifest, one.public, identity=REF)

    assert main(["standalone-verify", str(manifest), REF, one.fingerprint, str(sig)]) == 0
    expected = f"Signature verified using fingerprint {one.fingerprint}, digest {image.digest}\n"
    assert capsys.readouterr().out == expected
    # Several fingerprints, comma-separated: any of them may have signed.
    listed = f"{two.fingerprint},{one.fingerprint}"
    (tmp_path / "two.gpg").write_bytes(two.public)
    (tmp_path / "both.gpg").write_bytes(one.public + two.public)
    argv = ["standalone-verify", "--public-key-file", str(tmp_path / "both.gpg")]
    assert main([*argv, str(manifest), REF, listed, str(sig)]) == 0
    assert capsys.readouterr().out == expected
    assert main([*argv, str(manifest), REF, "any", str(sig)]) == 0
    assert capsys.readouterr().out == expected
    # Refusals: another reference, another key, "any" without a key file, a corrupt manifest.
    assert main(["standalone-verify", str(manifest), "quay.io/ns/app:2", one.fingerprint, str(sig)])
    assert "does not match" in error_line(capsys.readouterr().err)
    only_two = ["standalone-verify", "--public-key-file", str(tmp_path / "two.gpg")]
    assert main([*only_two, str(manifest), REF, "any", str(sig)]) == 1
    capsys.readouterr()
    assert main([*argv, str(manifest), REF, two.fingerprint, str(sig)]) == 1
    assert "not accepted" in error_line(capsys.readouterr().err)
    assert main(["standalone-verify", str(manifest), REF, "any", str(sig)]) == 2
    assert "public key file" in capsys.readouterr().err
    (tmp_path / "changed.json").write_bytes(image.manifest + b" ")
    changed = str(tmp_path / "changed.json")
    assert main(["standalone-verify", changed, REF, one.fingerprint, str(sig)]) == 1
    assert "does not match the manifest" in error_line(capsys.readouterr().err)


@needs_gpg
def test_standalone_sign_with_passphrase_file(
    keys: tuple[Key, Key, Key],
    tmp_path: Path,
    image: BuiltImage,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    locked = keys[2]
    monkeypatch.setenv("GNUPGHOME", str(locked.home))
    (tmp_path / "m.json").write_bytes(image.manifest)
    (tmp_path / "pass").write_text("open sesame\n")
    argv = ["standalone-sign", str(tmp_path / "m.json"), REF, locked.fingerprint]
    argv += ["-o", str(tmp_path / "sig"), "--passphrase-file", str(tmp_path / "pass")]
    assert main(argv) == 0
    verify_simple((tmp_path / "sig").read_bytes(), image.manifest, locked.public, identity=REF)
    # -o is required, as skopeo's.
    assert main(["standalone-sign", str(tmp_path / "m.json"), REF, locked.fingerprint]) == 2
    capsys.readouterr()


# -- --additional-tag and the docker transport's configuration ---------------------------------


def test_additional_tags_go_into_the_archive(
    tmp_path: Path, src: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "out.tar"
    argv = ["--insecure-policy", "copy", "-q", "--additional-tag", "example.com/extra:2"]
    argv += ["--additional-tag", "other:3,third:4", f"dir:{src}", f"docker-archive:{archive}:a:1"]
    assert main(argv) == 0
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        entries = json.loads(member.read())
    # Fully qualified, as skopeo writes them.
    assert entries[0]["RepoTags"] == [
        "docker.io/library/a:1",
        "example.com/extra:2",
        "docker.io/library/other:3",
        "docker.io/library/third:4",
    ]


def _parse(argv: list[str]) -> argparse.Namespace:
    return _build_parser().parse_args(argv)


def test_registries_flags_reach_the_docker_transport(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONTAINERS_REGISTRIES_CONF", raising=False)
    args = _parse(["--registries.d", "/etc/rd", "--registries-conf", "/etc/rc", "inspect", "x"])
    extra = _transport_options(args).extra
    assert extra["docker.registries_d"] == "/etc/rd"
    assert extra["docker.registries_conf"] == "/etc/rc"
    # After the subcommand too; the environment variable when there is no flag.
    args = _parse(["copy", "--registries.d", "/etc/rd2", "a", "b"])
    assert _transport_options(args, "src_").extra == {"docker.registries_d": "/etc/rd2"}
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", "/env/rc")
    assert _transport_options(_parse(["inspect", "x"])).extra == {
        "docker.registries_conf": "/env/rc"
    }
    args = _parse(["--registries-conf", "/flag/rc", "inspect", "x"])
    assert _transport_options(args).extra["docker.registries_conf"] == "/flag/rc"


def test_registries_conf_blocks_a_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "registries.conf"
    conf.write_text('[[registry]]\nlocation = "127.0.0.1:1"\nblocked = true\n')
    monkeypatch.delenv("CONTAINERS_REGISTRIES_CONF", raising=False)
    assert main(["--registries-conf", str(conf), "inspect", "docker://127.0.0.1:1/ns/x:1"]) == 1
    assert "blocked" in error_line(capsys.readouterr().err)
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(conf))
    assert main(["inspect", "docker://127.0.0.1:1/ns/x:1"]) == 1
    assert "blocked" in error_line(capsys.readouterr().err)


def test_help_lists_the_trust_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("standalone-sign", "standalone-verify", "generate-sigstore-key", "--policy"):
        assert name in out
