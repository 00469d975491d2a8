"""Image.save_docker_tar writes through the docker-archive transport; skopeo reads the result."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from imagebuilder import make_image, make_multiarch, write_oci_layout

from imagetypes import Platform, VerificationError, open_image


def _manifest(archive: Path | bytes) -> list[dict[str, object]]:
    fileobj = io.BytesIO(archive) if isinstance(archive, bytes) else None
    name = None if fileobj else archive
    with tarfile.open(name=name, fileobj=fileobj) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        return json.loads(member.read())  # type: ignore[no-any-return]


def test_save_docker_tar_to_a_path(tmp_path: Path) -> None:
    img = make_image(81, (4096,))
    layout = write_oci_layout(tmp_path / "layout", {"v1": img})
    target = tmp_path / "image.tar"
    with open_image(f"oci:{layout}:v1") as image:
        image.save_docker_tar(target, ["example.com/app:1.0"])
    manifest = _manifest(target)
    assert manifest[0]["RepoTags"] == ["example.com/app:1.0"]
    # The config travels byte for byte, so the image ID is the OCI config digest.
    assert manifest[0]["Config"] == f"{img.config_digest.hex}.json"
    if shutil.which("skopeo"):
        out = subprocess.run(
            ["skopeo", "inspect", "--raw", "--config", f"docker-archive:{target}"],
            check=True,
            capture_output=True,
        ).stdout
        assert out == img.config


def test_save_docker_tar_from_an_index_to_a_file_object(tmp_path: Path) -> None:
    index = make_multiarch(82)
    layout = write_oci_layout(tmp_path / "layout", {"multi": index})
    arm = next(i for i in index.images if i.platform[1] == "arm64")
    buf = io.BytesIO()
    with open_image(f"oci:{layout}:multi", platform=Platform.parse("linux/arm64")) as image:
        image.save_docker_tar(buf, ["example.com/multi:arm64"])
    manifest = _manifest(buf.getvalue())
    assert manifest[0]["Config"] == f"{arm.config_digest.hex}.json"


def test_save_docker_tar_failure_leaves_no_file(tmp_path: Path) -> None:
    img = make_image(83, (4096,))
    layout = write_oci_layout(tmp_path / "layout", {"v1": img})
    layer = next(d for d in img.blobs if img.blobs[d] != img.config)
    (layout / "blobs" / "sha256" / layer.hex).write_bytes(b"corrupt")
    target = tmp_path / "image.tar"
    with open_image(f"oci:{layout}:v1") as image, pytest.raises(VerificationError):
        image.save_docker_tar(target, ["example.com/app:1.0"])
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layout"]
