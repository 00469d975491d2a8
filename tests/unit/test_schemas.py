"""What the manifest builders and converters write validates against the OCI JSON schemas."""

from __future__ import annotations

import json
import os
import sys

import pytest

from imagetypes import mediatypes as mt
from imagetypes.descriptor import Descriptor
from imagetypes.digest import Digest
from imagetypes.manifest import OCIIndex, OCIManifest, convert_manifest, parse_manifest
from imagetypes.platform import Platform

_TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

import schemas  # noqa: E402
from imagebuilder import make_image, make_multiarch  # noqa: E402

D = [Digest.from_bytes(b"%d" % i) for i in range(6)]
PLATFORM = Platform("linux", "arm64", "v8", os_version="1.0", os_features=("f",))


@pytest.fixture(autouse=True)
def _need_schemas() -> None:
    schemas.require_schemas()


# -- the helper itself ------------------------------------------------------------------------


def test_the_helper_accepts_a_valid_manifest() -> None:
    assert schemas.errors(make_image(1).manifest, "manifest") == []
    assert schemas.errors(make_multiarch(1).manifest, "index") == []
    assert schemas.errors(make_image(1).config, "config") == []


def test_the_helper_rejects_through_references() -> None:
    # The digest pattern lives in defs-descriptor.json, reached through content-descriptor.json:
    # a failure proves the $refs between files resolve.
    obj = json.loads(make_image(1).manifest)
    obj["layers"][0]["digest"] = "not a digest"
    assert schemas.errors(obj, "manifest")
    obj = json.loads(make_image(1).manifest)
    obj["annotations"] = {"a": 1}  # defs.json#/definitions/mapStringString
    assert schemas.errors(obj, "manifest")
    obj = json.loads(make_multiarch(1).manifest)
    obj["manifests"][0]["size"] = "12"  # defs.json#/definitions/int64
    assert schemas.errors(obj, "index")
    obj = json.loads(make_image(1).manifest)
    del obj["config"]
    with pytest.raises(Exception, match="config"):
        schemas.validate(obj, "manifest")


# -- builders ---------------------------------------------------------------------------------


def test_oci_manifest_builder_output_is_valid() -> None:
    layers = [
        Descriptor(mt.OCI_LAYER_GZIP, D[1], 10, annotations={"a": "b"}),
        Descriptor(mt.OCI_NONDISTRIBUTABLE_LAYER, D[2], 20, urls=["https://example.com/x"]),
        Descriptor(mt.OCI_LAYER_ZSTD, D[3], 30),
    ]
    plain = OCIManifest.build(Descriptor(mt.OCI_CONFIG, D[0], 5), layers)
    schemas.validate(plain.raw, "manifest")
    full = OCIManifest.build(
        Descriptor(mt.OCI_EMPTY, D[0], 2, data="e30="),
        layers,
        annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
        artifact_type="application/vnd.example.sbom",
        subject=Descriptor(mt.OCI_MANIFEST, D[4], 500),
    )
    schemas.validate(full.raw, "manifest")
    for layer in json.loads(full.raw)["layers"]:
        schemas.validate(layer, "descriptor")


def test_oci_index_builder_output_is_valid() -> None:
    entries = [
        Descriptor(mt.OCI_MANIFEST, D[1], 100, platform=Platform("linux", "amd64")),
        Descriptor(mt.OCI_MANIFEST, D[2], 100, platform=PLATFORM, annotations={"x": "y"}),
        Descriptor(mt.OCI_INDEX, D[3], 100),
    ]
    schemas.validate(OCIIndex.build(entries).raw, "index")
    schemas.validate(
        OCIIndex.build(
            entries,
            annotations={"a": "b"},
            artifact_type="application/vnd.example",
            subject=Descriptor(mt.OCI_INDEX, D[4], 7),
        ).raw,
        "index",
    )


def test_re_serialised_and_converted_manifests_are_valid() -> None:
    oci = parse_manifest(make_image(2).manifest)
    assert isinstance(oci, OCIManifest)
    schemas.validate(oci.replace_descriptors(layers=oci.layers[:1]).raw, "manifest")
    docker = parse_manifest(make_image(2, docker=True).manifest)
    schemas.validate(convert_manifest(docker, mt.OCI_MANIFEST).raw, "manifest")
    docker_list = parse_manifest(make_multiarch(2, docker=True).manifest)
    schemas.validate(convert_manifest(docker_list, mt.OCI_INDEX).raw, "index")
