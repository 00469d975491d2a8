"""``imagetypes inspect`` / ``manifest-digest`` against skopeo's output for the same images.

skopeo is the reference: for each image (OCI single and multi-arch, Docker schema 2 written by
skopeo itself, configs with unusual values) our JSON must equal skopeo's key for key, and the
raw outputs byte for byte.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from imagetypes import mediatypes as mt
from imagetypes.cli import _marshal_indent as dumps
from imagetypes.cli import main
from imagetypes.digest import Digest
from tests.imagebuilder import (
    BuiltImage,
    make_image,
    make_layer,
    make_multiarch,
    write_oci_layout,
)
from tests.unit.test_image import signed_schema1

SKOPEO = shutil.which("skopeo")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed"),
]


def skopeo(*args: str) -> bytes:
    assert SKOPEO is not None
    done = subprocess.run([SKOPEO, *args], capture_output=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def ours(capsysbinary: pytest.CaptureFixture[bytes], *args: str) -> bytes:
    capsysbinary.readouterr()
    code = main(list(args))
    out, err = capsysbinary.readouterr()
    assert code == 0, err.decode()
    return out


def custom_image(config: dict[str, Any], *, docker: bool = False) -> BuiltImage:
    """An image with exactly this config (one layer, annotated in the OCI case)."""
    blob, _diff_id = make_layer(99, 400)
    layer: dict[str, Any] = {
        "mediaType": mt.DOCKER_LAYER if docker else mt.OCI_LAYER_GZIP,
        "digest": str(Digest.from_bytes(blob)),
        "size": len(blob),
    }
    if not docker:
        layer["annotations"] = {"zz": "1", "org.example.<tag>": "a&b"}
    raw_config = json.dumps(config).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST,
        "config": {
            "mediaType": mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG,
            "digest": str(Digest.from_bytes(raw_config)),
            "size": len(raw_config),
        },
        "layers": [layer],
    }
    return BuiltImage(
        json.dumps(manifest, indent=3).encode(),
        str(manifest["mediaType"]),
        raw_config,
        {Digest.from_bytes(blob): blob, Digest.from_bytes(raw_config): raw_config},
    )


def write_dir(path: Path, image: BuiltImage) -> Path:
    """An image in skopeo's dir: format."""
    path.mkdir(parents=True)
    (path / "version").write_text("Directory Transport Version: 1.1\n")
    (path / "manifest.json").write_bytes(image.manifest)
    for digest, blob in image.blobs.items():
        (path / digest.hex).write_bytes(blob)
    return path


