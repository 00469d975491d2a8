"""imagetypes.manifest: parsing, byte-exact round trips, builders, re-serialisation."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from typing import Any

import attrs
import pytest

from imagetypes import mediatypes as mt
from imagetypes.descriptor import Descriptor
from imagetypes.digest import Digest
from imagetypes.errors import (
    ManifestError,
    ManifestTooLargeError,
    UnsupportedError,
    UnsupportedManifestTypeError,
)
from imagetypes.manifest import (
    MAX_MANIFEST_SIZE,
    DockerManifest,
    DockerManifestList,
    DockerSchema1Manifest,
    ImageManifest,
    IndexManifest,
    Manifest,
    OCIIndex,
    OCIManifest,
    parse_manifest,
)
from imagetypes.platform import Platform

_TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from imagebuilder import make_image, make_index, make_multiarch  # noqa: E402

D1 = Digest.from_bytes(b"one")
D2 = Digest.from_bytes(b"two")
D3 = Digest.from_bytes(b"three")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# Hand-written documents with odd whitespace and unknown fields at every level.
ODD_OCI = (
    b'{\n\t"schemaVersion" :  2 ,\r\n "x-top": {"nested": [1, 2.5, null, true]},'
    b' "mediaType":"application/vnd.oci.image.manifest.v1+json",\n'
    b'  "config": { "mediaType": "application/vnd.oci.image.config.v1+json", '
    b'"digest": "' + str(D1).encode() + b'", "size": 7, "x-config": "c" },\n'
    b'  "layers": [ { "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",'
    b' "digest": "' + str(D2).encode() + b'", "size": 32, "x-layer": {"deep": ["v"]},'
    b' "annotations": {"b": "2", "a": "1"} } ],\n'
    b'  "annotations": {"org.example": "\\u00e9t\\u00e9"}\n}\n\n'
)
ODD_INDEX = (
    b'{ "schemaVersion": 2, "manifests": [\n  {"mediaType": "'
    + mt.OCI_MANIFEST.encode()
    + b'", "digest": "'
    + str(D1).encode()
    + b'", "size": 10, "platform": {"os": "linux", "architecture": "arm64", '
    b'"variant": "v8", "x-plat": 1}, "x-entry": true}\n ], "x-index": "i" }'
)
ODD_DOCKER = (
    b'{"schemaVersion":2,"mediaType":"'
    + mt.DOCKER_MANIFEST.encode()
    + b'",   "config":{"mediaType":"'
    + mt.DOCKER_CONFIG.encode()
    + b'","size":3,"digest":"'
    + str(D1).encode()
    + b'"},"layers":[{"mediaType":"'
    + mt.DOCKER_FOREIGN_LAYER.encode()
    + b'","size":9,"digest":"'
    + str(D2).encode()
    + b'","urls":["https://example.com/l"]}],"x-docker":[]}  '
)
ODD_LIST = (
    b'{"schemaVersion":2,"mediaType":"'
    + mt.DOCKER_MANIFEST_LIST.encode()
    + b'","manifests":[{"mediaType":"'
    + mt.DOCKER_MANIFEST.encode()
    + b'","size":9,"digest":"'
    + str(D1).encode()
    + b'","platform":{"architecture":"amd64","os":"linux","features":["sse4"]}}],\n"x":1}'
)
SCHEMA1 = json.dumps(
    {
        "schemaVersion": 1,
        "name": "library/busybox",
        "tag": "latest",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": str(D2)}, {"blobSum": str(D1)}],
        "history": [{"v1Compatibility": '{"id":"b"}'}, {"v1Compatibility": '{"id":"a"}'}],
        "x-unknown": 5,
    },
    indent=3,
).encode()

ALL_ODD = [
    (ODD_OCI, OCIManifest, mt.OCI_MANIFEST),
    (ODD_INDEX, OCIIndex, mt.OCI_INDEX),
    (ODD_DOCKER, DockerManifest, mt.DOCKER_MANIFEST),
    (ODD_LIST, DockerManifestList, mt.DOCKER_MANIFEST_LIST),
    (SCHEMA1, DockerSchema1Manifest, mt.DOCKER_SCHEMA1_MANIFEST),
]


# -- round trips and basic properties ---------------------------------------------------------


@pytest.mark.parametrize(("raw", "cls", "media_type"), ALL_ODD)
def test_round_trip_is_byte_exact(raw: bytes, cls: type[Manifest], media_type: str) -> None:
    m = parse_manifest(raw)
    assert type(m) is cls
    assert m.media_type == media_type
    assert m.raw == raw
    assert str(m.digest) == sha256(raw)
    assert m.size == len(m) == len(raw)
    assert m.to_dict() == json.loads(raw)


@pytest.mark.parametrize(("raw", "cls", "media_type"), ALL_ODD)
def test_to_dict_is_a_fresh_copy(raw: bytes, cls: type[Manifest], media_type: str) -> None:
    m = parse_manifest(raw)
    d = m.to_dict()
    d["schemaVersion"] = 99
    d.setdefault("x-new", []).append(1)
    assert m.to_dict() == json.loads(raw)


def test_unknown_fields_are_kept_in_descriptors() -> None:
    m = parse_manifest(ODD_OCI)
    assert isinstance(m, OCIManifest)
    assert m.config.extra == {"x-config": "c"}
    assert m.layers[0].extra == {"x-layer": {"deep": ["v"]}}
    assert m.layers[0].annotations == {"a": "1", "b": "2"}
    assert m.annotations == {"org.example": "\u00e9t\u00e9"}
    assert m.to_dict()["x-top"] == {"nested": [1, 2.5, None, True]}


def test_descriptor_points_at_the_manifest() -> None:
    img = make_image(3)
    m = parse_manifest(img.manifest)
    plat = Platform("linux", "amd64")
    d = m.descriptor(platform=plat)
    assert d == Descriptor(mt.OCI_MANIFEST, img.digest, len(img.manifest), platform=plat)


def test_models_are_frozen_and_compare_by_bytes() -> None:
    img = make_image(4)
    a = parse_manifest(img.manifest)
    b = parse_manifest(bytes(img.manifest))
    assert a == b
    assert hash(a) == hash(b)
    assert a != parse_manifest(make_image(5).manifest)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        a.raw = b"{}"  # type: ignore[misc]
    assert isinstance(a, OCIManifest)
    with pytest.raises(TypeError):
        a.annotations["x"] = "y"  # type: ignore[index]


def test_constructing_a_class_parses_and_validates() -> None:
    img = make_image(6)
    m = OCIManifest(img.manifest)
    assert m.layers[0].digest == Digest.parse(json.loads(img.manifest)["layers"][0]["digest"])
    with pytest.raises(ManifestError, match="cannot hold"):
        OCIManifest(img.manifest, media_type=mt.DOCKER_MANIFEST)
    with pytest.raises(TypeError, match="abstract"):
        Manifest(img.manifest)
    with pytest.raises(TypeError):
        OCIManifest("not bytes")
    # Re-parsing through attrs.evolve validates the new bytes.
    with pytest.raises(ManifestError):
        attrs.evolve(m, raw=b"[]")


def test_class_parse_checks_the_kind() -> None:
    docker = make_image(7, docker=True)
    assert isinstance(DockerManifest.parse(docker.manifest), DockerManifest)
    assert isinstance(ImageManifest.parse(docker.manifest), DockerManifest)
    with pytest.raises(ManifestError, match="expected a OCIManifest"):
        OCIManifest.parse(docker.manifest)
    with pytest.raises(ManifestError, match="IndexManifest"):
        IndexManifest.parse(docker.manifest)


# -- media types ------------------------------------------------------------------------------


def _strip_media_type(raw: bytes) -> bytes:
    obj = json.loads(raw)
    del obj["mediaType"]
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (make_image(1).manifest, mt.OCI_MANIFEST),
        (make_image(1, docker=True).manifest, mt.DOCKER_MANIFEST),
        (make_multiarch(1).manifest, mt.OCI_INDEX),
        (make_multiarch(1, docker=True).manifest, mt.DOCKER_MANIFEST_LIST),
        (_strip_media_type(make_image(1).manifest), mt.OCI_MANIFEST),
        (_strip_media_type(make_multiarch(1).manifest), mt.OCI_INDEX),
        (SCHEMA1, mt.DOCKER_SCHEMA1_MANIFEST),
    ],
)
@pytest.mark.parametrize(
    "given", [None, "", "application/json", "text/plain", "application/octet-stream"]
)
def test_type_is_detected_when_not_given(raw: bytes, expected: str, given: str | None) -> None:
    assert parse_manifest(raw, given).media_type == expected


def test_given_type_is_used_and_normalised() -> None:
    raw = _strip_media_type(make_image(2).manifest)
    m = parse_manifest(raw, mt.OCI_MANIFEST + "; charset=utf-8")
    assert m.media_type == mt.OCI_MANIFEST
    assert m.raw == raw


def test_given_type_contradicting_the_bytes_is_an_error() -> None:
    with pytest.raises(ManifestError, match="declares mediaType"):
        parse_manifest(make_image(1, docker=True).manifest, mt.OCI_MANIFEST)
    with pytest.raises(ManifestError, match="declares mediaType"):
        parse_manifest(make_multiarch(1).manifest, mt.DOCKER_MANIFEST_LIST)


def test_given_type_with_the_wrong_shape_is_an_error() -> None:
    # An index's bytes (no mediaType) given as an image manifest must not parse as one.
    raw = _strip_media_type(make_multiarch(1).manifest)
    with pytest.raises(ManifestError, match="manifests"):
        parse_manifest(raw, mt.OCI_MANIFEST)


@pytest.mark.parametrize(
    ("raw", "given"),
    [
        (b'{"schemaVersion":2,"mediaType":"application/vnd.example.thing+json"}', None),
        (make_image(1).manifest, "application/vnd.example.thing+json"),
        (b'{"schemaVersion":2}', None),
        (b"{}", None),
    ],
)
def test_unknown_types_are_unsupported(raw: bytes, given: str | None) -> None:
    with pytest.raises(UnsupportedManifestTypeError):
        parse_manifest(raw, given)


# -- the size bound ---------------------------------------------------------------------------


def test_over_four_mebibytes_is_refused_before_parsing() -> None:
    with pytest.raises(ManifestTooLargeError):
        parse_manifest(b"x" * (MAX_MANIFEST_SIZE + 1))
    with pytest.raises(ManifestTooLargeError):
        parse_manifest(b"x" * (MAX_MANIFEST_SIZE + 1), mt.OCI_MANIFEST)
    assert issubclass(ManifestTooLargeError, ManifestError)


def test_exactly_four_mebibytes_is_accepted() -> None:
    raw = make_image(1).manifest
    padded = raw + b" " * (MAX_MANIFEST_SIZE - len(raw))
    assert len(padded) == MAX_MANIFEST_SIZE
    assert parse_manifest(padded).raw == padded


# -- malformed documents ----------------------------------------------------------------------


def _oci(**changes: Any) -> bytes:
    obj = json.loads(make_image(8).manifest)
    for key, value in changes.items():
        if value is ...:
            del obj[key]
        else:
            obj[key] = value
    return json.dumps(obj).encode()


def _layer(**changes: Any) -> dict[str, Any]:
    layer: dict[str, Any] = {"mediaType": mt.OCI_LAYER_GZIP, "digest": str(D1), "size": 1}
    layer.update(changes)
    return {k: v for k, v in layer.items() if v is not ...}


MALFORMED = [
    (b"not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b"\xff\xfe{}", "UTF-8"),
    (b'{"schemaVersion": NaN, "manifests": []}', "not valid JSON"),
    (_oci(schemaVersion=1), "schemaVersion must be 2"),
    (_oci(schemaVersion="2"), "schemaVersion must be an integer"),
    (_oci(schemaVersion=True), "schemaVersion must be an integer"),
    (_oci(schemaVersion=...), "schemaVersion is missing"),
    (_oci(config=...), "config is missing"),
    (_oci(config=[]), "config must be an object"),
    (_oci(layers={}), "layers must be an array"),
    (_oci(layers=...), "layers is missing"),
    (_oci(layers=[_layer(digest=...)]), r"layers\[0\]\.digest is missing"),
    (_oci(layers=[_layer(), _layer(size=...)]), r"layers\[1\]\.size is missing"),
    (_oci(layers=[_layer(size=-1)]), r"layers\[0\]\.size must be a non-negative"),
    (_oci(layers=[_layer(size=True)]), r"layers\[0\]\.size must be a non-negative"),
    (_oci(layers=[_layer(size=1.5)]), r"layers\[0\]\.size must be a non-negative"),
    (_oci(layers=[_layer(digest="sha256:abc")]), r"layers\[0\]: .*invalid sha256 digest"),
    (_oci(layers=[_layer(digest="md5:" + "0" * 32)]), r"layers\[0\]: .*unsupported digest"),
    (_oci(layers=[_layer(digest=5)]), r"layers\[0\]"),
    (_oci(layers=[_layer(mediaType=5)]), r"layers\[0\]\.mediaType must be a string"),
    (_oci(layers=[_layer(urls="http://x")]), r"layers\[0\]: descriptor urls"),
    (_oci(layers=[_layer(annotations={"a": 1})]), r"layers\[0\]: descriptor annotations"),
    (_oci(layers=[_layer(platform={"os": "linux"})]), r"layers\[0\]: .*architecture"),
    (_oci(layers=["x"]), r"layers\[0\] must be an object"),
    (_oci(annotations={"a": 1}), "annotations must be an object mapping strings"),
    (_oci(annotations=[]), "annotations must be an object mapping strings"),
    (_oci(mediaType=5), "mediaType must be a string"),
    (_oci(artifactType=5), "artifactType must be a string"),
    (_oci(subject={"digest": str(D1)}), r"subject\.size is missing"),
    (_oci(manifests=[]), "ambiguous"),
]


@pytest.mark.parametrize(("raw", "message"), MALFORMED, ids=[m for _, m in MALFORMED])
def test_malformed_manifests_name_the_problem(raw: bytes, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest(raw, mt.OCI_MANIFEST)


def test_malformed_index_entries_name_the_field() -> None:
    obj = json.loads(make_multiarch(1).manifest)
    obj["manifests"][2]["platform"] = {"os": "linux", "architecture": "arm", "variant": "v 7"}
    with pytest.raises(ManifestError, match=r"manifests\[2\]"):
        parse_manifest(json.dumps(obj).encode())
    obj = json.loads(make_multiarch(1).manifest)
    obj["layers"] = []
    with pytest.raises(ManifestError, match="ambiguous"):
        parse_manifest(json.dumps(obj).encode())
    with pytest.raises(ManifestError, match="manifests is missing"):
        parse_manifest(b'{"schemaVersion":2,"mediaType":"' + mt.OCI_INDEX.encode() + b'"}')


# -- builders ---------------------------------------------------------------------------------


def _cfg(media_type: str = mt.OCI_CONFIG) -> Descriptor:
    return Descriptor(media_type, D1, 100)


def test_oci_build_writes_what_go_writes() -> None:
    # imagebuilder writes manifests independently, in Go's field order.
    img = make_image(9)
    parsed = parse_manifest(img.manifest)
    assert isinstance(parsed, OCIManifest)
    built = OCIManifest.build(parsed.config, parsed.layers)
    assert built.raw == img.manifest
    assert built.digest == img.digest
    assert not built.raw.endswith(b"\n")


def test_oci_build_field_order_and_sorted_annotations() -> None:
    subject = Descriptor(mt.OCI_MANIFEST, D3, 5)
    layer = Descriptor(mt.OCI_LAYER_GZIP, D2, 10, annotations={"z": "1", "a": "2"})
    m = OCIManifest.build(
        _cfg(mt.OCI_EMPTY),
        [layer],
        annotations={"zz": "1", "aa": "2"},
        artifact_type="application/vnd.example",
        subject=subject,
    )
    obj = json.loads(m.raw)
    assert list(obj) == [
        "schemaVersion",
        "mediaType",
        "artifactType",
        "config",
        "layers",
        "subject",
        "annotations",
    ]
    assert list(obj["annotations"]) == ["aa", "zz"]
    assert list(obj["layers"][0]) == ["mediaType", "digest", "size", "annotations"]
    assert list(obj["layers"][0]["annotations"]) == ["a", "z"]
    assert m.artifact_type == "application/vnd.example"
    assert m.subject == subject
    assert m.descriptor().artifact_type == "application/vnd.example"
    assert b" " not in m.raw


def test_build_escapes_like_go() -> None:
    m = OCIManifest.build(_cfg(), [], annotations={"k": "<a & b> \u00e9 \u2028"})
    assert b'"<a' not in m.raw
    assert "\\u003ca \\u0026 b\\u003e \u00e9 \\u2028".encode() in m.raw
    assert m.annotations["k"] == "<a & b> \u00e9 \u2028"


def test_docker_build_writes_what_go_writes() -> None:
    img = make_image(10, docker=True)
    parsed = parse_manifest(img.manifest)
    assert isinstance(parsed, DockerManifest)
    built = DockerManifest.build(parsed.config, parsed.layers)
    expected = json.loads(img.manifest)
    # Go's Schema2Descriptor writes size before digest.
    for d in [expected["config"], *expected["layers"]]:
        d["size"], d["digest"] = d.pop("size"), d.pop("digest")
    assert built.raw == json.dumps(expected, separators=(",", ":")).encode()
    assert built.config == parsed.config
    assert built.layers == parsed.layers


def test_index_builders() -> None:
    idx = make_multiarch(11)
    parsed = parse_manifest(idx.manifest)
    assert isinstance(parsed, OCIIndex)
    assert OCIIndex.build(parsed.manifests).raw == idx.manifest
    dlist = make_multiarch(11, docker=True)
    parsed_list = parse_manifest(dlist.manifest)
    assert isinstance(parsed_list, DockerManifestList)
    built = DockerManifestList.build(parsed_list.manifests)
    assert json.loads(built.raw)["manifests"][1] == {
        "mediaType": mt.DOCKER_MANIFEST,
        "size": parsed_list.manifests[1].size,
        "digest": str(parsed_list.manifests[1].digest),
        "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
    }
    assert built.manifests == parsed_list.manifests
    annotated = OCIIndex.build(parsed.manifests, annotations={"b": "1", "a": "2"})
    assert list(json.loads(annotated.raw)["annotations"]) == ["a", "b"]


def test_builders_refuse_non_descriptors() -> None:
    with pytest.raises(TypeError, match="config"):
        OCIManifest.build("sha256:x", [])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"layers\[1\]"):
        DockerManifest.build(_cfg(mt.DOCKER_CONFIG), [_cfg(), {"digest": "x"}])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="annotations"):
        OCIIndex.build([], annotations={"a": 1})  # type: ignore[dict-item]


def test_docker_list_entry_without_platform() -> None:
    built = DockerManifestList.build([Descriptor(mt.DOCKER_MANIFEST, D1, 3)])
    assert json.loads(built.raw)["manifests"][0]["platform"] == {"architecture": "", "os": ""}
    assert built.manifests[0].platform is None
    assert built.instance_for(Platform("linux", "amd64")) is None


# -- re-serialisation -------------------------------------------------------------------------


def test_replace_descriptors_keeps_unknown_top_level_fields() -> None:
    m = parse_manifest(ODD_OCI)
    assert isinstance(m, OCIManifest)
    new_layer = Descriptor(mt.OCI_LAYER_ZSTD, D3, 77)
    changed = m.replace_descriptors(layers=[new_layer])
    assert isinstance(changed, OCIManifest)
    assert changed.layers == (new_layer,)
    assert changed.config == m.config
    assert changed.annotations == m.annotations
    obj = changed.to_dict()
    assert obj["x-top"] == {"nested": [1, 2.5, None, True]}
    assert obj["config"]["x-config"] == "c"
    assert str(changed.digest) == sha256(changed.raw)
    assert changed.raw != m.raw
    # Nothing changed: the same document again, re-serialised compactly.
    again = m.replace_descriptors()
    assert again.to_dict() == m.to_dict()


def test_replace_descriptors_on_docker_keeps_unknown_fields() -> None:
    m = parse_manifest(ODD_DOCKER)
    assert isinstance(m, DockerManifest)
    new_config = Descriptor(mt.DOCKER_CONFIG, D3, 4)
    changed = m.replace_descriptors(config=new_config)
    assert changed.config == new_config
    assert changed.layers == m.layers
    assert changed.layers[0].urls == ("https://example.com/l",)
    assert changed.to_dict()["x-docker"] == []


def test_replace_manifests_drops_instances() -> None:
    idx = parse_manifest(ODD_INDEX)
    assert isinstance(idx, OCIIndex)
    extra = Descriptor(mt.OCI_MANIFEST, D2, 5, platform=Platform("linux", "amd64"))
    grown = idx.replace_manifests([*idx.manifests, extra])
    assert grown.manifests == (*idx.manifests, extra)
    assert grown.to_dict()["x-index"] == "i"
    assert grown.manifests[0].extra == {"x-entry": True}
    shrunk = grown.replace_manifests(grown.manifests[1:])
    assert shrunk.manifests == (extra,)


def test_evolve_changes_named_fields_only() -> None:
    m = parse_manifest(make_image(12).manifest)
    assert isinstance(m, OCIManifest)
    evolved = m.evolve(annotations={"k": "v"}, artifact_type="application/x")
    assert evolved.annotations == {"k": "v"}
    assert evolved.artifact_type == "application/x"
    assert evolved.evolve(artifact_type=None, annotations=None).raw == m.raw
    with pytest.raises(TypeError, match="digest"):
        m.evolve(digest=D1)
    d = parse_manifest(make_image(12, docker=True).manifest)
    with pytest.raises(TypeError, match="annotations"):
        d.evolve(annotations={})


# -- indexes and platforms --------------------------------------------------------------------


def test_instance_for_arm64_and_arm64_v8() -> None:
    idx = parse_manifest(make_multiarch(13).manifest)  # arm64 is written as arm64/v8
    assert isinstance(idx, IndexManifest)
    arm64 = idx.manifests[1]
    assert idx.instance_for(Platform("linux", "arm64")) == arm64
    assert idx.instance_for("linux/arm64/v8") == arm64
    assert idx.instance_for("linux/aarch64") == arm64
    assert idx.instance_for("linux/amd64") == idx.manifests[0]
    assert idx.instance_for("linux/arm/v7") == idx.manifests[2]
    assert idx.instance_for("linux/arm/v6") is None
    assert idx.instance_for("windows/amd64") is None


def test_instance_for_prefers_the_exact_variant() -> None:
    images = [
        make_image(1, architecture="arm64"),
        make_image(2, architecture="arm64", variant="v9"),
        make_image(3, architecture="arm64", variant="v8"),
    ]
    idx = parse_manifest(make_index(images, docker=True).manifest)
    assert isinstance(idx, DockerManifestList)
    # No variant written means v8: an arm64/v8 request matches the first entry ...
    assert idx.instance_for("linux/arm64/v8") == idx.manifests[0]
    assert idx.instance_for("linux/arm64/v9") == idx.manifests[1]
    # ... and a request without a variant takes the first arm64 entry.
    assert idx.instance_for("linux/arm64") == idx.manifests[0]


# -- Docker schema 1 --------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def sign_schema1(payload: bytes, *, signatures: int = 1, indent: str = "   ") -> bytes:
    """A libtrust "pretty signature" over ``payload`` (with a dummy signature value)."""
    close = payload.rstrip().rindex(b"}")
    format_length = len(payload[:close].rstrip())
    tail = payload[format_length:]
    blocks = []
    for i in range(signatures):
        protected = {"formatLength": format_length, "formatTail": _b64url(tail), "time": str(i)}
        blocks.append(
            {
                "header": {"alg": "ES256", "jwk": {"kty": "EC"}},
                "signature": _b64url(b"sig%d" % i),
                "protected": _b64url(json.dumps(protected).encode()),
            }
        )
    sigs = json.dumps(blocks, indent=indent or None).encode()
    sep = b",\n" + indent.encode() if indent else b","
    return payload[:format_length] + sep + b'"signatures": ' + sigs + b"\n}"


def test_schema1_unsigned() -> None:
    m = parse_manifest(SCHEMA1)
    assert isinstance(m, DockerSchema1Manifest)
    assert m.media_type == mt.DOCKER_SCHEMA1_MANIFEST
    assert (m.name, m.tag, m.architecture) == ("library/busybox", "latest", "amd64")
    assert m.fs_layers == (D2, D1)
    assert m.history == ('{"id":"b"}', '{"id":"a"}')
    assert not m.signed
    assert m.canonical_digest == m.digest == Digest.from_bytes(SCHEMA1)
    assert m.to_dict()["x-unknown"] == 5


@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize("indent", ["   ", ""])
def test_schema1_signed_canonical_digest_is_of_the_payload(count: int, indent: str) -> None:
    payload = SCHEMA1 if indent else json.dumps(json.loads(SCHEMA1)).encode()
    signed = sign_schema1(payload, signatures=count, indent=indent)
    assert signed != payload
    m = parse_manifest(signed)
    assert isinstance(m, DockerSchema1Manifest)
    assert m.media_type == mt.DOCKER_SCHEMA1_SIGNED_MANIFEST
    assert m.signed
    assert m.raw == signed
    assert m.digest == Digest.from_bytes(signed)
    assert m.canonical_digest == Digest.from_bytes(payload)
    assert m.descriptor().digest == m.canonical_digest
    assert m.fs_layers == (D2, D1)


def test_schema1_signed_declared_as_unsigned_still_uses_the_payload() -> None:
    signed = sign_schema1(SCHEMA1)
    m = parse_manifest(signed, mt.DOCKER_SCHEMA1_MANIFEST)
    assert m.media_type == mt.DOCKER_SCHEMA1_MANIFEST
    assert isinstance(m, DockerSchema1Manifest)
    assert m.canonical_digest == Digest.from_bytes(SCHEMA1)


def _schema1(**changes: Any) -> bytes:
    obj = json.loads(SCHEMA1)
    obj.update(changes)
    return json.dumps(obj).encode()


SCHEMA1_MALFORMED = [
    (_schema1(schemaVersion=2), "schemaVersion must be 1"),
    (_schema1(fsLayers=[]), "fsLayers is empty"),
    (_schema1(history=[]), "fsLayers has 2 entries but history has 0"),
    (_schema1(fsLayers=[{"blobSum": "nope"}, {"blobSum": str(D1)}]), r"fsLayers\[0\]"),
    (_schema1(history=[{}, {}]), r"history\[0\]\.v1Compatibility"),
    (_schema1(layers=[]), "ambiguous"),
    (_schema1(signatures=[]), "signatures is empty"),
    (_schema1(signatures=[{"protected": "!!"}]), "base64url"),
    (_schema1(signatures=[{"protected": _b64url(b"{}")}]), "formatLength"),
    (
        _schema1(signatures=[{"protected": _b64url(b'{"formatLength":99999,"formatTail":""}')}]),
        "exceeds",
    ),
]


@pytest.mark.parametrize(
    ("raw", "message"), SCHEMA1_MALFORMED, ids=[m for _, m in SCHEMA1_MALFORMED]
)
def test_schema1_malformed(raw: bytes, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest(raw, mt.DOCKER_SCHEMA1_MANIFEST)


def test_schema1_conflicting_signatures_are_refused() -> None:
    signed = json.loads(sign_schema1(SCHEMA1, signatures=2))
    other = {"formatLength": 5, "formatTail": _b64url(b"}")}
    signed["signatures"][1]["protected"] = _b64url(json.dumps(other).encode())
    with pytest.raises(ManifestError, match="conflicting"):
        parse_manifest(json.dumps(signed).encode())


def test_schema1_is_read_only() -> None:
    m = parse_manifest(SCHEMA1)
    with pytest.raises(UnsupportedError, match="read only"):
        m.evolve(name="x")
