"""Copies between real oci: layouts and dir: directories, checked with skopeo.

Source layouts are written by tests/imagebuilder.py (independent of the code under test);
skopeo reads what the copy engine wrote and copies it on, as a second opinion.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from imagebuilder import (  # noqa: E402
    BuiltImage,
    BuiltIndex,
    make_image,
    make_multiarch,
    write_oci_layout,
)

from imagetypes import DigestMismatchError, ImageError, get_transport  # noqa: E402
from imagetypes import mediatypes as mt  # noqa: E402
from imagetypes.copy import CopyOptions, EventCollector, ManifestConverted, copy_image  # noqa: E402

pytestmark = pytest.mark.integration

SKOPEO = shutil.which("skopeo")


def _missing(name: str) -> str | None:
    try:
        get_transport(name)
    except ImageError as e:
        return f"the {name}: transport is not available yet ({e})"
    return None


def needs(*transports: str, skopeo: bool = False) -> pytest.MarkDecorator:
    reasons = [r for r in (_missing(t) for t in transports) if r]
    if skopeo and SKOPEO is None:
        reasons.append("skopeo is not installed")
    return pytest.mark.skipif(bool(reasons), reason="; ".join(reasons) or "available")


def skopeo(*args: str) -> bytes:
    assert SKOPEO is not None
    done = subprocess.run(
        [SKOPEO, "--insecure-policy", *args], capture_output=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its content (to prove nothing changed)."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def layout_blobs(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (root / "blobs" / "sha256").iterdir()}


def source_layout(tmp_path: Path, img: BuiltImage | None = None) -> tuple[Path, BuiltImage]:
    img = img or make_image(7, (4000, 70000, 300))
    return write_oci_layout(tmp_path / "src", {"v1": img}), img


@needs("oci", "dir", skopeo=True)
def test_oci_to_dir_is_what_skopeo_writes(tmp_path: Path) -> None:
    src, img = source_layout(tmp_path)
    ours = tmp_path / "ours"
    result = copy_image(f"oci:{src}:v1", f"dir:{ours}")

    assert result.manifest == img.manifest
    assert skopeo("inspect", "--raw", f"dir:{ours}") == img.manifest
    theirs = tmp_path / "theirs"
    skopeo("copy", f"oci:{src}:v1", f"dir:{theirs}")
    assert tree(ours) == tree(theirs)
    skopeo("copy", f"dir:{ours}", f"oci:{tmp_path / 'again'}:x")
    assert json.loads(skopeo("inspect", "--raw", f"oci:{tmp_path / 'again'}:x")) == json.loads(
        img.manifest
    )


@needs("oci", "dir", skopeo=True)
def test_dir_written_by_skopeo_to_oci(tmp_path: Path) -> None:
    src, img = source_layout(tmp_path)
    skodir = tmp_path / "skodir"
    skopeo("copy", f"oci:{src}:v1", f"dir:{skodir}")
    out = tmp_path / "out"

    copy_image(f"dir:{skodir}", f"oci:{out}:v1")

    assert skopeo("inspect", "--raw", f"oci:{out}:v1") == img.manifest
    assert layout_blobs(out) == layout_blobs(src)
    skopeo("copy", f"oci:{out}:v1", f"dir:{tmp_path / 'check'}")


@needs("oci", "dir")
def test_oci_dir_oci_round_trip_is_byte_identical(tmp_path: Path) -> None:
    src, img = source_layout(tmp_path)
    middle = tmp_path / "middle"
    out = tmp_path / "out"

    first = copy_image(f"oci:{src}:v1", f"dir:{middle}")
    second = copy_image(f"dir:{middle}", f"oci:{out}:v1")

    assert first.manifest == second.manifest == img.manifest
    assert layout_blobs(out) == layout_blobs(src)
    (entry,) = json.loads((out / "index.json").read_bytes())["manifests"]
    assert entry["digest"] == str(img.digest)
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "v1"


@needs("oci", skopeo=True)
def test_oci_index_all_to_oci(tmp_path: Path) -> None:
    index = make_multiarch(3)
    src = write_oci_layout(tmp_path / "src", {"multi": index})
    out = tmp_path / "out"

    result = copy_image(f"oci:{src}:multi", f"oci:{out}:multi", CopyOptions(instances="all"))

    assert result.manifest == index.manifest
    assert skopeo("inspect", "--raw", f"oci:{out}:multi") == index.manifest
    assert layout_blobs(out) == layout_blobs(src)
    skopeo("copy", "--all", f"oci:{out}:multi", f"oci:{tmp_path / 'again'}:multi")


@needs("oci", "dir", skopeo=True)
def test_oci_index_system_to_dir(tmp_path: Path) -> None:
    from imagetypes import Platform, TransportOptions

    index = make_multiarch(4)
    src = write_oci_layout(tmp_path / "src", {"multi": index})
    out = tmp_path / "out"
    options = CopyOptions(source_options=TransportOptions(platform=Platform.parse("linux/arm64")))

    copy_image(f"oci:{src}:multi", f"dir:{out}", options)

    assert skopeo("inspect", "--raw", f"dir:{out}") == index.images[1].manifest
    theirs = tmp_path / "theirs"
    skopeo("--override-arch", "arm64", "copy", f"oci:{src}:multi", f"dir:{theirs}")
    assert tree(out) == tree(theirs)


@needs("oci", "dir", skopeo=True)
def test_oci_to_dir_as_docker_schema2(tmp_path: Path) -> None:
    src, _img = source_layout(tmp_path)
    out = tmp_path / "out"
    events = EventCollector()

    result = copy_image(f"oci:{src}:v1", f"dir:{out}", CopyOptions(format="v2s2", progress=events))

    raw = skopeo("inspect", "--raw", f"dir:{out}")
    assert raw == result.manifest
    assert json.loads(raw)["mediaType"] == mt.DOCKER_MANIFEST
    assert len(events.of_type(ManifestConverted)) == 1
    theirs = tmp_path / "theirs"
    skopeo("copy", "--format", "v2s2", f"oci:{src}:v1", f"dir:{theirs}")
    assert tree(out) == tree(theirs)
    # skopeo reads the converted image, checking every blob against it.
    skopeo("copy", f"dir:{out}", f"oci:{tmp_path / 'again'}:x")


@needs("oci", "dir", skopeo=True)
def test_docker_image_to_oci_is_converted_as_skopeo_does(tmp_path: Path) -> None:
    # skopeo's oci: source only sees OCI manifests, so it makes the Docker image itself.
    docker_dir = skopeo_dir(tmp_path, make_image(12, (3000, 200)), "--format", "v2s2")
    assert json.loads((docker_dir / "manifest.json").read_bytes())["mediaType"] == (
        mt.DOCKER_MANIFEST
    )
    ours = tmp_path / "ours"
    events = EventCollector()

    result = copy_image(f"dir:{docker_dir}", f"oci:{ours}:v1", CopyOptions(progress=events))

    assert result.converted
    (event,) = events.of_type(ManifestConverted)
    assert (event.from_type, event.to_type) == (mt.DOCKER_MANIFEST, mt.OCI_MANIFEST)  # type: ignore[attr-defined]
    theirs = tmp_path / "theirs"
    skopeo("copy", f"dir:{docker_dir}", f"oci:{theirs}:v1")
    assert skopeo("inspect", "--raw", f"oci:{ours}:v1") == skopeo(
        "inspect", "--raw", f"oci:{theirs}:v1"
    )
    assert layout_blobs(ours) == layout_blobs(theirs)


@needs("oci", "dir", skopeo=True)
def test_index_all_as_docker_list_is_what_skopeo_writes(tmp_path: Path) -> None:
    src = write_oci_layout(tmp_path / "src", {"m": make_multiarch(5)})
    ours = tmp_path / "ours"
    options = CopyOptions(instances="all", format="v2s2")

    result = copy_image(f"oci:{src}:m", f"dir:{ours}", options)

    assert result.media_type == mt.DOCKER_MANIFEST_LIST
    theirs = tmp_path / "theirs"
    skopeo("copy", "--all", "--format", "v2s2", f"oci:{src}:m", f"dir:{theirs}")
    assert tree(ours) == tree(theirs)


def _corrupt_first_layer(layout: Path, img: BuiltImage) -> None:
    layer = json.loads(img.manifest)["layers"][0]["digest"].split(":")[1]
    path = layout / "blobs" / "sha256" / layer
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@needs("oci")
def test_corrupt_blob_leaves_no_new_layout(tmp_path: Path) -> None:
    src, img = source_layout(tmp_path)
    _corrupt_first_layer(src, img)
    out = tmp_path / "new"
    with pytest.raises(DigestMismatchError):
        copy_image(f"oci:{src}:v1", f"oci:{out}:v1")
    assert not out.exists()


@needs("oci")
def test_corrupt_blob_leaves_an_existing_layout_unchanged(tmp_path: Path) -> None:
    src, img = source_layout(tmp_path)
    _corrupt_first_layer(src, img)
    existing = write_oci_layout(tmp_path / "existing", {"old": make_image(99)})
    before = tree(existing)
    with pytest.raises(DigestMismatchError):
        copy_image(f"oci:{src}:v1", f"oci:{existing}:v1")
    assert tree(existing) == before


@needs("oci", "dir")
def test_corrupt_blob_leaves_no_new_dir(tmp_path: Path) -> None:
    src, img = source_layout(tmp_path)
    _corrupt_first_layer(src, img)
    out = tmp_path / "new"
    with pytest.raises(DigestMismatchError):
        copy_image(f"oci:{src}:v1", f"dir:{out}")
    assert not out.exists()


# -- dir: to dir:, with skopeo writing the source from an imagebuilder layout --------------------


def skopeo_dir(tmp_path: Path, item: BuiltImage | BuiltIndex, *flags: str) -> Path:
    layout = write_oci_layout(tmp_path / "layout", {"t": item})
    out = tmp_path / "skodir"
    skopeo("copy", *flags, f"oci:{layout}:t", f"dir:{out}")
    return out


@needs("dir", skopeo=True)
def test_dir_to_dir_is_identical(tmp_path: Path) -> None:
    img = make_image(8, (5000, 100))
    src = skopeo_dir(tmp_path, img)
    out = tmp_path / "out"

    result = copy_image(f"dir:{src}", f"dir:{out}")

    assert result.manifest == img.manifest
    assert tree(out) == tree(src)
    assert skopeo("inspect", "--raw", f"dir:{out}") == img.manifest


@needs("dir", skopeo=True)
def test_dir_to_dir_index_all(tmp_path: Path) -> None:
    index = make_multiarch(9)
    src = skopeo_dir(tmp_path, index, "--all")
    out = tmp_path / "out"

    result = copy_image(f"dir:{src}", f"dir:{out}", CopyOptions(instances="all"))

    assert result.manifest == index.manifest
    assert tree(out) == tree(src)
    skopeo("copy", "--all", f"dir:{out}", f"dir:{tmp_path / 'again'}")


@needs("dir", skopeo=True)
def test_dir_to_dir_converted_is_readable_by_skopeo(tmp_path: Path) -> None:
    src = skopeo_dir(tmp_path, make_image(10))
    out = tmp_path / "out"
    result = copy_image(f"dir:{src}", f"dir:{out}", CopyOptions(format="v2s2"))
    assert result.converted
    raw = skopeo("inspect", "--raw", f"dir:{out}")
    assert json.loads(raw)["mediaType"] == mt.DOCKER_MANIFEST
    # skopeo verifies every blob against the converted manifest while copying it.
    skopeo("copy", f"dir:{out}", f"dir:{tmp_path / 'again'}")


@needs("dir", skopeo=True)
def test_dir_corrupt_blob_leaves_no_new_dir_and_an_old_one_unchanged(tmp_path: Path) -> None:
    img = make_image(11, (3000, 4000))
    src = skopeo_dir(tmp_path, img)
    layer = json.loads(img.manifest)["layers"][1]["digest"].split(":")[1]
    data = bytearray((src / layer).read_bytes())
    data[10] ^= 0xFF
    (src / layer).write_bytes(bytes(data))

    with pytest.raises(DigestMismatchError):
        copy_image(f"dir:{src}", f"dir:{tmp_path / 'new'}")
    assert not (tmp_path / "new").exists()

    existing = tmp_path / "existing"
    skopeo("copy", f"oci:{tmp_path / 'layout'}:t", f"dir:{existing}")
    (existing / "extra-marker").write_bytes(b"")
    before = tree(existing)
    with pytest.raises(DigestMismatchError):
        copy_image(f"dir:{src}", f"dir:{existing}")
    assert tree(existing) == before
