"""Writing Docker schema 1 manifests: the conversion from a schema 2 / OCI image, the libtrust
signature, and ``copy_image(format="v2s1")``.

The expected v1 IDs are computed here from containers/image's rule (sha256 of the layer's
digest hex, its parent's ID and, for the top layer, the config bytes, joined by spaces); the
signature is checked with ``cryptography`` directly, not with the code under test.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from imagetypes import (
    DigestMismatchError,
    ManifestError,
    Platform,
    TransportOptions,
    UnsupportedConversionError,
    UnsupportedError,
    UnsupportedManifestTypeError,
)
from imagetypes import mediatypes as mt
from imagetypes.cli import main
from imagetypes.copy import CopyOptions, copy_image
from imagetypes.copy._schema1 import schema1_layers, schema1_target, schema2_config, to_schema1
from imagetypes.digest import Digest
from imagetypes.image import manifest_digest
from imagetypes.manifest import DockerSchema1Manifest, ImageConfig, parse_manifest
from imagetypes.manifest._schema1_write import (
    GZIPPED_EMPTY_LAYER,
    GZIPPED_EMPTY_LAYER_DIGEST,
    schema1_from_image,
    schema1_history,
    sign_schema1,
    signing_available,
)
from imagetypes.plugins import parse_reference
from tests.imagebuilder import BuiltImage, make_image, make_multiarch, write_oci_layout

ec = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ec")
from cryptography.exceptions import InvalidSignature  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature  # noqa: E402

#: skopeo 1.9.3 (containers/image 5.23.1), ``copy --format v2s1`` of :func:`skopeo_image` to
#: ``dir:``: the digest of the signed payload, and the v1 IDs, top first.
SKOPEO_CANONICAL = "sha256:e327f95183988b42b42b5964663c6964a9a19e7bec0a1a65ccf4752ed6e161ec"
SKOPEO_IDS = (
    "e32ace9e68b00e5eb69c039f4e4753b451f7b1d884b4eacd031e53d98b13d11a",
    "05446c2b86dc8cbade21b72b7f72a3bf276ee2188a352b7c74c9c8cca3d07d43",
    "86c53903d1e8548f35d7caa6727db64aa48b143b0cb9fa014ae0fbca96e62832",
)


def with_history(
    img: BuiltImage, history: list[dict[str, Any]] | None, **config: Any
) -> BuiltImage:
    """``img`` with its config's history replaced (``None``: removed) and fields set."""
    obj = json.loads(img.config)
    if history is None:
        obj.pop("history", None)
    else:
        obj["history"] = history
    obj.update(config)
    data = json.dumps(obj, separators=(",", ":")).encode()
    manifest = json.loads(img.manifest)
    manifest["config"].update(digest=str(Digest.from_bytes(data)), size=len(data))
    blobs = {d: b for d, b in img.blobs.items() if d != img.config_digest}
    blobs[Digest.from_bytes(data)] = data
    raw = json.dumps(manifest, separators=(",", ":")).encode()
    return BuiltImage(raw, img.media_type, data, blobs, img.platform)


def skopeo_image() -> BuiltImage:
    """Two layers with an empty layer between them; HTML characters in the history."""
    img = make_image(2, (2000, 9000))
    history = json.loads(img.config)["history"]
    history.insert(
        1,
        {
            "created": "2024-01-02T03:04:06.500Z",
            "created_by": "ENV A=<b>",
            "empty_layer": True,
            "author": "me & you",
        },
    )
    return with_history(img, history)


def layer_digests(img: BuiltImage) -> list[Digest]:
    return [Digest.parse(x["digest"]) for x in json.loads(img.manifest)["layers"]]


def build(img: BuiltImage, **kwargs: Any) -> DockerSchema1Manifest:
    manifest = parse_manifest(img.manifest, img.media_type)
    return schema1_from_image(manifest, img.config, **kwargs)  # type: ignore[arg-type]


