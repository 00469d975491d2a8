"""Benchmark fixtures: OCI layouts of random, incompressible layers, built once and cached.

A layer is a tar holding one file of random bytes (seeded, so every build is identical), stored
as a gzip stream at level 0: deflate's stored blocks keep building fast while the layers stay
real gzip streams. Layers with the same seed and size are the same blob, which is how the
images of the sync fixture share layers.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import struct
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "COMPRESSION_NOTE",
    "TAG",
    "Fixture",
    "GiB",
    "LayerSpec",
    "MiB",
    "build_archive",
    "build_fixture",
    "curve_fixture",
    "layer_files",
    "size_fixture",
    "size_text",
    "sync_fixture",
]

GiB = 1024 * 1024 * 1024
MiB = 1024 * 1024
KiB = 1024
TAG = "bench"
_CHUNK = 1 * MiB
#: How layers are stored, said in the report.
COMPRESSION_NOTE = (
    "gzip streams at level 0 (deflate stored blocks: valid gzip, no compression; the data is "
    "random and would not compress anyway)"
)
_LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
_MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


def size_text(n: int) -> str:
    """``64 MiB``, ``64 KiB`` or ``1.5 MiB``."""
    if n >= MiB:
        return f"{n // MiB} MiB" if n % MiB == 0 else f"{n / MiB:.1f} MiB"
    return f"{n // KiB} KiB" if n % KiB == 0 else f"{n} B"


@dataclass(frozen=True)
class LayerSpec:
    """A layer's content: ``size`` random bytes from ``seed``."""

    seed: int
    size: int


@dataclass(frozen=True)
class Fixture:
    """An OCI layout to build: images by tag, each a list of layers."""

    name: str
    images: Mapping[str, Sequence[LayerSpec]]

    @classmethod
    def uniform(cls, name: str, layers: int, layer_size: int) -> Fixture:
        """One image (tagged :data:`TAG`) of ``layers`` distinct layers of ``layer_size``."""
        return cls(name, {TAG: tuple(LayerSpec(i + 1, layer_size) for i in range(layers))})

    @property
    def unique_layers(self) -> set[LayerSpec]:
        return {spec for specs in self.images.values() for spec in specs}

    @property
    def total(self) -> int:
        """Bytes of layer content (each shared layer counted once)."""
        return sum(spec.size for spec in self.unique_layers)

    @property
    def layer_count(self) -> int:
        return len(self.unique_layers)

    def describe(self) -> str:
        if len(self.images) > 1:
            return (
                f"{len(self.images)} tags sharing layers, {self.layer_count} layers, "
                f"{size_text(self.total)}"
            )
        (specs,) = self.images.values()
        sizes = {s.size for s in specs}
        if len(sizes) == 1:
            n = len(specs)
            return f"{n} layer{'s' if n > 1 else ''} x {size_text(sizes.pop())}"
        return f"{len(specs)} layers, {size_text(self.total)}"


def curve_fixture(layers: int, layer_size: int = 64 * KiB) -> Fixture:
    """The layer-count curve's fixture: ``layers`` layers of ``layer_size``."""
    return Fixture.uniform(f"curve-{layers}x{layer_size // KiB}KiB", layers, layer_size)


def size_fixture(layer_size: int) -> Fixture:
    """The size curve's fixture: one layer of ``layer_size`` (512 MiB is the matrix's own)."""
    name = f"1x{layer_size // MiB}MiB" if layer_size % MiB == 0 else f"1x{layer_size}B"
    return Fixture.uniform(name, 1, layer_size)


def sync_fixture(tags: int, shared: Sequence[int], unique: int, name: str) -> Fixture:
    """``tags`` images sharing layers of sizes ``shared``, each with one ``unique`` layer."""
    base = [LayerSpec(1000 + i, size) for i, size in enumerate(shared)]
    images = {f"t{i:02d}": (*base, LayerSpec(2000 + i, unique)) for i in range(tags)}
    return Fixture(name, images)


class _HashingWriter:
    """Writes to a file, hashing and counting what passes."""

    def __init__(self, f: io.BufferedWriter) -> None:
        self.f = f
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.f.write(data)
        self.sha.update(data)
        self.size += len(data)


