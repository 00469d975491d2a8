"""Docker schema 1 (format v2s1) pushed to the distribution registry 2.8, read by skopeo; and
schema 1 images opened with open_image, compared with skopeo inspect.

The registry refuses schema 1 pushes by default (HTTP 500 UNKNOWN) and takes signed ones with
``compatibility: schema1: enabled: true``.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from imagebuilder import BuiltImage, make_image, write_oci_layout
from registry_fixtures import (
    REGISTRY_BIN,
    SKOPEO_BIN,
    RunningRegistry,
    free_port,
    needs_registry,
    needs_skopeo,
)
from test_schema1_write_skopeo import empty_in_the_middle

from imagetypes import mediatypes as mt
from imagetypes.copy import CopyOptions, SyncOptions, copy_image, sync
from imagetypes.errors import UnsupportedError
from imagetypes.image import manifest_digest, open_image
from imagetypes.manifest import ImageConfig, parse_manifest
from imagetypes.types import TransportOptions

pytestmark = [pytest.mark.integration, needs_registry, needs_skopeo]

PLAIN = TransportOptions(tls_verify=False)


def start(workdir: Path, *, schema1: bool) -> RunningRegistry:
    assert REGISTRY_BIN is not None
    workdir.mkdir(parents=True)
    port = free_port()
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "storage")}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
    }
    if schema1:
        config["compatibility"] = {"schema1": {"enabled": True}}
    (workdir / "config.yml").write_text(json.dumps(config))
    log = workdir / "registry.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(workdir / "config.yml")],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    reg = RunningRegistry(f"127.0.0.1:{port}", "http", workdir / "storage", log, process)
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{reg.url}/v2/", timeout=2).status_code == 200:
                return reg
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            reg.stop()
            raise RuntimeError(f"docker-registry did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def schema1_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    reg = start(tmp_path_factory.mktemp("s1reg") / "r", schema1=True)
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def default_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    reg = start(tmp_path_factory.mktemp("defreg") / "r", schema1=False)
    try:
        yield reg
    finally:
        reg.stop()


def skopeo(*args: str) -> bytes:
    assert SKOPEO_BIN is not None
    done = subprocess.run(
        [SKOPEO_BIN, "--insecure-policy", *args], capture_output=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def diff_ids_via_skopeo(ref: str, tmp_path: Path) -> tuple[str, ...]:
    """The diff IDs skopeo computes when it converts ``ref`` (schema 1) to an OCI layout."""
    out = tmp_path / f"back{secrets.token_hex(4)}"
    skopeo("copy", "--src-tls-verify=false", ref, f"oci:{out}:x")
    top = json.loads((out / "index.json").read_bytes())["manifests"][0]["digest"]
    manifest = json.loads((out / "blobs" / "sha256" / top.split(":")[1]).read_bytes())
    config = (out / "blobs" / "sha256" / manifest["config"]["digest"].split(":")[1]).read_bytes()
    return tuple(str(d) for d in ImageConfig.parse(config).diff_ids)


def source_diff_ids(img: BuiltImage) -> tuple[str, ...]:
    return tuple(str(d) for d in ImageConfig.parse(img.config).diff_ids)


@pytest.mark.parametrize("make", [lambda: make_image(51, (1500, 4000, 800)), empty_in_the_middle])
def test_v2s1_push_is_what_skopeo_pushes(
    schema1_registry: RunningRegistry, tmp_path: Path, make: Any
) -> None:
    img = make()
    src = write_oci_layout(tmp_path / "src", {"v1": img})
    target = f"docker://{schema1_registry.host}/s1/app:v1"
    # skopeo pushes first; ours replaces the tag: the payload (and digest) must be the same.
    skopeo("copy", "--dest-tls-verify=false", "--format", "v2s1", f"oci:{src}:v1", target)
    theirs = json.loads(skopeo("inspect", "--tls-verify=false", target))["Digest"]
    result = copy_image(
        f"oci:{src}:v1", target, CopyOptions(format="v2s1", destination_options=PLAIN)
    )
    assert result.media_type == mt.DOCKER_SCHEMA1_SIGNED_MANIFEST
    assert str(result.manifest_digest) == theirs
    raw = skopeo("inspect", "--tls-verify=false", "--raw", target)
    served = parse_manifest(raw)
    assert served.media_type == mt.DOCKER_SCHEMA1_SIGNED_MANIFEST
    assert json.loads(raw)["name"] == "s1/app"
    assert json.loads(raw)["tag"] == "v1"
    info = json.loads(skopeo("inspect", "--tls-verify=false", target))
    assert info["Digest"] == str(result.manifest_digest)
    # skopeo's conversion of what we pushed gives back the source's diff IDs.
    assert diff_ids_via_skopeo(target, tmp_path) == source_diff_ids(img)


def test_v2s1_push_to_a_default_registry_names_the_reason(
    default_registry: RunningRegistry, tmp_path: Path
) -> None:
    from imagetypes_transports.docker import RegistryUnsupportedError

    src = write_oci_layout(tmp_path / "src", {"v1": make_image(52)})
    target = f"docker://{default_registry.host}/s1/refused:v1"
    with pytest.raises(RegistryUnsupportedError, match="compatibility: schema1: enabled") as e:
        copy_image(f"oci:{src}:v1", target, CopyOptions(format="v2s1", destination_options=PLAIN))
    assert isinstance(e.value, UnsupportedError)
    assert "schema 1" in str(e.value)
    tags = httpx.get(f"{default_registry.url}/v2/s1/refused/tags/list", timeout=10)
    assert tags.status_code == 404  # nothing was tagged


def test_schema1_source_is_renamed_for_the_registry_or_converted(
    schema1_registry: RunningRegistry, default_registry: RunningRegistry, tmp_path: Path
) -> None:
    img = make_image(53, (700, 1300))
    src = write_oci_layout(tmp_path / "src", {"v1": img})
    s1 = tmp_path / "s1"
    skopeo("copy", "--format", "v2s1", f"oci:{src}:v1", f"dir:{s1}")
    assert json.loads((s1 / "manifest.json").read_bytes())["name"] == ""
    # Kept as schema 1: the manifest must name the repository (the registry refuses "").
    kept = f"docker://{schema1_registry.host}/s1/kept:k"
    result = copy_image(f"dir:{s1}", kept, CopyOptions(format="v2s1", destination_options=PLAIN))
    assert result.media_type == mt.DOCKER_SCHEMA1_SIGNED_MANIFEST
    raw = json.loads(skopeo("inspect", "--tls-verify=false", "--raw", kept))
    assert (raw["name"], raw["tag"]) == ("s1/kept", "k")
    assert diff_ids_via_skopeo(kept, tmp_path) == source_diff_ids(img)
    with pytest.raises(UnsupportedError, match="preserve_digests"):
        copy_image(
            f"dir:{s1}",
            kept,
            CopyOptions(format="v2s1", preserve_digests=True, destination_options=PLAIN),
        )
    # Without a format a registry gets schema 2 (it lists schema 1 after it).
    converted = f"docker://{default_registry.host}/s1/converted:c"
    result = copy_image(f"dir:{s1}", converted, CopyOptions(destination_options=PLAIN))
    assert result.media_type == mt.DOCKER_MANIFEST
    assert diff_ids_via_skopeo(converted, tmp_path) == source_diff_ids(img)


def test_sync_with_format_v2s1(schema1_registry: RunningRegistry, tmp_path: Path) -> None:
    img = make_image(54, (1100, 600))
    src = write_oci_layout(tmp_path / "src", {"v1": img})
    tree = tmp_path / "tree"
    copy_image(f"oci:{src}:v1", f"dir:{tree / 'app'}")
    report = sync(
        str(tree),
        f"{schema1_registry.host}/mirror",
        source_kind="dir",
        destination_kind="docker",
        options=SyncOptions(copy_options=CopyOptions(format="v2s1", destination_options=PLAIN)),
    )
    assert [i.status for i in report.images] == ["copied"]
    target = report.images[0].destination
    raw = json.loads(skopeo("inspect", "--tls-verify=false", "--raw", target))
    assert raw["schemaVersion"] == 1
    assert diff_ids_via_skopeo(target, tmp_path) == source_diff_ids(img)


def test_open_image_on_schema1_matches_skopeo_inspect(
    schema1_registry: RunningRegistry, tmp_path: Path
) -> None:
    src = write_oci_layout(tmp_path / "src", {"v1": empty_in_the_middle()})
    s1 = tmp_path / "s1"
    skopeo("copy", "--format", "v2s1", f"oci:{src}:v1", f"dir:{s1}")
    pushed = f"docker://{schema1_registry.host}/s1/inspected:t"
    skopeo("copy", "--dest-tls-verify=false", "--format", "v2s1", f"oci:{src}:v1", pushed)
    for ref in (f"dir:{s1}", pushed):
        with open_image(ref, options=PLAIN) as image:
            ours = image.inspect()
            ours.pop("LayersData")  # Debian's skopeo build does not print it
            assert ours == json.loads(skopeo("inspect", "--tls-verify=false", ref))
            assert image.oci_config() == json.loads(
                skopeo("inspect", "--tls-verify=false", "--config", ref)
            )
            raw = skopeo("inspect", "--tls-verify=false", "--raw", ref)
            if ref.startswith("dir:"):
                assert image.raw_manifest() == raw
            else:
                # The registry signs the manifest again on every read: the payload is the same.
                assert manifest_digest(image.raw_manifest()) == manifest_digest(raw)
                assert image.raw_manifest() != raw
