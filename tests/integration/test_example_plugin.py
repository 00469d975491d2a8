"""The example third-party plugin, examples/zip-transport, installed as a user would install it.

The module installs it into the running environment with pip (editable) when it is not
installed yet, or skips with the reason when pip is unavailable. Then: its entry point is found,
``imagetypes transports`` lists it, it passes the conformance suite as discovered through the
entry point, and the command line copies to and from ``oci:`` and ``dir:`` through it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from imagetypes import get_transport, list_transports, reset_transports
from imagetypes.testing.conformance import check_transport
from imagetypes.testing.random import random_image, random_index

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "zip-transport"


def _zip_entry_point_installed() -> bool:
    return any(
        ep.name == "zip" and ep.value == "imagetypes_zip:transport"
        for ep in entry_points(group="imagetypes.transports")
    )


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def installed() -> Iterator[None]:
    """The plugin installed (editable) in this environment; importable in this process."""
    if not _zip_entry_point_installed():
        if _run("-m", "pip", "--version").returncode != 0:
            pytest.skip("pip is not available to install examples/zip-transport")
        # No dependencies (imagetypes is here already). First without build isolation, which
        # needs no network but a setuptools able to build editable wheels; else the usual way.
        attempts = []
        for isolation in (["--no-build-isolation"], []):
            result = _run(
                "-m", "pip", "install", "--quiet", "--no-deps", *isolation, "-e", str(EXAMPLE)
            )
            attempts.append(result)
            if result.returncode == 0:
                break
        else:
            details = "\n".join(r.stdout + r.stderr for r in attempts)
            pytest.fail(f"pip install -e examples/zip-transport failed:\n{details}")
        assert _zip_entry_point_installed(), "installed, but the zip entry point is not visible"
    # An editable install is activated by a .pth file at interpreter start; this process
    # started before, so make the source importable directly.
    added = str(EXAMPLE) not in sys.path
    if added:
        sys.path.insert(0, str(EXAMPLE))
    reset_transports()
    try:
        yield
    finally:
        reset_transports()
        if added:
            sys.path.remove(str(EXAMPLE))


def test_discovered_through_the_entry_point(installed: None) -> None:
    import imagetypes_zip

    assert get_transport("zip") is imagetypes_zip.transport
    (info,) = [i for i in list_transports() if i.name == "zip"]
    assert info.origin.startswith("entry point imagetypes_zip:transport (imagetypes-zip 0.1.0)")


def test_listed_by_the_command_line(installed: None) -> None:
    result = _run("-m", "imagetypes", "transports")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.split()[:1] == ["zip"]]
    assert len(lines) == 1, result.stdout
    assert "imagetypes_zip:transport" in lines[0]


def test_passes_the_conformance_suite(installed: None, tmp_path: Path) -> None:
    report = check_transport(lambda name: f"zip:{tmp_path / name}.zip", supports_signatures=True)
    assert report.skipped == ()


def test_command_line_copies_through_zip(installed: None, tmp_path: Path) -> None:
    image = random_image(11, layers=3)
    image.write_to(f"oci:{tmp_path / 'layout'}:v1")
    steps = [
        (f"oci:{tmp_path / 'layout'}:v1", f"zip:{tmp_path / 'image.zip'}"),
        (f"zip:{tmp_path / 'image.zip'}", f"dir:{tmp_path / 'dir'}"),
        (f"dir:{tmp_path / 'dir'}", f"zip:{tmp_path / 'again.zip'}"),
        (f"zip:{tmp_path / 'again.zip'}", f"oci:{tmp_path / 'layout'}:v2"),
    ]
    for source, destination in steps:
        result = _run("-m", "imagetypes", "copy", "--quiet", source, destination)
        assert result.returncode == 0, f"{source} -> {destination}: {result.stderr}"
    assert (tmp_path / "dir" / "manifest.json").read_bytes() == image.manifest
    for digest, data in image.blobs.items():
        assert (tmp_path / "dir" / digest.hex).read_bytes() == data
    index = json.loads((tmp_path / "layout" / "index.json").read_bytes())
    digests = {
        m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
        for m in index["manifests"]
    }
    assert digests == {"v1": str(image.digest), "v2": str(image.digest)}


def test_multi_platform_copy(installed: None, tmp_path: Path) -> None:
    from imagetypes import CopyOptions, copy_image, open_image

    index = random_index(12)
    index.write_to(f"oci:{tmp_path / 'layout'}:multi")
    result = copy_image(
        f"oci:{tmp_path / 'layout'}:multi",
        f"zip:{tmp_path / 'multi.zip'}",
        CopyOptions(instances="all"),
    )
    assert result.manifest_digest == index.digest
    with open_image(f"zip:{tmp_path / 'multi.zip'}", platform="linux/arm64/v8") as image:
        assert image.manifest().digest == index.image("linux/arm64/v8").digest