def _write_layer(directory: Path, spec: LayerSpec) -> tuple[Path, str, int, str]:
    """One gzip-wrapped tar layer with a single random file; (path, digest, size, diff_id)."""
    rnd = random.Random(spec.seed)
    diff = hashlib.sha256()
    crc = 0
    raw_len = 0
    compressor = zlib.compressobj(0, zlib.DEFLATED, -zlib.MAX_WBITS)
    path = directory / f"layer-{spec.seed}-{spec.size}"
    with open(path, "wb") as f:
        out = _HashingWriter(f)
        out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")  # gzip header: mtime 0, OS unknown

        def feed(data: bytes) -> None:
            nonlocal crc, raw_len
            diff.update(data)
            crc = zlib.crc32(data, crc)
            raw_len += len(data)
            out.write(compressor.compress(data))

        info = tarfile.TarInfo(f"data-{spec.seed}.bin")
        info.size = spec.size
        info.mode = 0o644
        feed(info.tobuf(tarfile.USTAR_FORMAT))
        left = spec.size
        while left:
            n = min(_CHUNK, left)
            feed(rnd.randbytes(n))
            left -= n
        feed(b"\0" * (-spec.size % tarfile.BLOCKSIZE))  # pad the file to a 512-byte block
        feed(b"\0" * (2 * tarfile.BLOCKSIZE))  # end-of-archive marker
        out.write(compressor.flush())
        out.write(struct.pack("<II", crc & 0xFFFFFFFF, raw_len & 0xFFFFFFFF))
    return path, "sha256:" + out.sha.hexdigest(), out.size, "sha256:" + diff.hexdigest()


def _put_blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def build_fixture(cache: Path, fixture: Fixture) -> Path:
    """The fixture's layout in ``cache``, built unless a complete one is there already."""
    layout = cache / fixture.name
    if (layout / ".complete").is_file():
        return layout
    shutil.rmtree(layout, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{fixture.name}-", dir=cache))
    try:
        blobs = staging / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        built: dict[LayerSpec, tuple[str, int, str]] = {}
        for spec in sorted(fixture.unique_layers, key=lambda s: (s.seed, s.size)):
            path, digest, size, diff_id = _write_layer(staging, spec)
            os.replace(path, blobs / digest.split(":", 1)[1])
            built[spec] = (digest, size, diff_id)
        entries = []
        for tag, specs in fixture.images.items():
            config = {
                "created": "2024-01-01T00:00:00Z",
                "architecture": "amd64",
                "os": "linux",
                "config": {"Labels": {"bench.tag": tag}},
                "rootfs": {"type": "layers", "diff_ids": [built[s][2] for s in specs]},
            }
            manifest = {
                "schemaVersion": 2,
                "mediaType": _MANIFEST_TYPE,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    **_put_blob(staging, _dumps(config)),
                },
                "layers": [
                    {"mediaType": _LAYER_TYPE, "digest": built[s][0], "size": built[s][1]}
                    for s in specs
                ],
            }
            entries.append(
                {
                    "mediaType": _MANIFEST_TYPE,
                    **_put_blob(staging, _dumps(manifest)),
                    "annotations": {"org.opencontainers.image.ref.name": tag},
                }
            )
        index = {"schemaVersion": 2, "manifests": entries}
        (staging / "oci-layout").write_bytes(b'{"imageLayoutVersion":"1.0.0"}')
        (staging / "index.json").write_bytes(_dumps(index))
        (staging / ".complete").write_bytes(b"")
        os.rename(staging, layout)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return layout


def layer_files(layout: Path, tag: str = TAG) -> list[Path]:
    """The blob files of the layers of image ``tag`` of ``layout``, in manifest order."""
    index = json.loads((layout / "index.json").read_bytes())
    for entry in index["manifests"]:
        if entry.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            digest = entry["digest"].split(":", 1)[1]
            manifest = json.loads((layout / "blobs" / "sha256" / digest).read_bytes())
            return [
                layout / "blobs" / "sha256" / layer["digest"].split(":", 1)[1]
                for layer in manifest["layers"]
            ]
    raise LookupError(f"no image {tag!r} in {layout}")


def build_archive(cache: Path, layout: Path, kind: str, copy: Callable[[str, str], None]) -> Path:
    """``layout``'s image as a ``kind`` archive (docker-archive or oci-archive), cached.

    ``copy(source, destination)`` makes it (with skopeo when installed: the reference tool).
    """
    suffix = {"docker-archive": "docker.tar", "oci-archive": "oci.tar"}[kind]
    target = cache / f"{layout.name}.{suffix}"
    if target.is_file():
        return target
    tmp = cache / f".{target.name}.tmp"
    tmp.unlink(missing_ok=True)
    name = f":bench/{layout.name.lower()}:latest" if kind == "docker-archive" else f":{TAG}"
    try:
        copy(f"oci:{layout}:{TAG}", f"{kind}:{tmp}{name}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
