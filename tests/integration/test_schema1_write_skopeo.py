"""Docker schema 1 written by imagetypes (``--format v2s1``), read by skopeo 1.9.3, and compared
with what skopeo's own ``copy --format v2s1`` writes for the same image.

containers/image is deterministic up to the signature block (an ephemeral key and the signing
time), so the signed payload, and with it the digest registries use, must be byte-identical.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from imagebuilder import BuiltImage, make_image, write_oci_layout

from imagetypes import mediatypes as mt
from imagetypes.cli import main
from imagetypes.digest import Digest
from imagetypes.manifest import DockerSchema1Manifest, ImageConfig, parse_manifest
from imagetypes.manifest._schema1_write import GZIPPED_EMPTY_LAYER_DIGEST

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed"),
]


def skopeo(*args: str) -> bytes:
    skopeo_bin = shutil.which("skopeo")
    assert skopeo_bin is not None
    done = subprocess.run(
        [skopeo_bin, "--insecure-policy", *args], capture_output=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def with_history(img: BuiltImage, history: list[dict[str, Any]]) -> BuiltImage:
    obj = json.loads(img.config)
    obj["history"] = history
    data = json.dumps(obj, separators=(",", ":")).encode()
    manifest = json.loads(img.manifest)
    manifest["config"].update(digest=str(Digest.from_bytes(data)), size=len(data))
    blobs = {d: b for d, b in img.blobs.items() if d != img.config_digest}
    blobs[Digest.from_bytes(data)] = data
    raw = json.dumps(manifest, separators=(",", ":")).encode()
    return BuiltImage(raw, img.media_type, data, blobs, img.platform)


def plain() -> BuiltImage:
    return make_image(21, (1500, 4000, 800))


def empty_in_the_middle() -> BuiltImage:
    img = make_image(22, (2000, 9000), architecture="arm64", variant="v8")
    history = json.loads(img.config)["history"]
    history.insert(
        1,
        {
            "created": "2024-01-02T03:04:06.123456789+02:00",
            "created_by": "ENV A=<b> && echo 'é'",
            "author": "me & you",
            "comment": "a comment",
            "empty_layer": True,
        },
    )
    return with_history(img, history)


def empty_on_top() -> BuiltImage:
    img = make_image(23, (700,))
    history = json.loads(img.config)["history"]
    history += [{"created": "2024-02-03T04:05:06Z", "created_by": 'CMD ["x"]', "empty_layer": True}]
    history += [{"created_by": "LABEL a=b", "empty_layer": True}]
    return with_history(img, history)


def docker_source() -> BuiltImage:
    return make_image(24, (1200, 3400), docker=True)


IMAGES = {
    "plain": plain,
    "empty-in-the-middle": empty_in_the_middle,
    "empty-on-top": empty_on_top,
    "docker-schema2": docker_source,
}


def source(tmp_path: Path, img: BuiltImage) -> str:
    """The image as an OCI layout, or (Docker schema 2, which skopeo's oci: does not list) as a
    ``dir:`` directory, written without imagetypes."""
    if img.media_type == mt.OCI_MANIFEST:
        return f"oci:{write_oci_layout(tmp_path / 'src', {'v1': img})}:v1"
    path = tmp_path / "src-dir"
    path.mkdir(exist_ok=True)
    (path / "version").write_text("Directory Transport Version: 1.1\n")
    (path / "manifest.json").write_bytes(img.manifest)
    for digest, blob in img.blobs.items():
        (path / digest.hex).write_bytes(blob)
    return f"dir:{path}"


def ours(tmp_path: Path, img: BuiltImage, *extra: str) -> Path:
    out = tmp_path / "ours"
    argv = ["copy", "-q", *extra, "--format", "v2s1", source(tmp_path, img), f"dir:{out}"]
    assert main(argv) == 0
    return out


def theirs(tmp_path: Path, img: BuiltImage) -> Path:
    out = tmp_path / "theirs"
    skopeo("copy", "--format", "v2s1", source(tmp_path, img), f"dir:{out}")
    return out


def read(path: Path) -> DockerSchema1Manifest:
    return DockerSchema1Manifest.parse((path / "manifest.json").read_bytes())


def payload(manifest: DockerSchema1Manifest) -> bytes:
    if not manifest.signed:
        return manifest.raw
    header = manifest.to_dict()["signatures"][0]["protected"]
    import base64

    decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    return manifest.raw[: decoded["formatLength"]] + base64.urlsafe_b64decode(
        decoded["formatTail"] + "=" * (-len(decoded["formatTail"]) % 4)
    )


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_our_schema1_matches_skopeos(tmp_path: Path, name: str) -> None:
    img = IMAGES[name]()
    mine, skopeos = read(ours(tmp_path, img)), read(theirs(tmp_path, img))
    assert mine.media_type == skopeos.media_type == mt.DOCKER_SCHEMA1_SIGNED_MANIFEST
    assert mine.fs_layers == skopeos.fs_layers
    assert mine.history == skopeos.history
    assert [json.loads(h)["id"] for h in mine.history] == [
        json.loads(h)["id"] for h in skopeos.history
    ]
    assert payload(mine) == payload(skopeos)
    assert mine.canonical_digest == skopeos.canonical_digest
    # The blobs written are the same: layers and the empty layer, no config.
    assert sorted(p.name for p in (tmp_path / "ours").iterdir()) == sorted(
        p.name for p in (tmp_path / "theirs").iterdir()
    )


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_skopeo_reads_ours_and_copies_it_back(tmp_path: Path, name: str) -> None:
    img = IMAGES[name]()
    out = ours(tmp_path, img)
    ours_manifest = read(out)
    digest = skopeo("manifest-digest", str(out / "manifest.json")).decode().strip()
    assert digest == str(ours_manifest.canonical_digest)
    inspected = json.loads(skopeo("inspect", f"dir:{out}"))
    assert inspected["Digest"] == digest
    assert inspected["Layers"] == [str(d) for d in reversed(ours_manifest.fs_layers)]
    config = json.loads(img.config)
    assert inspected["Architecture"] == config["architecture"]
    assert inspected["Env"] == config["config"]["Env"]
    skopeo("copy", f"dir:{out}", f"oci:{tmp_path / 'back'}:x")
    index = json.loads((tmp_path / "back" / "index.json").read_bytes())
    blobs = tmp_path / "back" / "blobs" / "sha256"
    manifest = parse_manifest((blobs / index["manifests"][0]["digest"].split(":")[1]).read_bytes())
    back_config = ImageConfig.parse((blobs / manifest.config.digest.hex).read_bytes())  # type: ignore[attr-defined]
    assert back_config.diff_ids == ImageConfig.parse(img.config).diff_ids
    if GZIPPED_EMPTY_LAYER_DIGEST in ours_manifest.fs_layers:
        history = back_config.to_dict()["history"]
        assert [h.get("empty_layer", False) for h in history] == [
            h.get("empty_layer", False) for h in config["history"]
        ]


def test_recompressed_layers_match_skopeo(tmp_path: Path) -> None:
    # Uncompressed layers, compressed on the way (as skopeo does with --dest-compress):
    # gzip output differs between implementations, so compare the uncompressed content.
    img = plain()
    out = ours(tmp_path, img, "--dest-decompress")
    s1 = read(out)
    assert s1.fs_layers == tuple(reversed(ImageConfig.parse(img.config).diff_ids))
    skopeo("copy", f"dir:{out}", f"oci:{tmp_path / 'back'}:x")
    inspected = json.loads(skopeo("inspect", f"oci:{tmp_path / 'back'}:x"))
    assert len(inspected["Layers"]) == 3


def test_unsigned_schema1_without_cryptography(tmp_path: Path) -> None:
    # A fresh interpreter where cryptography cannot be imported: the unsigned form is written.
    img = empty_in_the_middle()
    src = write_oci_layout(tmp_path / "src", {"v1": img})
    code = (
        "import sys; sys.modules['cryptography.hazmat.primitives.asymmetric'] = None\n"
        "from imagetypes.cli import main\n"
        f"sys.exit(main(['copy', '-q', '--format', 'v2s1', {f'oci:{src}:v1'!r}, "
        f"{'dir:' + str(tmp_path / 'ours')!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    mine = read(tmp_path / "ours")
    assert mine.media_type == mt.DOCKER_SCHEMA1_MANIFEST
    assert not mine.signed
    skopeos = read(theirs(tmp_path, img))
    assert mine.raw == payload(skopeos)
    inspected = json.loads(skopeo("inspect", f"dir:{tmp_path / 'ours'}"))
    assert inspected["Digest"] == str(skopeos.canonical_digest)
    skopeo("copy", f"dir:{tmp_path / 'ours'}", f"oci:{tmp_path / 'back'}:x")
