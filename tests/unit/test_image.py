"""imagetypes.image: open_image, Image and inspect, over OCI layouts written by the test builder."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from imagetypes import mediatypes as mt
from imagetypes.descriptor import Descriptor
from imagetypes.digest import Digest, Readable
from imagetypes.errors import (
    DigestMismatchError,
    ManifestError,
    ManifestTooLargeError,
    PlatformMismatchError,
    UnsupportedError,
)
from imagetypes.image import (
    MAX_CONFIG_SIZE,
    _go_time,
    manifest_digest,
    oci_config_view,
    open_image,
    read_manifest,
)
from imagetypes.platform import Platform
from imagetypes.plugins import parse_reference
from imagetypes.types import ImageReference, ImageSource, Transport, TransportOptions
from tests.imagebuilder import (
    BuiltImage,
    BuiltIndex,
    make_image,
    make_layer,
    make_multiarch,
    write_oci_layout,
)

LABELS = {"b": "2", "a": "x<y>&z"}


@pytest.fixture
def single() -> BuiltImage:
    return make_image(1, labels=LABELS, annotations={"org.example.note": "hi"})


@pytest.fixture
def multi() -> BuiltIndex:
    return make_multiarch(2)


@pytest.fixture
def layout(tmp_path: Path, single: BuiltImage, multi: BuiltIndex) -> Path:
    return write_oci_layout(tmp_path / "layout", {"single": single, "multi": multi})


def with_config(
    config: dict[str, Any], *, seed: int = 7, layer_annotations: bool = False
) -> BuiltImage:
    """An OCI image with exactly this config object (and one layer)."""
    blob, _diff_id = make_layer(seed, 300)
    layer = {
        "mediaType": mt.OCI_LAYER_GZIP,
        "digest": str(Digest.from_bytes(blob)),
        "size": len(blob),
    }
    if layer_annotations:
        layer["annotations"] = {"z": "1", "a": "2"}
    raw_config = json.dumps(config).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {
            "mediaType": mt.OCI_CONFIG,
            "digest": str(Digest.from_bytes(raw_config)),
            "size": len(raw_config),
        },
        "layers": [layer],
    }
    return BuiltImage(
        json.dumps(manifest, separators=(",", ":")).encode(),
        mt.OCI_MANIFEST,
        raw_config,
        {Digest.from_bytes(blob): blob, Digest.from_bytes(raw_config): raw_config},
    )


# -- opening ------------------------------------------------------------------------------------


def test_open_single_image(layout: Path, single: BuiltImage) -> None:
    with open_image(f"oci:{layout}:single") as image:
        assert image.digest == single.digest
        assert image.top_digest == single.digest
        assert image.index() is None
        assert image.raw_manifest() == single.manifest
        assert image.manifest().raw == single.manifest
        assert image.manifest() is image.manifest()  # parsed once
        assert image.raw_config() == single.config
        assert [d.digest for d in image.layers()] == [
            Digest.parse(x["digest"]) for x in json.loads(single.manifest)["layers"]
        ]
        assert image.platform == Platform("linux", "amd64")
        assert str(image.reference) == f"oci:{layout}:single"


def test_config_values(layout: Path, single: BuiltImage) -> None:
    with open_image(f"oci:{layout}:single") as image:
        config = image.config()
        assert image.config() is config  # cached
        assert config.architecture == "amd64"
        assert config.os == "linux"
        assert dict(config.labels or {}) == LABELS
        assert list(config.env or ()) == ["PATH=/usr/bin:/bin"]
        expected = json.loads(single.config)["rootfs"]["diff_ids"]
        assert [str(d) for d in config.diff_ids] == expected


def test_open_accepts_a_reference_object(layout: Path, single: BuiltImage) -> None:
    reference = parse_reference(f"oci:{layout}:single")
    with open_image(reference) as image:
        assert image.reference is reference
        assert image.digest == single.digest


@pytest.mark.parametrize(
    ("platform", "position"),
    [("linux/amd64", 0), ("linux/arm64", 1), ("linux/arm64/v8", 1), ("linux/arm/v7", 2)],
)
def test_index_selects_the_platform(
    layout: Path, multi: BuiltIndex, platform: str, position: int
) -> None:
    wanted = multi.images[position]
    with open_image(f"oci:{layout}:multi", platform=platform) as image:
        assert image.digest == wanted.digest
        assert image.raw_manifest() == wanted.manifest
        assert image.raw_config() == wanted.config
        index = image.index()
        assert index is not None
        assert index.raw == multi.manifest
        assert image.top_digest == multi.digest
        os_name, arch, variant = wanted.platform
        assert image.platform == Platform(os_name, arch, variant)


def test_index_platform_from_options_and_object(layout: Path, multi: BuiltIndex) -> None:
    options = TransportOptions(platform=Platform("linux", "arm", "v7"))
    with open_image(f"oci:{layout}:multi", options=options) as image:
        assert image.digest == multi.images[2].digest
    # An explicit platform wins over the options'.
    with open_image(
        f"oci:{layout}:multi", options=options, platform=Platform("linux", "arm64")
    ) as image:
        assert image.digest == multi.images[1].digest


def test_index_without_the_platform(layout: Path) -> None:
    with pytest.raises(PlatformMismatchError) as info:
        open_image(f"oci:{layout}:multi", platform="linux/s390x")
    message = str(info.value)
    assert "linux/s390x" in message
    for available in ("linux/amd64", "linux/arm64/v8", "linux/arm/v7"):
        assert available in message


def test_read_manifest_gives_the_top_level_bytes(layout: Path, multi: BuiltIndex) -> None:
    raw, media_type = read_manifest(f"oci:{layout}:multi")
    assert raw == multi.manifest
    assert media_type == mt.OCI_INDEX
    raw, _ = read_manifest(f"oci:{layout}:multi", instance=multi.images[1].digest)
    assert raw == multi.images[1].manifest


def test_raw_manifest_converted(layout: Path, single: BuiltImage) -> None:
    with open_image(f"oci:{layout}:single") as image:
        assert image.raw_manifest(mt.OCI_MANIFEST) == single.manifest
        converted = json.loads(image.raw_manifest(mt.DOCKER_MANIFEST))
    assert converted["mediaType"] == mt.DOCKER_MANIFEST
    assert converted["config"]["mediaType"] == mt.DOCKER_CONFIG
    assert converted["config"]["digest"] == str(single.config_digest)
    assert [x["digest"] for x in converted["layers"]] == [
        x["digest"] for x in json.loads(single.manifest)["layers"]
    ]


def test_repr_is_short(layout: Path, multi: BuiltIndex) -> None:
    with open_image(f"oci:{layout}:multi", platform="linux/arm64") as image:
        text = repr(image)
    assert text.startswith("<Image ")
    assert multi.images[1].digest.hex[:12] in text
    assert multi.digest.hex[:12] in text
    assert len(text) < 200


# -- config reads are verified and bounded ------------------------------------------------------


def _retarget_config(layout: Path, image: BuiltImage, size: int) -> None:
    """Rewrite the single image's manifest so its config descriptor claims ``size`` bytes."""
    manifest = json.loads(image.manifest)
    manifest["config"]["size"] = size
    raw = json.dumps(manifest).encode()
    digest = Digest.from_bytes(raw)
    (layout / "blobs" / "sha256" / digest.hex).write_bytes(raw)
    index = json.loads((layout / "index.json").read_bytes())
    for entry in index["manifests"]:
        if entry["annotations"]["org.opencontainers.image.ref.name"] == "single":
            entry.update(digest=str(digest), size=len(raw))
    (layout / "index.json").write_text(json.dumps(index))


