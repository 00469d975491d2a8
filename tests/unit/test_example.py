"""The example image shipped in examples/hello-layout is what examples/make_example.py makes."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from imagetypes.image import open_image

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "examples" / "hello-layout"
SCRIPT = ROOT / "examples" / "make_example.py"


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_regenerated_example_is_byte_identical(tmp_path: Path) -> None:
    out = tmp_path / "layout"
    subprocess.run([sys.executable, str(SCRIPT), "--output", str(out)], check=True)
    regenerated, shipped = _files(out), _files(SHIPPED)
    assert sorted(regenerated) == sorted(shipped)
    for name, data in shipped.items():
        assert regenerated[name] == data, f"{name} differs from the shipped example"


def test_example_is_small() -> None:
    assert sum(len(d) for d in _files(SHIPPED).values()) < 100 * 1024


@pytest.mark.parametrize("platform", ["linux/amd64", "linux/arm64"])
def test_example_opens_for_each_platform(platform: str) -> None:
    with open_image(f"oci:{SHIPPED}:latest", platform=platform) as image:
        assert str(image.platform) in (platform, f"{platform}/v8")
        assert image.index() is not None
        (layer,) = image.layers()
        tar_bytes = gzip.decompress(image.source.get_blob_bytes(layer))
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        member = tar.extractfile("hello.txt")
        assert member is not None
        assert platform.split("/")[1] in member.read().decode()
