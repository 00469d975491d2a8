"""Manifest formats and multi-arch modes against real layouts: schema 1 sources written by
skopeo, format v2s1, preserve_digests, index-only and sparse indexes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from imagebuilder import BuiltImage, make_image, make_multiarch, write_oci_layout

from imagetypes import DigestChangeError, UnsupportedConversionError
from imagetypes import mediatypes as mt
from imagetypes.copy import CopyOptions, copy_image
from imagetypes.digest import Digest

pytestmark = pytest.mark.integration

SKOPEO = shutil.which("skopeo")
needs_skopeo = pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed")


def skopeo(*args: str) -> bytes:
    assert SKOPEO is not None
    done = subprocess.run(
        [SKOPEO, "--insecure-policy", *args], capture_output=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def dir_manifest(path: Path) -> dict[str, object]:
    return dict(json.loads((path / "manifest.json").read_bytes()))


def dir_blob(path: Path, digest: str) -> bytes:
    return (path / digest.split(":")[1]).read_bytes()


def with_empty_layer(img: BuiltImage) -> BuiltImage:
    """The image with an extra ``empty_layer`` history entry (a schema 1 "throwaway" layer)."""
    config = json.loads(img.config)
    config["history"].insert(
        1, {"created": "2024-01-02T03:04:06.500Z", "created_by": "ENV A=b", "empty_layer": True}
    )
    data = json.dumps(config, separators=(",", ":")).encode()
    manifest = json.loads(img.manifest)
    manifest["config"].update(digest=str(Digest.from_bytes(data)), size=len(data))
    blobs = {d: b for d, b in img.blobs.items() if d != img.config_digest}
    blobs[Digest.from_bytes(data)] = data
    raw = json.dumps(manifest, separators=(",", ":")).encode()
    return BuiltImage(raw, img.media_type, data, blobs)


def schema1_dir(tmp_path: Path, img: BuiltImage) -> Path:
    src = write_oci_layout(tmp_path / "src", {"v1": img})
    out = tmp_path / "s1"
    skopeo("copy", "--format", "v2s1", f"oci:{src}:v1", f"dir:{out}")
    assert dir_manifest(out)["schemaVersion"] == 1
    return out


@needs_skopeo
def test_schema1_to_v2s2_matches_skopeos_conversion(tmp_path: Path) -> None:
    img = make_image(1, (2000, 30_000, 700))
    s1 = schema1_dir(tmp_path, img)
    result = copy_image(f"dir:{s1}", f"dir:{tmp_path / 'ours'}", CopyOptions(format="v2s2"))
    skopeo("copy", "--format", "v2s2", f"dir:{s1}", f"dir:{tmp_path / 'theirs'}")
    ours, theirs = dir_manifest(tmp_path / "ours"), dir_manifest(tmp_path / "theirs")
    assert ours == theirs
    assert (tmp_path / "ours" / "manifest.json").read_bytes() == (
        tmp_path / "theirs" / "manifest.json"
    ).read_bytes()
    config = ours["config"]
    assert isinstance(config, dict)
    data = dir_blob(tmp_path / "ours", config["digest"])
    assert json.loads(data)["rootfs"]["diff_ids"] == json.loads(img.config)["rootfs"]["diff_ids"]
    assert result.converted
    assert result.media_type == mt.DOCKER_MANIFEST


@needs_skopeo
def test_schema1_with_empty_layers_to_oci(tmp_path: Path) -> None:
    img = with_empty_layer(make_image(2, (2000, 9000)))
    s1 = schema1_dir(tmp_path, img)
    s1_manifest = dir_manifest(s1)
    fs_layers = s1_manifest["fsLayers"]
    assert isinstance(fs_layers, list)
    assert len(fs_layers) == 3  # skopeo adds the empty layer blob for the throwaway entry
    copy_image(f"dir:{s1}", f"oci:{tmp_path / 'layout'}:x")
    index = json.loads((tmp_path / "layout" / "index.json").read_bytes())
    (entry,) = index["manifests"]
    layout_blob = tmp_path / "layout" / "blobs" / "sha256"
    manifest = json.loads((layout_blob / entry["digest"].split(":")[1]).read_bytes())
    assert manifest["mediaType"] == mt.OCI_MANIFEST
    assert [x["mediaType"] for x in manifest["layers"]] == [mt.OCI_LAYER_GZIP] * 2
    config = json.loads((layout_blob / manifest["config"]["digest"].split(":")[1]).read_bytes())
    original = json.loads(img.config)
    assert config["rootfs"]["diff_ids"] == original["rootfs"]["diff_ids"]
    assert [h.get("empty_layer", False) for h in config["history"]] == [False, True, False]
    assert config["history"][1]["created_by"] == "ENV A=b"
    assert config["history"][1]["created"] == "2024-01-02T03:04:06.5Z"
    # The result is a valid image for skopeo.
    skopeo("copy", f"oci:{tmp_path / 'layout'}:x", f"dir:{tmp_path / 'check'}")


@needs_skopeo
def test_schema1_kept_where_the_destination_accepts_it(tmp_path: Path) -> None:
    s1 = schema1_dir(tmp_path, make_image(3))
    result = copy_image(f"dir:{s1}", f"dir:{tmp_path / 'copy'}")
    assert (tmp_path / "copy" / "manifest.json").read_bytes() == (s1 / "manifest.json").read_bytes()
    assert not result.converted
    with pytest.raises(DigestChangeError, match="schema 1"):
        copy_image(f"dir:{s1}", f"oci:{tmp_path / 'layout'}:x", CopyOptions(preserve_digests=True))
    assert not (tmp_path / "layout").exists()


def test_format_v2s1_refuses_indexes_clearly(tmp_path: Path) -> None:
    # Schema 1 has no manifest lists (tests/unit/test_schema1_write.py covers single images).
    src = write_oci_layout(tmp_path / "src", {"multi": make_multiarch(4)})
    with pytest.raises(UnsupportedConversionError, match="no manifest lists"):
        copy_image(
            f"oci:{src}:multi",
            f"dir:{tmp_path / 'out'}",
            CopyOptions(format="v2s1", instances="all"),
        )
    assert not (tmp_path / "out").exists()


# -- multi-arch modes ---------------------------------------------------------------------------


def layout_blobs(root: Path) -> set[str]:
    return {f"sha256:{p.name}" for p in (root / "blobs" / "sha256").iterdir()}


def test_index_only_writes_the_index_alone(tmp_path: Path) -> None:
    index = make_multiarch(5)
    src = write_oci_layout(tmp_path / "src", {"multi": index})
    result = copy_image(
        f"oci:{src}:multi", f"oci:{tmp_path / 'dst'}:multi", CopyOptions(instances="index-only")
    )
    assert result.manifest_digest == index.digest
    assert result.instance_digests == ()
    assert layout_blobs(tmp_path / "dst") == {str(index.digest)}
    top = json.loads((tmp_path / "dst" / "index.json").read_bytes())
    assert top["manifests"][0]["digest"] == str(index.digest)


@needs_skopeo
def test_subset_keeping_unselected_entries(tmp_path: Path) -> None:
    index = make_multiarch(6)
    amd64, arm64, _arm = index.images
    src = write_oci_layout(tmp_path / "src", {"multi": index})
    options = CopyOptions(instances=["linux/arm64"], keep_unselected=True)
    result = copy_image(f"oci:{src}:multi", f"oci:{tmp_path / 'dst'}:multi", options)
    # The index is written unchanged (sparse): same digest, every entry listed...
    assert result.manifest_digest == index.digest
    assert result.instance_digests == (arm64.digest,)
    blobs = layout_blobs(tmp_path / "dst")
    # ... but only the chosen image is there.
    assert {str(index.digest), str(arm64.digest)} | {str(d) for d in arm64.blobs} == blobs
    assert str(amd64.digest) not in blobs
    # skopeo can still copy the image that is there.
    skopeo(
        "copy",
        "--override-arch",
        "arm64",
        "--override-variant",
        "v8",
        f"oci:{tmp_path / 'dst'}:multi",
        f"dir:{tmp_path / 'check'}",
    )
    # Without keep_unselected the index lists only the copied image.
    stripped = copy_image(
        f"oci:{src}:multi", f"oci:{tmp_path / 'dst2'}:m", CopyOptions(instances=["linux/arm64"])
    )
    assert stripped.manifest_digest != index.digest
