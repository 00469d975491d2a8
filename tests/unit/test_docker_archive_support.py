"""Support for the archive tests (no tests here): hand-made docker-archive and oci-archive files,
written with tarfile alone, the independent oracle."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from imagetypes.digest import Digest
from tests.imagebuilder import make_layer


def dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass
class DockerImage:
    """An image as docker save stores it: config bytes and layer files (maybe compressed)."""

    config: bytes
    layers: list[bytes]
    diff_ids: list[Digest]
    tags: list[str] = field(default_factory=list)

    @property
    def config_digest(self) -> Digest:
        return Digest.from_bytes(self.config)


def make_docker_image(
    seed: int,
    sizes: tuple[int, ...] = (1500, 700),
    *,
    tags: list[str] | None = None,
    compress: bool = False,
) -> DockerImage:
    layers, diff_ids = [], []
    for i, size in enumerate(sizes):
        tar_bytes, diff_id = make_layer(seed * 100 + i, size, compress=False)
        layers.append(gzip.compress(tar_bytes, mtime=0) if compress else tar_bytes)
        diff_ids.append(diff_id)
    config = dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2024-01-02T03:04:05Z",
            "config": {"Env": ["PATH=/bin"], "Labels": {"seed": str(seed)}},
            "rootfs": {"type": "layers", "diff_ids": [str(d) for d in diff_ids]},
            "history": [{"created_by": f"layer {i}"} for i in range(len(sizes))],
        }
    )
    return DockerImage(config, layers, diff_ids, list(tags or []))


def add_file(tar: tarfile.TarFile, name: str, data: bytes, **kw: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in kw.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data))


def add_link(tar: tarfile.TarFile, name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    tar.addfile(info)


def write_docker_archive(
    path: Path,
    images: list[DockerImage],
    *,
    style: str = "skopeo",
    manifest: object | None = None,
    extra: list[tuple[str, bytes]] | None = None,
) -> Path:
    """A docker save archive in one of the layouts real tools write.

    - ``skopeo``: ``<diff id>.tar`` layers and ``<config hex>.json`` (skopeo 1.x);
    - ``legacy``: ``<id>/layer.tar`` folders, a ``repositories`` file (Docker 1.10 - 24), a
      layer repeated in an image stored once and linked;
    - ``oci``: ``blobs/sha256/<hex>`` with index.json and oci-layout (Docker 25+).
    """
    items = []
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        written: dict[str, str] = {}
        for n, image in enumerate(images):
            cfg = image.config_digest
            layer_paths = []
            config_name = f"blobs/sha256/{cfg.hex}" if style == "oci" else f"{cfg.hex}.json"
            if config_name not in written:
                add_file(tar, config_name, image.config)
                written[config_name] = config_name
            for i, (layer, diff_id) in enumerate(zip(image.layers, image.diff_ids, strict=True)):
                stored = Digest.from_bytes(layer)
                if style == "oci":
                    name = f"blobs/sha256/{stored.hex}"
                elif style == "legacy":
                    name = f"{Digest.from_bytes(f'{n}/{i}/{diff_id}'.encode()).hex}/layer.tar"
                else:
                    name = f"{diff_id.hex}.tar"
                key = str(stored)
                if key in written:
                    if style == "legacy":
                        # docker save links a repeated layer to its first copy
                        add_link(tar, name, f"../{written[key]}")
                        layer_paths.append(name)
                    else:
                        layer_paths.append(written[key])
                    continue
                add_file(tar, name, layer)
                if style == "legacy":
                    add_file(tar, name.replace("layer.tar", "VERSION"), b"1.0")
                    add_file(tar, name.replace("layer.tar", "json"), dumps({"id": name[:64]}))
                written[key] = name
                layer_paths.append(name)
            items.append({"Config": config_name, "RepoTags": image.tags, "Layers": layer_paths})
        if style == "legacy":
            repos: dict[str, dict[str, str]] = {}
            for image, item in zip(images, items, strict=True):
                for tag in image.tags:
                    name, _, t = tag.rpartition(":")
                    repos.setdefault(name, {})[t] = str(item["Layers"][-1]).split("/")[0]
            add_file(tar, "repositories", dumps(repos))
        if style == "oci":
            add_file(tar, "oci-layout", dumps({"imageLayoutVersion": "1.0.0"}))
            add_file(tar, "index.json", dumps({"schemaVersion": 2, "manifests": []}))
        for name, data in extra or []:
            add_file(tar, name, data)
        add_file(tar, "manifest.json", dumps(items if manifest is None else manifest))
    return path


def tar_directory(src: Path, dest: Path) -> Path:
    """A tar of a directory's content, names relative to it, as skopeo's oci-archive."""
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, files in os.walk(src):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                full = Path(root) / name
                tar.add(full, arcname=str(full.relative_to(src)), recursive=False)
    return dest


def tree(root: Path) -> dict[str, bytes | None]:
    """Every file and directory under ``root`` (relative path -> content or None)."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[str((Path(dirpath) / name).relative_to(root))] = None
        for name in filenames:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = p.read_bytes() if not p.is_symlink() else None
    return out


def members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return tar.getmembers()
