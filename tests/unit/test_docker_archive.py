"""The docker-archive: transport: references, reading every layout, writing, multi-image."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
import threading
import tracemalloc
from pathlib import Path

import pytest

from imagetypes import mediatypes as mt
from imagetypes.copy import copy_image
from imagetypes.descriptor import BlobInfo, Descriptor
from imagetypes.digest import Digest
from imagetypes.errors import (
    ArchiveError,
    BlobNotFoundError,
    DigestMismatchError,
    ImageError,
    InvalidReferenceError,
    ManifestNotFoundError,
    UnsupportedError,
)
from imagetypes.manifest import parse_manifest
from imagetypes.plugins import parse_reference
from imagetypes.types import PutBlobOptions, TransportOptions
from imagetypes_transports.docker_archive import (
    ADDITIONAL_TAGS,
    DockerArchiveReference,
    DockerArchiveWriter,
    list_archive_images,
    save_docker_tar,
    transport,
)
from tests.imagebuilder import make_image, make_layer, write_oci_layout
from tests.unit.test_docker_archive_support import (
    DockerImage,
    make_docker_image,
    members,
    write_docker_archive,
)


def read_image(ref: str | DockerArchiveReference) -> tuple[bytes, list[Digest], list[bytes]]:
    """(config bytes, layer digests, layer bytes) read through the ImageSource API."""
    reference = transport.parse_reference(ref) if isinstance(ref, str) else ref
    with reference.open_source() as src:
        raw, media_type = src.get_manifest()
        assert media_type == mt.DOCKER_MANIFEST
        manifest = parse_manifest(raw, media_type)
        config = src.get_blob_bytes(manifest.config)  # type: ignore[attr-defined]
        layers = [src.get_blob(d).read() for d in manifest.layers]  # type: ignore[attr-defined]
        return config, [d.digest for d in manifest.layers], layers  # type: ignore[attr-defined]


def write_image(dest_ref: DockerArchiveReference, image: DockerImage) -> None:
    """Write through the ImageDestination API only."""
    with dest_ref.open_destination() as dest:
        assert dest.capabilities.manifest_types == (mt.DOCKER_MANIFEST,)
        assert dest.capabilities.concurrent_blob_writes is False
        layer_descs = []
        for layer in image.layers:
            d = Digest.from_bytes(layer)
            media_type = (
                mt.DOCKER_LAYER if layer[:2] == b"\x1f\x8b" else mt.DOCKER_UNCOMPRESSED_LAYER
            )
            stored = dest.put_blob(io.BytesIO(layer), BlobInfo(media_type, d, len(layer)))
            assert stored.digest == d
            layer_descs.append(Descriptor(media_type, d, len(layer)))
        cfg = Descriptor(mt.DOCKER_CONFIG, image.config_digest, len(image.config))
        dest.put_blob(
            io.BytesIO(image.config), BlobInfo.from_descriptor(cfg), PutBlobOptions(is_config=True)
        )
        from imagetypes.manifest import DockerManifest

        dest.put_manifest(DockerManifest.build(cfg, layer_descs).raw, mt.DOCKER_MANIFEST)
        dest.commit()


# -- references ----------------------------------------------------------------------------------
def test_reference_forms() -> None:
    ref = transport.parse_reference("a.tar")
    assert ref.path == "a.tar"
    assert ref.docker_reference is None
    assert ref.index is None
    ref = transport.parse_reference("a.tar:busybox")
    assert str(ref.docker_reference) == "docker.io/library/busybox:latest"
    assert str(ref) == "docker-archive:a.tar:docker.io/library/busybox:latest"
    assert transport.parse_reference(ref.string_within_transport()) == ref
    ref = transport.parse_reference("a.tar:quay.io/x/y:1.2")
    assert str(ref.docker_reference) == "quay.io/x/y:1.2"
    ref = transport.parse_reference("a.tar:@3")
    assert ref.index == 3
    assert str(ref) == "docker-archive:a.tar:@3"
    assert isinstance(parse_reference("docker-archive:a.tar"), DockerArchiveReference)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "needs a path"),
        ("a.tar:busybox@sha256:" + "a" * 64, "digest"),
        ("a.tar:@x", "source index"),
        ("a.tar:@-1", "source index"),
        ("a.tar:UPPER", "invalid"),
    ],
)
def test_invalid_references(text: str, message: str) -> None:
    with pytest.raises(InvalidReferenceError, match=message):
        transport.parse_reference(text)


def test_destination_refuses_an_index(tmp_path: Path) -> None:
    with pytest.raises(InvalidReferenceError, match="source index"):
        transport.parse_reference(f"{tmp_path}/x.tar:@0").open_destination()


# -- reading ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("style", ["skopeo", "legacy", "oci"])
def test_read_every_docker_save_layout(tmp_path: Path, style: str) -> None:
    image = make_docker_image(1, (1500, 700, 1500), tags=["example.com/app:1"])
    # The third layer repeats the first: stored once (legacy: linked), listed twice.
    image.layers[2], image.diff_ids[2] = image.layers[0], image.diff_ids[0]
    image.config = _config_for(image)
    path = write_docker_archive(tmp_path / "a.tar", [image], style=style)
    config, digests, layers = read_image(str(path))
    assert config == image.config  # byte for byte: the image ID survives
    assert digests == image.diff_ids  # uncompressed layers: digest = diff ID
    assert layers == image.layers


def _config_for(image: DockerImage) -> bytes:
    obj = json.loads(image.config)
    obj["rootfs"]["diff_ids"] = [str(d) for d in image.diff_ids]
    return json.dumps(obj).encode()


def test_read_gzip_layers(tmp_path: Path) -> None:
    image = make_docker_image(2, (3000, 100), compress=True)
    path = write_docker_archive(tmp_path / "gz.tar", [image])
    ref = transport.parse_reference(str(path))
    with ref.open_source() as src:
        raw, _ = src.get_manifest()
        manifest = parse_manifest(raw)
        layers = manifest.layers  # type: ignore[attr-defined]
        # The digest is the stored (gzip) file's; the media type says gzip.
        assert [d.digest for d in layers] == [Digest.from_bytes(b) for b in image.layers]
        assert {d.media_type for d in layers} == {mt.DOCKER_LAYER}
        assert [d.size for d in layers] == [len(b) for b in image.layers]
        assert src.get_blob(layers[0]).read() == image.layers[0]
        # Asked by diff ID (as skopeo describes such layers), the layer comes uncompressed.
        unpacked = gzip.decompress(image.layers[1])
        assert Digest.from_bytes(unpacked) == image.diff_ids[1]
        by_diff_id = Descriptor(mt.DOCKER_UNCOMPRESSED_LAYER, image.diff_ids[1], len(unpacked))
        assert src.get_blob(by_diff_id).read() == unpacked
        # Ranged reads of a stored layer.
        part = src.get_blob_stream(layers[0], offset=10).read()
        assert part == image.layers[0][10:]
        with pytest.raises(BlobNotFoundError):
            src.get_blob_stream(Descriptor("", Digest.from_bytes(b"nope"), 4))
    # Digests of compressed layers are computed once per archive file and cached.
    with ref.open_source() as src2:
        assert src2.get_manifest()[0] == raw


def test_read_compressed_archive_and_pipe(tmp_path: Path) -> None:
    image = make_docker_image(3)
    plain = write_docker_archive(tmp_path / "a.tar", [image])
    gz = tmp_path / "a.tar.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    assert read_image(str(gz))[0] == image.config
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    feeder = threading.Thread(target=lambda: fifo.write_bytes(plain.read_bytes()))
    feeder.start()
    opts = TransportOptions(tmpdir=str(tmp_path / "spool"))
    (tmp_path / "spool").mkdir()
    with transport.parse_reference(str(fifo)).open_source(opts) as src:
        feeder.join()
        assert len(os.listdir(tmp_path / "spool")) == 1  # spooled, as skopeo does
        raw, _ = src.get_manifest()
        assert parse_manifest(raw).config.digest == image.config_digest  # type: ignore[attr-defined]
    assert os.listdir(tmp_path / "spool") == []  # and removed on close


def test_multi_image_archive_selection(tmp_path: Path) -> None:
    one = make_docker_image(4, tags=["busybox:latest", "example.com/a:1"])
    two = make_docker_image(5, tags=["docker.io/library/alpine:3"])
    three = make_docker_image(6)
    path = write_docker_archive(tmp_path / "m.tar", [one, two, three])
    listed = list_archive_images(path)
    assert [i.index for i in listed] == [0, 1, 2]
    assert listed[0].repo_tags == ("busybox:latest", "example.com/a:1")
    assert [i.config_digest for i in listed] == [x.config_digest for x in (one, two, three)]
    assert listed[1].layers == 2
    assert read_image(listed[2].reference)[0] == three.config
    assert read_image(f"{path}:busybox")[0] == one.config  # normalized match
    assert read_image(f"{path}:docker.io/library/busybox:latest")[0] == one.config
    assert read_image(f"{path}:example.com/a:1")[0] == one.config
    assert read_image(f"{path}:alpine:3")[0] == two.config
    assert read_image(f"{path}:@1")[0] == two.config
    with pytest.raises(ManifestNotFoundError, match=r"holds 3 images.*@0 \(busybox:latest"):
        read_image(str(path))
    with pytest.raises(ManifestNotFoundError, match=r"no image tagged docker\.io/library/nope"):
        read_image(f"{path}:nope")
    with pytest.raises(ManifestNotFoundError, match="no image @7"):
        read_image(f"{path}:@7")


def test_source_reports_tags_and_position(tmp_path: Path) -> None:
    image = make_docker_image(7, tags=["x/y:z"])
    path = write_docker_archive(tmp_path / "a.tar", [make_docker_image(8), image])
    with transport.parse_reference(f"{path}:x/y:z").open_source() as src:
        assert src.repo_tags == ("x/y:z",)
        assert src.position == 1
        assert src.config_digest == image.config_digest
        assert src.capabilities.concurrent_blob_reads


# -- writing --------------------------------------------------------------------------------------
def test_write_through_destination_api(tmp_path: Path) -> None:
    image = make_docker_image(9, (2000, 3000), compress=True)
    out = tmp_path / "out.tar"
    write_image(transport.parse_reference(f"{out}:example.com/w:1"), image)
    names = [m.name for m in members(out)]
    plain = [gzip.decompress(b) for b in image.layers]
    assert f"{image.config_digest.hex}.json" in names
    assert [f"{d.hex}.tar" for d in image.diff_ids] == [n for n in names if n.endswith(".tar")][:2]
    assert names[-2:] == ["manifest.json", "repositories"]
    with tarfile.open(out) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        repos = json.load(tar.extractfile("repositories"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == ["example.com/w:1"]
    assert list(repos) == ["example.com/w"]
    config, digests, layers = read_image(str(out))
    assert config == image.config
    assert digests == image.diff_ids  # stored uncompressed, as skopeo and docker save do
    assert layers == plain
    assert [p.name for p in tmp_path.iterdir()] == ["out.tar"]  # no temporary file left


def test_copy_from_oci_layout_and_back(tmp_path: Path) -> None:
    built = make_image(11, (4000, 5000))
    write_oci_layout(tmp_path / "layout", {"v1": built})
    out = tmp_path / "c.tar"
    opts = TransportOptions(extra={ADDITIONAL_TAGS: ["example.com/extra:2"]})
    from imagetypes.copy import CopyOptions

    result = copy_image(
        f"oci:{tmp_path / 'layout'}:v1",
        f"docker-archive:{out}:example.com/main:1",
        CopyOptions(destination_options=opts),
    )
    assert result.media_type == mt.DOCKER_MANIFEST
    listed = list_archive_images(out)
    assert listed[0].repo_tags == ("example.com/main:1", "example.com/extra:2")
    assert listed[0].config_digest == built.config_digest
    config, digests, _ = read_image(str(out))
    assert config == built.config
    assert [str(d) for d in digests] == json.loads(built.config)["rootfs"]["diff_ids"]
    # And back to a directory (dir: keeps layers as they are).
    copy_image(f"docker-archive:{out}", f"dir:{tmp_path / 'd'}")
    assert (tmp_path / "d" / built.config_digest.hex).read_bytes() == built.config


def test_existing_file_is_not_overwritten_by_the_transport(tmp_path: Path) -> None:
    out = tmp_path / "x.tar"
    out.write_bytes(b"precious")
    with pytest.raises(ArchiveError, match="refusing to overwrite"):
        transport.parse_reference(str(out)).open_destination()
    assert out.read_bytes() == b"precious"
    # The Python writer replaces it (as open(path, "w") would), atomically at commit.
    with DockerArchiveWriter(out) as w:
        w.add(_layout(tmp_path, 12))
    assert list_archive_images(out)[0].index == 0


def _layout(tmp_path: Path, seed: int) -> str:
    built = make_image(seed, (3000,))
    write_oci_layout(tmp_path / f"layout{seed}", {"t": built})
    return f"oci:{tmp_path / f'layout{seed}'}:t"


def test_failed_copy_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "fail.tar"
    ref = transport.parse_reference(str(out))
    with ref.open_destination() as dest:
        layer, _ = make_layer(1, 5000)
        with pytest.raises(DigestMismatchError):
            dest.put_blob(io.BytesIO(layer), BlobInfo("", Digest.from_bytes(b"other"), None))
    assert list(tmp_path.iterdir()) == []
    with ref.open_destination() as dest:
        dest.put_blob(io.BytesIO(layer), BlobInfo("", None, None))
        with pytest.raises(ImageError, match="before the manifest"):
            dest.commit()
    assert list(tmp_path.iterdir()) == []


def test_commit_needs_blobs_the_manifest_names(tmp_path: Path) -> None:
    image = make_docker_image(13)
    from imagetypes.manifest import DockerManifest

    cfg = Descriptor(mt.DOCKER_CONFIG, image.config_digest, len(image.config))
    with transport.parse_reference(str(tmp_path / "x.tar")).open_destination() as dest:
        dest.put_blob(
            io.BytesIO(image.config), BlobInfo.from_descriptor(cfg), PutBlobOptions(is_config=True)
        )
        layer = Descriptor(mt.DOCKER_LAYER, image.diff_ids[0], 10)
        dest.put_manifest(DockerManifest.build(cfg, [layer]).raw, mt.DOCKER_MANIFEST)
        with pytest.raises(BlobNotFoundError, match="was not written"):
            dest.commit()
        with pytest.raises(UnsupportedError, match="single images"):
            dest.put_manifest(b"{}", "", Digest.from_bytes(b"x"))
    assert list(tmp_path.iterdir()) == []


def test_layers_must_match_the_config(tmp_path: Path) -> None:
    image = make_docker_image(14)
    image.layers.reverse()  # out of order: docker load would reject it
    with pytest.raises(ArchiveError, match="do not match the config"):
        write_image(transport.parse_reference(str(tmp_path / "x.tar")), image)
    assert list(tmp_path.iterdir()) == []


def test_multi_image_writer(tmp_path: Path) -> None:
    shared = make_docker_image(15)
    other = make_docker_image(16)
    out = tmp_path / "multi.tar"
    with DockerArchiveWriter(out) as writer:
        write_image(writer.reference(["example.com/a:1", "example.com/a:latest"]), shared)
        write_image(writer.reference(["example.com/b:1"]), other)
        write_image(writer.reference(["example.com/a:again"]), shared)  # same image: one item
        assert writer.images == 2
        assert not out.exists()  # nothing visible before commit
    listed = list_archive_images(out)
    assert [i.repo_tags for i in listed] == [
        ("example.com/a:1", "example.com/a:latest", "example.com/a:again"),
        ("example.com/b:1",),
    ]
    names = [m.name for m in members(out)]
    assert len(names) == len(set(names))  # every layer and config stored once
    assert read_image(f"{out}:example.com/a:again")[0] == shared.config
    assert read_image(f"{out}:@1")[0] == other.config


def test_writer_leaves_out_a_failed_image(tmp_path: Path) -> None:
    good, bad = make_docker_image(17), make_docker_image(18)
    out = tmp_path / "partial.tar"
    with DockerArchiveWriter(out) as writer:
        write_image(writer.reference(["example.com/good:1"]), good)
        size_after_good = writer.tar.position
        with writer.reference(["example.com/bad:1"]).open_destination() as dest:
            dest.put_blob(io.BytesIO(bad.layers[0]), BlobInfo("", None, None))
            # abandoned without commit
        assert writer.tar.position == size_after_good  # its member was taken back out
    assert [i.repo_tags for i in list_archive_images(out)] == [("example.com/good:1",)]
    assert f"{bad.diff_ids[0].hex}.tar" not in [m.name for m in members(out)]


def test_writer_add_and_save_docker_tar(tmp_path: Path) -> None:
    src = _layout(tmp_path, 19)
    out = tmp_path / "saved.tar"
    result = save_docker_tar(src, out, ["example.com/saved:1"])
    assert result.media_type == mt.DOCKER_MANIFEST
    assert list_archive_images(out)[0].repo_tags == ("example.com/saved:1",)
    buf = io.BytesIO(b"kept")
    buf.seek(4)
    save_docker_tar(src, buf)  # a file object: written from its position, left open
    assert buf.getvalue()[:4] == b"kept"
    buf.seek(4)
    with tarfile.open(fileobj=buf) as tar:
        item = json.load(tar.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
    assert item["RepoTags"] == []
    assert item["Config"] == f"{list_archive_images(out)[0].config_digest.hex}.json"


class _Pipe(io.RawIOBase):
    """A write-only, non-seekable stream (what stdout is when piped)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.data += b
        return len(b)


