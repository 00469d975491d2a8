"""--link-blobs: local copies that clone (reflink) or hard-link blobs instead of writing them.

Hard links are checked on the test's own filesystem; clones on a real XFS (made with mkfs.xfs
in a file and loop-mounted, which needs root), where the kernel reports the shared extents.
skopeo reads every layout written, as a second opinion; a corrupt source fails whichever way.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from imagebuilder import BuiltImage, make_image, write_oci_layout  # noqa: E402

from imagetypes import DigestMismatchError  # noqa: E402
from imagetypes.copy import CopyOptions, copy_image  # noqa: E402

pytestmark = pytest.mark.integration

SKOPEO = shutil.which("skopeo")
LAYERS = (3 * 1024 * 1024 + 7, 70_000, 300)


@pytest.fixture(scope="module")
def image() -> BuiltImage:
    return make_image(611, LAYERS)


def _layout(parent: Path, image: BuiltImage) -> Path:
    return write_oci_layout(parent / "src", {"v1": image})


def _blob_files(root: Path, image: BuiltImage, kind: str) -> dict[str, Path]:
    """Every config and layer file of ``image`` in a layout (``oci``) or a ``dir:``."""
    manifest = json.loads(image.manifest)
    digests = [manifest["config"]["digest"]] + [layer["digest"] for layer in manifest["layers"]]
    if kind == "oci":
        return {d: root / "blobs" / "sha256" / d.split(":")[1] for d in digests}
    return {d: root / d.split(":")[1] for d in digests}


def _skopeo_reads(ref: str, tmp_path: Path) -> None:
    if SKOPEO is None:
        return
    done = subprocess.run(
        [SKOPEO, "--insecure-policy", "copy", "-q", ref, f"oci:{tmp_path / 'second'}:x"],
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")


@pytest.mark.parametrize("kind", ["oci", "dir"])
def test_hardlink_shares_blob_files(kind: str, image: BuiltImage, tmp_path: Path) -> None:
    src = _layout(tmp_path, image)
    middle = tmp_path / "middle"
    # A dir: source for the dir: case, so both ends are that transport.
    copy_image(f"oci:{src}:v1", f"{kind}:{middle}" + (":v1" if kind == "oci" else ""))
    source_ref = f"{kind}:{middle}" + (":v1" if kind == "oci" else "")
    out = tmp_path / "out"
    dest_ref = f"{kind}:{out}" + (":v1" if kind == "oci" else "")
    result = copy_image(source_ref, dest_ref, CopyOptions(link_blobs="hardlink"))
    assert result.blobs_copied == len(LAYERS) + 1
    before = _blob_files(middle, image, kind)
    after = _blob_files(out, image, kind)
    for digest, path in after.items():
        assert os.stat(path).st_ino == os.stat(before[digest]).st_ino, digest
        assert os.stat(path).st_nlink == 2
    _skopeo_reads(dest_ref, tmp_path)

    # The default (reflink) never shares an inode: on this filesystem it clones or writes.
    plain = tmp_path / "plain"
    plain_ref = f"{kind}:{plain}" + (":v1" if kind == "oci" else "")
    copy_image(source_ref, plain_ref)
    for digest, path in _blob_files(plain, image, kind).items():
        assert os.stat(path).st_ino != os.stat(before[digest]).st_ino
        assert path.read_bytes() == before[digest].read_bytes()


def test_hardlink_from_a_corrupt_source_fails_and_links_nothing(
    image: BuiltImage, tmp_path: Path
) -> None:
    src = _layout(tmp_path, image)
    manifest = json.loads(image.manifest)
    big = manifest["layers"][0]["digest"].split(":")[1]
    blob = src / "blobs" / "sha256" / big
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    out = tmp_path / "out"
    with pytest.raises(DigestMismatchError):
        copy_image(f"oci:{src}:v1", f"oci:{out}:v1", CopyOptions(link_blobs="hardlink"))
    assert not out.exists()  # a new layout appears only whole
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no staging left
    assert os.stat(blob).st_nlink == 1


def test_cli_link_blobs_flag(image: BuiltImage, tmp_path: Path) -> None:
    src = _layout(tmp_path, image)
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "imagetypes",
            "copy",
            "--quiet",
            "--link-blobs",
            "hardlink",
            f"oci:{src}:v1",
            f"oci:{out}:v1",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for digest, path in _blob_files(out, image, "oci").items():
        assert os.stat(path).st_ino == os.stat(_blob_files(src, image, "oci")[digest]).st_ino
    bad = subprocess.run(
        [sys.executable, "-m", "imagetypes", "copy", "--link-blobs", "symlink", "a", "b"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert bad.returncode == 2
    assert "invalid choice: 'symlink'" in bad.stderr
    assert "Traceback" not in bad.stderr


# -- clones on a real copy-on-write filesystem ------------------------------------------------
@pytest.fixture(scope="module")
def xfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh XFS with reflink, loop-mounted (root, mkfs.xfs and loop devices needed)."""
    mkfs = shutil.which("mkfs.xfs")
    if os.geteuid() != 0 or mkfs is None or shutil.which("mount") is None:
        pytest.skip("needs root and mkfs.xfs (Debian's xfsprogs) to make a loop-mounted XFS")
    base = tmp_path_factory.mktemp("xfs")
    image = base / "fs.img"
    mountpoint = base / "mnt"
    mountpoint.mkdir()
    with open(image, "wb") as f:
        f.truncate(600 * 1024 * 1024)
    subprocess.run([mkfs, "-q", "-m", "reflink=1", "-f", str(image)], check=True, timeout=120)
    mounted = subprocess.run(
        ["mount", "-o", "loop", str(image), str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot loop-mount an XFS here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=False, timeout=120)
        image.unlink()


def _shared(path: Path) -> bool:
    """Whether every extent of ``path`` is shared with another file (filefrag -v)."""
    out = subprocess.run(
        ["filefrag", "-v", str(path)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    extents = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    return bool(extents) and all("shared" in line for line in extents)


def _used(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


@pytest.mark.parametrize("kind", ["oci", "dir"])
def test_reflink_clones_on_xfs(kind: str, xfs: Path, image: BuiltImage) -> None:
    if shutil.which("filefrag") is None:
        pytest.skip("filefrag (e2fsprogs) is not installed")
    work = xfs / kind
    work.mkdir()
    src = _layout(work, image)
    middle = work / "middle"
    suffix = ":v1" if kind == "oci" else ""
    copy_image(f"oci:{src}:v1", f"{kind}:{middle}{suffix}", CopyOptions(link_blobs="never"))
    before = _blob_files(middle, image, kind)
    assert not any(_shared(p) for p in before.values())
    os.sync()
    used = _used(xfs)
    out = work / "out"
    copy_image(f"{kind}:{middle}{suffix}", f"{kind}:{out}{suffix}")  # the default: reflink
    after = _blob_files(out, image, kind)
    for digest, path in after.items():
        assert path.read_bytes() == before[digest].read_bytes()
        assert os.stat(path).st_ino != os.stat(before[digest]).st_ino
        if os.stat(path).st_size >= 4096:  # a small file may live inline, with no extent
            assert _shared(path), digest
    os.sync()
    assert _used(xfs) - used < 1024 * 1024  # the 3 MiB layer took no new space
    _skopeo_reads(f"{kind}:{out}{suffix}", work)

    # With "never" the same copy writes every byte again: nothing shared.
    again = work / "again"
    copy_image(
        f"{kind}:{middle}{suffix}", f"{kind}:{again}{suffix}", CopyOptions(link_blobs="never")
    )
    big = max(after, key=lambda d: os.stat(after[d]).st_size)
    assert not _shared(_blob_files(again, image, kind)[big])
