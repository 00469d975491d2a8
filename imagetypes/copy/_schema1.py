"""Docker schema 1 in copies: the layers of schema 1 sources and the schema 2 config built from
their v1 history; and what the engine needs to write schema 1 (format ``v2s1``).

Follows containers/image (``manifest/docker_schema1.go``: ``fixManifestLayers``,
``ToSchema2Config``; ``internal/image/docker_schema1.go``: ``convertToManifestSchema2``), and
writes the config as Go's ``encoding/json`` does, so that an image converted here has the
config digest skopeo's conversion gives it.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from typing import Any

import attrs

from .. import mediatypes as mt
from ..descriptor import BlobInfo, Descriptor
from ..digest import Digest
from ..errors import (
    ManifestError,
    UnsupportedError,
    UnsupportedManifestTypeError,
)
from ..manifest import DockerSchema1Manifest, ImageManifest, Manifest
from ..manifest._gojson import compact_raw as _compact
from ..manifest._gojson import go_time, raw_members
from ..manifest._gojson import quote as _quote
from ..manifest._schema1_write import (
    GZIPPED_EMPTY_LAYER,
    GZIPPED_EMPTY_LAYER_DIGEST,
    schema1_from_image,
    signing_available,
)
from ..types import ImageDestination, ImageReference, PutBlobOptions
from ._progress import BlobDone, BlobSkipped, BlobStarted, _Emitter

__all__ = [
    "GZIPPED_EMPTY_LAYER",
    "Schema1Layer",
    "check_schema1_convertible",
    "embedded_name",
    "empty_layer_descriptor",
    "prefers_schema2",
    "put_empty_layer",
    "renamed_schema1",
    "schema1_layers",
    "schema1_target",
    "schema2_config",
    "to_schema1",
    "written_digest",
]

_V1_ID = re.compile(r"[a-f0-9]{64}")
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
        created = go_time(compat.get("created"), "a schema 1 history created time")
        item = [f'"created":{_quote(created)}']
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
    raw = raw_members(top_text, "the schema 1 image config")
    for key in _DROPPED:
        raw.pop(key, None)
    raw["rootfs"] = rootfs
    raw["history"] = "[" + ",".join(history) + "]"
    body = ",".join(f"{_quote(key)}:{_compact(raw[key])}" for key in sorted(raw))
    return ("{" + body + "}").encode("utf-8")


# -- writing schema 1 -------------------------------------------------------------------------


def schema1_target(accepted: tuple[str, ...] | None, destination: object) -> str:
    """The schema 1 media type to write to ``destination`` (which accepts ``accepted``;
    ``None``: any type): signed when ``cryptography`` is installed, as containers/image
    writes it, else unsigned where the destination takes it."""
    signed, unsigned = mt.DOCKER_SCHEMA1_SIGNED_MANIFEST, mt.DOCKER_SCHEMA1_MANIFEST
    can_sign = signing_available()
    if accepted is not None and signed not in accepted and unsigned not in accepted:
        raise UnsupportedManifestTypeError(
            f"{destination} does not accept Docker schema 1 manifests, the format asked for "
            f"(it accepts: {', '.join(accepted)})"
        )
    if can_sign and (accepted is None or signed in accepted):
        return signed
    if accepted is None or unsigned in accepted:
        return unsigned
    raise UnsupportedError(
        f"{destination} accepts only signed Docker schema 1 manifests, and signing them needs "
        "the 'cryptography' package: pip install 'imagetypes[sigstore]'"
    )


def prefers_schema2(accepted: tuple[str, ...] | None, media_type: str) -> str | None:
    """The Docker schema 2 type a destination lists before ``media_type`` (a schema 1 type),
    if it does: such a destination (a registry) stores schema 1 only when format ``v2s1``
    asks for it, so that a copy without a format converts instead of being refused."""
    if accepted is None or media_type not in accepted:
        return None
    rank = accepted.index(media_type)
    for candidate in (mt.DOCKER_MANIFEST, mt.OCI_MANIFEST):
        if candidate in accepted[:rank]:
            return candidate
    return None


def check_schema1_convertible(image: ImageManifest, config: bytes) -> None:
    """Raise what converting ``image`` to schema 1 would raise, before any blob moves."""
    schema1_from_image(image, config, signed=False)


def to_schema1(
    image: ImageManifest, config: bytes, destination: ImageReference, media_type: str
) -> DockerSchema1Manifest:
    """The schema 1 manifest of ``image`` (as stored at ``destination``), named as
    containers/image names it: the destination's repository path and tag, if it has a
    registry-style name, else empty."""
    name, tag = embedded_name(destination) or ("", "")
    return schema1_from_image(
        image, config, name=name, tag=tag, signed=media_type == mt.DOCKER_SCHEMA1_SIGNED_MANIFEST
    )


def embedded_name(destination: ImageReference) -> tuple[str, str] | None:
    """The repository path and tag a schema 1 manifest stored at ``destination`` must name
    (``None``: the destination has no registry-style name, and any will do)."""
    ref = destination.docker_reference
    if ref is None:
        return None
    return ref.path, ref.tag or ""


def renamed_schema1(
    manifest: DockerSchema1Manifest, destination: ImageReference
) -> DockerSchema1Manifest | None:
    """``manifest`` naming the repository and tag of ``destination``, or ``None`` when it
    already does (or the destination has no such name).

    A registry refuses a schema 1 manifest whose name is not a valid repository name, and
    containers/image rewrites the name for every destination with a registry-style name; the
    new manifest is signed again (with an ephemeral key) when the source was signed.
    """
    wanted = embedded_name(destination)
    if wanted is None or wanted == (manifest.name, manifest.tag):
        return None
    return DockerSchema1Manifest.build(
        name=wanted[0],
        tag=wanted[1],
        architecture=manifest.architecture,
        fs_layers=manifest.fs_layers,
        history=manifest.history,
        signed=manifest.media_type == mt.DOCKER_SCHEMA1_SIGNED_MANIFEST,
    )


def empty_layer_descriptor() -> Descriptor:
    """The descriptor of the gzipped empty layer schema 1 lists for empty history entries."""
    return Descriptor(mt.DOCKER_LAYER, GZIPPED_EMPTY_LAYER_DIGEST, len(GZIPPED_EMPTY_LAYER))


def put_empty_layer(
    manifest: DockerSchema1Manifest, destination: ImageDestination, emit: _Emitter
) -> bool | None:
    """Make sure ``destination`` holds the empty layer blob if ``manifest`` lists it.

    Returns ``None`` when the manifest does not list it, ``True`` when the destination already
    had it, ``False`` when it was written.
    """
    if GZIPPED_EMPTY_LAYER_DIGEST not in manifest.fs_layers:
        return None
    desc = empty_layer_descriptor()
    info = BlobInfo(desc.media_type, desc.digest, desc.size)
    if destination.try_reusing_blob(info) is not None:
        emit(BlobSkipped(desc, "present"))
        return True
    emit(BlobStarted(desc, "copy"))
    stored = destination.put_blob(io.BytesIO(GZIPPED_EMPTY_LAYER), info, PutBlobOptions())
    if stored.digest != desc.digest:
        raise UnsupportedError(
            f"{destination.reference} stored the empty layer {desc.digest} as {stored.digest}"
        )
    emit(BlobDone(desc, desc.size))
    return False


def written_digest(manifest: Manifest) -> Digest:
    """The digest a manifest is addressed by (for signed schema 1: its payload's)."""
    if isinstance(manifest, DockerSchema1Manifest):
        return manifest.canonical_digest
    return manifest.digest
