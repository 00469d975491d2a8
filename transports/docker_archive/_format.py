"""The ``docker save`` archive format: manifest.json, the legacy metadata, Go-style JSON.

An archive holds ``manifest.json``, a list of items ``{"Config", "RepoTags", "Layers",
"Parent", "LayerSources"}``, one per image, naming the config and layer files inside the
archive. Writers also add the legacy (pre Docker 1.10) metadata: a ``repositories`` file
mapping names to tags to the top layer's ID, and a ``<layer ID>/`` folder per layer holding
``VERSION``, ``json`` and ``layer.tar`` (here a symbolic link to the layer file, as skopeo
writes it). File names follow skopeo: ``<config hex>.json`` and ``<diff ID hex>.tar``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from imagetypes.descriptor import Descriptor
from imagetypes.digest import Digest
from imagetypes.errors import ArchiveError, ImageError

__all__ = [
    "LEGACY_CONFIG_FILE",
    "LEGACY_LAYER_FILE",
    "LEGACY_VERSION_FILE",
    "MANIFEST_FILE",
    "MAX_CONFIG_SIZE",
    "MAX_MANIFEST_JSON_SIZE",
    "REPOSITORIES_FILE",
    "ManifestItem",
    "config_path",
    "go_json",
    "layer_path",
    "legacy_layer_configs",
    "parse_manifest_json",
]

MANIFEST_FILE = "manifest.json"
REPOSITORIES_FILE = "repositories"
LEGACY_LAYER_FILE = "layer.tar"
LEGACY_CONFIG_FILE = "json"
LEGACY_VERSION_FILE = "VERSION"
#: Bound on manifest.json (it lists only file names, so 1 MiB is plenty).
MAX_MANIFEST_JSON_SIZE = 1024 * 1024
#: Bound on an image config (containers/image's iolimits.MaxConfigBodySize).
MAX_CONFIG_SIZE = 4 * 1024 * 1024


def config_path(digest: Digest) -> str:
    """The archive path we write a config with ``digest`` to (as skopeo)."""
    return f"{digest.hex}.json"


def layer_path(diff_id: Digest) -> str:
    """The archive path we write an uncompressed layer to (as skopeo)."""
    return f"{diff_id.hex}.tar"


def _go_escape(text: str) -> str:
    # Go's encoding/json escapes these even inside RawMessage values; they can only occur
    # inside strings, so replacing them everywhere is safe.
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def go_json(obj: Any, *, sort_top_level: bool = False) -> bytes:
    """Compact JSON as Go's ``json.Marshal`` writes it.

    With ``sort_top_level`` the outer object's keys are sorted (a Go map) while nested values
    keep their order (``json.RawMessage`` values copied from a config).
    """
    if sort_top_level and isinstance(obj, Mapping):
        parts = [
            f"{json.dumps(k, ensure_ascii=False)}:"
            f"{json.dumps(obj[k], separators=(',', ':'), ensure_ascii=False)}"
            for k in sorted(obj)
        ]
        text = "{" + ",".join(parts) + "}"
    else:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return _go_escape(text).encode()


@attrs.frozen
class ManifestItem:
    """One image of a ``docker save`` archive, as listed in manifest.json."""

    config: str
    repo_tags: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()
    parent: str = ""
    #: Diff ID -> the distribution descriptor of a layer (foreign layers, mostly).
    layer_sources: Mapping[Digest, Descriptor] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON object, fields in the order Go writes them."""
        out: dict[str, Any] = {
            "Config": self.config,
            "RepoTags": list(self.repo_tags),
            "Layers": list(self.layers),
        }
        if self.parent:
            out["Parent"] = self.parent
        if self.layer_sources:
            out["LayerSources"] = {str(k): v.to_dict() for k, v in self.layer_sources.items()}
        return out


def _strings(value: Any, what: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ArchiveError(f"{where}: {what} in manifest.json must be a list of strings")
    return tuple(value)


def parse_manifest_json(data: bytes, where: str) -> list[ManifestItem]:
    """Parse manifest.json; :class:`ArchiveError` if it is malformed."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ArchiveError(f"{where}: manifest.json is not valid JSON: {e}") from e
    if not isinstance(obj, list):
        raise ArchiveError(f"{where}: manifest.json must hold a list of images")
    items = []
    for i, entry in enumerate(obj):
        at = f"{where}: image @{i} of manifest.json"
        if not isinstance(entry, dict):
            raise ArchiveError(f"{at} is not a JSON object")
        config = entry.get("Config")
        if not isinstance(config, str) or not config:
            raise ArchiveError(f"{at} names no Config file")
        parent = entry.get("Parent") or ""
        if not isinstance(parent, str):
            raise ArchiveError(f"{at}: Parent must be a string")
        sources: dict[Digest, Descriptor] = {}
        raw_sources = entry.get("LayerSources") or {}
        if not isinstance(raw_sources, dict):
            raise ArchiveError(f"{at}: LayerSources must be an object")
        try:
            for key, desc in raw_sources.items():
                sources[Digest.parse(key)] = Descriptor.from_dict(desc)
        except ImageError as e:
            raise ArchiveError(f"{at}: invalid LayerSources: {e}") from e
        items.append(
            ManifestItem(
                config,
                _strings(entry.get("RepoTags"), "RepoTags", at),
                _strings(entry.get("Layers"), "Layers", at),
                parent,
                sources,
            )
        )
    return items


def legacy_layer_configs(diff_ids: Sequence[Digest], config: bytes) -> list[tuple[str, bytes]]:
    """The legacy ``(<layer ID>, json)`` of each layer, exactly as skopeo computes them.

    Each layer's ``json`` names its parent; the top one also carries a few fields of the
    image config. IDs chain the diff IDs, so equal layer stacks get equal IDs.
    """
    try:
        parsed = json.loads(config)
    except (ValueError, UnicodeDecodeError) as e:
        raise ArchiveError(f"the image config is not valid JSON: {e}") from e
    if not isinstance(parsed, dict):
        raise ArchiveError("the image config is not a JSON object")
    out: list[tuple[str, bytes]] = []
    chain: Digest | None = None
    parent = ""
    for i, diff_id in enumerate(diff_ids):
        layer: dict[str, Any] = {}
        if parent:
            layer["parent"] = parent
        if i == len(diff_ids) - 1:
            for key in (
                "architecture",
                "config",
                "container",
                "container_config",
                "created",
                "docker_version",
                "os",
            ):
                layer[key] = parsed.get(key)
        chain = diff_id if chain is None else Digest.from_bytes(f"{chain} {diff_id}".encode())
        layer["layer_id"] = str(chain)
        layer_id = Digest.from_bytes(go_json(layer, sort_top_level=True)).hex
        del layer["layer_id"]
        layer["id"] = layer_id
        out.append((layer_id, go_json(layer, sort_top_level=True)))
        parent = layer_id
    return out