def test_config_over_the_bound_is_refused(layout: Path, single: BuiltImage) -> None:
    _retarget_config(layout, single, MAX_CONFIG_SIZE + 1)
    with open_image(f"oci:{layout}:single") as image, pytest.raises(ManifestTooLargeError):
        image.raw_config()


def test_corrupt_config_is_refused(layout: Path, single: BuiltImage) -> None:
    blob = layout / "blobs" / "sha256" / single.config_digest.hex
    data = bytearray(blob.read_bytes())
    data[-2] ^= 1
    blob.write_bytes(bytes(data))
    with open_image(f"oci:{layout}:single") as image, pytest.raises(DigestMismatchError):
        image.config()


# -- the source is closed -----------------------------------------------------------------------


class ProbeSource(ImageSource):
    """Delegates to a real source and records whether it was closed."""

    def __init__(self, reference: ProbeReference, inner: ImageSource) -> None:
        self._reference = reference
        self._inner = inner
        reference.sources.append(self)
        self.closed = False

    @property
    def reference(self) -> ImageReference:
        return self._reference

    def get_manifest(self, instance: Digest | None = None) -> tuple[bytes, str]:
        return self._inner.get_manifest(instance)

    def get_blob_stream(self, descriptor: Descriptor, offset: int = 0) -> Readable:
        return self._inner.get_blob_stream(descriptor, offset)

    def close(self) -> None:
        self.closed = True
        self._inner.close()


class ProbeTransport(Transport):
    name = "probe"

    def parse_reference(self, text: str) -> ImageReference:
        return ProbeReference(parse_reference(text))