def compat(manifest: DockerSchema1Manifest) -> list[dict[str, Any]]:
    return [json.loads(h) for h in manifest.history]


def v1_id(*parts: bytes) -> str:
    return hashlib.sha256(b" ".join(parts)).hexdigest()


def unpadded(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- structure ----------------------------------------------------------------------------------


def test_layers_are_listed_top_first_with_the_empty_layer() -> None:
    img = skopeo_image()
    base, top = layer_digests(img)
    s1 = build(img)
    assert s1.fs_layers == (top, GZIPPED_EMPTY_LAYER_DIGEST, base)
    assert s1.architecture == "amd64"
    assert (s1.name, s1.tag) == ("", "")
    doc = s1.to_dict()
    assert list(doc) == [
        "name",
        "tag",
        "architecture",
        "fsLayers",
        "history",
        "schemaVersion",
        "signatures",
    ]
    assert doc["schemaVersion"] == 1
    entries = compat(s1)
    assert [e.get("throwaway", False) for e in entries] == [False, True, False]
    assert entries[1]["container_config"] == {"Cmd": ["ENV A=<b>"]}
    assert entries[1]["author"] == "me & you"
    assert entries[1]["created"] == "2024-01-02T03:04:06.5Z"
    assert entries[2]["container_config"] == {"Cmd": ["layer 0"]}
    assert "author" not in entries[2]
    assert "parent" not in entries[2]


def test_html_characters_are_escaped_as_go_does() -> None:
    s1 = build(skopeo_image())
    assert b"\\\\u003cb\\\\u003e" in s1.raw
    assert b"me \\\\u0026 you" in s1.raw
    assert b"<" not in s1.raw
    assert b"&" not in s1.raw


def test_the_top_entry_is_the_config_without_rootfs_and_history() -> None:
    img = skopeo_image()
    top = compat(build(img))[0]
    config = json.loads(img.config)
    assert "rootfs" not in top
    assert "history" not in top
    for key in ("architecture", "os", "config", "created"):
        assert top[key] == config[key]
    assert list(top) == sorted(top)
    assert "throwaway" not in top


def test_v1_ids_chain_as_containers_image_computes_them() -> None:
    img = skopeo_image()
    base, top = layer_digests(img)
    entries = compat(build(img))
    first = v1_id(base.hex.encode(), b"")
    second = v1_id(GZIPPED_EMPTY_LAYER_DIGEST.hex.encode(), first.encode())
    third = v1_id(top.hex.encode(), second.encode(), img.config)
    assert [e["id"] for e in entries] == [third, second, first]
    assert [e.get("parent") for e in entries] == [second, first, None]
    assert (third, second, first) == SKOPEO_IDS


def test_the_payload_is_the_one_skopeo_writes() -> None:
    s1 = build(skopeo_image())
    assert str(s1.canonical_digest) == SKOPEO_CANONICAL
    # A signature is random; what it signs is not.
    assert build(skopeo_image()).canonical_digest == s1.canonical_digest
    assert build(skopeo_image()).raw != s1.raw


def test_a_single_entry_image_and_an_empty_top_layer() -> None:
    img = make_image(5, (3000,))
    only = layer_digests(img)[0]
    entries = compat(build(img))
    assert entries[0]["id"] == v1_id(only.hex.encode(), b"", img.config)
    assert "parent" not in entries[0]
    history = json.loads(img.config)["history"] + [{"created_by": "CMD x", "empty_layer": True}]
    top_empty = with_history(img, history)
    s1 = build(top_empty)
    assert s1.fs_layers == (GZIPPED_EMPTY_LAYER_DIGEST, only)
    top, below = compat(s1)
    assert top["throwaway"] is True
    assert top["parent"] == below["id"]
    assert below["created"] == "2024-01-02T03:04:05Z"


def test_missing_created_is_go_zero_time() -> None:
    img = make_image(6, (100,))
    s1 = build(with_history(img, [{"created_by": "x"}, {"empty_layer": True}]))
    assert compat(s1)[1]["created"] == "0001-01-01T00:00:00Z"
    assert compat(s1)[0]["throwaway"] is True


def test_name_and_tag_come_from_the_destination_docker_reference() -> None:
    img = make_image(7)
    manifest = parse_manifest(img.manifest, img.media_type)
    ref = parse_reference("docker://localhost:5000/team/app:1.2")
    s1 = to_schema1(manifest, img.config, ref, mt.DOCKER_SCHEMA1_SIGNED_MANIFEST)  # type: ignore[arg-type]
    assert (s1.name, s1.tag) == ("team/app", "1.2")
    by_digest = parse_reference(f"docker://localhost:5000/team/app@{img.digest}")
    s1 = to_schema1(manifest, img.config, by_digest, mt.DOCKER_SCHEMA1_MANIFEST)  # type: ignore[arg-type]
    assert (s1.name, s1.tag) == ("team/app", "")
    assert s1.media_type == mt.DOCKER_SCHEMA1_MANIFEST


# -- our reader reads what we write --------------------------------------------------------------


def test_round_trip_through_the_schema1_reader() -> None:
    img = skopeo_image()
    s1 = DockerSchema1Manifest.parse(build(img).raw)
    assert s1.media_type == mt.DOCKER_SCHEMA1_SIGNED_MANIFEST
    assert s1.signed
    layers = schema1_layers(s1)
    assert [x.throwaway for x in layers] == [False, True, False]
    original = ImageConfig.parse(img.config)
    config = ImageConfig.parse(schema2_config(s1, original.diff_ids))
    assert config.diff_ids == original.diff_ids
    assert config.architecture == "amd64"
    assert [h.get("empty_layer", False) for h in config.to_dict()["history"]] == [
        False,
        True,
        False,
    ]


# -- signatures ----------------------------------------------------------------------------------


def verify_libtrust(raw: bytes) -> list[str]:
    """Check every signature of a pretty-signed manifest; return the key IDs."""
    doc = json.loads(raw)
    kids = []
    for sig in doc["signatures"]:
        protected = sig["protected"]
        header = json.loads(unpadded(protected))
        payload = raw[: header["formatLength"]] + unpadded(header["formatTail"])
        jwk = sig["header"]["jwk"]
        assert sig["header"]["alg"] == "ES256"
        assert jwk["kty"] == "EC"
        assert jwk["crv"] == "P-256"
        x = int.from_bytes(unpadded(jwk["x"]), "big")
        y = int.from_bytes(unpadded(jwk["y"]), "big")
        key = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
        rs = unpadded(sig["signature"])
        assert len(rs) == 64
        der_sig = encode_dss_signature(
            int.from_bytes(rs[:32], "big"), int.from_bytes(rs[32:], "big")
        )
        signed = protected.encode() + b"." + base64.urlsafe_b64encode(payload).rstrip(b"=")
        key.verify(der_sig, signed, ec.ECDSA(hashes.SHA256()))
        der = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
        assert jwk["kid"] == ":".join(b32[i : i + 4] for i in range(0, 48, 4))
        kids.append(jwk["kid"])
    return kids


def test_the_signature_verifies() -> None:
    s1 = build(skopeo_image())
    (kid,) = verify_libtrust(s1.raw)
    assert len(kid.split(":")) == 12
    header = json.loads(unpadded(s1.to_dict()["signatures"][0]["protected"]))
    assert list(header) == ["formatLength", "formatTail", "time"]
    assert unpadded(header["formatTail"]) == b"}"
    unsigned = build(skopeo_image(), signed=False)
    assert s1.raw[: header["formatLength"]] + b"}" == unsigned.raw


def test_a_tampered_manifest_fails_verification() -> None:
    raw = build(skopeo_image()).raw
    tampered = raw.replace(b'"architecture":"amd64"', b'"architecture":"arm64"', 1)
    assert tampered != raw
    with pytest.raises(InvalidSignature):
        verify_libtrust(tampered)


def test_a_given_key_signs_and_the_time_is_in_the_header() -> None:
    import datetime as dt

    key = ec.generate_private_key(ec.SECP256R1())
    payload = build(skopeo_image(), signed=False).raw
    when = dt.datetime(2030, 5, 6, 7, 8, 9, 123, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    raw = sign_schema1(payload, key=key, now=when)
    jwk = json.loads(raw)["signatures"][0]["header"]["jwk"]
    numbers = key.public_key().public_numbers()
    assert unpadded(jwk["x"]) == numbers.x.to_bytes(32, "big")
    header = json.loads(unpadded(json.loads(raw)["signatures"][0]["protected"]))
    assert header["time"] == "2030-05-06T05:08:09Z"
    assert header["formatLength"] == len(payload) - 1
    verify_libtrust(raw)
    with pytest.raises(UnsupportedError, match="P-256"):
        sign_schema1(payload, key=ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(ManifestError):
        sign_schema1(b'{\n  "a": 1\n}')


def test_canonical_digest_is_the_unsigned_payloads() -> None:
    signed = build(skopeo_image())
    unsigned = build(skopeo_image(), signed=False)
    assert unsigned.media_type == mt.DOCKER_SCHEMA1_MANIFEST
    assert not unsigned.signed
    assert unsigned.canonical_digest == unsigned.digest == Digest.from_bytes(unsigned.raw)
    assert signed.canonical_digest == unsigned.digest
    assert signed.digest != signed.canonical_digest
    assert manifest_digest(signed.raw) == signed.canonical_digest


def test_build_checks_its_arguments() -> None:
    with pytest.raises(ManifestError, match="fsLayers has 1"):
        DockerSchema1Manifest.build(
            name="", tag="", architecture="", fs_layers=[GZIPPED_EMPTY_LAYER_DIGEST], history=[]
        )
    with pytest.raises(TypeError, match="Digest"):
        DockerSchema1Manifest.build(
            name="",
            tag="",
            architecture="",
            fs_layers=["sha256:x"],  # type: ignore[list-item]
            history=["{}"],
        )


# -- what has no schema 1 form ------------------------------------------------------------------


def test_an_image_without_history_is_refused() -> None:
    with pytest.raises(UnsupportedConversionError, match="no history"):
        build(with_history(make_image(8), None))


def test_history_that_does_not_describe_the_layers_is_refused() -> None:
    img = make_image(9, (100, 200))
    short = with_history(img, [{"created_by": "only one"}])
    with pytest.raises(UnsupportedConversionError, match=r"2 layers .* 1 non-empty"):
        build(short)
    assert schema1_history(img.config, layer_digests(img))[2] == "amd64"
    with pytest.raises(UnsupportedConversionError):
        schema1_history(img.config, layer_digests(img)[:1])


def test_malformed_configs_are_manifest_errors() -> None:
    img = make_image(10, (100,))
    with pytest.raises(ManifestError, match="created_by"):
        schema1_history(with_history(img, [{"created_by": 5}]).config, layer_digests(img))
    with pytest.raises(ManifestError, match="RFC 3339"):
        schema1_history(with_history(img, [{"created": "yesterday"}]).config, layer_digests(img))
    with pytest.raises(ManifestError, match="JSON"):
        schema1_history(b"[1]", layer_digests(img))


def test_artifacts_zstd_and_foreign_layers_are_refused() -> None:
    img = make_image(11, (100,))
    obj = json.loads(img.manifest)
    obj["config"]["mediaType"] = "application/vnd.example.thing+json"
    artifact = parse_manifest(json.dumps(obj).encode(), mt.OCI_MANIFEST)
    with pytest.raises(UnsupportedConversionError, match="artifact"):
        schema1_from_image(artifact, img.config)  # type: ignore[arg-type]
    obj = json.loads(img.manifest)
    obj["layers"][0]["mediaType"] = mt.OCI_LAYER_ZSTD
    zstd = parse_manifest(json.dumps(obj).encode(), mt.OCI_MANIFEST)
    with pytest.raises(UnsupportedConversionError, match="zstd"):
        schema1_from_image(zstd, img.config)  # type: ignore[arg-type]
    obj = json.loads(img.manifest)
    obj["layers"][0]["urls"] = ["https://example.com/blob"]
    foreign = parse_manifest(json.dumps(obj).encode(), mt.OCI_MANIFEST)
    with pytest.raises(UnsupportedConversionError, match="URLs"):
        schema1_from_image(foreign, img.config)  # type: ignore[arg-type]
    with pytest.raises(DigestMismatchError):
        schema1_from_image(parse_manifest(img.manifest), img.config + b" ")  # type: ignore[arg-type]


# -- without cryptography -----------------------------------------------------------------------


@pytest.fixture
def no_cryptography(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``cryptography``'s asymmetric keys unimportable, as when the package is missing."""
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.asymmetric", None)
    assert not signing_available()


@pytest.mark.usefixtures("no_cryptography")
def test_without_cryptography_unsigned_is_written_where_accepted(tmp_path: Path) -> None:
    assert schema1_target(None, "dir:x") == mt.DOCKER_SCHEMA1_MANIFEST
    with pytest.raises(UnsupportedError, match=r"imagetypes\[sigstore\]"):
        schema1_target((mt.DOCKER_SCHEMA1_SIGNED_MANIFEST,), "somewhere")
    with pytest.raises(UnsupportedError, match="cryptography"):
        build(skopeo_image())
    src = write_oci_layout(tmp_path / "src", {"v1": skopeo_image()})
    result = copy_image(f"oci:{src}:v1", f"dir:{tmp_path / 'out'}", CopyOptions(format="v2s1"))
    assert result.media_type == mt.DOCKER_SCHEMA1_MANIFEST
    raw = (tmp_path / "out" / "manifest.json").read_bytes()
    assert b"signatures" not in raw
    assert str(Digest.from_bytes(raw)) == SKOPEO_CANONICAL == str(result.manifest_digest)


def test_schema1_target_prefers_signed_and_refuses_other_destinations() -> None:
    assert schema1_target(None, "d") == mt.DOCKER_SCHEMA1_SIGNED_MANIFEST
    assert schema1_target((mt.DOCKER_SCHEMA1_MANIFEST,), "d") == mt.DOCKER_SCHEMA1_MANIFEST
    with pytest.raises(UnsupportedManifestTypeError, match="schema 1"):
        schema1_target((mt.OCI_MANIFEST, mt.OCI_INDEX), "oci:x")


# -- copy_image and the CLI ------------------------------------------------------------------


def test_copy_writes_schema1_and_the_empty_layer(tmp_path: Path) -> None:
    img = skopeo_image()
    src = write_oci_layout(tmp_path / "src", {"v1": img})
    out = tmp_path / "out"
    result = copy_image(f"oci:{src}:v1", f"dir:{out}", CopyOptions(format="v2s1"))
    raw = (out / "manifest.json").read_bytes()
    assert result.manifest == raw
    assert result.media_type == mt.DOCKER_SCHEMA1_SIGNED_MANIFEST
    assert str(result.manifest_digest) == SKOPEO_CANONICAL
    assert result.converted
    verify_libtrust(raw)
    assert (out / GZIPPED_EMPTY_LAYER_DIGEST.hex).read_bytes() == GZIPPED_EMPTY_LAYER
    assert gzip.decompress(GZIPPED_EMPTY_LAYER) == bytes(1024)
    # The config is inlined in the history, not stored (as skopeo does).
    assert not (out / img.config_digest.hex).exists()
    stored = {p.name for p in out.iterdir()} - {"manifest.json", "version"}
    assert stored == {d.hex for d in layer_digests(img)} | {GZIPPED_EMPTY_LAYER_DIGEST.hex}
    assert result.blobs_copied == 3


def test_copy_back_from_our_schema1_gives_the_same_diff_ids(tmp_path: Path) -> None:
    img = skopeo_image()
    src = write_oci_layout(tmp_path / "src", {"v1": img})
    copy_image(f"oci:{src}:v1", f"dir:{tmp_path / 's1'}", CopyOptions(format="v2s1"))
    result = copy_image(f"dir:{tmp_path / 's1'}", f"dir:{tmp_path / 'v2'}")
    assert result.media_type == mt.DOCKER_SCHEMA1_SIGNED_MANIFEST  # dir: keeps schema 1
    back = copy_image(f"dir:{tmp_path / 's1'}", f"oci:{tmp_path / 'layout'}:x")
    manifest = parse_manifest(back.manifest)
    config_blob = tmp_path / "layout" / "blobs" / "sha256" / manifest.config.digest.hex  # type: ignore[attr-defined]
    assert (
        ImageConfig.parse(config_blob.read_bytes()).diff_ids
        == ImageConfig.parse(img.config).diff_ids
    )


def test_copy_refuses_destinations_without_schema1_and_writes_nothing(tmp_path: Path) -> None:
    src = write_oci_layout(tmp_path / "src", {"v1": make_image(12)})
    with pytest.raises(UnsupportedManifestTypeError, match="schema 1"):
        copy_image(f"oci:{src}:v1", f"oci:{tmp_path / 'dst'}:x", CopyOptions(format="v2s1"))
    assert not (tmp_path / "dst").exists()
    no_history = with_history(make_image(13), None)
    src2 = write_oci_layout(tmp_path / "src2", {"v1": no_history})
    with pytest.raises(UnsupportedConversionError, match="no history"):
        copy_image(f"oci:{src2}:v1", f"dir:{tmp_path / 'out'}", CopyOptions(format="v2s1"))
    assert not (tmp_path / "out").exists()


def test_copy_of_an_index_writes_the_system_instance_only(tmp_path: Path) -> None:
    index = make_multiarch(14)
    src = write_oci_layout(tmp_path / "src", {"multi": index})
    options = CopyOptions(format="v2s1", instances=("linux/arm64",))
    with pytest.raises(UnsupportedConversionError, match="no manifest lists"):
        copy_image(f"oci:{src}:multi", f"dir:{tmp_path / 'sub'}", options)
    result = copy_image(
        f"oci:{src}:multi",
        f"dir:{tmp_path / 'one'}",
        CopyOptions(
            format="v2s1", source_options=TransportOptions(platform=Platform.parse("linux/arm64"))
        ),
    )
    s1 = DockerSchema1Manifest.parse(result.manifest)
    assert s1.architecture == "arm64"


def test_copy_with_recompression_lists_the_written_layers(tmp_path: Path) -> None:
    img = make_image(15, (500, 700))
    src = write_oci_layout(tmp_path / "src", {"v1": img})
    out = tmp_path / "out"
    copy_image(f"oci:{src}:v1", f"dir:{out}", CopyOptions(format="v2s1", dest_decompress=True))
    s1 = DockerSchema1Manifest.parse((out / "manifest.json").read_bytes())
    diff_ids = ImageConfig.parse(img.config).diff_ids
    assert s1.fs_layers == tuple(reversed(diff_ids))
    for digest in s1.fs_layers:
        assert Digest.from_bytes((out / digest.hex).read_bytes()) == digest


def test_cli_copy_format_v2s1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_oci_layout(tmp_path / "src", {"v1": skopeo_image()})
    digestfile = tmp_path / "digest"
    argv = ["copy", "--format", "v2s1", "--digestfile", str(digestfile), f"oci:{src}:v1"]
    assert main([*argv, f"dir:{tmp_path / 'out'}"]) == 0
    assert digestfile.read_text() == SKOPEO_CANONICAL
    raw = (tmp_path / "out" / "manifest.json").read_bytes()
    assert DockerSchema1Manifest.parse(raw).canonical_digest == Digest.parse(SKOPEO_CANONICAL)
    assert "Traceback" not in capsys.readouterr().err
