"""The oci-archive: transport: reading a tarred OCI layout in place, streaming writes."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from imagetypes import mediatypes as mt
from imagetypes.copy import CopyOptions, copy_image
from imagetypes.descriptor import BlobInfo
from imagetypes.digest import Digest
from imagetypes.errors import (
    ArchiveError,
    DigestMismatchError,
    InvalidReferenceError,
    ManifestNotFoundError,
    UnsupportedManifestTypeError,
)
from imagetypes.manifest import parse_manifest
from imagetypes.plugins import parse_reference
from imagetypes.types import TransportOptions
from imagetypes_transports.oci_archive import (
    ACCEPT_UNCOMPRESSED_LAYERS,
    OCIArchiveReference,
    transport,
)
from tests.imagebuilder import BuiltImage, make_image, make_multiarch, write_oci_layout
from tests.unit.test_docker_archive_support import add_file, members, tar_directory, tree


def archive_of(tmp_path: Path, tagged: dict[str, object], name: str = "o.tar") -> Path:
    layout = write_oci_layout(tmp_path / f"{name}.layout", tagged)  # type: ignore[arg-type]
    return tar_directory(layout, tmp_path / name)


def check_image(ref: str, image: BuiltImage) -> None:
    with transport.parse_reference(ref).open_source() as src:
        raw, media_type = src.get_manifest()
        assert raw == image.manifest
        assert media_type == image.media_type
        manifest = parse_manifest(raw, media_type)
        for desc in (manifest.config, *manifest.layers):  # type: ignore[attr-defined]
            assert src.get_blob(desc).read() == image.blobs[desc.digest]


def test_references() -> None:
    ref = transport.parse_reference("a.tar:v1.0")
    assert ref.path == "a.tar"
    assert ref.ref_name == "v1.0"
    assert str(ref) == "oci-archive:a.tar:v1.0"
    assert transport.parse_reference("a.tar").ref_name is None
    assert isinstance(parse_reference("oci-archive:x.tar"), OCIArchiveReference)
    with pytest.raises(InvalidReferenceError):
        transport.parse_reference("")
    with pytest.raises(InvalidReferenceError):
        transport.parse_reference("a.tar:bad name!")


def test_read_by_ref_name_and_only_image(tmp_path: Path) -> None:
    one, two = make_image(1), make_image(2, (100,))
    path = archive_of(tmp_path, {"one": one, "two": two})
    check_image(f"{path}:one", one)
    check_image(f"{path}:two", two)
    with pytest.raises(ManifestNotFoundError, match=r"holds 2 images.*'one', 'two'"):
        transport.parse_reference(str(path)).open_source()
    with pytest.raises(ManifestNotFoundError, match="no image named 'three'"):
        transport.parse_reference(f"{path}:three").open_source()
    single = archive_of(tmp_path, {"only": one}, "single.tar")
    check_image(str(single), one)


def test_read_an_index_and_its_instances(tmp_path: Path) -> None:
    index = make_multiarch(3)
    path = archive_of(tmp_path, {"multi": index})
    with transport.parse_reference(f"{path}:multi").open_source() as src:
        raw, media_type = src.get_manifest()
        assert raw == index.manifest
        assert media_type == mt.OCI_INDEX
        for image in index.images:
            assert src.get_manifest(image.digest) == (image.manifest, mt.OCI_MANIFEST)
        with pytest.raises(ManifestNotFoundError):
            src.get_manifest(Digest.from_bytes(b"absent"))


def test_read_compressed_archive(tmp_path: Path) -> None:
    image = make_image(4)
    path = archive_of(tmp_path, {"t": image})
    gz = tmp_path / "o.tar.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    check_image(f"{gz}:t", image)


def test_corrupt_blob_and_bad_layout(tmp_path: Path) -> None:
    image = make_image(5)
    layout = write_oci_layout(tmp_path / "l", {"t": image})
    manifest_path = layout / "blobs" / "sha256" / image.digest.hex
    manifest_path.write_bytes(manifest_path.read_bytes().replace(b"2", b"3", 1))
    path = tar_directory(layout, tmp_path / "bad.tar")
    with (
        transport.parse_reference(f"{path}:t").open_source() as src,
        pytest.raises(DigestMismatchError),
    ):
        src.get_manifest()
    (layout / "oci-layout").write_bytes(b'{"imageLayoutVersion":"2.0.0"}')
    path = tar_directory(layout, tmp_path / "v2.tar")
    with pytest.raises(ArchiveError, match="unsupported imageLayoutVersion"):
        transport.parse_reference(f"{path}:t").open_source()
    (layout / "oci-layout").unlink()
    path = tar_directory(layout, tmp_path / "none.tar")
    with pytest.raises(ArchiveError, match="not an OCI layout archive"):
        transport.parse_reference(f"{path}:t").open_source()


def test_hostile_member_is_refused_and_nothing_written(tmp_path: Path) -> None:
    path = archive_of(tmp_path, {"t": make_image(6)})
    with tarfile.open(path, "a") as tar:
        add_file(tar, "../../escape", b"evil")
    before = tree(tmp_path)
    with pytest.raises(ArchiveError, match=r"'\.\.' component"):
        transport.parse_reference(f"{path}:t").open_source()
    assert tree(tmp_path) == before


def test_write_and_read_back(tmp_path: Path) -> None:
    image = make_image(7, (3000, 4000))
    write_oci_layout(tmp_path / "src", {"v1": image})
    out = tmp_path / "out.tar"
    result = copy_image(f"oci:{tmp_path / 'src'}:v1", f"oci-archive:{out}:v1")
    assert result.manifest_digest == image.digest
    check_image(f"{out}:v1", image)
    names = [m.name for m in members(out)]
    assert names[:2] == ["blobs", "blobs/sha256"]  # tarfile strips the trailing /
    assert names[-2:] == ["oci-layout", "index.json"]
    with tarfile.open(out) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
    assert index["manifests"][0]["annotations"] == {"org.opencontainers.image.ref.name": "v1"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tar", "src"]


def test_write_an_index(tmp_path: Path) -> None:
    index = make_multiarch(8)
    write_oci_layout(tmp_path / "src", {"m": index})
    out = tmp_path / "idx.tar"
    copy_image(f"oci:{tmp_path / 'src'}:m", f"oci-archive:{out}", CopyOptions(instances="all"))
    with transport.parse_reference(str(out)).open_source() as src:
        assert src.get_manifest()[0] == index.manifest


def test_destination_api_details(tmp_path: Path) -> None:
    image = make_image(9)
    out = tmp_path / "api.tar"
    ref = transport.parse_reference(f"{out}:x")
    with ref.open_destination() as dest:
        assert dest.capabilities.manifest_types == (mt.OCI_MANIFEST, mt.OCI_INDEX)
        assert dest.capabilities.concurrent_blob_writes is False
        for digest, blob in image.blobs.items():
            # Unknown digest and size: the header is written after the data.
            assert dest.put_blob(io.BytesIO(blob), BlobInfo()).digest == digest
        # The same blob again: verified, stored once.
        blob = next(iter(image.blobs.values()))
        dest.put_blob(io.BytesIO(blob), BlobInfo("", Digest.from_bytes(blob), len(blob)))
        with pytest.raises(DigestMismatchError):
            dest.put_blob(io.BytesIO(b"xyz"), BlobInfo("", Digest.from_bytes(b"abc"), 3))
        with pytest.raises(UnsupportedManifestTypeError):
            dest.put_manifest(b'{"schemaVersion":1,"fsLayers":[]}', "")
        dest.put_manifest(image.manifest, image.media_type)
        dest.commit()
    names = [m.name for m in members(out)]
    assert len(names) == len(set(names))
    check_image(f"{out}:x", image)
    opts = TransportOptions(extra={ACCEPT_UNCOMPRESSED_LAYERS: True})
    with transport.parse_reference(str(out)).open_destination(opts) as dest:
        assert dest.capabilities.layer_compression.value == "preserve"


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "fail.tar"
    with transport.parse_reference(str(out)).open_destination() as dest:
        dest.put_blob(io.BytesIO(b"data"), BlobInfo())
    assert list(tmp_path.iterdir()) == []


def test_write_to_standard_output(
    tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    image = make_image(10)
    write_oci_layout(tmp_path / "src", {"t": image})
    copy_image(f"oci:{tmp_path / 'src'}:t", "oci-archive:-:t")
    out = capfdbinary.readouterr().out
    (tmp_path / "got.tar").write_bytes(out)
    check_image(f"{tmp_path / 'got.tar'}:t", image)
