"""imagetypes.manifest.convert_manifest: OCI <-> Docker schema 2, index <-> manifest list."""

from __future__ import annotations

import json
import os
import sys

import pytest

from imagetypes import mediatypes as mt
from imagetypes.descriptor import Descriptor
from imagetypes.digest import Digest
from imagetypes.errors import UnsupportedConversionError, UnsupportedManifestTypeError
from imagetypes.manifest import (
    DockerManifest,
    DockerManifestList,
    Manifest,
    OCIIndex,
    OCIManifest,
    convert_manifest,
    parse_manifest,
)
from imagetypes.platform import Platform

_TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from imagebuilder import make_image, make_multiarch  # noqa: E402

D = [Digest.from_bytes(b"%d" % i) for i in range(10)]
FOREIGN_UNCOMPRESSED = "application/vnd.docker.image.rootfs.foreign.diff.tar"
URLS = ("https://example.com/a", "https://example.com/b")

# (OCI layer media type, Docker layer media type)
LAYER_TYPES = [
    (mt.OCI_LAYER_GZIP, mt.DOCKER_LAYER),
    (mt.OCI_LAYER, mt.DOCKER_UNCOMPRESSED_LAYER),
    (mt.OCI_NONDISTRIBUTABLE_LAYER_GZIP, mt.DOCKER_FOREIGN_LAYER),
    (mt.OCI_NONDISTRIBUTABLE_LAYER, FOREIGN_UNCOMPRESSED),
]


def _oci_all_layer_types() -> OCIManifest:
    layers = [
        Descriptor(
            oci,
            D[i + 1],
            100 + i,
            urls=URLS if "nondistributable" in oci else (),
            annotations={"org.example.layer": str(i)},
        )
        for i, (oci, _) in enumerate(LAYER_TYPES)
    ]
    return OCIManifest.build(
        Descriptor(mt.OCI_CONFIG, D[0], 50), layers, annotations={"org.example": "dropped"}
    )


def _go_docker_bytes(config: Descriptor, layers: list[tuple[str, Descriptor]]) -> bytes:
    """What Go's json.Marshal writes for a Docker schema 2 manifest (written out by hand)."""

    def desc(media_type: str, d: Descriptor) -> str:
        out = f'{{"mediaType":"{media_type}","size":{d.size},"digest":"{d.digest}"'
        if d.urls:
            out += ',"urls":[' + ",".join(f'"{u}"' for u in d.urls) + "]"
        return out + "}"

    return (
        f'{{"schemaVersion":2,"mediaType":"{mt.DOCKER_MANIFEST}",'
        f'"config":{desc(mt.DOCKER_CONFIG, config)},'
        f'"layers":[{",".join(desc(t, d) for t, d in layers)}]}}'
    ).encode()


# -- image manifests --------------------------------------------------------------------------


def test_oci_to_docker_maps_every_layer_type() -> None:
    oci = _oci_all_layer_types()
    docker = convert_manifest(oci, mt.DOCKER_MANIFEST)
    assert isinstance(docker, DockerManifest)
    assert docker.config.media_type == mt.DOCKER_CONFIG
    assert docker.config.digest == oci.config.digest
    assert [layer.media_type for layer in docker.layers] == [d for _, d in LAYER_TYPES]
    assert [layer.digest for layer in docker.layers] == [layer.digest for layer in oci.layers]
    assert docker.layers[2].urls == URLS
    assert docker.layers[3].urls == URLS
    # Annotations have no Docker equivalent and are dropped, at every level.
    assert b"annotations" not in docker.raw
    assert b"org.example" not in docker.raw
    expected = _go_docker_bytes(
        oci.config, [(d, layer) for (_, d), layer in zip(LAYER_TYPES, oci.layers, strict=True)]
    )
    assert docker.raw == expected


def test_oci_to_docker_to_oci_keeps_digests() -> None:
    oci = _oci_all_layer_types()
    back = convert_manifest(convert_manifest(oci, mt.DOCKER_MANIFEST), mt.OCI_MANIFEST)
    assert isinstance(back, OCIManifest)
    assert back.config.digest == oci.config.digest
    assert back.config.media_type == mt.OCI_CONFIG
    assert [(x.media_type, x.digest, x.size, x.urls) for x in back.layers] == [
        (x.media_type, x.digest, x.size, x.urls) for x in oci.layers
    ]
    assert back.annotations == {}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_imagebuilder_images_convert_both_ways_byte_exact(seed: int) -> None:
    # imagebuilder writes OCI and Docker manifests of the same image, each as Go would.
    oci = parse_manifest(make_image(seed).manifest)
    docker = parse_manifest(make_image(seed, docker=True).manifest)
    assert isinstance(oci, OCIManifest)
    assert isinstance(docker, DockerManifest)
    to_docker = convert_manifest(oci, mt.DOCKER_MANIFEST)
    to_oci = convert_manifest(docker, mt.OCI_MANIFEST)
    assert to_oci.raw == oci.raw
    # Both variants share the config blob, so the converted manifest is the Docker one
    # (imagebuilder writes digest before size, so compare the parsed JSON and Go's bytes).
    assert json.loads(to_docker.raw) == json.loads(docker.raw)
    assert to_docker.digest == DockerManifest.build(docker.config, docker.layers).digest