class ProbeReference(ImageReference):
    def __init__(self, inner: ImageReference) -> None:
        self.inner = inner
        self.sources: list[ProbeSource] = []

    @property
    def transport(self) -> Transport:
        return ProbeTransport()

    def string_within_transport(self) -> str:
        return str(self.inner)

    def open_source(self, options: TransportOptions | None = None) -> ImageSource:
        return ProbeSource(self, self.inner.open_source(options))

    def open_destination(self, options: TransportOptions | None = None) -> Any:
        raise UnsupportedError("read only")


def test_context_manager_closes_the_source(layout: Path) -> None:
    reference = ProbeReference(parse_reference(f"oci:{layout}:single"))
    with open_image(reference) as image:
        assert image.source is reference.sources[0]
        assert not reference.sources[0].closed
    assert reference.sources[0].closed
    image.close()  # a second close is harmless


def test_failed_open_closes_the_source(layout: Path) -> None:
    reference = ProbeReference(parse_reference(f"oci:{layout}:multi"))
    with pytest.raises(PlatformMismatchError):
        open_image(reference, platform="windows/amd64")
    assert len(reference.sources) == 1
    assert reference.sources[0].closed


# -- inspect ------------------------------------------------------------------------------------


def test_inspect_single(layout: Path, single: BuiltImage) -> None:
    manifest = json.loads(single.manifest)
    with open_image(f"oci:{layout}:single") as image:
        info = image.inspect()
    assert list(info) == [
        "Digest", "RepoTags", "Created", "DockerVersion", "Labels", "Architecture", "Os",
        "Layers", "LayersData", "Env",
    ]  # fmt: skip
    assert info["Digest"] == str(single.digest)
    assert info["RepoTags"] == []
    assert info["Created"] == "2024-01-02T03:04:05Z"
    assert info["DockerVersion"] == ""
    assert info["Labels"] == LABELS
    assert list(info["Labels"]) == sorted(LABELS)  # Go writes maps sorted
    assert (info["Architecture"], info["Os"]) == ("amd64", "linux")
    assert info["Layers"] == [x["digest"] for x in manifest["layers"]]
    assert info["LayersData"] == [
        {"MIMEType": x["mediaType"], "Digest": x["digest"], "Size": x["size"], "Annotations": None}
        for x in manifest["layers"]
    ]
    assert info["Env"] == ["PATH=/usr/bin:/bin"]


def test_inspect_of_an_index_reports_the_index_digest(layout: Path, multi: BuiltIndex) -> None:
    with open_image(f"oci:{layout}:multi", platform="linux/arm/v7") as image:
        info = image.inspect()
    assert info["Digest"] == str(multi.digest)
    assert info["Architecture"] == "arm"
    assert info["Labels"] == {"org.example.seed": "22"}


def test_inspect_go_semantics(tmp_path: Path) -> None:
    bare = with_config({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}})
    odd = with_config(
        {
            "created": "2024-01-02T03:04:05.120000000+02:00",
            "Docker_Version": "20.10.1",  # Go matches field names case-insensitively
            "architecture": "arm",
            "variant": "v7",
            "os": "linux",
            "config": {"Labels": {}, "Env": []},
            "rootfs": {"type": "layers", "diff_ids": []},
        },
        layer_annotations=True,
    )
    layout = write_oci_layout(tmp_path / "l", {"bare": bare, "odd": odd})
    with open_image(f"oci:{layout}:bare") as image:
        info = image.inspect()
    assert info["Created"] is None
    assert info["Labels"] is None
    assert info["Env"] is None
    with open_image(f"oci:{layout}:odd") as image:
        info = image.inspect()
    assert info["Created"] == "2024-01-02T03:04:05.12+02:00"
    assert info["DockerVersion"] == "20.10.1"
    assert info["Labels"] == {}
    assert info["Env"] == []
    assert info["LayersData"][0]["Annotations"] == {"a": "2", "z": "1"}
    assert list(info["LayersData"][0]["Annotations"]) == ["a", "z"]


def test_inspect_refuses_an_artifact(tmp_path: Path) -> None:
    artifact = with_config({"architecture": "amd64", "os": "linux"})
    manifest = json.loads(artifact.manifest)
    manifest["config"]["mediaType"] = "application/vnd.example.thing+json"
    artifact.manifest = json.dumps(manifest).encode()
    layout = write_oci_layout(tmp_path / "l", {"a": artifact})
    with open_image(f"oci:{layout}:a") as image, pytest.raises(UnsupportedError, match="artifact"):
        image.inspect()


