"""Writing Docker schema 1 manifests: built from a schema 2 image, signed as libtrust signs.

Follows containers/image (``internal/image/docker_schema2.go``: ``convertToManifestSchema1``,
``v1IDFromBlobDigestAndComponents``, ``v1ConfigFromConfigJSON``; ``manifest/docker_schema1.go``:
``Schema1FromComponents``, ``Serialize``; ``manifest/manifest.go``: ``AddDummyV2S1Signature``)
and docker/libtrust (``JSONSignature.Sign``, ``PrettySignature``). Everything but the signature
block is deterministic, so the digest registries address our manifest by (the payload's) is the
one skopeo's conversion of the same image gets.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import mediatypes as mt
from ..digest import Digest
from ..errors import ManifestError, UnsupportedConversionError, UnsupportedError
from ._base import ImageManifest
from ._gojson import compact_raw, go_time, quote, raw_members
from ._json import check_size, json_type

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

    from ._schema1 import DockerSchema1Manifest

__all__ = [
    "GZIPPED_EMPTY_LAYER",
    "GZIPPED_EMPTY_LAYER_DIGEST",
    "encode_schema1",
    "schema1_from_image",
    "schema1_history",
    "sign_schema1",
    "signing_available",
]

#: A gzip-compressed empty tar (1024 NUL bytes): the blob schema 1 lists for an empty layer.
#: The same bytes as docker/distribution and containers/image use (timestamp included), so
#: registries already hold it.
GZIPPED_EMPTY_LAYER = bytes.fromhex(
    "1f8b080000096e8800ff621805a360148c5800080000ffff2eafb5ef00040000"
)
#: The digest of :data:`GZIPPED_EMPTY_LAYER`.
GZIPPED_EMPTY_LAYER_DIGEST = Digest.parse(
    "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"
)

#: Layer media types whose blobs a schema 1 manifest can list (it has no media types: readers
#: detect gzip or plain tar from the content).
_SCHEMA1_LAYER_TYPES = frozenset(
    {mt.DOCKER_LAYER, mt.DOCKER_UNCOMPRESSED_LAYER, mt.OCI_LAYER, mt.OCI_LAYER_GZIP}
)
_IMAGE_CONFIG_TYPES = frozenset({mt.DOCKER_CONFIG, mt.OCI_CONFIG})

_EXTRA_HINT = "pip install 'imagetypes[sigstore]'"


def signing_available() -> bool:
    """True when the ``cryptography`` package (needed to sign schema 1 manifests) is installed."""
    try:
        from cryptography.hazmat.primitives.asymmetric import ec  # noqa: F401
    except ImportError:
        return False
    return True


# -- building -----------------------------------------------------------------------------------


def _history_entries(config: dict[str, Any]) -> list[dict[str, Any]]:
    history = config.get("history")
    if history is None:
        history = []
    if not isinstance(history, list):
        raise ManifestError(
            f"the image config's history must be an array, not {json_type(history)}"
        )
    for i, entry in enumerate(history):
        if not isinstance(entry, dict):
            raise ManifestError(f"the image config's history[{i}] must be an object")
        for key in ("created_by", "author", "comment"):
            value = entry.get(key)
            if value is not None and not isinstance(value, str):
                raise ManifestError(
                    f"the image config's history[{i}].{key} must be a string, "
                    f"not {json_type(value)}"
                )
        empty = entry.get("empty_layer")
        if empty is not None and not isinstance(empty, bool):
            raise ManifestError(
                f"the image config's history[{i}].empty_layer must be a boolean, "
                f"not {json_type(empty)}"
            )
    if not history:
        raise UnsupportedConversionError(
            "cannot convert an image whose config has no history to Docker schema 1 "
            "(schema 1 describes every layer by its history entry)"
        )
    return history


def _v1_id(blob: Digest, *others: str | bytes) -> str:
    """containers/image's ``v1IDFromBlobDigestAndComponents``: sha256 of the parts, space-joined."""
    parts = [blob.hex.encode()] + [p.encode("utf-8") if isinstance(p, str) else p for p in others]
    return hashlib.sha256(b" ".join(parts)).hexdigest()


def _v1_compatibility(v1_id: str, parent: str, entry: dict[str, Any], where: str) -> str:
    """The v1Compatibility of a layer below the top (Go's ``Schema1V1Compatibility``)."""
    members = [f'"id":{quote(v1_id)}']
    if parent:
        members.append(f'"parent":{quote(parent)}')
    if entry.get("comment"):
        members.append(f'"comment":{quote(entry["comment"])}')
    members.append(f'"created":{quote(go_time(entry.get("created"), where + ".created"))}')
    members.append(f'"container_config":{{"Cmd":[{quote(entry.get("created_by") or "")}]}}')
    if entry.get("author"):
        members.append(f'"author":{quote(entry["author"])}')
    if entry.get("empty_layer"):
        members.append('"throwaway":true')
    return "{" + ",".join(members) + "}"