def test_write_to_a_pipe(tmp_path: Path) -> None:
    pipe = _Pipe()
    image = make_docker_image(20, (4000, 100), compress=True)
    with DockerArchiveWriter(pipe) as writer:  # type: ignore[arg-type]
        assert not writer.tar.seekable
        write_image(writer.reference(["example.com/p:1"]), image)
    out = tmp_path / "piped.tar"
    out.write_bytes(bytes(pipe.data))
    config, digests, _ = read_image(str(out))
    assert config == image.config
    assert digests == image.diff_ids


def test_write_to_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received = bytearray()
    reader = threading.Thread(target=lambda: received.extend(fifo.read_bytes()))
    reader.start()
    save_docker_tar(_layout(tmp_path, 21), str(fifo), ["example.com/f:1"])
    reader.join()
    (tmp_path / "got.tar").write_bytes(bytes(received))
    assert list_archive_images(tmp_path / "got.tar")[0].repo_tags == ("example.com/f:1",)


def test_big_layer_streams_with_bounded_memory(tmp_path: Path) -> None:
    size = 48 * 1024 * 1024
    layer, diff_id = make_layer(22, size, compress=True)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [str(diff_id)]},
        }
    ).encode()
    image = DockerImage(config, [layer], [diff_id])
    del layer
    tracemalloc.start()
    try:
        write_image(transport.parse_reference(str(tmp_path / "big.tar")), image)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The gzip layer itself (~48 MiB, in a BytesIO) is what the test holds; no second copy.
    assert peak < len(image.layers[0]) + 16 * 1024 * 1024, peak
    with transport.parse_reference(str(tmp_path / "big.tar")).open_source() as src:
        raw, _ = src.get_manifest()
        layer_desc = parse_manifest(raw).layers[0]  # type: ignore[attr-defined]
        assert layer_desc.digest == diff_id
        assert layer_desc.size > size
        assert src.get_blob(layer_desc).read_to_end() == diff_id


def test_transport_offers_save_for_the_core(tmp_path: Path) -> None:
    # Image.save_docker_tar (core) reaches this through get_transport("docker-archive").
    from imagetypes.plugins import get_transport

    out = tmp_path / "via-transport.tar"
    get_transport("docker-archive").save_docker_tar(  # type: ignore[attr-defined]
        _layout(tmp_path, 23), out, ["example.com/t:1"]
    )
    assert list_archive_images(out)[0].repo_tags == ("example.com/t:1",)
