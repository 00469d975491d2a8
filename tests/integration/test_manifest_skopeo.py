"""Manifests written by skopeo (containers/image) parse, and our conversions match its output.

Source images are OCI layouts written by tests/imagebuilder.py; skopeo converts them, and the
bytes it writes are the oracle for what our models and converters produce.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from imagetypes import mediatypes as mt
from imagetypes.digest import Digest
from imagetypes.manifest import (
    DockerManifest,
    DockerManifestList,
    DockerSchema1Manifest,
    ImageConfig,
    OCIIndex,
    OCIManifest,
    convert_manifest,
    parse_manifest,
)

_TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from imagebuilder import BuiltImage, BuiltIndex, make_image, make_multiarch, write_oci_layout  # noqa: E402

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
        timeout=120,
    )
    assert result.returncode == 0, f"skopeo {' '.join(args)} failed: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def image() -> BuiltImage:
    return make_image(31, (700, 1500, 300), labels={"org.example.test": "skopeo"})


@pytest.fixture(scope="module")
def multiarch() -> BuiltIndex:
    return make_multiarch(32)


@pytest.fixture(scope="module")
def layout(
    tmp_path_factory: pytest.TempPathFactory, image: BuiltImage, multiarch: BuiltIndex
) -> Path:
    return write_oci_layout(
        tmp_path_factory.mktemp("layout") / "oci", {"one": image, "multi": multiarch}
    )


def test_skopeo_v2s2_conversion_is_byte_identical_to_ours(
    layout: Path, image: BuiltImage, tmp_path: Path
) -> None:
    skopeo("copy", "--format", "v2s2", f"oci:{layout}:one", f"dir:{tmp_path / 'out'}")
    written = (tmp_path / "out" / "manifest.json").read_bytes()
    theirs = parse_manifest(written)
    assert isinstance(theirs, DockerManifest)
    assert theirs.raw == written
    ours = convert_manifest(parse_manifest(image.manifest), mt.DOCKER_MANIFEST)
    assert ours.raw == written
    assert (
        str(ours.digest)
        == skopeo("manifest-digest", str(tmp_path / "out" / "manifest.json")).strip()
    )
    # And back: the layer and config digests survive, the media types are OCI again.
    back = convert_manifest(theirs, mt.OCI_MANIFEST)
    assert isinstance(back, OCIManifest)
    assert back.raw == image.manifest


def test_skopeo_oci_output_is_what_our_builder_writes(
    layout: Path, image: BuiltImage, tmp_path: Path
) -> None:
    skopeo("copy", "--format", "v2s2", f"oci:{layout}:one", f"dir:{tmp_path / 'docker'}")
    skopeo("copy", "--format", "oci", f"dir:{tmp_path / 'docker'}", f"oci:{tmp_path / 'oci'}:x")
    index = parse_manifest((tmp_path / "oci" / "index.json").read_bytes())
    assert isinstance(index, OCIIndex)
    entry = index.manifests[0]
    raw = (tmp_path / "oci" / "blobs" / entry.digest.algorithm / entry.digest.hex).read_bytes()
    theirs = parse_manifest(raw, entry.media_type)
    assert isinstance(theirs, OCIManifest)
    assert theirs.digest == entry.digest
    rebuilt = OCIManifest.build(theirs.config, theirs.layers, annotations=theirs.annotations)
    assert rebuilt.raw == raw
    original = parse_manifest(image.manifest)
    assert isinstance(original, OCIManifest)
    assert [x.digest for x in theirs.layers] == [x.digest for x in original.layers]


def test_skopeo_list_conversion_is_byte_identical_to_ours(
    layout: Path, multiarch: BuiltIndex, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    skopeo("copy", "--all", "--format", "v2s2", f"oci:{layout}:multi", f"dir:{out}")
    theirs = parse_manifest((out / "manifest.json").read_bytes())
    assert isinstance(theirs, DockerManifestList)
    instance_map = {}
    for built in multiarch.images:
        instance = parse_manifest(built.manifest)
        converted = convert_manifest(instance, mt.DOCKER_MANIFEST)
        # skopeo's dir: transport stores each instance as <hex>.manifest.json.
        assert (out / f"{converted.digest.hex}.manifest.json").read_bytes() == converted.raw
        instance_map[instance.digest] = converted.descriptor()
    index = parse_manifest(multiarch.manifest)
    ours = convert_manifest(index, mt.DOCKER_MANIFEST_LIST, instance_map=instance_map)
    assert ours.raw == theirs.raw
    assert theirs.instance_for("linux/arm64") == theirs.manifests[1]


def test_skopeo_signed_schema1_canonical_digest(
    layout: Path, image: BuiltImage, tmp_path: Path
) -> None:
    out = tmp_path / "s1"
    skopeo("copy", "--format", "v2s1", f"oci:{layout}:one", f"dir:{out}")
    raw = (out / "manifest.json").read_bytes()
    manifest = parse_manifest(raw)
    assert isinstance(manifest, DockerSchema1Manifest)
    assert manifest.media_type == mt.DOCKER_SCHEMA1_SIGNED_MANIFEST
    assert manifest.signed
    expected = skopeo("manifest-digest", str(out / "manifest.json")).strip()
    assert str(manifest.canonical_digest) == expected
    assert manifest.digest == Digest.from_bytes(raw)
    assert manifest.digest != manifest.canonical_digest
    original = parse_manifest(image.manifest)
    assert isinstance(original, OCIManifest)
    # Schema 1 lists layers top first.
    assert manifest.fs_layers == tuple(x.digest for x in reversed(original.layers))
    assert len(manifest.history) == len(manifest.fs_layers)
    assert manifest.architecture == "amd64"
    assert json.loads(manifest.history[0])["os"] == "linux"


def test_image_config_agrees_with_skopeo_inspect(layout: Path, image: BuiltImage) -> None:
    inspected = json.loads(skopeo("inspect", f"oci:{layout}:one"))
    config = ImageConfig.parse(image.config)
    assert inspected["Architecture"] == config.architecture
    assert inspected["Os"] == config.os
    assert inspected["Labels"] == dict(config.labels)
    assert inspected["Env"] == list(config.env)
    raw_config = json.loads(skopeo("inspect", "--config", "--raw", f"oci:{layout}:one"))
    assert raw_config == config.to_dict()
    assert [str(d) for d in config.diff_ids] == raw_config["rootfs"]["diff_ids"]