def _top_v1_config(config_text: str, v1_id: str, parent: str, throwaway: bool) -> str:
    """The top layer's v1Compatibility: the image config without rootfs and history, plus the
    v1 fields (``v1ConfigFromConfigJSON``); keys sorted and values compacted, as Go writes a
    ``map[string]*json.RawMessage``."""
    raw = raw_members(config_text)
    raw.pop("rootfs", None)
    raw.pop("history", None)
    raw["id"] = quote(v1_id)
    if parent:
        raw["parent"] = quote(parent)
    if throwaway:
        raw["throwaway"] = "true"
    return "{" + ",".join(f"{quote(k)}:{compact_raw(raw[k])}" for k in sorted(raw)) + "}"


def schema1_history(
    config: bytes, layers: Sequence[Digest]
) -> tuple[tuple[Digest, ...], tuple[str, ...], str]:
    """The ``fsLayers``, ``history`` and ``architecture`` of the schema 1 form of an image.

    ``config`` is the image config blob, ``layers`` the digests of its layer blobs, base first.
    The result lists the top layer first, as schema 1 does; a history entry marked
    ``empty_layer`` gets :data:`GZIPPED_EMPTY_LAYER_DIGEST`, which the destination must then
    hold. The v1 IDs are chained as containers/image computes them.
    """
    check_size(config, "the image config")
    try:
        config_text = config.decode("utf-8")
        parsed = json.loads(config_text)
    except (UnicodeDecodeError, ValueError) as e:
        raise ManifestError(f"the image config is not valid JSON: {e}") from e
    if not isinstance(parsed, dict):
        raise ManifestError(f"the image config must be a JSON object, not {json_type(parsed)}")
    architecture = parsed.get("architecture")
    if architecture is None:
        architecture = ""
    if not isinstance(architecture, str):
        raise ManifestError(
            f"the image config's architecture must be a string, not {json_type(architecture)}"
        )
    history = _history_entries(parsed)
    non_empty = sum(1 for entry in history if not entry.get("empty_layer"))
    if non_empty != len(layers):
        raise UnsupportedConversionError(
            f"cannot convert to Docker schema 1: the image has {len(layers)} layers but its "
            f"config's history describes {non_empty} non-empty layers"
        )
    count = len(history)
    fs_layers: list[Digest] = [GZIPPED_EMPTY_LAYER_DIGEST] * count
    compat: list[str] = [""] * count
    remaining = iter(layers)
    parent = v1_id = ""
    for v2_index, entry in enumerate(history):
        parent = v1_id
        v1_index = count - 1 - v2_index
        blob = GZIPPED_EMPTY_LAYER_DIGEST if entry.get("empty_layer") else next(remaining)
        v1_id = _v1_id(blob, parent)
        fs_layers[v1_index] = blob
        compat[v1_index] = _v1_compatibility(v1_id, parent, entry, f"history[{v2_index}]")
    # The top entry carries the whole image config; its ID also covers the config's bytes.
    # ``parent`` is still the top entry's parent here.
    top_id = _v1_id(fs_layers[0], parent, config)
    compat[0] = _top_v1_config(config_text, top_id, parent, bool(history[-1].get("empty_layer")))
    return tuple(fs_layers), tuple(compat), architecture


def encode_schema1(
    name: str,
    tag: str,
    architecture: str,
    fs_layers: Sequence[Digest],
    history: Sequence[str],
) -> bytes:
    """An unsigned schema 1 manifest, serialised as Go's ``json.Marshal(Schema1)`` writes it."""
    if len(fs_layers) != len(history):
        raise ManifestError(f"fsLayers has {len(fs_layers)} entries but history has {len(history)}")
    if not fs_layers:
        raise ManifestError("a schema 1 manifest needs at least one layer")
    blob_sums = ",".join('{"blobSum":' + quote(str(d)) + "}" for d in fs_layers)
    entries = ",".join('{"v1Compatibility":' + quote(h) + "}" for h in history)
    text = (
        f'{{"name":{quote(name)},"tag":{quote(tag)},"architecture":{quote(architecture)},'
        f'"fsLayers":[{blob_sums}],"history":[{entries}],"schemaVersion":1}}'
    )
    return text.encode("utf-8")


# -- signing ------------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    """Unpadded base64url, as libtrust's ``joseBase64UrlEncode``."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _key_id(der: bytes) -> str:
    """libtrust's key ID: SHA-256 of the DER public key, 240 bits in base32 groups of four."""
    text = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii").rstrip("=")
    return ":".join(text[i : i + 4] for i in range(0, len(text), 4))