def test_docker_to_oci_keeps_zstd_free_urls_and_foreign_layers() -> None:
    docker = DockerManifest.build(
        Descriptor(mt.DOCKER_CONFIG, D[0], 5),
        [
            Descriptor(mt.DOCKER_FOREIGN_LAYER, D[1], 6, urls=URLS),
            Descriptor(FOREIGN_UNCOMPRESSED, D[2], 7, urls=URLS[:1]),
            Descriptor(mt.DOCKER_UNCOMPRESSED_LAYER, D[3], 8),
        ],
    )
    oci = convert_manifest(docker, mt.OCI_MANIFEST)
    assert isinstance(oci, OCIManifest)
    assert [x.media_type for x in oci.layers] == [
        mt.OCI_NONDISTRIBUTABLE_LAYER_GZIP,
        mt.OCI_NONDISTRIBUTABLE_LAYER,
        mt.OCI_LAYER,
    ]
    assert oci.layers[0].urls == URLS
    assert oci.layers[1].urls == URLS[:1]
    assert convert_manifest(oci, mt.DOCKER_MANIFEST).raw == docker.raw


@pytest.mark.parametrize(
    "manifest",
    [
        parse_manifest(make_image(1).manifest),
        parse_manifest(make_image(1, docker=True).manifest),
        parse_manifest(make_multiarch(1).manifest),
        parse_manifest(make_multiarch(1, docker=True).manifest),
    ],
)
def test_converting_to_the_same_type_returns_it_unchanged(manifest: Manifest) -> None:
    assert convert_manifest(manifest, manifest.media_type) is manifest
    assert convert_manifest(manifest, manifest.media_type + "; charset=utf-8") is manifest


def _oci_with(
    *,
    layer: Descriptor | None = None,
    config: Descriptor | None = None,
    artifact_type: str | None = None,
    subject: Descriptor | None = None,
) -> OCIManifest:
    return OCIManifest.build(
        config or Descriptor(mt.OCI_CONFIG, D[0], 5),
        [layer or Descriptor(mt.OCI_LAYER_GZIP, D[1], 10)],
        artifact_type=artifact_type,
        subject=subject,
    )


REFUSALS = [
    ("zstd", _oci_with(layer=Descriptor(mt.OCI_LAYER_ZSTD, D[1], 1)), "zstd"),
    (
        "nondistributable zstd",
        _oci_with(layer=Descriptor(mt.OCI_NONDISTRIBUTABLE_LAYER_ZSTD, D[1], 1)),
        "zstd",
    ),
    (
        "encrypted",
        _oci_with(layer=Descriptor(mt.OCI_LAYER_GZIP + "+encrypted", D[1], 1)),
        "encrypted",
    ),
    (
        "unknown layer",
        _oci_with(layer=Descriptor("application/vnd.example.blob", D[1], 1)),
        "no Docker equivalent",
    ),
    ("artifact config", _oci_with(config=Descriptor(mt.OCI_EMPTY, D[0], 2)), "artifact"),
    ("artifactType", _oci_with(artifact_type="application/vnd.example"), "artifact"),
    ("subject", _oci_with(subject=Descriptor(mt.OCI_MANIFEST, D[5], 9)), "subject"),
]