def test_inspect_malformed_config_field(tmp_path: Path) -> None:
    broken = with_config({"architecture": 5, "os": "linux"})
    layout = write_oci_layout(tmp_path / "l", {"b": broken})
    with open_image(f"oci:{layout}:b") as image, pytest.raises(ManifestError, match="architecture"):
        image.inspect()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05Z"),
        ("2024-01-02T03:04:05.000Z", "2024-01-02T03:04:05Z"),
        ("2024-01-02T03:04:05.1234567891234Z", "2024-01-02T03:04:05.123456789Z"),
        ("2024-01-02T03:04:05.5-07:30", "2024-01-02T03:04:05.5-07:30"),
        ("2024-01-02T03:04:05+00:00", "2024-01-02T03:04:05Z"),
        (None, None),
    ],
)
def test_go_time(text: str | None, expected: str | None) -> None:
    assert _go_time(text, "created") == expected


@pytest.mark.parametrize(
    "text", ["2024-01-02", "2024-13-02T03:04:05Z", "yesterday", "2024-01-02T03:04:05"]
)
def test_go_time_invalid(text: str) -> None:
    with pytest.raises(ManifestError):
        _go_time(text, "created")


def test_oci_config_view() -> None:
    view = oci_config_view(
        {
            "created": "2024-01-02T03:04:05.100Z",
            "architecture": "amd64",
            "os": "linux",
            "container_config": {"Cmd": ["dropped"]},
            "config": {
                "Labels": {"b": "1", "a": "2"},
                "ExposedPorts": {"80/tcp": {}},
                "Env": [],
                "User": "",
            },
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "a" * 64]},
            "history": [{"created_by": "x", "empty_layer": True}, {"empty_layer": False}],
        }
    )
    assert view == {
        "created": "2024-01-02T03:04:05.1Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {"ExposedPorts": {"80/tcp": {}}, "Labels": {"a": "2", "b": "1"}},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "a" * 64]},
        "history": [{"created_by": "x", "empty_layer": True}, {}],
    }
    assert list(view) == ["created", "architecture", "os", "config", "rootfs", "history"]
    assert oci_config_view({})["rootfs"] == {"type": "", "diff_ids": None}


def test_image_config_view_method(layout: Path, single: BuiltImage) -> None:
    with open_image(f"oci:{layout}:single") as image:
        view = image.oci_config()
    original = json.loads(single.config)
    assert view["config"]["Labels"] == LABELS
    assert view["rootfs"] == original["rootfs"]
    assert view["history"] == original["history"]


# -- manifest digests ---------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def signed_schema1() -> tuple[bytes, bytes]:
    """A libtrust-style signed schema 1 manifest and the payload its signature covers."""
    payload = (
        b'{\n   "schemaVersion": 1,\n   "name": "library/x",\n   "tag": "1",\n'
        b'   "architecture": "amd64",\n   "fsLayers": [],\n   "history": []\n}'
    )
    cut = payload.rindex(b"\n}")
    protected = json.dumps(
        {"formatLength": cut, "formatTail": _b64(payload[cut:]), "time": "2024-01-01T00:00:00Z"}
    ).encode()
    signature = json.dumps(
        [{"header": {"alg": "ES256"}, "signature": "c2ln", "protected": _b64(protected)}]
    ).encode()
    signed = payload[:cut] + b',\n   "signatures": ' + signature + payload[cut:]
    return signed, payload


def test_manifest_digest_plain(single: BuiltImage) -> None:
    assert manifest_digest(single.manifest) == single.digest
    assert manifest_digest(b"not json") == Digest.from_bytes(b"not json")


def test_manifest_digest_of_a_signed_schema1() -> None:
    signed, payload = signed_schema1()
    assert json.loads(signed)["signatures"]
    assert manifest_digest(signed) == Digest.from_bytes(payload)
    assert manifest_digest(signed) != Digest.from_bytes(signed)


def test_manifest_digest_of_a_broken_signature() -> None:
    signed, _ = signed_schema1()
    obj = json.loads(signed)
    obj["signatures"][0]["protected"] = "!!!"
    with pytest.raises(ManifestError):
        manifest_digest(json.dumps(obj).encode())


# -- Docker schema 1 images ---------------------------------------------------------------------


def schema1_with_history() -> BuiltImage:
    """An image whose history has an empty layer between its two layers."""
    img = make_image(41, (900, 2000), labels={"k": "v"})
    obj = json.loads(img.config)
    obj["docker_version"] = "20.10.7"
    obj["history"].insert(
        1, {"created": "2024-01-02T03:04:06Z", "created_by": "ENV A=b", "empty_layer": True}
    )
    config = json.dumps(obj, separators=(",", ":")).encode()
    manifest = json.loads(img.manifest)
    manifest["config"].update(digest=str(Digest.from_bytes(config)), size=len(config))
    blobs = {d: b for d, b in img.blobs.items() if d != img.config_digest}
    blobs[Digest.from_bytes(config)] = config
    raw = json.dumps(manifest, separators=(",", ":")).encode()
    return BuiltImage(raw, img.media_type, config, blobs, img.platform)