def sign_schema1(
    payload: bytes,
    *,
    key: EllipticCurvePrivateKey | None = None,
    now: _dt.datetime | None = None,
) -> bytes:
    """``payload`` (a compact JSON object) with a libtrust "pretty" JWS ``signatures`` block.

    As containers/image does, the key is an ephemeral ECDSA P-256 key unless ``key`` is given:
    the signature only makes the document acceptable to readers that insist on one. Needs the
    ``cryptography`` package (raises :class:`~imagetypes.UnsupportedError` naming the extra
    otherwise).
    """
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    except ImportError as e:
        raise UnsupportedError(
            "signing Docker schema 1 manifests needs the 'cryptography' package: " + _EXTRA_HINT
        ) from e
    stripped = payload.rstrip(b" \t\r\n")
    if not payload.startswith(b"{") or payload.startswith(b"{\n") or not stripped.endswith(b"}"):
        raise ManifestError("a schema 1 payload to sign must be a compact JSON object")
    body = stripped[:-1].rstrip(b" \t\r\n")
    if body.endswith(b","):
        raise ManifestError("a schema 1 payload to sign must be a valid JSON object")
    format_length = len(body)
    format_tail = payload[format_length:]

    if key is None:
        key = ec.generate_private_key(ec.SECP256R1())
    if not isinstance(key.curve, ec.SECP256R1):
        raise UnsupportedError(f"schema 1 signing keys must be P-256, not {key.curve.name}")
    when = (now or _dt.datetime.now(_dt.timezone.utc)).astimezone(_dt.timezone.utc)
    # Go's json.Marshal of map[string]interface{}: sorted keys.
    header = (
        f'{{"formatLength":{format_length},"formatTail":{quote(_b64url(format_tail))},'
        f'"time":{quote(when.strftime("%Y-%m-%dT%H:%M:%SZ"))}}}'
    )
    protected = _b64url(header.encode("ascii"))
    signed = f"{protected}.{_b64url(payload)}".encode("ascii")
    r, s = decode_dss_signature(key.sign(signed, ec.ECDSA(hashes.SHA256())))
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")

    public = key.public_key()
    numbers = public.public_numbers()
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # The JWK is a Go map (sorted keys); the signature a struct (declaration order).
    jwk = (
        f'{{"crv":"P-256","kid":{quote(_key_id(der))},"kty":"EC",'
        f'"x":{quote(_b64url(numbers.x.to_bytes(32, "big")))},'
        f'"y":{quote(_b64url(numbers.y.to_bytes(32, "big")))}}}'
    )
    block = (
        f'[{{"header":{{"jwk":{jwk},"alg":"ES256"}},"signature":{quote(_b64url(signature))},'
        f'"protected":{quote(protected)}}}]'
    )
    return payload[:format_length] + b',"signatures":' + block.encode("ascii") + b"}"


# -- from an image ------------------------------------------------------------------------------


def schema1_from_image(
    manifest: ImageManifest,
    config: bytes,
    *,
    name: str = "",
    tag: str = "",
    signed: bool = True,
) -> DockerSchema1Manifest:
    """The Docker schema 1 form of a schema 2 or OCI image (``config``: its config blob).

    ``name`` (a repository path such as ``library/busybox``) and ``tag`` are written into the
    manifest; containers/image takes them from the destination's registry-style name and
    leaves them empty for other destinations. ``signed`` gives
    ``application/vnd.docker.distribution.manifest.v1+prettyjws`` (signed with an ephemeral
    key, needs ``cryptography``), else the unsigned ``...manifest.v1+json``.

    Artifacts, zstd-compressed, encrypted and foreign layers have no schema 1 form
    (:class:`~imagetypes.UnsupportedConversionError`); so has an image whose history does not
    describe its layers. A history entry marked ``empty_layer`` lists
    :data:`GZIPPED_EMPTY_LAYER_DIGEST`, a blob the destination must hold.
    """
    from ._schema1 import DockerSchema1Manifest

    if manifest.config.media_type not in _IMAGE_CONFIG_TYPES:
        raise UnsupportedConversionError(
            f"cannot convert to Docker schema 1: the config is a {manifest.config.media_type}, "
            "not an image config (an artifact has no schema 1 form)"
        )
    manifest.config.digest.verify(config)
    for i, layer in enumerate(manifest.layers):
        if layer.media_type not in _SCHEMA1_LAYER_TYPES or layer.urls:
            raise UnsupportedConversionError(
                f"cannot convert to Docker schema 1: layer {i} ({layer.digest}) is a "
                f"{layer.media_type}{' with URLs' if layer.urls else ''}; schema 1 lists only "
                "gzip-compressed or uncompressed layers the registry holds"
            )
    fs_layers, history, architecture = schema1_history(
        config, [layer.digest for layer in manifest.layers]
    )
    return DockerSchema1Manifest.build(
        name=name,
        tag=tag,
        architecture=architecture,
        fs_layers=fs_layers,
        history=history,
        signed=signed,
    )
