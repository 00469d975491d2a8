"""Docker image manifests, schema 1 (signed and unsigned): parse, and build new ones."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, NoReturn

import attrs

from .. import mediatypes as mt
from ..descriptor import Descriptor
from ..digest import Digest
from ..errors import ImageError, ManifestError, UnsupportedError
from ._base import Manifest, read_schema_version, read_str, reject_keys
from ._json import json_type

__all__ = ["DockerSchema1Manifest"]


def _jose_b64decode(text: str, where: str) -> bytes:
    """Unpadded base64url, as libtrust writes it (whitespace and newlines ignored)."""
    text = text.replace("\n", "").replace(" ", "")
    if len(text) % 4 == 1:
        raise ManifestError(f"{where} is not valid base64url")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as e:
        raise ManifestError(f"{where} is not valid base64url: {e}") from e


def _signed_payload(raw: bytes, signatures: object) -> bytes:
    """The bytes a schema 1 signature covers: the document without its signature block.

    libtrust's "pretty signature" format records, in every signature's protected header, how
    many leading bytes of the document belong to the payload (``formatLength``) and the bytes
    that closed the payload before the signatures were spliced in (``formatTail``).
    Registries address a signed manifest by the digest of that payload.
    """
    if not isinstance(signatures, list):
        raise ManifestError(f"signatures must be an array, not {json_type(signatures)}")
    if not signatures:
        raise ManifestError("signatures is empty")
    length: int | None = None
    tail: bytes | None = None
    for i, sig in enumerate(signatures):
        where = f"signatures[{i}]"
        if not isinstance(sig, dict) or not isinstance(sig.get("protected"), str):
            raise ManifestError(f"{where}.protected must be a string")
        try:
            header: Any = json.loads(_jose_b64decode(sig["protected"], f"{where}.protected"))
        except ValueError as e:
            raise ManifestError(f"{where}.protected is not a JSON object: {e}") from e
        if not isinstance(header, dict):
            raise ManifestError(f"{where}.protected is not a JSON object")
        this_length = header.get("formatLength")
        # Go reads JSON numbers as float64 and truncates.
        if isinstance(this_length, float) and this_length.is_integer():
            this_length = int(this_length)
        if isinstance(this_length, bool) or not isinstance(this_length, int) or this_length < 0:
            raise ManifestError(f"{where}: the protected header lacks a valid formatLength")
        encoded_tail = header.get("formatTail")
        if not isinstance(encoded_tail, str):
            raise ManifestError(f"{where}: the protected header lacks formatTail")
        this_tail = _jose_b64decode(encoded_tail, f"{where} formatTail")
        if length is None:
            length, tail = this_length, this_tail
        elif length != this_length or tail != this_tail:
            raise ManifestError(f"{where}: conflicting formatLength or formatTail")
    assert length is not None
    assert tail is not None
    if length > len(raw):
        raise ManifestError(f"formatLength {length} exceeds the manifest's {len(raw)} bytes")
    return raw[:length] + tail


def _read_list(data: Mapping[str, Any], key: str, field: str) -> tuple[str, ...]:
    value = data.get(key)
    if not isinstance(value, list):
        raise ManifestError(f"{key} must be an array, not {json_type(value)}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get(field), str):
            raise ManifestError(f"{key}[{i}].{field} must be a string")
        out.append(item[field])
    return tuple(out)


def _parse_digest(text: str, where: str) -> Digest:
    try:
        return Digest.parse(text)
    except ImageError as e:
        raise ManifestError(f"{where}: {e}") from e


@attrs.frozen(repr=False)
class DockerSchema1Manifest(Manifest):
    """A Docker schema 1 manifest, signed (``+prettyjws``) or not.

    :attr:`digest` is the digest of :attr:`raw`; :attr:`canonical_digest` is the one a
    registry uses (for a signed manifest, that of the payload without the signatures).
    Parsed manifests cannot be modified; :meth:`build` makes new ones.
    """

    name: str = attrs.field(init=False, eq=False)
    tag: str = attrs.field(init=False, eq=False)
    architecture: str = attrs.field(init=False, eq=False)
    #: Layer digests, as in the manifest: the base layer is the *last* one.
    fs_layers: tuple[Digest, ...] = attrs.field(init=False, eq=False)
    #: The ``v1Compatibility`` strings, one per layer, in the order of :attr:`fs_layers`.
    history: tuple[str, ...] = attrs.field(init=False, eq=False)
    #: True when the document carries a ``signatures`` block.
    signed: bool = attrs.field(init=False, eq=False)
    #: The digest registries address this manifest by.
    canonical_digest: Digest = attrs.field(init=False, eq=False)

    MEDIA_TYPES: ClassVar[tuple[str, ...]] = (
        mt.DOCKER_SCHEMA1_SIGNED_MANIFEST,
        mt.DOCKER_SCHEMA1_MANIFEST,
    )

    def _default_media_type(self, data: Mapping[str, Any]) -> str:
        if "signatures" in data:
            return mt.DOCKER_SCHEMA1_SIGNED_MANIFEST
        return mt.DOCKER_SCHEMA1_MANIFEST

    def _declared_type_matches(self, declared: str, media_type: str) -> bool:
        return declared in self.MEDIA_TYPES

    def _load(self, data: Mapping[str, Any]) -> None:
        read_schema_version(data, 1)
        reject_keys(data, ("config", "layers", "manifests"), "schema 1 manifest")
        blob_sums = _read_list(data, "fsLayers", "blobSum")
        history = _read_list(data, "history", "v1Compatibility")
        if not blob_sums:
            raise ManifestError("fsLayers is empty")
        if len(blob_sums) != len(history):
            raise ManifestError(
                f"fsLayers has {len(blob_sums)} entries but history has {len(history)}"
            )
        fs_layers = tuple(
            _parse_digest(text, f"fsLayers[{i}].blobSum") for i, text in enumerate(blob_sums)
        )
        # As containers/image's manifest.Digest: the payload only when the bytes are signed.
        signed = "signatures" in data
        canonical = (
            Digest.from_bytes(_signed_payload(self.raw, data["signatures"]))
            if signed
            else self.digest
        )
        values: dict[str, object] = {
            "name": read_str(data, "name") or "",
            "tag": read_str(data, "tag") or "",
            "architecture": read_str(data, "architecture") or "",
            "fs_layers": fs_layers,
            "history": history,
            "signed": signed,
            "canonical_digest": canonical,
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)

    @classmethod
    def build(
        cls,
        *,
        name: str,
        tag: str,
        architecture: str,
        fs_layers: Iterable[Digest],
        history: Iterable[str],
        signed: bool = True,
    ) -> DockerSchema1Manifest:
        """A new manifest, serialised as containers/image writes it.

        ``fs_layers`` and ``history`` (the ``v1Compatibility`` strings) list the top layer
        first. ``signed`` signs it with an ephemeral ECDSA key as libtrust does (media type
        ``...manifest.v1+prettyjws``; needs the ``cryptography`` package, else
        :class:`~imagetypes.UnsupportedError`); otherwise the manifest is the unsigned
        ``...manifest.v1+json``.
        """
        from ._schema1_write import encode_schema1, sign_schema1

        layers = tuple(fs_layers)
        for i, layer in enumerate(layers):
            if not isinstance(layer, Digest):
                raise TypeError(f"fs_layers[{i}] must be a Digest, not {type(layer).__name__}")
        payload = encode_schema1(name, tag, architecture, layers, tuple(history))
        if signed:
            return cls(sign_schema1(payload), media_type=mt.DOCKER_SCHEMA1_SIGNED_MANIFEST)
        return cls(payload, media_type=mt.DOCKER_SCHEMA1_MANIFEST)

    def descriptor(self, **extra: Any) -> Descriptor:
        """A descriptor pointing at this manifest by its :attr:`canonical_digest`."""
        return Descriptor(self.media_type, self.canonical_digest, self.size, **extra)

    def evolve(self, **changes: Any) -> NoReturn:
        """Parsed schema 1 manifests cannot be modified (build a new one with :meth:`build`)."""
        raise UnsupportedError("Docker schema 1 manifests are read only")
