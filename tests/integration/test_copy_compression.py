"""Layer compression changes between real OCI layouts, directories and archives; skopeo as peer.

Source layouts come from tests/imagebuilder.py; skopeo reads what the engine wrote (and
decompresses it, which proves the compressed streams valid) and writes the reference output
decompression must match byte for byte (decompression is deterministic).
"""

from __future__ import annotations

import gzip
import importlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from imagebuilder import BuiltImage, make_image, make_layer, write_oci_layout
from peakmem import command_peak_mib

from imagetypes import ImageError, get_transport
from imagetypes import mediatypes as mt
from imagetypes.compression import zstd_available
from imagetypes.copy import CopyOptions, copy_image
from imagetypes.digest import Digest

pytestmark = pytest.mark.integration

SKOPEO = shutil.which("skopeo")
needs_skopeo = pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed")
needs_zstd = pytest.mark.skipif(not zstd_available(), reason="no zstd module installed")


def _has(name: str) -> bool:
    try:
        get_transport(name)
    except ImageError:
        return False
    return True


def skopeo(*args: str) -> bytes:
    assert SKOPEO is not None
    done = subprocess.run(
        [SKOPEO, "--insecure-policy", *args], capture_output=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def oci_manifest(layout: Path, tag: str) -> dict[str, object]:
    index = json.loads((layout / "index.json").read_text())
    (entry,) = [
        e
        for e in index["manifests"]
        if e.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    ]
    return dict(json.loads(blob(layout, entry["digest"])))


def blob(layout: Path, digest: str) -> bytes:
    algo, hexpart = digest.split(":")
    return (layout / "blobs" / algo / hexpart).read_bytes()


def config_diff_ids(layout: Path, manifest: dict[str, object]) -> list[str]:
    config = manifest["config"]
    assert isinstance(config, dict)
    return list(json.loads(blob(layout, config["digest"]))["rootfs"]["diff_ids"])


def layer_types(manifest: dict[str, object]) -> list[str]:
    layers = manifest["layers"]
    assert isinstance(layers, list)
    return [layer["mediaType"] for layer in layers]


def uncompressed_layout(path: Path, seed: int) -> tuple[Path, BuiltImage]:
    """An OCI layout whose layers are plain tars with the OCI_LAYER media type (by hand)."""
    return uncompressed_layout_of(path, (3000, 200_000), seed)


def uncompressed_layout_of(
    path: Path, sizes: tuple[int, int], seed: int = 7
) -> tuple[Path, BuiltImage]:
    """:func:`uncompressed_layout` with layers of the given sizes."""
    img = make_image(seed, sizes)
    manifest = json.loads(img.manifest)
    blobs = {img.config_digest: img.config}
    for i, layer in enumerate(manifest["layers"]):
        tar, diff_id = make_layer(seed * 1000 + i, sizes[i], compress=False)
        blobs[diff_id] = tar
        layer.update(mediaType=mt.OCI_LAYER, digest=str(diff_id), size=len(tar))
    built = BuiltImage(
        json.dumps(manifest, separators=(",", ":")).encode(), mt.OCI_MANIFEST, img.config, blobs
    )
    return write_oci_layout(path, {"plain": built}), built


def test_uncompressed_oci_layout_to_oci_is_compressed(tmp_path: Path) -> None:
    src, built = uncompressed_layout(tmp_path / "src", 1)
    result = copy_image(f"oci:{src}:plain", f"oci:{tmp_path / 'dst'}:gz")
    manifest = oci_manifest(tmp_path / "dst", "gz")
    assert layer_types(manifest) == [mt.OCI_LAYER_GZIP] * 2
    diff_ids = config_diff_ids(tmp_path / "dst", manifest)
    assert diff_ids == json.loads(built.config)["rootfs"]["diff_ids"]
    layers = manifest["layers"]
    assert isinstance(layers, list)
    for layer, diff_id in zip(layers, diff_ids, strict=True):
        data = gzip.decompress(blob(tmp_path / "dst", layer["digest"]))
        assert str(Digest.from_bytes(data)) == diff_id
    assert result.layers_recompressed == 2


def test_accept_uncompressed_option_keeps_plain_layers(tmp_path: Path) -> None:
    from imagetypes import TransportOptions

    src, built = uncompressed_layout(tmp_path / "src", 2)
    keep = TransportOptions(extra={"oci.accept_uncompressed_layers": True})
    result = copy_image(
        f"oci:{src}:plain", f"oci:{tmp_path / 'dst'}:x", CopyOptions(destination_options=keep)
    )
    assert result.manifest_digest == built.digest


@needs_skopeo
def test_decompressed_dir_matches_skopeos(tmp_path: Path) -> None:
    img = make_image(3, (10_000, 400_000))
    src = write_oci_layout(tmp_path / "src", {"v1": img})
    copy_image(f"oci:{src}:v1", f"dir:{tmp_path / 'ours'}", CopyOptions(dest_decompress=True))
    skopeo("copy", "--dest-decompress", f"oci:{src}:v1", f"dir:{tmp_path / 'theirs'}")
    ours = json.loads((tmp_path / "ours" / "manifest.json").read_bytes())
    theirs = json.loads((tmp_path / "theirs" / "manifest.json").read_bytes())
    assert [x["digest"] for x in ours["layers"]] == [x["digest"] for x in theirs["layers"]]
    assert layer_types(ours) == layer_types(theirs) == [mt.OCI_LAYER] * 2
    assert ours["config"] == theirs["config"]
    for layer in ours["layers"]:
        name = layer["digest"].split(":")[1]
        assert (tmp_path / "ours" / name).read_bytes() == (tmp_path / "theirs" / name).read_bytes()
    # And skopeo reads ours back into a layout, compressing it again.
    skopeo("copy", f"dir:{tmp_path / 'ours'}", f"oci:{tmp_path / 'again'}:x")


@needs_skopeo
@needs_zstd
def test_gzip_zstd_gzip_through_layouts_with_skopeo_reading_zstd(tmp_path: Path) -> None:
    img = make_image(4, (20_000, 1_500_000))
    src = write_oci_layout(tmp_path / "src", {"v1": img})
    zstd_layout = tmp_path / "zstd"
    copy_image(f"oci:{src}:v1", f"oci:{zstd_layout}:z", CopyOptions(dest_compress_format="zstd"))
    zm = oci_manifest(zstd_layout, "z")
    assert layer_types(zm) == [mt.OCI_LAYER_ZSTD] * 2
    original = json.loads(img.config)["rootfs"]["diff_ids"]
    assert config_diff_ids(zstd_layout, zm) == original
    # skopeo decompresses our zstd streams: they must be valid and give the diff IDs.
    skopeo("copy", "--dest-decompress", f"oci:{zstd_layout}:z", f"dir:{tmp_path / 'plain'}")
    plain = json.loads((tmp_path / "plain" / "manifest.json").read_bytes())
    assert [x["digest"] for x in plain["layers"]] == original
    # skopeo copies the zstd image as it is, too.
    skopeo("copy", f"oci:{zstd_layout}:z", f"oci:{tmp_path / 'skopeo-copy'}:z")
    # And back to gzip.
    gz_layout = tmp_path / "gz"
    copy_image(
        f"oci:{zstd_layout}:z", f"oci:{gz_layout}:g", CopyOptions(dest_compress_format="gzip")
    )
    gm = oci_manifest(gz_layout, "g")
    assert layer_types(gm) == [mt.OCI_LAYER_GZIP] * 2
    assert config_diff_ids(gz_layout, gm) == original
    layers = gm["layers"]
    assert isinstance(layers, list)
    for layer, diff_id in zip(layers, original, strict=True):
        data = gzip.decompress(blob(gz_layout, layer["digest"]))
        assert str(Digest.from_bytes(data)) == diff_id


@needs_skopeo
@pytest.mark.skipif(not _has("docker-archive"), reason="no docker-archive transport")
def test_docker_archive_to_oci_compresses(tmp_path: Path) -> None:
    img = make_image(5, (8000, 90_000))
    src = write_oci_layout(tmp_path / "src", {"v1": img})
    archive = tmp_path / "image.tar"
    skopeo("copy", f"oci:{src}:v1", f"docker-archive:{archive}:example/app:v1")
    result = copy_image(f"docker-archive:{archive}", f"oci:{tmp_path / 'dst'}:v1")
    manifest = oci_manifest(tmp_path / "dst", "v1")
    assert layer_types(manifest) == [mt.OCI_LAYER_GZIP] * 2
    assert (
        config_diff_ids(tmp_path / "dst", manifest) == json.loads(img.config)["rootfs"]["diff_ids"]
    )
    assert result.layers_recompressed == 2
    # skopeo reads the layout and checks every blob it copies.
    skopeo("copy", f"oci:{tmp_path / 'dst'}:v1", f"dir:{tmp_path / 'check'}")


@needs_skopeo
def test_large_layers_compressed_on_several_threads_are_read_by_skopeo(tmp_path: Path) -> None:
    # Layers past the size where gzip blocks go to the thread pool (4 MiB), stored plain in a
    # layout; the copy compresses them, and skopeo must decompress them to the diff IDs.
    layout, built = uncompressed_layout_of(tmp_path / "src", (6_500_000, 9 * 1024 * 1024 + 1))
    first = tmp_path / "first"
    copy_image(f"oci:{layout}:plain", f"oci:{first}:x")
    again = tmp_path / "again"
    copy_image(f"oci:{layout}:plain", f"oci:{again}:x")
    manifest = oci_manifest(first, "x")
    assert layer_types(manifest) == [mt.OCI_LAYER_GZIP] * 2
    # Deterministic: the same layers give the same gzip bytes (and manifest) every time.
    assert manifest == oci_manifest(again, "x")
    original = json.loads(built.config)["rootfs"]["diff_ids"]
    skopeo("copy", "--dest-decompress", f"oci:{first}:x", f"dir:{tmp_path / 'plain'}")
    plain = json.loads((tmp_path / "plain" / "manifest.json").read_bytes())
    assert [x["digest"] for x in plain["layers"]] == original
    layers = manifest["layers"]
    assert isinstance(layers, list)
    for layer, diff_id in zip(layers, original, strict=True):
        data = blob(first, layer["digest"])
        assert subprocess.run(["gzip", "-t"], input=data, check=False).returncode == 0
        assert str(Digest.from_bytes(gzip.decompress(data))) == diff_id


@needs_skopeo
@needs_zstd
def test_large_layers_on_zstd_worker_threads_are_read_by_skopeo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Layers whose descriptors pass the size from which zstd uses its worker threads (lowered
    # to 4 MiB here, rather than writing layers of 128 MiB): stored plain and gzip-compressed,
    # copied to zstd; skopeo must decompress them to the diff IDs and copy them as they are.
    from imagetypes import compression

    monkeypatch.setattr(compression, "ZSTD_PARALLEL_THRESHOLD", 4 * 1024 * 1024)
    layout, built = uncompressed_layout_of(tmp_path / "src", (6_500_000, 9 * 1024 * 1024 + 1))
    original = json.loads(built.config)["rootfs"]["diff_ids"]
    zstd_options = CopyOptions(dest_compress_format="zstd")
    first = tmp_path / "first"
    copy_image(f"oci:{layout}:plain", f"oci:{first}:z", zstd_options)
    again = tmp_path / "again"
    copy_image(f"oci:{layout}:plain", f"oci:{again}:z", zstd_options)
    manifest = oci_manifest(first, "z")
    assert layer_types(manifest) == [mt.OCI_LAYER_ZSTD] * 2
    assert manifest == oci_manifest(again, "z")  # the same bytes every time
    assert config_diff_ids(first, manifest) == original
    layers = manifest["layers"]
    assert isinstance(layers, list)
    for layer, diff_id in zip(layers, original, strict=True):
        data = blob(first, layer["digest"])
        plain = blob(layout, diff_id)
        assert data == zstd_on_workers(plain)  # the multithreaded mode was used
        if shutil.which("zstd"):
            out = subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=True)
            assert out.stdout == plain
    skopeo("copy", "--dest-decompress", f"oci:{first}:z", f"dir:{tmp_path / 'plain'}")
    plain_manifest = json.loads((tmp_path / "plain" / "manifest.json").read_bytes())
    assert [x["digest"] for x in plain_manifest["layers"]] == original
    skopeo("copy", f"oci:{first}:z", f"oci:{tmp_path / 'skopeo-copy'}:z")
    # gzip -> zstd through skopeo's own gzip output: the hint is the gzip blob's size.
    gz = tmp_path / "gz"
    skopeo("copy", f"oci:{layout}:plain", f"oci:{gz}:g")
    copy_image(f"oci:{gz}:g", f"oci:{tmp_path / 'from-gz'}:z", zstd_options)
    from_gz = oci_manifest(tmp_path / "from-gz", "z")
    assert layer_types(from_gz) == [mt.OCI_LAYER_ZSTD] * 2
    skopeo("copy", "--dest-decompress", f"oci:{tmp_path / 'from-gz'}:z", f"dir:{tmp_path / 'p2'}")
    again_plain = json.loads((tmp_path / "p2" / "manifest.json").read_bytes())
    assert [x["digest"] for x in again_plain["layers"]] == original
    assert sum(compression._zstd_holders.values()) == 0


def zstd_on_workers(data: bytes) -> bytes:
    """zstd's multithreaded mode with the parameters the compression module documents."""
    from imagetypes.compression import ZSTD_JOB_SIZE, ZSTD_OVERLAP_LOG

    try:
        zstd: Any = importlib.import_module("compression.zstd")
    except ImportError:
        zstd = importlib.import_module("backports.zstd")
    param = zstd.CompressionParameter
    obj = zstd.ZstdCompressor(
        options={
            param.nb_workers: 1,
            param.job_size: ZSTD_JOB_SIZE,
            param.overlap_log: ZSTD_OVERLAP_LOG,
        }
    )
    return bytes(obj.compress(data) + obj.flush(obj.FLUSH_FRAME))


@needs_zstd
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_recompression_memory_does_not_grow_with_the_number_of_layers(tmp_path: Path) -> None:
    """The command recompressing twelve 8 MiB layers (six workers) needs about what it needs
    for two, under 100 MiB: layers are transformed a few at a time, and each worker gives its
    codec memory back when its layer is done (it kept 15-20 MiB per worker: about 140 MiB)."""
    peaks = {}
    for count in (2, 12):
        img = make_image(count, (8 * 1024 * 1024,) * count, compresslevel=0)
        src = write_oci_layout(tmp_path / f"src{count}", {"t": img})
        out = tmp_path / f"out{count}"
        peaks[count] = command_peak_mib(
            "copy", "--quiet", "--dest-compress-format", "zstd", f"oci:{src}:t", f"oci:{out}:t"
        )
        layers = oci_manifest(out, "t")["layers"]
        assert isinstance(layers, list)
        assert [layer["mediaType"] for layer in layers] == [mt.OCI_LAYER_ZSTD] * count
    assert peaks[12] < 100, peaks
    assert peaks[12] - peaks[2] < 24, peaks