@pytest.fixture
def schema1_dir(tmp_path: Path) -> tuple[Path, BuiltImage]:
    from imagetypes.copy import CopyOptions, copy_image

    img = schema1_with_history()
    src = write_oci_layout(tmp_path / "src", {"v1": img})
    out = tmp_path / "s1"
    copy_image(f"oci:{src}:v1", f"dir:{out}", CopyOptions(format="v2s1"))
    return out, img


def test_a_schema1_image_opens_with_its_manifest_as_stored(
    schema1_dir: tuple[Path, BuiltImage],
) -> None:
    from imagetypes.errors import UnsupportedConversionError, UnsupportedManifestTypeError
    from imagetypes.manifest import DockerSchema1Manifest

    out, _img = schema1_dir
    raw = (out / "manifest.json").read_bytes()
    with open_image(f"dir:{out}") as image:
        assert image.raw_manifest() == raw
        assert image.raw_manifest(image.media_type) == raw
        assert image.media_type in (mt.DOCKER_SCHEMA1_SIGNED_MANIFEST, mt.DOCKER_SCHEMA1_MANIFEST)
        s1 = image.schema1_manifest()
        assert isinstance(s1, DockerSchema1Manifest)
        assert s1.raw == raw
        # The digest registries and skopeo use: the payload's, for a signed manifest.
        assert image.digest == image.top_digest == s1.canonical_digest == manifest_digest(raw)
        with pytest.raises(UnsupportedManifestTypeError, match="schema1_manifest"):
            image.manifest()
        with pytest.raises(UnsupportedConversionError, match="diff IDs"):
            image.raw_manifest(mt.DOCKER_MANIFEST)
        with pytest.raises(UnsupportedError, match="no config blob"):
            image.raw_config()


def test_a_schema1_image_displays_as_a_card(schema1_dir: tuple[Path, BuiltImage]) -> None:
    from imagetypes._display import render_text

    out, _img = schema1_dir
    with open_image(f"dir:{out}") as image:
        text = render_text(image._display_card())
        html = image._repr_html_()
    assert "Docker schema 1 manifest" in text
    assert "unknown (3 layers; schema 1 records no sizes)" in text
    assert str(image.digest) in html


def test_a_schema1_image_lists_every_layer_base_first(
    schema1_dir: tuple[Path, BuiltImage],
) -> None:
    from imagetypes.manifest._schema1_write import GZIPPED_EMPTY_LAYER_DIGEST

    out, img = schema1_dir
    layer_digests = [Digest.parse(d["digest"]) for d in json.loads(img.manifest)["layers"]]
    with open_image(f"dir:{out}") as image:
        layers = image.layers()
        # The empty history entry is listed, as skopeo lists it.
        assert [d.digest for d in layers] == [
            layer_digests[0],
            GZIPPED_EMPTY_LAYER_DIGEST,
            layer_digests[1],
        ]
        assert {d.size for d in layers} == {-1}
        assert {d.media_type for d in layers} == {mt.DOCKER_LAYER}


def test_a_schema1_image_inspects_from_its_v1_history(
    schema1_dir: tuple[Path, BuiltImage],
) -> None:
    out, img = schema1_dir
    config = json.loads(img.config)
    with open_image(f"dir:{out}") as image:
        info = image.inspect()
        layers = [str(d.digest) for d in image.layers()]
        assert info == {
            "Digest": str(image.digest),
            "RepoTags": [],
            "Created": config["created"],
            "DockerVersion": "20.10.7",
            "Labels": {"k": "v"},
            "Architecture": "amd64",
            "Os": "linux",
            "Layers": layers,
            "LayersData": [
                {"MIMEType": "", "Digest": d, "Size": -1, "Annotations": None} for d in layers
            ],
            "Env": config["config"]["Env"],
        }
        assert "Tag" not in info  # a dir: copy names no tag
        parsed = image.config()
        assert parsed.diff_ids == ()
        assert image.platform == Platform("linux", "amd64")
        oci = image.oci_config()
        assert oci["rootfs"] == {"type": "layers", "diff_ids": ["", ""]}
        assert [h.get("empty_layer", False) for h in oci["history"]] == [False, True, False]
        assert oci["config"]["Labels"] == {"k": "v"}
