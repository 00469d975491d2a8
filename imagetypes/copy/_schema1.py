"""Docker schema 1 sources: their layers, and the schema 2 config built from their v1 history.

Follows containers/image (``manifest/docker_schema1.go``: ``fixManifestLayers``,
``ToSchema2Config``; ``internal/image/docker_schema1.go``: ``convertToManifestSchema2``), and
writes the config as Go's ``encoding/json`` does, so that an image converted here has the
config digest skopeo's conversion gives it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import attrs

from ..digest import Digest
from ..errors import ManifestError
from ..manifest import DockerSchema1Manifest

__all__ = ["Schema1Layer", "schema1_layers", "schema2_config"]

_V1_ID = re.compile(r"[a-f0-9]{64}")
_TIME = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})")
_ZERO_TIME = "0001-01-01T00:00:00Z"
_SHORT = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_HTML = frozenset({"<", ">", "&", "\u2028", "\u2029"})
_DROPPED = ("id", "parent", "parent_id", "layer_id", "throwaway", "Size")


@attrs.frozen
class Schema1Layer:
    """One fsLayers entry, base layer first: the blob, and whether it is an empty layer."""

    digest: Digest
    throwaway: bool
    #: The parsed v1Compatibility entry.
    compat: dict[str, Any] = attrs.field(eq=False, repr=False)


def _compat(text: str, index: int) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise ManifestError(f"history[{index}].v1Compatibility is not JSON: {e}") from e
    if not isinstance(obj, dict):
        raise ManifestError(f"history[{index}].v1Compatibility is not a JSON object")
    return obj


def _fixed(manifest: DockerSchema1Manifest) -> list[tuple[Digest, str, dict[str, Any]]]:
    """fsLayers with history, top first, consecutive repeats removed (``fixManifestLayers``)."""
    entries = [
        (digest, text, _compat(text, i))
        for i, (digest, text) in enumerate(zip(manifest.fs_layers, manifest.history, strict=True))
    ]
    for i, (_, _, compat) in enumerate(entries):
        if not isinstance(compat.get("id"), str) or not _V1_ID.fullmatch(compat["id"]):
            raise ManifestError(f"history[{i}]: invalid v1 image ID {compat.get('id')!r}")
    if entries[-1][2].get("parent"):
        raise ManifestError("invalid parent ID in the base layer of the schema 1 image")
    seen: set[str] = set()
    last = ""
    for _, _, compat in entries:
        if compat["id"] != last and compat["id"] in seen:
            raise ManifestError(f"v1 image ID {compat['id']} appears more than once")
        last = compat["id"]
        seen.add(last)
    for i in range(len(entries) - 2, -1, -1):
        here, below = entries[i][2], entries[i + 1][2]
        if here["id"] == below["id"]:
            del entries[i]
        elif here.get("parent") != below["id"]:
            raise ManifestError(
                f"invalid parent ID: expected {below['id']}, got {here.get('parent')!r}"
            )
    return entries


def schema1_layers(manifest: DockerSchema1Manifest) -> list[Schema1Layer]:
    """Every layer of a schema 1 image, base first, empty ("throwaway") ones included."""
    return [
        Schema1Layer(digest, bool(compat.get("throwaway")), compat)
        for digest, _, compat in reversed(_fixed(manifest))
    ]


def schema2_config(manifest: DockerSchema1Manifest, diff_ids: Sequence[Digest]) -> bytes:
    """The schema 2 image config of a schema 1 image (``ToSchema2Config``).

    ``diff_ids`` are the digests of the uncompressed non-empty layers, base first. The top
    history entry's v1Compatibility becomes the config, without the v1 fields (id, parent,
    ...), with ``rootfs`` and a ``history`` rebuilt from every entry.
    """
    fixed = _fixed(manifest)
    top_text = fixed[0][1]
    history: list[str] = []
    for _, _, compat in reversed(fixed):
        item = [f'"created":{_quote(_go_time(compat.get("created"), "created"))}']
        config = compat.get("container_config")
        cmd = config.get("Cmd") if isinstance(config, dict) else None
        created_by = " ".join(str(c) for c in cmd) if isinstance(cmd, list) else ""
        for key, value in (
            ("author", compat.get("author")),
            ("created_by", created_by),
            ("comment", compat.get("comment")),
        ):
            if isinstance(value, str) and value:
                item.append(f"{_quote(key)}:{_quote(value)}")
        if compat.get("throwaway"):
            item.append('"empty_layer":true')
        history.append("{" + ",".join(item) + "}")
    rootfs = '{"type":"layers"'
    if diff_ids:
        rootfs += ',"diff_ids":[' + ",".join(_quote(str(d)) for d in diff_ids) + "]"
    rootfs += "}"
    raw = _raw_members(top_text)
    for key in _DROPPED:
        raw.pop(key, None)
    raw["rootfs"] = rootfs
    raw["history"] = "[" + ",".join(history) + "]"
    body = ",".join(f"{_quote(key)}:{_compact(raw[key])}" for key in sorted(raw))
    return ("{" + body + "}").encode("utf-8")


# -- Go's encoding/json ---------------------------------------------------------------------------


def _quote(text: str) -> str:
    """A JSON string literal escaped as Go writes it."""
    out = ['"']
    for ch in text:
        short = _SHORT.get(ch)
        if short is not None:
            out.append(short)
        elif ch < " " or ch in _HTML:
            out.append(f"\\u{ord(ch):04x}")
        elif "\ud800" <= ch <= "\udfff":
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _compact(raw: str) -> str:
    """A raw JSON value without insignificant whitespace, HTML characters escaped (as Go's
    ``json.Marshal`` writes a ``json.RawMessage``)."""
    out: list[str] = []
    in_string = escaped = False
    for ch in raw:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            elif ch in _HTML:
                out.append(f"\\u{ord(ch):04x}")
                continue
            out.append(ch)
        elif ch not in " \t\r\n":
            in_string = ch == '"'
            out.append(ch)
    return "".join(out)


def _raw_members(text: str) -> dict[str, str]:
    """The members of a JSON object as raw text (a later duplicate key wins, as in Go)."""
    decoder = json.JSONDecoder()
    out: dict[str, str] = {}

    def skip(pos: int) -> int:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        return pos

    try:
        pos = skip(0)
        if text[pos] != "{":
            raise ValueError("not an object")
        pos = skip(pos + 1)
        if text[pos] == "}":
            return out
        while True:
            key, pos = decoder.raw_decode(text, pos)
            if not isinstance(key, str):
                raise ValueError("an object key must be a string")
            pos = skip(pos)
            if text[pos] != ":":
                raise ValueError("expected ':'")
            pos = skip(pos + 1)
            _, end = decoder.raw_decode(text, pos)
            out[key] = text[pos:end]
            pos = skip(end)
            if text[pos] == "}":
                return out
            if text[pos] != ",":
                raise ValueError("expected ',' or '}'")
            pos = skip(pos + 1)
    except (ValueError, IndexError) as e:
        raise ManifestError(f"the schema 1 image config is not a JSON object: {e}") from e


def _go_time(value: object, where: str) -> str:
    """An RFC 3339 time as Go re-writes it (fraction without trailing zeros, ``Z`` for UTC)."""
    if value is None:
        return _ZERO_TIME
    match = _TIME.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ManifestError(f"the schema 1 history has an invalid {where} time {value!r}")
    base, fraction, zone = match.groups()
    fraction = (fraction or "")[:9].rstrip("0")
    if zone in ("Z", "z") or zone[1:] == "00:00":
        zone = "Z"
    return base + (f".{fraction}" if fraction else "") + zone
