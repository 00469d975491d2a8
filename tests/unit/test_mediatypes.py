"""imagetypes.mediatypes: detecting a manifest's media type from its bytes, and helpers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from imagetypes import mediatypes as mt
from tests.imagebuilder import make_image, make_multiarch

D = "sha256:" + "b" * 64
CONFIG = {"mediaType": mt.OCI_CONFIG, "digest": D, "size": 2}
LAYER = {"mediaType": mt.OCI_LAYER_GZIP, "digest": D, "size": 3}
SCHEMA1 = {
    "schemaVersion": 1,
    "name": "library/busybox",
    "tag": "latest",
    "architecture": "amd64",
    "fsLayers": [{"blobSum": D}],
    "history": [{"v1Compatibility": "{}"}],
}
SIGNATURES = [{"header": {"alg": "ES256"}, "signature": "c2ln", "protected": "e30"}]


def _bytes(obj: Any) -> bytes:
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("builder", "expected"),
    [
        (lambda: make_image(1).manifest, mt.OCI_MANIFEST),
        (lambda: make_image(1, docker=True).manifest, mt.DOCKER_MANIFEST),
        (lambda: make_multiarch(1).manifest, mt.OCI_INDEX),
        (lambda: make_multiarch(1, docker=True).manifest, mt.DOCKER_MANIFEST_LIST),
    ],
    ids=["oci-manifest", "docker-manifest", "oci-index", "docker-list"],
)
def test_detect_built_manifests(builder: Any, expected: str) -> None:
    assert mt.detect_manifest_media_type(builder()) == expected


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        # OCI allows omitting mediaType: the shape decides.
        ({"schemaVersion": 2, "config": CONFIG, "layers": [LAYER]}, mt.OCI_MANIFEST),
        ({"schemaVersion": 2, "config": CONFIG, "layers": []}, mt.OCI_MANIFEST),
        (
            {
                "schemaVersion": 2,
                "config": {"mediaType": mt.DOCKER_CONFIG, "digest": D, "size": 2},
                "layers": [],
            },
            mt.DOCKER_MANIFEST,
        ),
        ({"schemaVersion": 2, "manifests": []}, mt.OCI_INDEX),
        ({"manifests": [{**CONFIG, "mediaType": mt.OCI_MANIFEST}]}, mt.OCI_INDEX),
        # Docker schema 1, unsigned and signed, with or without mediaType.
        (SCHEMA1, mt.DOCKER_SCHEMA1_MANIFEST),
        ({**SCHEMA1, "signatures": SIGNATURES}, mt.DOCKER_SCHEMA1_SIGNED_MANIFEST),
        ({**SCHEMA1, "mediaType": mt.DOCKER_SCHEMA1_MANIFEST}, mt.DOCKER_SCHEMA1_MANIFEST),
        (
            {**SCHEMA1, "mediaType": mt.DOCKER_SCHEMA1_MANIFEST, "signatures": SIGNATURES},
            mt.DOCKER_SCHEMA1_SIGNED_MANIFEST,
        ),
        (
            {**SCHEMA1, "mediaType": mt.DOCKER_SCHEMA1_SIGNED_MANIFEST, "signatures": SIGNATURES},
            mt.DOCKER_SCHEMA1_SIGNED_MANIFEST,
        ),
        # A declared mediaType wins over the shape, even an unknown one.
        (
            {"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST, "config": CONFIG, "layers": []},
            mt.DOCKER_MANIFEST,
        ),
        ({"mediaType": "application/x.example", "manifests": []}, "application/x.example"),
        # Declared but empty or not a string: the shape decides.
        ({"mediaType": "", "manifests": []}, mt.OCI_INDEX),
        ({"mediaType": 3, "config": CONFIG, "layers": []}, mt.OCI_MANIFEST),
        # No recognizable shape.
        ({}, ""),
        ({"schemaVersion": 2}, ""),
        ({"schemaVersion": 2, "config": CONFIG}, ""),
        ({"schemaVersion": 2, "layers": []}, ""),
    ],
)  # fmt: skip
def test_detect_shapes(obj: dict[str, Any], expected: str) -> None:
    assert mt.detect_manifest_media_type(_bytes(obj)) == expected


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b"[]", b'"string"', b"42", b"null", b"\xff\xfe{", b'{"manifests": '],
)
def test_detect_not_a_manifest(data: bytes) -> None:
    assert mt.detect_manifest_media_type(data) == ""


def test_normalize_and_is_index() -> None:
    assert mt.normalize("application/json; charset=utf-8") == "application/json"
    assert mt.normalize(f" {mt.OCI_INDEX} ") == mt.OCI_INDEX
    assert mt.is_index(mt.OCI_INDEX)
    assert mt.is_index(f"{mt.DOCKER_MANIFEST_LIST}; q=0.5")
    assert not mt.is_index(mt.OCI_MANIFEST)
    assert not mt.is_index(mt.DOCKER_SCHEMA1_SIGNED_MANIFEST)


def test_type_groups_are_consistent() -> None:
    assert set(mt.MANIFEST_TYPES) == set(mt.IMAGE_MANIFEST_TYPES) | set(mt.INDEX_TYPES)
    assert not set(mt.IMAGE_MANIFEST_TYPES) & set(mt.INDEX_TYPES)
    assert len(set(mt.MANIFEST_TYPES)) == len(mt.MANIFEST_TYPES)
    for name in mt.__all__:
        assert hasattr(mt, name), name
