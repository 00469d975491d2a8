"""``sync --sign-by`` / ``--sign-by-sigstore-private-key`` against a real registry: every image
synced is signed as its own destination reference, the signatures verify with our verifier and
with skopeo (GPG simple signing; Debian's skopeo 1.9.3 has no sigstore), and the progress
reports signing and storing on stderr while stdout stays empty."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from gpgkit import Key, key_pair
from imagebuilder import BuiltImage, make_image, write_oci_layout
from registry_fixtures import RunningRegistry

from imagetypes import TransportOptions
from imagetypes.copy import (
    CopyOptions,
    EventCollector,
    SyncError,
    SyncOptions,
    SyncReport,
    copy_image,
    sync,
)
from imagetypes.copy._progress import SigningManifest, StoringSignatures
from imagetypes.trust import verify_simple

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed"),
]
needs_skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")

INSECURE = TransportOptions(tls_verify=False)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Key, Key]]:
    with key_pair(tmp_path_factory.mktemp("gpg")) as pair:
        yield pair


def _env(home: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CONTAINERS_REGISTRIES_CONF", None)
    if home is not None:
        env["GNUPGHOME"] = str(home)
    return env


def run(argv: list[str], home: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, env=_env(home), timeout=180, check=False
    )


def ours(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "imagetypes", *args], home)


def skopeo(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run(["skopeo", *args], home)


def push_repo(
    registry: RunningRegistry, repo: str, tmp_path: Path, seed: int
) -> dict[str, BuiltImage]:
    images = {f"t{i}": make_image(seed + i, (500 + i,)) for i in range(2)}
    layout = write_oci_layout(tmp_path / f"layout-{seed}", images)
    for tag in images:
        copy_image(
            f"oci:{layout}:{tag}",
            f"docker://{registry.host}/{repo}:{tag}",
            CopyOptions(destination_options=INSECURE),
        )
    return images


def lookaside_conf(tmp_path: Path) -> tuple[Path, Path]:
    store = tmp_path / "lookaside"
    conf = tmp_path / "registries.d"
    conf.mkdir()
    (conf / "default.yaml").write_text(f"default-docker:\n  lookaside: {store.as_uri()}\n")
    return conf, store


def signedby_policy(path: Path, key: Key, transport: str = "docker") -> Path:
    keyring = path.with_suffix(".gpg")
    keyring.write_bytes(key.public)
    requirement = {
        "type": "signedBy",
        "keyType": "GPGKeys",
        "keyPath": str(keyring),
        "signedIdentity": {"type": "matchRepoDigestOrExact"},
    }
    document: Mapping[str, object] = {
        "default": [{"type": "reject"}],
        "transports": {transport: {"": [requirement]}},
    }
    path.write_text(json.dumps(document))
    return path


def lookaside_signature(store: Path, repo: str, image: BuiltImage) -> bytes:
    """The one signature stored for ``image`` in ``repo`` (containers-registries.d layout)."""
    found = sorted(store.glob(f"{repo}@{image.digest.algorithm}={image.digest.hex}/signature-*"))
    assert [p.name for p in found] == ["signature-1"], found
    return found[0].read_bytes()


@needs_skopeo
def test_cli_sync_sign_by_signs_every_image_for_us_and_skopeo(
    registry: RunningRegistry, keys: tuple[Key, Key], tmp_path: Path
) -> None:
    one, two = keys
    images = push_repo(registry, "syncsign/app", tmp_path, 610)
    conf, store = lookaside_conf(tmp_path)
    done = ours(
        "--insecure-policy", "--registries.d", str(conf), "sync", "--src", "docker",
        "--dest", "docker", "--src-tls-verify=false", "--dest-tls-verify=false", "--jobs", "1",
        "--sign-by", one.fingerprint, f"{registry.host}/syncsign/app", f"{registry.host}/signed",
        home=one.home,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines.count("Signing manifest using simple signing") == 2
    assert lines.count("Storing signatures") == 2
    # skopeo's order (one image at a time with --jobs 1): the manifest, its signature, storing.
    first = lines.index("Signing manifest using simple signing")
    assert lines[first - 1] == "Writing manifest to image destination"
    assert lines[first + 1] == "Storing signatures"
    for tag, image in images.items():
        name = f"{registry.host}/signed/app:{tag}"
        blob = lookaside_signature(store, "signed/app", image)
        verified = verify_simple(blob, image.manifest, one.public, identity=name)
        assert verified.docker_manifest_digest == image.digest
        assert verified.docker_reference == name
    # skopeo accepts every image under a policy requiring our key, and refuses another key.
    accept = signedby_policy(tmp_path / "one.json", one)
    refuse = signedby_policy(tmp_path / "two.json", two)
    for tag in images:
        src = f"docker://{registry.host}/signed/app:{tag}"
        pulled = skopeo(
            "--registries.d", str(conf), "--policy", str(accept), "copy",
            "--src-tls-verify=false", src, f"dir:{tmp_path / ('skopeo-' + tag)}",
        )  # fmt: skip
        assert pulled.returncode == 0, pulled.stderr
        refused = skopeo(
            "--registries.d", str(conf), "--policy", str(refuse), "copy",
            "--src-tls-verify=false", src, f"dir:{tmp_path / ('refused-' + tag)}",
        )  # fmt: skip
        assert refused.returncode != 0
        assert "signature" in refused.stderr.lower()
    # skopeo standalone-verify agrees on the stored signature too.
    image = images["t0"]
    manifest = tmp_path / "manifest.json"
    manifest.write_bytes(image.manifest)
    signature = tmp_path / "signature"
    signature.write_bytes(lookaside_signature(store, "signed/app", image))
    verify = skopeo(
        "standalone-verify", str(manifest), f"{registry.host}/signed/app:t0", one.fingerprint,
        str(signature), home=one.home,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stderr
    assert image.digest.hex in verify.stdout


def test_cli_sync_sigstore_signs_every_image(registry: RunningRegistry, tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    images = push_repo(registry, "syncsig/app", tmp_path, 620)
    passphrase = tmp_path / "pass"
    passphrase.write_text("sesame\nignored second line\n")
    made = ours(
        "generate-sigstore-key", "--output-prefix", str(tmp_path / "key"),
        "--passphrase-file", str(passphrase),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    conf = tmp_path / "registries.d"
    conf.mkdir()
    (conf / "default.yaml").write_text("default-docker:\n  use-sigstore-attachments: true\n")
    done = ours(
        "--insecure-policy", "--registries.d", str(conf), "sync", "--src", "docker",
        "--dest", "docker", "--src-tls-verify=false", "--dest-tls-verify=false",
        "--sign-by-sigstore-private-key", str(tmp_path / "key.private"),
        "--sign-passphrase-file", str(passphrase),
        f"{registry.host}/syncsig/app", f"{registry.host}/sigstore",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines.count("Signing manifest using a sigstore signature") == 2
    assert lines.count("Storing signatures") == 2
    # Our policy, requiring that key with each image's own name, accepts every image.
    policy = tmp_path / "policy.json"
    policy.write_text(
        json.dumps(
            {
                "default": [{"type": "reject"}],
                "transports": {
                    "docker": {
                        "": [{"type": "sigstoreSigned", "keyPath": str(tmp_path / "key.pub")}]
                    }
                },
            }
        )
    )
    for tag in images:
        out = tmp_path / f"out-{tag}"
        pulled = ours(
            "--registries.d", str(conf), "--policy", str(policy), "copy", "-q",
            "--src-tls-verify=false", f"docker://{registry.host}/sigstore/app:{tag}", f"dir:{out}",
        )  # fmt: skip
        assert pulled.returncode == 0, pulled.stderr
        assert (out / "signature-1").is_file()
    # The source repository, never signed, is refused by the same policy.
    unsigned = ours(
        "--registries.d", str(conf), "--policy", str(policy), "copy", "-q",
        "--src-tls-verify=false", f"docker://{registry.host}/syncsig/app:t0",
        f"dir:{tmp_path / 'unsigned'}",
    )  # fmt: skip
    assert unsigned.returncode != 0
    assert not (tmp_path / "unsigned").exists()


def test_sync_reports_signing_events_per_image(
    registry: RunningRegistry, keys: tuple[Key, Key], tmp_path: Path
) -> None:
    one, _ = keys
    images = push_repo(registry, "syncev/app", tmp_path, 630)
    conf, store = lookaside_conf(tmp_path)
    extra = {"docker.registries_d": str(conf)}
    options = TransportOptions(tls_verify=False, extra=extra)
    events = EventCollector()

    def signed_sync(progress: EventCollector | None = None) -> SyncReport:
        return sync(
            f"{registry.host}/syncev/app",
            f"{registry.host}/evsigned",
            source_kind="docker",
            destination_kind="docker",
            options=SyncOptions(
                copy_options=CopyOptions(
                    source_options=options,
                    destination_options=options,
                    sign_by=one.fingerprint,
                    gpg_home=one.home,
                    progress=progress,
                )
            ),
        )

    report = signed_sync(events)
    assert report.ok
    assert len(report.copied) == 2
    signing = [e for e in events.events if isinstance(e, SigningManifest)]
    assert sorted((e.identity, e.method) for e in signing) == [
        (f"{registry.host}/evsigned/app:{tag}", "simple") for tag in sorted(images)
    ]
    assert {e.digest for e in signing} == {img.digest for img in images.values()}
    storing = [e for e in events.events if isinstance(e, StoringSignatures)]
    assert sorted((str(e.digest), e.count, e.created, e.index) for e in storing) == sorted(
        (str(img.digest), 1, 1, False) for img in images.values()
    )
    # Syncing again signs (and so copies) again, as skopeo does: a signature is added.
    again = signed_sync()
    assert len(again.copied) == 2
    assert not again.unchanged
    # The signature stored for each image is replaced by the new one (same key and identity).
    for tag, image in images.items():
        blob = lookaside_signature(store, "evsigned/app", image)
        name = f"{registry.host}/evsigned/app:{tag}"
        assert (
            verify_simple(blob, image.manifest, one.public, identity=name).docker_reference == name
        )


@needs_skopeo
def test_sync_into_folders_with_one_identity(
    keys: tuple[Key, Key], registry: RunningRegistry, tmp_path: Path
) -> None:
    one, _ = keys
    images = push_repo(registry, "syncdir/app", tmp_path, 640)
    out = tmp_path / "out"
    # A folder has no Docker reference to sign as: refused before anything is listed or made.
    with pytest.raises(SyncError, match="sign_identity"):
        sync(
            f"{registry.host}/syncdir/app",
            str(out),
            source_kind="docker",
            destination_kind="dir",
            options=SyncOptions(
                copy_options=CopyOptions(
                    source_options=INSECURE, sign_by=one.fingerprint, gpg_home=one.home
                )
            ),
        )
    assert not out.exists()
    identity = "quay.io/mirror/app:synced"
    report = sync(
        f"{registry.host}/syncdir/app",
        str(out),
        source_kind="docker",
        destination_kind="dir",
        options=SyncOptions(
            copy_options=CopyOptions(
                source_options=INSECURE,
                sign_by=one.fingerprint,
                gpg_home=one.home,
                sign_identity=identity,
            )
        ),
    )
    assert len(report.copied) == 2
    for tag, image in images.items():
        folder = out / f"app:{tag}"
        assert (folder / "manifest.json").read_bytes() == image.manifest
        verify = skopeo(
            "standalone-verify", str(folder / "manifest.json"), identity, one.fingerprint,
            str(folder / "signature-1"), home=one.home,
        )  # fmt: skip
        assert verify.returncode == 0, verify.stderr
        # And skopeo's policy for dir: accepts it, with that identity.
        policy = signedby_policy(tmp_path / f"dir-{tag}.json", one, transport="dir")
        document = json.loads(policy.read_text())
        document["transports"]["dir"][""][0]["signedIdentity"] = {
            "type": "exactReference",
            "dockerReference": identity,
        }
        policy.write_text(json.dumps(document))
        copied = skopeo("--policy", str(policy), "copy", f"dir:{folder}", f"dir:{tmp_path / tag}")
        assert copied.returncode == 0, copied.stderr
        # Our policy agrees.
        mine = ours(
            "--policy", str(policy), "copy", "-q", f"dir:{folder}", f"dir:{tmp_path / ('o' + tag)}"
        )
        assert mine.returncode == 0, mine.stderr


def test_sync_wrong_sigstore_passphrase_writes_nothing(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    pytest.importorskip("cryptography")
    from imagetypes.trust import SigstoreKeyError, generate_sigstore_key

    push_repo(registry, "syncpw/app", tmp_path, 650)
    private, _ = generate_sigstore_key(b"right")
    key = tmp_path / "key.private"
    key.write_bytes(private)
    events = EventCollector()
    with pytest.raises(SigstoreKeyError, match="wrong passphrase"):
        sync(
            f"{registry.host}/syncpw/app",
            f"{registry.host}/pwsigned",
            source_kind="docker",
            destination_kind="docker",
            options=SyncOptions(
                copy_options=CopyOptions(
                    source_options=INSECURE,
                    destination_options=INSECURE,
                    sign_by_sigstore_private_key=key,
                    sign_passphrase="wrong",
                    progress=events,
                )
            ),
        )
    assert events.events == []  # not one copy started
    listed = ours("list-tags", "--tls-verify=false", f"docker://{registry.host}/pwsigned/app")
    assert listed.returncode != 0
