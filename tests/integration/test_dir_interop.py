"""dir: interoperability with skopeo: what it writes we read, what we write it reads."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagetypes import mediatypes as mt
from imagetypes.descriptor import BlobInfo, Descriptor
from imagetypes.digest import Digest
from imagetypes_transports.dir import DirReference
from tests.imagebuilder import (
    BuiltImage,
    BuiltIndex,
    make_image,
    make_multiarch,
    write_oci_layout,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed"),
]

ITEMS: dict[str, BuiltImage | BuiltIndex] = {
    "one": make_image(1),
    "docker": make_image(2, docker=True),
    "multi": make_multiarch(3),
    "multidocker": make_multiarch(4, docker=True),
}
SINGLE = ["one", "docker"]
MULTI = ["multi", "multidocker"]
# Signature bytes skopeo accepts as (unverified) simple signing: an OpenPGP packet tag first.
FAKE_SIG = b"\xa3fake-signature-"


def skopeo(*args: str, env: dict[str, str] | None = None) -> bytes:
    proc = subprocess.run(
        ["skopeo", "--insecure-policy", *args],
        capture_output=True,
        timeout=180,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert proc.returncode == 0, f"skopeo {' '.join(args)} failed: {proc.stderr.decode()}"
    return proc.stdout


def read_files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


def expected_files(item: BuiltImage | BuiltIndex) -> dict[str, bytes]:
    files = {"version": b"Directory Transport Version: 1.1\n", "manifest.json": item.manifest}
    images = item.images if isinstance(item, BuiltIndex) else [item]
    for img in images:
        files.update({d.hex: b for d, b in img.blobs.items()})
        if isinstance(item, BuiltIndex):
            files[f"{img.digest.hex}.manifest.json"] = img.manifest
    return files


def write_ours(
    path: Path,
    item: BuiltImage | BuiltIndex,
    signatures: list[bytes] | None = None,
    instance_signatures: dict[Digest, list[bytes]] | None = None,
) -> None:
    with DirReference(path).open_destination() as dest:
        images = item.images if isinstance(item, BuiltIndex) else [item]
        for img in images:
            for digest, blob in img.blobs.items():
                dest.put_blob(io.BytesIO(blob), BlobInfo("", digest, len(blob)))
            if isinstance(item, BuiltIndex):
                dest.put_manifest(img.manifest, img.media_type, img.digest)
        dest.put_manifest(item.manifest, item.media_type)
        for instance, sigs in (instance_signatures or {}).items():
            dest.put_signatures(sigs, instance)
        if signatures:
            dest.put_signatures(signatures)
        dest.commit()


def copy_via_api(source: Path, destination: Path) -> None:
    """Copy a dir: image with our source and destination only (the copy engine is not used)."""

    def image_blobs(manifest: bytes) -> list[Descriptor]:
        obj = json.loads(manifest)
        return [Descriptor.from_dict(d) for d in [obj["config"], *obj["layers"]]]

    with (
        DirReference(source).open_source() as src,
        DirReference(destination).open_destination() as dest,
    ):
        top, top_type = src.get_manifest()
        instances: list[Digest | None] = [None]
        if mt.is_index(top_type):
            instances = [Digest.parse(m["digest"]) for m in json.loads(top)["manifests"]]
        for instance in instances:
            data, media_type = src.get_manifest(instance)
            for desc in image_blobs(data):
                if dest.try_reusing_blob(BlobInfo.from_descriptor(desc)) is None:
                    with src.get_blob(desc) as stream:
                        dest.put_blob(stream, BlobInfo.from_descriptor(desc))
            if instance is not None:
                dest.put_manifest(data, media_type, instance)
                dest.put_signatures(src.get_signatures(instance), instance)
        dest.put_manifest(top, top_type)
        dest.put_signatures(src.get_signatures())
        dest.commit()


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Only OCI-typed images: skopeo's oci: source does not list Docker-typed ones.
    oci_items = {tag: ITEMS[tag] for tag in ("one", "multi")}
    return write_oci_layout(tmp_path_factory.mktemp("oci") / "layout", oci_items)


@pytest.fixture(scope="module")
def gpg_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], str]]:
    """A throwaway GPG keyring (GNUPGHOME) and the fingerprint of its signing key."""
    if shutil.which("gpg") is None:
        pytest.skip("gpg is not installed")
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    env = {"GNUPGHOME": str(home)}
    subprocess.run(
        [
            *("gpg", "--batch", "--passphrase", "", "--quick-gen-key"),
            *("Test <test@example.com>", "ed25519", "sign", "never"),
        ],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        timeout=60,
    )
    listing = subprocess.run(
        ["gpg", "--list-keys", "--with-colons"],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout.decode()
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line[:4] == "fpr:")
    yield env, fingerprint
    # Stop the agent gpg started for this keyring (and only that one).
    subprocess.run(
        ["gpgconf", "--kill", "gpg-agent"],
        env={**os.environ, **env},
        check=False,
        capture_output=True,
        timeout=60,
    )


# -- skopeo writes, we read ----------------------------------------------------------------
def read_all_verified(path: Path) -> tuple[str, int]:
    """Read every manifest and blob of a dir: image through our source (all verified).

    Returns the top-level media type and the number of blobs read.
    """
    count = 0
    with DirReference(path).open_source() as src:
        top, top_type = src.get_manifest()
        assert top == (path / "manifest.json").read_bytes()
        instances: list[Digest | None] = [None]
        if mt.is_index(top_type):
            instances = [Digest.parse(m["digest"]) for m in json.loads(top)["manifests"]]
        for instance in instances:
            data, _ = src.get_manifest(instance)
            obj = json.loads(data)
            for d in [obj["config"], *obj["layers"]]:
                desc = Descriptor.from_dict(d)
                with src.get_blob(desc) as r:
                    assert len(r.read()) == desc.size
                count += 1
    return top_type, count


@pytest.mark.parametrize("tag", ["one", "multi"])
def test_skopeo_writes_we_read(layout: Path, tmp_path: Path, tag: str) -> None:
    item = ITEMS[tag]
    theirs = tmp_path / "theirs"
    flags = ["--all"] if tag in MULTI else []
    skopeo("copy", *flags, f"oci:{layout}:{tag}", f"dir:{theirs}")
    # skopeo's directory is exactly what we expect (and what we write, below).
    assert read_files(theirs) == expected_files(item)

    with DirReference(theirs).open_source() as src:
        assert src.get_manifest() == (item.manifest, item.media_type)
        images = item.images if isinstance(item, BuiltIndex) else [item]
        for img in images:
            if isinstance(item, BuiltIndex):
                assert src.get_manifest(img.digest) == (img.manifest, img.media_type)
            for digest, blob in img.blobs.items():
                with src.get_blob(Descriptor("", digest, len(blob))) as r:
                    assert r.read() == blob

    ours = tmp_path / "ours"
    write_ours(ours, item)
    assert read_files(ours) == read_files(theirs)


@pytest.mark.parametrize(
    ("tag", "media_type"), [("one", mt.DOCKER_MANIFEST), ("multi", mt.DOCKER_MANIFEST_LIST)]
)
def test_skopeo_writes_docker_format_we_read(
    layout: Path, tmp_path: Path, tag: str, media_type: str
) -> None:
    # skopeo's oci: source only lists OCI-typed images, so Docker ones are made by conversion.
    theirs = tmp_path / "theirs"
    flags = ["--all"] if tag in MULTI else []
    skopeo("copy", *flags, "--format", "v2s2", f"oci:{layout}:{tag}", f"dir:{theirs}")
    top_type, blobs = read_all_verified(theirs)
    assert top_type == media_type
    assert blobs == (3 if tag == "one" else 9)
    ours = tmp_path / "ours"
    copy_via_api(theirs, ours)
    assert read_files(ours) == read_files(theirs)


@pytest.mark.parametrize("tag", ["one", "multi"])
def test_skopeo_signatures_we_read_and_keep(
    layout: Path, tmp_path: Path, gpg_key: tuple[dict[str, str], str], tag: str
) -> None:
    env, fingerprint = gpg_key
    item = ITEMS[tag]
    theirs = tmp_path / "theirs"
    identity = "example.com/test/image:1"
    flags = ["--all"] if tag in MULTI else []
    skopeo(
        "copy",
        *flags,
        "--sign-by",
        fingerprint,
        "--sign-identity",
        identity,
        f"oci:{layout}:{tag}",
        f"dir:{theirs}",
        env=env,
    )
    with DirReference(theirs).open_source() as src:
        top_sigs = src.get_signatures()
        assert top_sigs == [(theirs / "signature-1").read_bytes()]
        if isinstance(item, BuiltIndex):
            for img in item.images:
                sigs = src.get_signatures(img.digest)
                assert sigs == [(theirs / f"{img.digest.hex}.signature-1").read_bytes()]

    ours = tmp_path / "ours"
    copy_via_api(theirs, ours)
    assert read_files(ours) == read_files(theirs)
    # The signatures we carried still verify against the manifests we carried.
    checks = [("manifest.json", "signature-1")]
    if isinstance(item, BuiltIndex):
        hexes = [img.digest.hex for img in item.images]
        checks += [(f"{h}.manifest.json", f"{h}.signature-1") for h in hexes]
    for manifest_file, signature_file in checks:
        out = skopeo(
            "standalone-verify",
            str(ours / manifest_file),
            identity,
            fingerprint,
            str(ours / signature_file),
            env=env,
        )
        digest = Digest.from_bytes((ours / manifest_file).read_bytes())
        assert f"Signature verified, digest {digest}".encode() in out
    # ... and would not verify another manifest: the check above is a real one.
    (tmp_path / "other.json").write_bytes(ITEMS["docker"].manifest)
    proc = subprocess.run(
        [
            *("skopeo", "standalone-verify", str(tmp_path / "other.json")),
            *(identity, fingerprint, str(ours / "signature-1")),
        ],
        env={**os.environ, **env},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0


# -- we write, skopeo reads ----------------------------------------------------------------
@pytest.mark.parametrize("tag", SINGLE + MULTI)
def test_skopeo_inspects_what_we_write(tmp_path: Path, tag: str) -> None:
    item = ITEMS[tag]
    ours = tmp_path / "ours"
    write_ours(ours, item)
    assert skopeo("inspect", "--raw", f"dir:{ours}") == item.manifest
    if isinstance(item, BuiltImage):
        config = skopeo("inspect", "--config", "--raw", f"dir:{ours}")
        assert config == item.config


def _oci_index_entry(layout: Path, tag: str) -> dict[str, object]:
    index = json.loads((layout / "index.json").read_bytes())
    (entry,) = [
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    ]
    return dict(entry)


def test_skopeo_copies_our_oci_image_to_oci(tmp_path: Path) -> None:
    item = ITEMS["one"]
    assert isinstance(item, BuiltImage)
    write_ours(tmp_path / "ours", item)
    skopeo("copy", f"dir:{tmp_path / 'ours'}", f"oci:{tmp_path / 'out'}:t")
    entry = _oci_index_entry(tmp_path / "out", "t")
    assert entry["digest"] == str(item.digest)
    for digest, blob in item.blobs.items():
        assert (tmp_path / "out" / "blobs" / "sha256" / digest.hex).read_bytes() == blob


def test_skopeo_copies_our_docker_image_to_oci(tmp_path: Path) -> None:
    item = ITEMS["docker"]
    assert isinstance(item, BuiltImage)
    write_ours(tmp_path / "ours", item)
    skopeo("copy", f"dir:{tmp_path / 'ours'}", f"oci:{tmp_path / 'out'}:t")
    entry = _oci_index_entry(tmp_path / "out", "t")
    # The OCI layout gets a converted manifest, but the same layers.
    manifest = (tmp_path / "out" / "blobs" / "sha256" / str(entry["digest"])[7:]).read_bytes()
    layers = [d["digest"] for d in json.loads(manifest)["layers"]]
    assert layers == [d["digest"] for d in json.loads(item.manifest)["layers"]]


@pytest.mark.parametrize("tag", MULTI)
def test_skopeo_copies_our_multiarch_with_all(tmp_path: Path, tag: str) -> None:
    item = ITEMS[tag]
    assert isinstance(item, BuiltIndex)
    write_ours(tmp_path / "ours", item)
    skopeo("copy", "--all", f"dir:{tmp_path / 'ours'}", f"dir:{tmp_path / 'dir'}")
    assert read_files(tmp_path / "dir") == expected_files(item)
    if tag == "multi":  # an OCI index goes to an OCI layout unchanged
        skopeo("copy", "--all", f"dir:{tmp_path / 'ours'}", f"oci:{tmp_path / 'out'}:t")
        assert _oci_index_entry(tmp_path / "out", "t")["digest"] == str(item.digest)
        blobs = tmp_path / "out" / "blobs" / "sha256"
        for img in item.images:
            assert (blobs / img.digest.hex).read_bytes() == img.manifest
            for digest, blob in img.blobs.items():
                assert (blobs / digest.hex).read_bytes() == blob


@pytest.mark.parametrize("tag", ["one", "multi"])
def test_skopeo_copies_our_signatures_dir_to_dir(tmp_path: Path, tag: str) -> None:
    item = ITEMS[tag]
    instance_sigs: dict[Digest, list[bytes]] = {}
    if isinstance(item, BuiltIndex):
        instance_sigs = {
            img.digest: [FAKE_SIG + b"%d" % i, FAKE_SIG + b"x"] for i, img in enumerate(item.images)
        }
    ours = tmp_path / "ours"
    write_ours(ours, item, [FAKE_SIG + b"top1", FAKE_SIG + b"top2"], instance_sigs)
    flags = ["--all"] if tag in MULTI else []
    skopeo("copy", *flags, f"dir:{ours}", f"dir:{tmp_path / 'theirs'}")
    files = read_files(tmp_path / "theirs")
    assert files == read_files(ours)
    assert files["signature-2"] == FAKE_SIG + b"top2"
    assert len([n for n in files if ".signature-" in n]) == 2 * len(instance_sigs)


def test_overwrites_interoperate(layout: Path, tmp_path: Path) -> None:
    target = tmp_path / "img"
    skopeo("copy", "--all", f"oci:{layout}:multi", f"dir:{target}")
    # We accept skopeo's directory as one we may replace, and replace it fully.
    write_ours(target, ITEMS["docker"])
    assert read_files(target) == expected_files(ITEMS["docker"])
    # skopeo accepts ours as one it may replace.
    skopeo("copy", f"oci:{layout}:one", f"dir:{target}")
    assert read_files(target) == expected_files(ITEMS["one"])