ODD_CONFIG: dict[str, Any] = {
    "created": "2024-01-02T03:04:05.120000000+02:00",
    "author": "Someone <someone@example.org>",
    "docker_version": "20.10.1",
    "architecture": "amd64",
    "os": "linux",
    "config": {
        "User": "1000",
        "ExposedPorts": {"80/tcp": {}, "443/tcp": {}},
        "Env": [],
        "Entrypoint": ["/bin/sh", "-c"],
        "Labels": {"z": "é\u2028\n\t\b\f\x01\x7f/'\\\"", "a": "", "html": "<b>&amp;</b>"},
        "WorkingDir": "/srv",
        "Volumes": {"/data": {}},
        "StopSignal": "SIGTERM",
    },
    "container_config": {"Cmd": ["not in OCI"]},
    "rootfs": {"type": "layers", "diff_ids": []},
    "history": [{"created": "2024-01-02T03:04:05.000Z", "empty_layer": True}, {"comment": "c"}],
    "unknown": {"kept": "in raw only"},
}
BARE_CONFIG: dict[str, Any] = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Reference strings of every image compared, by a short name."""
    root = tmp_path_factory.mktemp("skopeo-peer")
    layout = write_oci_layout(
        root / "layout",
        {
            "single": make_image(1, labels={"a": "x<y>&z", "b": "ünïcode"},
                                 annotations={"org.example.note": "hi"}),
            "multi": make_multiarch(2),
            "odd": custom_image(ODD_CONFIG),
            "bare": custom_image(BARE_CONFIG),
        },
    )  # fmt: skip
    refs = {name: f"oci:{layout}:{name}" for name in ("single", "multi", "odd", "bare")}
    skopeo("copy", "--format", "v2s2", refs["single"], f"dir:{root / 'docker'}")
    refs["docker"] = f"dir:{root / 'docker'}"
    skopeo("copy", "--all", "--format", "v2s2", refs["multi"], f"dir:{root / 'docker-multi'}")
    refs["docker-multi"] = f"dir:{root / 'docker-multi'}"
    write_dir(root / "docker-bare", custom_image(BARE_CONFIG, docker=True))
    refs["docker-bare"] = f"dir:{root / 'docker-bare'}"
    write_dir(root / "docker-odd", custom_image(ODD_CONFIG, docker=True))
    refs["docker-odd"] = f"dir:{root / 'docker-odd'}"
    return refs


NAMES = ["single", "multi", "odd", "bare", "docker", "docker-multi", "docker-bare", "docker-odd"]
OVERRIDES = [
    [],
    ["--override-arch", "arm64"],
    ["--override-arch", "arm", "--override-variant", "v7"],
]


def assert_same_inspect(mine_text: bytes, theirs_text: bytes) -> None:
    mine, theirs = json.loads(mine_text), json.loads(theirs_text)
    for key, value in theirs.items():
        assert mine.get(key) == value, key
    # skopeo 1.9.3 upstream prints LayersData; Debian's build of it does not. Every other key
    # must be the same, in the same order, written the same way.
    assert set(mine) - set(theirs) <= {"LayersData"}
    if "LayersData" in theirs:
        assert mine_text == theirs_text
    else:
        without = {k: v for k, v in mine.items() if k != "LayersData"}
        assert list(without) == list(theirs)
        assert (dumps(without) + "\n").encode() == theirs_text


@pytest.mark.parametrize("name", NAMES)
def test_inspect_equals_skopeo(
    images: dict[str, str], name: str, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    ref = images[name]
    assert_same_inspect(ours(capsysbinary, "inspect", ref), skopeo("inspect", ref))


@pytest.mark.parametrize("override", OVERRIDES, ids=["default", "arm64", "arm-v7"])
@pytest.mark.parametrize("name", ["multi", "docker-multi"])
def test_inspect_of_an_index_equals_skopeo(
    images: dict[str, str],
    name: str,
    override: list[str],
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    ref = images[name]
    theirs = skopeo(*override, "inspect", ref)
    assert_same_inspect(ours(capsysbinary, *override, "inspect", ref), theirs)
    mine_config = ours(capsysbinary, *override, "inspect", "--config", ref)
    assert mine_config == skopeo(*override, "inspect", "--config", ref)


def test_layers_data_matches_the_manifest(
    images: dict[str, str], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    # Checked against the manifest itself, for skopeo builds that do not print LayersData.
    manifest = json.loads(skopeo("inspect", "--raw", images["odd"]))
    info = json.loads(ours(capsysbinary, "inspect", images["odd"]))
    assert info["LayersData"] == [
        {
            "MIMEType": layer["mediaType"],
            "Digest": layer["digest"],
            "Size": layer["size"],
            "Annotations": dict(sorted(layer["annotations"].items())),
        }
        for layer in manifest["layers"]
    ]


@pytest.mark.parametrize("name", NAMES)
def test_raw_outputs_equal_skopeo(
    images: dict[str, str], name: str, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    ref = images[name]
    assert ours(capsysbinary, "inspect", "--raw", ref) == skopeo("inspect", "--raw", ref)
    assert ours(capsysbinary, "inspect", "--raw", "--config", ref) == skopeo(
        "inspect", "--raw", "--config", ref
    )


@pytest.mark.parametrize("name", NAMES)
def test_config_equals_skopeo(
    images: dict[str, str], name: str, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    ref = images[name]
    mine, theirs = (
        ours(capsysbinary, "inspect", "--config", ref),
        skopeo("inspect", "--config", ref),
    )
    assert json.loads(mine) == json.loads(theirs)
    assert mine == theirs  # same order and escaping, too


def test_manifest_digest_equals_skopeo(
    images: dict[str, str], tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    files = []
    for name in ("single", "multi", "docker", "docker-multi"):
        path = tmp_path / f"{name}.json"
        path.write_bytes(skopeo("inspect", "--raw", images[name]))
        files.append(path)
    signed, _payload = signed_schema1()
    (tmp_path / "schema1.json").write_bytes(signed)
    files.append(tmp_path / "schema1.json")
    for path in files:
        theirs = skopeo("manifest-digest", str(path))
        assert ours(capsysbinary, "manifest-digest", str(path)) == theirs, path.name


def test_copy_by_our_cli_reads_back_in_skopeo(
    images: dict[str, str], tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    dest = f"dir:{tmp_path / 'copy'}"
    assert ours(capsysbinary, "copy", "--quiet", "--all", images["multi"], dest) == b""
    assert skopeo("inspect", "--raw", dest) == skopeo("inspect", "--raw", images["multi"])
    for override in OVERRIDES:
        assert_same_inspect(
            ours(capsysbinary, *override, "inspect", images["multi"]),
            skopeo(*override, "inspect", dest),
        )


# -- the installed entry point ------------------------------------------------------------------


def run_module(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "imagetypes", *args], capture_output=True, check=False, timeout=120
    )


def test_python_m_imagetypes(images: dict[str, str], tmp_path: Path) -> None:
    done = run_module("inspect", images["docker"])
    assert done.returncode == 0, done.stderr
    assert_same_inspect(done.stdout, skopeo("inspect", images["docker"]))

    done = run_module("inspect", f"oci:{tmp_path / 'absent'}:x")
    assert done.returncode == 1
    assert done.stdout == b""
    # Only the error line (warnings from the library, if any, come first, marked as such).
    lines = [x for x in done.stderr.splitlines() if not x.startswith(b"imagetypes: warning: ")]
    assert len(lines) == 1
    assert lines[0].startswith(b"imagetypes: error: ")

    done = run_module("inspect")
    assert done.returncode == 2
    assert b"usage:" in done.stderr

    done = run_module("copy", images["single"], f"dir:{tmp_path / 'out'}")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b""
    assert b"Writing manifest to image destination" in done.stderr


def test_console_script(images: dict[str, str]) -> None:
    script = shutil.which("imagetypes")
    if script is None:
        pytest.skip("the imagetypes console script is not on PATH")
    done = subprocess.run([script, "--version"], capture_output=True, check=False, timeout=60)
    assert done.returncode == 0
    assert done.stdout.startswith(b"imagetypes version ")


# -- an image in a registry: Name and RepoTags --------------------------------------------------


def test_inspect_in_a_registry_equals_skopeo(
    images: dict[str, str], registry: Any, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    base = f"docker://{registry.host}/cli/inspected"
    for tag in ("1.0", "2.0"):
        skopeo("copy", "--dest-tls-verify=false", images["single"], f"{base}:{tag}")
    skopeo("copy", "--dest-tls-verify=false", "--all", images["multi"], f"{base}:multi")
    for ref in (f"{base}:1.0", f"{base}:multi"):
        theirs = skopeo("inspect", "--tls-verify=false", ref)
        mine = ours(capsysbinary, "inspect", "--tls-verify=false", ref)
        assert_same_inspect(mine, theirs)
        info = json.loads(mine)
        assert info["Name"] == f"{registry.host}/cli/inspected"
        assert sorted(info["RepoTags"]) == ["1.0", "2.0", "multi"]
        # -n / --no-tags leaves RepoTags empty, as skopeo's.
        theirs = skopeo("inspect", "--tls-verify=false", "--no-tags", ref)
        assert_same_inspect(ours(capsysbinary, "inspect", "--tls-verify=false", "-n", ref), theirs)
        assert json.loads(theirs)["RepoTags"] == []
        assert ours(capsysbinary, "inspect", "--tls-verify=false", "--raw", ref) == skopeo(
            "inspect", "--tls-verify=false", "--raw", ref
        )
