"""imagetypes.manifest.ImageConfig: parsing image configuration blobs."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import attrs
import pytest

from imagetypes import mediatypes as mt
from imagetypes.descriptor import Descriptor
from imagetypes.digest import Digest
from imagetypes.errors import ManifestError, ManifestTooLargeError
from imagetypes.manifest import MAX_MANIFEST_SIZE, ImageConfig
from imagetypes.platform import Platform

_TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from imagebuilder import make_image, make_layer  # noqa: E402

DOCKER_CONFIG = {
    "architecture": "arm64",
    "variant": "v8",
    "os": "windows",
    "os.version": "10.0.17763.1",
    "os.features": ["win32k"],
    "author": "Someone <someone@example.com>",
    "created": "2023-05-06T07:08:09.123456789Z",
    "docker_version": "24.0.2",
    "container": "abc",
    "container_config": {"Cmd": ["/bin/sh"]},
    "config": {
        "Env": ["A=1", "B=two"],
        "Labels": {"org.example.a": "x", "org.example.b": ""},
        "Cmd": ["/bin/sh"],
        "x-unknown": {"deep": True},
    },
    "rootfs": {"type": "layers", "diff_ids": [str(Digest.from_bytes(b"l1"))]},
    "history": [{"created": "2023-05-06T07:08:09Z", "created_by": "ADD x /", "empty_layer": False}],
}


def test_parses_an_imagebuilder_config() -> None:
    img = make_image(5, (100, 200, 300), labels={"l": "v"}, architecture="arm", variant="v7")
    config = ImageConfig.parse(img.config)
    assert config.raw == img.config
    assert config.digest == img.config_digest
    assert config.size == len(img.config)
    assert (config.os, config.architecture, config.variant) == ("linux", "arm", "v7")
    assert config.platform == Platform("linux", "arm", "v7")
    assert config.created == "2024-01-02T03:04:05Z"
    assert config.env == ("PATH=/usr/bin:/bin",)
    assert config.labels == {"l": "v"}
    # The diff IDs are the digests of the uncompressed layer tars, base first.
    assert config.diff_ids == tuple(
        make_layer(5000 + i, s)[1] for i, s in enumerate((100, 200, 300))
    )
    assert [h["created_by"] for h in config.history] == ["layer 0", "layer 1", "layer 2"]
    assert config.author is None
    assert config.docker_version is None
    assert config.to_dict() == json.loads(img.config)


def test_parses_a_docker_config_with_every_field() -> None:
    raw = json.dumps(DOCKER_CONFIG, indent=2).encode() + b"\n"
    config = ImageConfig(raw)
    assert config.raw == raw
    assert config.platform == Platform(
        "windows", "arm64", "v8", os_version="10.0.17763.1", os_features=("win32k",)
    )
    assert config.os_version == "10.0.17763.1"
    assert config.os_features == ("win32k",)
    assert config.author == "Someone <someone@example.com>"
    assert config.created == "2023-05-06T07:08:09.123456789Z"
    assert config.docker_version == "24.0.2"
    assert config.env == ("A=1", "B=two")
    assert config.labels == {"org.example.a": "x", "org.example.b": ""}
    assert config.diff_ids == (Digest.from_bytes(b"l1"),)
    assert config.history[0]["empty_layer"] is False
    assert config.to_dict()["config"]["x-unknown"] == {"deep": True}
    assert config.descriptor() == Descriptor(mt.OCI_CONFIG, config.digest, len(raw))
    assert config.descriptor(mt.DOCKER_CONFIG).media_type == mt.DOCKER_CONFIG


def test_optional_sections_may_be_null_or_missing() -> None:
    config = ImageConfig.parse(
        b'{"architecture":"amd64","os":"linux","config":null,"rootfs":{"type":"layers",'
        b'"diff_ids":null},"history":null}'
    )
    assert config.env == ()
    assert config.labels == {}
    assert config.diff_ids == ()
    assert config.history == ()
    assert config.variant is None
    assert config.created is None


def test_is_frozen_and_read_only() -> None:
    config = ImageConfig.parse(make_image(1).config)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.os = "plan9"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.labels["x"] = "y"  # type: ignore[index]
    with pytest.raises(TypeError):
        config.history[0]["created_by"] = "x"  # type: ignore[index]
    fresh = config.to_dict()
    fresh["os"] = "plan9"
    assert config.to_dict()["os"] == "linux"
    assert config == ImageConfig.parse(make_image(1).config)


def _config(**changes: Any) -> bytes:
    obj = json.loads(make_image(1).config)
    for key, value in changes.items():
        if value is ...:
            del obj[key]
        else:
            obj[key] = value
    return json.dumps(obj).encode()


MALFORMED = [
    (b"nope", "not valid JSON"),
    (b"[]", "must be a JSON object"),
    (_config(os=...), "lacks 'os'"),
    (_config(architecture=""), "lacks 'architecture'"),
    (_config(architecture=5), "architecture must be a string"),
    (_config(variant=["v8"]), "variant must be a string"),
    (_config(created=0), "created must be a string"),
    (_config(config=[]), "config must be an object"),
    (_config(config={"Env": "A=1"}), "config.Env must be an array of strings"),
    (_config(config={"Env": [1]}), "config.Env must be an array of strings"),
    (_config(config={"Labels": {"a": 1}}), "config.Labels must be an object mapping"),
    (_config(rootfs={"diff_ids": ["sha256:x"]}), r"rootfs\.diff_ids\[0\]"),
    (_config(rootfs={"diff_ids": "x"}), r"rootfs\.diff_ids must be an array"),
    (_config(rootfs=[]), "rootfs must be an object"),
    (_config(history={}), "history must be an array"),
    (_config(history=["x"]), r"history\[0\] must be an object"),
    (_config(os="linux os"), "invalid platform"),
]


@pytest.mark.parametrize(("raw", "message"), MALFORMED, ids=[m for _, m in MALFORMED])
def test_malformed_configs_are_refused(raw: bytes, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        ImageConfig.parse(raw)


def test_size_bound() -> None:
    raw = make_image(1).config
    with pytest.raises(ManifestTooLargeError):
        ImageConfig.parse(raw + b" " * (MAX_MANIFEST_SIZE + 1 - len(raw)))
    padded = raw + b" " * (MAX_MANIFEST_SIZE - len(raw))
    assert ImageConfig.parse(padded).raw == padded
