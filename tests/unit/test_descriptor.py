"""imagetypes.descriptor: Descriptor JSON round trips and validation, BlobInfo."""

from __future__ import annotations

import json
from typing import Any

import pytest

from imagetypes import mediatypes as mt
from imagetypes.descriptor import BlobInfo, Descriptor
from imagetypes.digest import Digest
from imagetypes.errors import ManifestError
from imagetypes.platform import Platform

D = "sha256:" + "a" * 64


def test_minimal_round_trip() -> None:
    obj = {"mediaType": mt.OCI_LAYER_GZIP, "digest": D, "size": 1234}
    desc = Descriptor.from_dict(obj)
    assert desc.media_type == mt.OCI_LAYER_GZIP
    assert desc.digest == Digest.parse(D)
    assert desc.size == 1234
    assert desc.urls == ()
    assert desc.annotations == {}
    assert desc.platform is None
    assert desc.to_dict() == obj
    # Field order as skopeo / the Go structs write it.
    assert list(desc.to_dict()) == ["mediaType", "digest", "size"]


def test_full_round_trip_keeps_unknown_fields() -> None:
    obj: dict[str, Any] = {
        "mediaType": mt.OCI_MANIFEST,
        "digest": D,
        "size": 527,
        "urls": ["https://example.com/blob"],
        "annotations": {"org.opencontainers.image.ref.name": "1.0"},
        "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
        "artifactType": "application/vnd.example+json",
        "data": "e30=",
        "com.example.future": {"nested": [1, 2, 3]},
        "zzz": None,
    }
    desc = Descriptor.from_dict(obj)
    assert desc.platform == Platform("linux", "arm64", "v8")
    assert desc.urls == ("https://example.com/blob",)
    assert desc.artifact_type == "application/vnd.example+json"
    assert desc.data == "e30="
    assert desc.extra == {"com.example.future": {"nested": [1, 2, 3]}, "zzz": None}
    out = desc.to_dict()
    assert out == obj
    assert Descriptor.from_dict(json.loads(json.dumps(out))) == desc


def test_descriptor_without_media_type() -> None:
    # Schema 1 and some old indexes omit it; it survives as "" and is not written back.
    desc = Descriptor.from_dict({"digest": D, "size": 0})
    assert desc.media_type == ""
    assert "mediaType" not in desc.to_dict()


def test_built_directly_and_compared_by_value() -> None:
    a = Descriptor(mt.OCI_CONFIG, Digest.parse(D), 10, annotations={"k": "v"})
    b = Descriptor.from_dict({"mediaType": mt.OCI_CONFIG, "digest": D, "size": 10,
                              "annotations": {"k": "v"}})  # fmt: skip
    assert a == b
    assert hash(a) == hash(b)
    assert a != Descriptor(mt.OCI_CONFIG, Digest.parse(D), 11)


def test_input_mapping_is_copied() -> None:
    annotations = {"k": "v"}
    desc = Descriptor(mt.OCI_CONFIG, Digest.parse(D), 1, annotations=annotations)
    annotations["k"] = "changed"
    assert desc.annotations == {"k": "v"}


@pytest.mark.parametrize(
    ("obj", "fragment"),
    [
        ([], "JSON object"),
        ("sha256:...", "JSON object"),
        (None, "JSON object"),
        ({"size": 1}, "digest and size"),
        ({"digest": D}, "digest and size"),
        ({"digest": D, "size": -1}, "non-negative"),
        ({"digest": D, "size": "12"}, "non-negative"),
        ({"digest": D, "size": 1.5}, "non-negative"),
        ({"digest": D, "size": True}, "non-negative"),
        ({"digest": "sha256:xyz", "size": 1}, "digest"),
        ({"digest": "md5:" + "a" * 32, "size": 1}, "digest"),
        ({"digest": 12, "size": 1}, "digest"),
        ({"digest": D, "size": 1, "mediaType": 5}, "mediaType"),
        ({"digest": D, "size": 1, "annotations": {"k": 1}}, "annotations"),
        ({"digest": D, "size": 1, "annotations": ["k"]}, "annotations"),
        ({"digest": D, "size": 1, "urls": "https://x"}, "urls"),
        ({"digest": D, "size": 1, "urls": [1]}, "urls"),
        ({"digest": D, "size": 1, "platform": {"os": "linux"}}, "platform"),
        ({"digest": D, "size": 1, "platform": {"os": "", "architecture": "x"}}, "descriptor"),
    ],
)
def test_invalid_input_raises_manifest_error(obj: Any, fragment: str) -> None:
    with pytest.raises(ManifestError, match=fragment):
        Descriptor.from_dict(obj)


def test_negative_size_refused_at_construction() -> None:
    with pytest.raises(ManifestError):
        Descriptor(mt.OCI_CONFIG, Digest.parse(D), -5)


@pytest.mark.parametrize("field", ["artifactType", "data"])
def test_string_fields_are_type_checked(field: str) -> None:
    with pytest.raises(ManifestError):
        Descriptor.from_dict({"digest": D, "size": 1, field: 42})


def test_blob_info() -> None:
    desc = Descriptor(mt.OCI_LAYER_GZIP, Digest.parse(D), 99, annotations={"a": "b"})
    info = BlobInfo.from_descriptor(desc)
    assert (info.media_type, info.digest, info.size) == (mt.OCI_LAYER_GZIP, desc.digest, 99)
    unknown = BlobInfo(mt.OCI_LAYER_GZIP)
    assert unknown.digest is None
    assert unknown.size is None
