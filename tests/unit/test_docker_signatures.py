"""Signatures in the docker: transport: lookaside storage and sigstore attachments.

The registry is imagetypes' in-memory one, reached in-process; lookaside storage is a
temporary directory. tests/integration/test_docker_signatures.py does the same against the
real registry and skopeo.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from imagetypes import ImageError, TransportOptions, UnsupportedError
from imagetypes import mediatypes as mt
from imagetypes.digest import Digest
from imagetypes.testing import random_image
from imagetypes.testing.registry import InMemoryRegistry
from imagetypes.trust import (
    InvalidSignatureError,
    RegistriesConf,
    RegistriesD,
    SigstoreSignature,
    generate_sigstore_key,
    parse_signature_blob,
    sign_sigstore,
    verify_sigstore,
)
from imagetypes_transports.docker import (
    REGISTRIES_D_OPTION,
    DockerReference,
    SignatureStorage,
    sigstore_attachment_tag,
)
from imagetypes_transports.docker._signatures import read_lookaside, write_lookaside

HOST = "registry.test"
REPO = "sig/app"
# Stored simple signatures are OpenPGP messages; lookaside storage keeps them as opaque bytes.
SIMPLE_ONE = b"\xa3\x01simple signature one"
SIMPLE_TWO = b"\xa3\x01simple signature two"


def _registries_d(tmp_path: Path, text: str) -> Path:
    directory = tmp_path / "registries.d"
    directory.mkdir(exist_ok=True)
    (directory / "test.yaml").write_text(text)
    return directory


def _options(registry: InMemoryRegistry, registries_d: Path | RegistriesD) -> TransportOptions:
    return TransportOptions(
        tls_verify=False,
        extra={
            "docker.http_transport": registry.transport(),
            REGISTRIES_D_OPTION: registries_d,
            # No system registries.conf may send these pulls elsewhere.
            "docker.registries_conf": _EMPTY_CONF,
        },
    )


_EMPTY_CONF = RegistriesConf()


def _ref(tag: str = "v1") -> DockerReference:
    return DockerReference.parse(f"{HOST}/{REPO}:{tag}")


@pytest.fixture(scope="module")
def sigstore_key() -> tuple[bytes, bytes]:
    return generate_sigstore_key(b"secret")


def _sigstore_blob(manifest: bytes, key: tuple[bytes, bytes], ref: str) -> bytes:
    payload, annotations = sign_sigstore(manifest, ref, key[0], b"secret")
    return SigstoreSignature(payload, annotations).to_blob()


# -- configuration ---------------------------------------------------------------------------


def test_storage_reads_lookaside_and_writes_staging(tmp_path: Path) -> None:
    conf = RegistriesD.parse(
        "docker:\n"
        f"  {HOST}/sig:\n"
        "    lookaside: https://sigs.example.com/store\n"
        f"    lookaside-staging: file://{tmp_path}/staging\n"
    )
    name = _ref().docker_reference
    read = SignatureStorage.for_reading(name, conf)
    write = SignatureStorage.for_writing(name, conf)
    assert read.lookaside == f"https://sigs.example.com/store/{REPO}"
    assert write.lookaside == f"file://{tmp_path}/staging/{REPO}"
    assert write.can_write
    assert write.can_write_lookaside
    assert not read.can_write_lookaside
    assert not read.use_sigstore_attachments


def test_storage_without_configuration(tmp_path: Path) -> None:
    name = _ref().docker_reference
    write = SignatureStorage.for_writing(name, RegistriesD())
    assert write.lookaside is None
    assert not write.can_write
    # Reading falls back to containers/image's built-in directory, as skopeo does.
    read = SignatureStorage.for_reading(name, RegistriesD())
    assert read.lookaside is not None
    assert read.lookaside.startswith("file:///")
    assert read.lookaside.endswith(f"/sigstore/{REPO}")


def test_http_lookaside_cannot_be_written_but_attachments_can() -> None:
    conf = RegistriesD.parse(
        "default-docker:\n  lookaside: https://sigs.example.com\n  use-sigstore-attachments: true\n"
    )
    write = SignatureStorage.for_writing(_ref().docker_reference, conf)
    assert not write.can_write_lookaside
    assert write.can_write  # sigstore attachments


# -- lookaside files -------------------------------------------------------------------------


def test_lookaside_files_round_trip_and_replace(tmp_path: Path) -> None:
    base = (tmp_path / "store" / REPO).as_uri()
    digest = Digest.from_bytes(b"manifest")
    write_lookaside(base, digest, [b"one", b"two", b"three"])
    folder = tmp_path / "store" / f"{REPO}@sha256={digest.hex}"
    assert sorted(p.name for p in folder.iterdir()) == ["signature-1", "signature-2", "signature-3"]
    options = TransportOptions()
    assert read_lookaside(base, digest, options) == [b"one", b"two", b"three"]
    # Fewer signatures replace the old ones; the extra files go.
    write_lookaside(base, digest, [b"new"])
    assert sorted(p.name for p in folder.iterdir()) == ["signature-1"]
    assert read_lookaside(base, digest, options) == [b"new"]
    # Readers stop at the first missing file.
    (folder / "signature-3").write_bytes(b"orphan")
    assert read_lookaside(base, digest, options) == [b"new"]
    assert read_lookaside(base, Digest.from_bytes(b"other"), options) == []


def test_lookaside_refuses_writing_http() -> None:
    with pytest.raises(UnsupportedError, match="lookaside-staging"):
        write_lookaside("https://sigs.example.com/r", Digest.from_bytes(b"m"), [b"x"])


# -- through the transport -------------------------------------------------------------------


def test_destination_without_storage_refuses_signatures(tmp_path: Path) -> None:
    registry = InMemoryRegistry()
    options = _options(registry, tmp_path / "empty-registries.d")
    image = random_image(1)
    with _ref().open_destination(options) as dst:
        assert not dst.capabilities.supports_signatures
        image.write_into(dst)
        with pytest.raises(UnsupportedError, match=r"registries\.d"):
            dst.put_signatures([SIMPLE_ONE])
        dst.put_signatures([])  # nothing to store is fine
        dst.commit()


def test_lookaside_signatures_round_trip(tmp_path: Path) -> None:
    registry = InMemoryRegistry()
    staging = tmp_path / "staging"
    conf = _registries_d(tmp_path, f"default-docker:\n  lookaside-staging: {staging.as_uri()}\n")
    options = _options(registry, conf)
    image = random_image(2)
    with _ref().open_destination(options) as dst:
        assert dst.capabilities.supports_signatures
        image.write_into(dst)
        dst.put_signatures([SIMPLE_ONE, SIMPLE_TWO])
        # Nothing is written before commit.
        assert not staging.exists()
        dst.commit()
    folder = staging / f"{REPO}@sha256={image.digest.hex}"
    assert (folder / "signature-1").read_bytes() == SIMPLE_ONE
    assert (folder / "signature-2").read_bytes() == SIMPLE_TWO
    # A source reading that directory as its lookaside finds them.
    read_conf = RegistriesD.parse(f"default-docker:\n  lookaside: {staging.as_uri()}\n")
    with _ref().open_source(_options(registry, read_conf)) as src:
        assert src.get_signatures() == [SIMPLE_ONE, SIMPLE_TWO]
        assert src.get_signatures(Digest.from_bytes(b"no such manifest")) == []


def test_instance_signatures_use_the_instance_digest(tmp_path: Path) -> None:
    registry = InMemoryRegistry()
    staging = tmp_path / "staging"
    conf = RegistriesD.parse(f"default-docker:\n  lookaside: {staging.as_uri()}\n")
    image = random_image(3)
    instance = Digest.from_bytes(b"an instance manifest")
    with _ref().open_destination(_options(registry, conf)) as dst:
        image.write_into(dst)
        dst.put_signatures([SIMPLE_ONE], instance)
        dst.commit()
    assert (staging / f"{REPO}@sha256={instance.hex}" / "signature-1").read_bytes() == SIMPLE_ONE
    assert not (staging / f"{REPO}@sha256={image.digest.hex}").exists()
    with _ref().open_source(_options(registry, conf)) as src:
        assert src.get_signatures(instance) == [SIMPLE_ONE]
        assert src.get_signatures() == []


def test_put_signatures_before_the_manifest_is_refused(tmp_path: Path) -> None:
    registry = InMemoryRegistry()
    conf = RegistriesD.parse(f"default-docker:\n  lookaside: {(tmp_path / 's').as_uri()}\n")
    with (
        _ref().open_destination(_options(registry, conf)) as dst,
        pytest.raises(ImageError, match="before put_manifest"),
    ):
        dst.put_signatures([SIMPLE_ONE])


def test_sigstore_signature_needs_attachments_enabled(
    tmp_path: Path, sigstore_key: tuple[bytes, bytes]
) -> None:
    registry = InMemoryRegistry()
    conf = RegistriesD.parse(f"default-docker:\n  lookaside: {(tmp_path / 's').as_uri()}\n")
    image = random_image(4)
    blob = _sigstore_blob(image.manifest, sigstore_key, str(_ref().docker_reference))
    with _ref().open_destination(_options(registry, conf)) as dst:
        image.write_into(dst)
        with pytest.raises(UnsupportedError, match="use-sigstore-attachments"):
            dst.put_signatures([blob])
        with pytest.raises(InvalidSignatureError):
            # Malformed sigstore blobs fail at once, not after the manifest is pushed.
            dst.put_signatures([b"\x00sigstore-json\n{not json"])


def _attachment(registry: InMemoryRegistry, digest: Digest) -> tuple[dict[str, Any], Any]:
    stored = registry.manifest(REPO, sigstore_attachment_tag(digest))
    assert stored is not None
    data, media_type = stored
    assert media_type == mt.OCI_MANIFEST
    manifest = json.loads(data)
    config = registry.blob(REPO, manifest["config"]["digest"])
    assert config is not None
    return manifest, json.loads(config)


def test_sigstore_attachments_round_trip(tmp_path: Path, sigstore_key: tuple[bytes, bytes]) -> None:
    registry = InMemoryRegistry()
    conf = RegistriesD.parse("default-docker:\n  use-sigstore-attachments: true\n")
    options = _options(registry, conf)
    image = random_image(5)
    identity = str(_ref().docker_reference)
    first = _sigstore_blob(image.manifest, sigstore_key, identity)
    with _ref().open_destination(options) as dst:
        assert dst.capabilities.supports_signatures
        image.write_into(dst)
        dst.put_signatures([first])
        assert registry.manifest(REPO, sigstore_attachment_tag(image.digest)) is None
        dst.commit()
    assert sigstore_attachment_tag(image.digest) == f"sha256-{image.digest.hex}.sig"
    manifest, config = _attachment(registry, image.digest)
    sig = parse_signature_blob(first)
    assert isinstance(sig, SigstoreSignature)
    assert manifest["config"]["mediaType"] == mt.OCI_CONFIG
    [layer] = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    assert layer["digest"] == str(Digest.from_bytes(sig.payload))
    assert layer["annotations"] == dict(sig.annotations)
    assert registry.blob(REPO, layer["digest"]) == sig.payload
    assert config == {
        "architecture": "",
        "os": "",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
    }
    with _ref().open_source(options) as src:
        got = src.get_signatures()
    assert got == [first]
    verified = verify_sigstore(got[0], image.manifest, sigstore_key[1], identity=identity)
    assert verified.docker_manifest_digest == image.digest

    # Pushing again with the same signature and a new one extends the manifest, once each.
    second = _sigstore_blob(image.manifest, sigstore_key, identity)
    assert second != first  # a new timestamp (or an ECDSA nonce) makes a new signature
    with _ref("v2").open_destination(options) as dst:
        image.write_into(dst)
        dst.put_signatures([first, second])
        dst.commit()
    manifest, config = _attachment(registry, image.digest)
    assert [x["digest"] for x in manifest["layers"]] == config["rootfs"]["diff_ids"]
    assert len(manifest["layers"]) == 2
    with _ref("v2").open_source(options) as src:
        assert src.get_signatures() == [first, second]


def test_simple_and_sigstore_signatures_together(
    tmp_path: Path, sigstore_key: tuple[bytes, bytes]
) -> None:
    registry = InMemoryRegistry()
    staging = tmp_path / "staging"
    conf = RegistriesD.parse(
        f"default-docker:\n  lookaside: {staging.as_uri()}\n  use-sigstore-attachments: true\n"
    )
    options = _options(registry, conf)
    image = random_image(6)
    sigstore = _sigstore_blob(image.manifest, sigstore_key, str(_ref().docker_reference))
    with _ref().open_destination(options) as dst:
        image.write_into(dst)
        dst.put_signatures([SIMPLE_ONE, sigstore])
        dst.commit()
    folder = staging / f"{REPO}@sha256={image.digest.hex}"
    assert [p.name for p in folder.iterdir()] == ["signature-1"]
    with _ref().open_source(options) as src:
        # Lookaside first, then attachments (as containers/image orders them).
        assert src.get_signatures() == [SIMPLE_ONE, sigstore]
