"""``imagetypes copy --platform ... --multi-arch-unselected strip|keep``: what the written index
does with the images that are not copied."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from imagebuilder import make_multiarch, write_oci_layout

from imagetypes.cli import main
from imagetypes.digest import Digest


def written_index(layout: Path) -> tuple[Digest, dict[str, object]]:
    top = json.loads((layout / "index.json").read_bytes())
    digest = Digest.parse(top["manifests"][0]["digest"])
    raw = (layout / "blobs" / digest.algorithm / digest.hex).read_bytes()
    return digest, json.loads(raw)


def blob_names(layout: Path) -> set[str]:
    return {p.name for p in (layout / "blobs" / "sha256").iterdir()}


def copy(*args: str) -> int:
    return main(["--insecure-policy", "copy", "--quiet", *args])


def test_keep_writes_a_sparse_index_with_its_digest(tmp_path: Path) -> None:
    index = make_multiarch(31)
    amd64, arm64, arm = index.images
    src = write_oci_layout(tmp_path / "src", {"m": index})
    dst = tmp_path / "dst"
    argv = ["--platform", "linux/arm64", "--multi-arch-unselected", "keep"]
    assert copy(*argv, f"oci:{src}:m", f"oci:{dst}:m") == 0
    digest, obj = written_index(dst)
    assert digest == index.digest  # written byte for byte
    entries = obj["manifests"]
    assert isinstance(entries, list)
    assert [e["digest"] for e in entries] == [str(i.digest) for i in (amd64, arm64, arm)]
    blobs = blob_names(dst)
    assert arm64.digest.hex in blobs
    assert amd64.digest.hex not in blobs
    assert arm.digest.hex not in blobs


@pytest.mark.parametrize("flags", [(), ("--multi-arch-unselected", "strip")])
def test_strip_is_the_default_and_lists_only_the_copied_images(
    tmp_path: Path, flags: tuple[str, ...]
) -> None:
    index = make_multiarch(32)
    _amd64, arm64, _arm = index.images
    src = write_oci_layout(tmp_path / "src", {"m": index})
    dst = tmp_path / "dst"
    assert copy("--platform", "linux/arm64", *flags, f"oci:{src}:m", f"oci:{dst}:m") == 0
    digest, obj = written_index(dst)
    assert digest != index.digest
    entries = obj["manifests"]
    assert isinstance(entries, list)
    assert [e["digest"] for e in entries] == [str(arm64.digest)]


def test_keep_without_platforms_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_oci_layout(tmp_path / "src", {"m": make_multiarch(33)})
    code = copy("--all", "--multi-arch-unselected", "keep", f"oci:{src}:m", f"oci:{tmp_path}/d:m")
    assert code == 2
    err = capsys.readouterr().err
    assert "--multi-arch-unselected keep" in err
    assert "--platform" in err
    assert not (tmp_path / "d").exists()


def test_the_flag_is_not_offered_by_sync(capsys: pytest.CaptureFixture[str]) -> None:
    # sync copies all images of an index or one: it has no platform list to keep others of.
    assert main(["sync", "--help"]) == 0
    assert "--multi-arch-unselected" not in capsys.readouterr().out
    assert main(["copy", "--help"]) == 0
    assert "--multi-arch-unselected {strip,keep}" in capsys.readouterr().out
