"""imagetypes.testing.random: reproducible random images and indexes."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from imagetypes import Platform, open_image
from imagetypes import mediatypes as mt
from imagetypes.digest import Digest
from imagetypes.manifest import ImageConfig, parse_manifest
from imagetypes.testing.random import random_image, random_index


def test_same_arguments_same_bytes() -> None:
    a, b = random_image(7, layers=3), random_image(7, layers=3)
    assert a.manifest == b.manifest
    assert a.layers == b.layers
    assert a.digest == b.digest
    assert random_image(8, layers=3).digest != a.digest
    assert random_image(7, layers=3, platform="linux/arm64").digest != a.digest


def test_layers_are_gzipped_tars_matching_diff_ids() -> None:
    image = random_image(1, layers=3, layer_size=5000)
    config = ImageConfig.parse(image.config)
    assert len(config.diff_ids) == 3
    for blob, diff_id in zip(image.layers, config.diff_ids, strict=True):
        tar_bytes = gzip.decompress(blob)
        assert Digest.from_bytes(tar_bytes) == diff_id
        with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
            files = [m for m in tar.getmembers() if m.isfile()]
            assert sum(m.size for m in files) == 5000
    # Random content does not compress: the layers are about as large as asked.
    assert all(len(blob) > 5000 for blob in image.layers)
    assert len(set(image.layers)) == 3


def test_manifest_is_valid_and_describes_the_blobs() -> None:
    image = random_image(2, layers=2, layer_size=100, platform="linux/arm64/v8")
    manifest = parse_manifest(image.manifest)
    assert manifest.media_type == mt.OCI_MANIFEST == image.media_type
    parsed = image.parsed
    assert parsed.config.media_type == mt.OCI_CONFIG
    assert parsed.config.digest == image.config_digest
    assert [d.media_type for d in parsed.layers] == [mt.OCI_LAYER_GZIP] * 2
    for d in (parsed.config, *parsed.layers):
        assert Digest.from_bytes(image.blobs[d.digest]) == d.digest
        assert len(image.blobs[d.digest]) == d.size
    config = json.loads(image.config)
    assert (config["os"], config["architecture"], config["variant"]) == ("linux", "arm64", "v8")
    assert image.platform == Platform("linux", "arm64", "v8")


def test_docker_schema2() -> None:
    image = random_image(3, media_type="v2s2")
    assert image.media_type == mt.DOCKER_MANIFEST
    assert image.parsed.config.media_type == mt.DOCKER_CONFIG
    assert {d.media_type for d in image.parsed.layers} == {mt.DOCKER_LAYER}


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="media_type"):
        random_image(media_type="schema1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="platform"):
        random_index(platforms=[])


def test_index_has_one_image_per_platform() -> None:
    index = random_index(4, ["linux/amd64", "linux/arm64/v8", "linux/amd64"])
    assert len(index.images) == 2  # duplicates dropped
    parsed = index.parsed
    assert parsed.media_type == mt.OCI_INDEX
    assert [str(d.platform) for d in parsed.manifests] == ["linux/amd64", "linux/arm64/v8"]
    assert [d.digest for d in parsed.manifests] == [i.digest for i in index.images]
    assert index.image("linux/arm64/v8").platform.architecture == "arm64"
    assert random_index(4, ["linux/amd64", "linux/arm64/v8"]).digest == index.digest
    docker = random_index(4, media_type="v2s2")
    assert docker.media_type == mt.DOCKER_MANIFEST_LIST
    assert all(i.media_type == mt.DOCKER_MANIFEST for i in docker.images)


def test_as_source_reads_the_image() -> None:
    image = random_image(5)
    with image.as_source() as source:
        data, media_type = source.get_manifest()
        assert (data, media_type) == (image.manifest, image.media_type)
        for d in image.parsed.layers:
            with source.get_blob(d) as reader:
                assert reader.read() == image.blobs[d.digest]


def test_index_as_source_has_instances() -> None:
    index = random_index(6)
    with index.as_source() as source:
        assert source.get_manifest()[0] == index.manifest
        for image in index.images:
            assert source.get_manifest(image.digest)[0] == image.manifest


def test_write_to_dir_and_oci(tmp_path: Path) -> None:
    image = random_image(9, layers=2)
    assert image.write_to(f"dir:{tmp_path / 'd'}") == image.digest
    assert (tmp_path / "d" / "manifest.json").read_bytes() == image.manifest
    for digest, data in image.blobs.items():
        assert (tmp_path / "d" / digest.hex).read_bytes() == data
    index = random_index(9)
    index.write_to(f"oci:{tmp_path / 'layout'}:multi")
    with open_image(f"oci:{tmp_path / 'layout'}:multi", platform="linux/arm/v7") as img:
        assert img.manifest().digest == index.image("linux/arm/v7").digest
        assert img.config().architecture == "arm"