@pytest.mark.parametrize(
    ("manifest", "message"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_unfaithful_conversions_to_docker_are_refused(manifest: OCIManifest, message: str) -> None:
    with pytest.raises(UnsupportedConversionError, match=message):
        convert_manifest(manifest, mt.DOCKER_MANIFEST)


def test_docker_with_a_non_image_config_is_refused() -> None:
    docker = DockerManifest.build(
        Descriptor("application/vnd.cncf.helm.config.v1+json", D[0], 5),
        [Descriptor(mt.DOCKER_LAYER, D[1], 6)],
    )
    with pytest.raises(UnsupportedConversionError, match="not a Docker image config"):
        convert_manifest(docker, mt.OCI_MANIFEST)
    docker = DockerManifest.build(
        Descriptor(mt.DOCKER_CONFIG, D[0], 5), [Descriptor("application/x-unknown", D[1], 6)]
    )
    with pytest.raises(UnsupportedConversionError, match="no OCI equivalent"):
        convert_manifest(docker, mt.OCI_MANIFEST)


def test_schema1_and_cross_kind_conversions_are_refused() -> None:
    schema1 = parse_manifest(
        json.dumps(
            {
                "schemaVersion": 1,
                "fsLayers": [{"blobSum": str(D[1])}],
                "history": [{"v1Compatibility": "{}"}],
            }
        ).encode()
    )
    with pytest.raises(UnsupportedConversionError, match="diff IDs"):
        convert_manifest(schema1, mt.OCI_MANIFEST)
    oci = parse_manifest(make_image(1).manifest)
    with pytest.raises(UnsupportedConversionError, match="schema 1"):
        convert_manifest(oci, mt.DOCKER_SCHEMA1_SIGNED_MANIFEST)
    with pytest.raises(UnsupportedConversionError, match="image manifest"):
        convert_manifest(oci, mt.OCI_INDEX)
    index = parse_manifest(make_multiarch(1).manifest)
    with pytest.raises(UnsupportedConversionError, match="an index"):
        convert_manifest(index, mt.DOCKER_MANIFEST)
    with pytest.raises(UnsupportedManifestTypeError):
        convert_manifest(oci, "application/vnd.example+json")


# -- indexes and lists ------------------------------------------------------------------------


def _converted_instances(docker: bool) -> tuple[Manifest, dict[Digest, Descriptor]]:
    """A multi-arch index and the descriptors of its instances converted to the other format."""
    built = make_multiarch(21, docker=docker)
    target = mt.OCI_MANIFEST if docker else mt.DOCKER_MANIFEST
    instance_map = {}
    for image in built.images:
        instance = parse_manifest(image.manifest)
        instance_map[instance.digest] = convert_manifest(instance, target).descriptor()
    return parse_manifest(built.manifest), instance_map


def test_oci_index_to_docker_list_with_converted_instances() -> None:
    index, instance_map = _converted_instances(docker=False)
    assert isinstance(index, OCIIndex)
    result = convert_manifest(index, mt.DOCKER_MANIFEST_LIST, instance_map=instance_map)
    assert isinstance(result, DockerManifestList)
    assert len(result.manifests) == 3
    for old, new in zip(index.manifests, result.manifests, strict=True):
        assert new.digest == instance_map[old.digest].digest
        assert new.size == instance_map[old.digest].size
        assert new.media_type == mt.DOCKER_MANIFEST
        assert new.platform == old.platform
    # Go's field order for Docker list entries.
    assert list(json.loads(result.raw)["manifests"][0]) == [
        "mediaType",
        "size",
        "digest",
        "platform",
    ]


def test_docker_list_to_oci_index_with_converted_instances() -> None:
    manifest_list, instance_map = _converted_instances(docker=True)
    result = convert_manifest(manifest_list, mt.OCI_INDEX, instance_map=instance_map)
    assert isinstance(result, OCIIndex)
    assert result.raw == make_multiarch(21).manifest
    assert result.instance_for("linux/arm64") == result.manifests[1]


def test_index_entries_not_in_the_map_keep_pointing_at_the_same_bytes() -> None:
    index = parse_manifest(make_multiarch(22).manifest)
    assert isinstance(index, OCIIndex)
    result = convert_manifest(index, mt.DOCKER_MANIFEST_LIST)
    assert isinstance(result, DockerManifestList)
    assert [(e.media_type, e.digest, e.size, e.platform) for e in result.manifests] == [
        (e.media_type, e.digest, e.size, e.platform) for e in index.manifests
    ]
    back = convert_manifest(result, mt.OCI_INDEX)
    assert back.raw == index.raw


def test_index_to_list_drops_annotations_and_refuses_what_lists_cannot_hold() -> None:
    entry = Descriptor(
        mt.OCI_MANIFEST, D[1], 10, platform=Platform("linux", "amd64"), annotations={"a": "b"}
    )
    index = OCIIndex.build([entry], annotations={"org.example": "x"})
    result = convert_manifest(index, mt.DOCKER_MANIFEST_LIST)
    assert b"annotations" not in result.raw
    with pytest.raises(UnsupportedConversionError, match="no platform"):
        convert_manifest(
            OCIIndex.build([Descriptor(mt.OCI_MANIFEST, D[1], 10)]), mt.DOCKER_MANIFEST_LIST
        )
    with pytest.raises(UnsupportedConversionError, match="artifact"):
        convert_manifest(
            OCIIndex.build([entry], artifact_type="application/vnd.example"),
            mt.DOCKER_MANIFEST_LIST,
        )
    with pytest.raises(UnsupportedConversionError, match="subject"):
        convert_manifest(
            OCIIndex.build([entry], subject=Descriptor(mt.OCI_MANIFEST, D[2], 3)),
            mt.DOCKER_MANIFEST_LIST,
        )
    artifact_entry = Descriptor(
        mt.OCI_MANIFEST, D[1], 10, platform=Platform("linux", "amd64"), artifact_type="x/y"
    )
    with pytest.raises(UnsupportedConversionError, match="artifact"):
        convert_manifest(OCIIndex.build([artifact_entry]), mt.DOCKER_MANIFEST_LIST)


def test_instance_map_on_the_same_type_replaces_entries_and_keeps_platforms() -> None:
    index = parse_manifest(make_multiarch(23).manifest)
    assert isinstance(index, OCIIndex)
    old = index.manifests[2]
    replacement = Descriptor(mt.OCI_MANIFEST, D[9], 1234)
    result = convert_manifest(index, mt.OCI_INDEX, instance_map={old.digest: replacement})
    assert isinstance(result, OCIIndex)
    assert result.manifests[:2] == index.manifests[:2]
    assert result.manifests[2].digest == D[9]
    assert result.manifests[2].size == 1234
    assert result.manifests[2].platform == old.platform
    # A map that matches nothing leaves the index as it was.
    assert convert_manifest(index, mt.OCI_INDEX, instance_map={D[8]: replacement}) is index
