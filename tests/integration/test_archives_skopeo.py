"""docker-archive and oci-archive against skopeo: each reads what the other writes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from imagetypes.copy import copy_image
from imagetypes.digest import Digest
from imagetypes.manifest import parse_manifest
from imagetypes_transports.docker_archive import (
    DockerArchiveWriter,
    list_archive_images,
    save_docker_tar,
)
from imagetypes_transports.docker_archive import transport as docker_archive
from imagetypes_transports.oci_archive import transport as oci_archive
from tests.imagebuilder import BuiltImage, make_image, write_oci_layout
from tests.unit.test_docker_archive_support import make_docker_image, write_docker_archive

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed"),
]


def skopeo(*args: str) -> str:
    result = subprocess.run(
        ["skopeo", "--insecure-policy", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def skopeo_json(*args: str) -> Any:
    return json.loads(skopeo(*args))


def diff_ids(config: bytes) -> list[str]:
    return list(json.loads(config)["rootfs"]["diff_ids"])


def layout(tmp_path: Path, seed: int, name: str = "t") -> tuple[str, BuiltImage]:
    image = make_image(seed, (5000, 3000))
    write_oci_layout(tmp_path / f"layout{seed}", {name: image})
    return f"oci:{tmp_path / f'layout{seed}'}:{name}", image


def archive_members(path: Path) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            f = tar.extractfile(m) if m.isreg() else None
            out[m.name] = f.read() if f else f"-> {m.linkname}"
    return out


# -- skopeo writes, we read -------------------------------------------------------------------
def test_we_read_skopeo_docker_archive(tmp_path: Path) -> None:
    src, image = layout(tmp_path, 1)
    archive = tmp_path / "s.tar"
    skopeo("copy", src, f"docker-archive:{archive}:example.com/app:1")
    with docker_archive.parse_reference(f"{archive}:example.com/app:1").open_source() as s:
        raw, media_type = s.get_manifest()
        manifest = parse_manifest(raw, media_type)
        config = s.get_blob_bytes(manifest.config)  # type: ignore[attr-defined]
        assert manifest.config.digest == image.config_digest  # type: ignore[attr-defined]
        assert config == image.config
        layers = manifest.layers  # type: ignore[attr-defined]
        assert [str(d.digest) for d in layers] == diff_ids(image.config)
        for desc in layers:
            assert s.get_blob(desc).read_to_end() == desc.digest  # uncompressed, verified
    assert list_archive_images(archive)[0].repo_tags == ("example.com/app:1",)


def test_we_read_skopeo_oci_archive(tmp_path: Path) -> None:
    src, image = layout(tmp_path, 2)
    archive = tmp_path / "s-oci.tar"
    skopeo("copy", src, f"oci-archive:{archive}:v1")
    with oci_archive.parse_reference(f"{archive}:v1").open_source() as s:
        raw, _ = s.get_manifest()
        assert raw == image.manifest
        for digest, blob in image.blobs.items():
            desc = next(
                d
                for d in (parse_manifest(raw).config, *parse_manifest(raw).layers)  # type: ignore[attr-defined]
                if d.digest == digest
            )
            assert s.get_blob(desc).read() == blob


def test_skopeo_and_we_agree_on_a_gzip_layer_archive(tmp_path: Path) -> None:
    image = make_docker_image(3, (4000, 2500), tags=["example.com/gz:1"], compress=True)
    archive = write_docker_archive(tmp_path / "gz.tar", [image])
    inspected = skopeo_json("inspect", f"docker-archive:{archive}")
    assert inspected["Layers"] == [str(d) for d in image.diff_ids]  # skopeo: by diff ID
    raw = skopeo("inspect", "--raw", f"docker-archive:{archive}")
    assert json.loads(raw)["config"]["digest"] == str(image.config_digest)
    with docker_archive.parse_reference(str(archive)).open_source() as s:
        ours = parse_manifest(s.get_manifest()[0])
        assert ours.config.digest == image.config_digest  # type: ignore[attr-defined]
        # We describe the stored gzip files; skopeo's diff IDs come out of them uncompressed.
        assert [d.digest for d in ours.layers] == [Digest.from_bytes(b) for b in image.layers]  # type: ignore[attr-defined]
    copy_image(f"docker-archive:{archive}", f"dir:{tmp_path / 'd'}")
    skopeo("copy", f"dir:{tmp_path / 'd'}", f"oci:{tmp_path / 'o'}:t")
    assert skopeo_json("inspect", "--config", f"oci:{tmp_path / 'o'}:t")["rootfs"]["diff_ids"] == [
        str(d) for d in image.diff_ids
    ]


# -- we write, skopeo reads -------------------------------------------------------------------
def test_skopeo_reads_our_docker_archive(tmp_path: Path) -> None:
    src, image = layout(tmp_path, 4)
    archive = tmp_path / "ours.tar"
    copy_image(src, f"docker-archive:{archive}:example.com/ours:2")
    raw = json.loads(skopeo("inspect", "--raw", f"docker-archive:{archive}:example.com/ours:2"))
    assert raw["config"]["digest"] == str(image.config_digest)
    config = json.loads(skopeo("inspect", "--config", "--raw", f"docker-archive:{archive}"))
    assert config == json.loads(image.config)
    # skopeo finds the image by its RepoTags, and copies it out intact.
    skopeo("copy", f"docker-archive:{archive}:example.com/ours:2", f"oci:{tmp_path / 'back'}:t")
    back = skopeo_json("inspect", "--config", f"oci:{tmp_path / 'back'}:t")
    assert back["rootfs"]["diff_ids"] == diff_ids(image.config)


def test_our_archive_matches_skopeos(tmp_path: Path) -> None:
    src, _ = layout(tmp_path, 5)
    theirs, ours = tmp_path / "theirs.tar", tmp_path / "ours.tar"
    skopeo("copy", src, f"docker-archive:{theirs}:example.com/same:1")
    copy_image(src, f"docker-archive:{ours}:example.com/same:1")
    # Same files (layers, config, legacy folders), same manifest.json and repositories.
    assert archive_members(ours) == archive_members(theirs)


def test_skopeo_reads_our_multi_image_archive(tmp_path: Path) -> None:
    src_a, image_a = layout(tmp_path, 6)
    src_b, image_b = layout(tmp_path, 7)
    archive = tmp_path / "multi.tar"
    with DockerArchiveWriter(archive) as writer:
        writer.add(src_a, ["example.com/a:1", "example.com/a:latest"])
        writer.add(src_b, ["example.com/b:1"])
    for ref, image in (
        (f"{archive}:@0", image_a),
        (f"{archive}:@1", image_b),
        (f"{archive}:example.com/a:latest", image_a),
        (f"{archive}:example.com/b:1", image_b),
    ):
        raw = json.loads(skopeo("inspect", "--raw", f"docker-archive:{ref}"))
        assert raw["config"]["digest"] == str(image.config_digest), ref
    listed = list_archive_images(archive)
    assert [i.config_digest for i in listed] == [image_a.config_digest, image_b.config_digest]


def test_skopeo_reads_what_we_stream_to_stdout(tmp_path: Path) -> None:
    src, image = layout(tmp_path, 8)
    code = (
        "import sys\n"
        "from imagetypes_transports.docker_archive import save_docker_tar\n"
        f"save_docker_tar({src!r}, '-', ['example.com/piped:1'])\n"
    )
    archive = tmp_path / "piped.tar"
    with open(archive, "wb") as out:
        # stdout is a pipe here; the archive is the only thing written to it.
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        shutil.copyfileobj(proc.stdout, out)
        assert proc.wait(timeout=300) == 0
    raw = json.loads(skopeo("inspect", "--raw", f"docker-archive:{archive}:example.com/piped:1"))
    assert raw["config"]["digest"] == str(image.config_digest)


def test_skopeo_reads_our_oci_archive(tmp_path: Path) -> None:
    src, image = layout(tmp_path, 9)
    archive = tmp_path / "ours-oci.tar"
    result = copy_image(src, f"oci-archive:{archive}:v9")
    assert result.manifest_digest == image.digest
    inspected = skopeo_json("inspect", f"oci-archive:{archive}:v9")
    assert inspected["Digest"] == str(image.digest)
    skopeo("copy", f"oci-archive:{archive}:v9", f"oci:{tmp_path / 'copy'}:t")
    assert skopeo("inspect", "--raw", f"oci:{tmp_path / 'copy'}:t").encode() == image.manifest


def test_round_trip_oci_docker_archive_oci(tmp_path: Path) -> None:
    src, image = layout(tmp_path, 10)
    archive = tmp_path / "rt.tar"
    save_docker_tar(src, archive, ["example.com/rt:1"])
    skopeo("copy", f"docker-archive:{archive}", f"oci-archive:{tmp_path / 'rt-oci.tar'}:x")
    with oci_archive.parse_reference(f"{tmp_path / 'rt-oci.tar'}:x").open_source() as s:
        manifest = parse_manifest(s.get_manifest()[0])
        assert s.get_blob_bytes(manifest.config) == image.config  # type: ignore[attr-defined]
