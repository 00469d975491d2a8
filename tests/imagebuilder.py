"""Small, deterministic test images written straight to disk, without imagetypes' transports.

Tests use these as an independent oracle: what is built here does not depend on the code under
test (only on the Digest value and the media type constants).
"""

from __future__ import annotations

import gzip
import io
import json
import random
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from imagetypes import mediatypes as mt
from imagetypes.digest import Digest


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def make_layer(
    seed: int, size: int, *, compress: bool = True, compresslevel: int = 9
) -> tuple[bytes, Digest]:
    """A tar with one file of ``size`` pseudo-random bytes; returns (blob, diff_id).

    ``compresslevel`` 0 stores the gzip stream without compressing (quick for large layers)."""
    rnd = random.Random(seed)
    payload = rnd.randbytes(size)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"file-{seed}")
        info.size = size
        info.mtime = 0
        tar.addfile(info, io.BytesIO(payload))
    tar_bytes = buf.getvalue()
    diff_id = Digest.from_bytes(tar_bytes)
    if compress:
        return gzip.compress(tar_bytes, compresslevel=compresslevel, mtime=0), diff_id
    return tar_bytes, diff_id


@dataclass
class BuiltImage:
    """One image: manifest bytes, its media type, and every blob it needs."""

    manifest: bytes
    media_type: str
    config: bytes
    blobs: dict[Digest, bytes] = field(default_factory=dict)
    platform: tuple[str, str, str | None] = ("linux", "amd64", None)

    @property
    def digest(self) -> Digest:
        return Digest.from_bytes(self.manifest)

    @property
    def config_digest(self) -> Digest:
        return Digest.from_bytes(self.config)


@dataclass
class BuiltIndex:
    """An index (or Docker manifest list) over several images."""

    manifest: bytes
    media_type: str
    images: list[BuiltImage]

    @property
    def digest(self) -> Digest:
        return Digest.from_bytes(self.manifest)


def make_image(
    seed: int = 0,
    layer_sizes: tuple[int, ...] = (1024, 2048),
    *,
    os: str = "linux",
    architecture: str = "amd64",
    variant: str | None = None,
    docker: bool = False,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    compresslevel: int = 9,
) -> BuiltImage:
    """A single-platform image with gzipped layers, as OCI (default) or Docker schema 2."""
    blobs: dict[Digest, bytes] = {}
    layer_descs = []
    diff_ids = []
    layer_type = mt.DOCKER_LAYER if docker else mt.OCI_LAYER_GZIP
    for i, size in enumerate(layer_sizes):
        blob, diff_id = make_layer(seed * 1000 + i, size, compresslevel=compresslevel)
        d = Digest.from_bytes(blob)
        blobs[d] = blob
        layer_descs.append({"mediaType": layer_type, "digest": str(d), "size": len(blob)})
        diff_ids.append(str(diff_id))
    config_obj: dict[str, object] = {
        "created": "2024-01-02T03:04:05Z",
        "architecture": architecture,
        "os": os,
        "config": {
            "Env": ["PATH=/usr/bin:/bin"],
            "Cmd": ["/bin/sh"],
            "Labels": dict(labels or {"org.example.seed": str(seed)}),
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": "2024-01-02T03:04:05Z", "created_by": f"layer {i}"}
            for i in range(len(layer_sizes))
        ],
    }
    if variant:
        config_obj["variant"] = variant
    config = _dumps(config_obj)
    config_digest = Digest.from_bytes(config)
    blobs[config_digest] = config
    manifest_obj: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST,
        "config": {
            "mediaType": mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG,
            "digest": str(config_digest),
            "size": len(config),
        },
        "layers": layer_descs,
    }
    if annotations:
        manifest_obj["annotations"] = dict(annotations)
    return BuiltImage(
        _dumps(manifest_obj),
        str(manifest_obj["mediaType"]),
        config,
        blobs,
        (os, architecture, variant),
    )


def make_index(images: list[BuiltImage], *, docker: bool = False) -> BuiltIndex:
    """An OCI index (default) or Docker manifest list over ``images``."""
    entries = []
    for img in images:
        plat: dict[str, str] = {"architecture": img.platform[1], "os": img.platform[0]}
        if img.platform[2]:
            plat["variant"] = img.platform[2]
        entries.append(
            {
                "mediaType": img.media_type,
                "digest": str(img.digest),
                "size": len(img.manifest),
                "platform": plat,
            }
        )
    media_type = mt.DOCKER_MANIFEST_LIST if docker else mt.OCI_INDEX
    obj = {"schemaVersion": 2, "mediaType": media_type, "manifests": entries}
    return BuiltIndex(_dumps(obj), media_type, images)


def make_multiarch(seed: int = 0, *, docker: bool = False) -> BuiltIndex:
    """An index over linux/amd64, linux/arm64/v8 and linux/arm/v7 images."""
    plats = [("amd64", None), ("arm64", "v8"), ("arm", "v7")]
    images = [
        make_image(seed * 10 + i, (512, 1024), architecture=a, variant=v, docker=docker)
        for i, (a, v) in enumerate(plats)
    ]
    return make_index(images, docker=docker)


def _write_blob(root: Path, data: bytes) -> Digest:
    d = Digest.from_bytes(data)
    p = root / "blobs" / d.algorithm / d.hex
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return d


def write_oci_layout(path: Path, tagged: Mapping[str, BuiltImage | BuiltIndex]) -> Path:
    """Write an OCI image layout holding each image (or index) under its tag."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "oci-layout").write_bytes(_dumps({"imageLayoutVersion": "1.0.0"}))
    entries = []
    for tag, item in tagged.items():
        images = item.images if isinstance(item, BuiltIndex) else [item]
        for img in images:
            for blob in img.blobs.values():
                _write_blob(path, blob)
            _write_blob(path, img.manifest)
        _write_blob(path, item.manifest)
        entries.append(
            {
                "mediaType": item.media_type,
                "digest": str(item.digest),
                "size": len(item.manifest),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        )
    (path / "index.json").write_bytes(
        _dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries})
    )
    return path
