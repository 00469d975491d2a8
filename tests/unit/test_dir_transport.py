"""The dir: transport: references, reading, atomic writing, and the on-disk format."""

from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path

import pytest

import imagetypes
from imagetypes import mediatypes as mt
from imagetypes.descriptor import BlobInfo, Descriptor
from imagetypes.digest import Digest, VerifyingReader
from imagetypes.errors import (
    BlobNotFoundError,
    DigestMismatchError,
    ImageError,
    InvalidReferenceError,
    LayoutError,
    ManifestNotFoundError,
    ManifestTooLargeError,
    SizeMismatchError,
    UnsupportedError,
)
from imagetypes.types import LayerCompression, TransportOptions
from imagetypes_transports.dir import (
    VERSION,
    DirImageDestination,
    DirImageSource,
    DirReference,
    DirTransport,
    NotAnImageDirectoryError,
    transport,
)
from tests.imagebuilder import BuiltImage, BuiltIndex, make_image, make_multiarch

VERSION_TEXT = b"Directory Transport Version: 1.1\n"


# -- helpers -------------------------------------------------------------------------------
def snapshot(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every entry under root (and root itself): relative path -> (mode, content or None)."""
    out: dict[str, tuple[int, bytes | None]] = {}
    if not os.path.lexists(root):
        return out
    out["."] = (os.lstat(root).st_mode, None)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            data = p.read_bytes() if p.is_file() and not p.is_symlink() else None
            out[str(p.relative_to(root))] = (st.st_mode, data)
    return out


def siblings(path: Path) -> list[str]:
    """Names beside ``path`` that belong to it (staging or set-aside directories)."""
    return sorted(n for n in os.listdir(path.parent) if n.startswith(f".{path.name}."))


def put_image_blobs(dest: DirImageDestination, image: BuiltImage) -> None:
    for digest, blob in image.blobs.items():
        desc = dest.put_blob(io.BytesIO(blob), BlobInfo("", digest, len(blob)))
        assert desc.digest == digest
        assert desc.size == len(blob)


def write_image(
    path: Path,
    item: BuiltImage | BuiltIndex,
    signatures: list[bytes] | None = None,
    instance_signatures: dict[Digest, list[bytes]] | None = None,
) -> None:
    """Write through the ImageDestination API only: blobs, instances, top manifest, commit."""
    with DirReference(path).open_destination() as dest:
        if isinstance(item, BuiltIndex):
            for img in item.images:
                put_image_blobs(dest, img)
                dest.put_manifest(img.manifest, img.media_type, img.digest)
        else:
            put_image_blobs(dest, item)
        dest.put_manifest(item.manifest, item.media_type)
        for instance, sigs in (instance_signatures or {}).items():
            dest.put_signatures(sigs, instance)
        if signatures:
            dest.put_signatures(signatures)
        dest.commit()


def expected_files(item: BuiltImage | BuiltIndex) -> dict[str, bytes]:
    """The files containers/image would write for ``item`` (without signatures)."""
    files = {"version": VERSION_TEXT, "manifest.json": item.manifest}
    images = item.images if isinstance(item, BuiltIndex) else [item]
    for img in images:
        files.update({d.hex: b for d, b in img.blobs.items()})
        if isinstance(item, BuiltIndex):
            files[f"{img.digest.hex}.manifest.json"] = img.manifest
    return files


def read_files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in root.iterdir()}


# -- references ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    ["./image", "/abs/path/img", "rel/dir/", "with:colon:s", "sp ace", ".", "../x/../y", "//z"],
)
def test_reference_round_trip(text: str) -> None:
    ref = imagetypes.parse_reference(f"dir:{text}")
    assert isinstance(ref, DirReference)
    assert ref.string_within_transport() == text
    assert str(ref) == f"dir:{text}"
    again = transport.parse_reference(ref.string_within_transport())
    assert again == ref
    assert hash(again) == hash(ref)
    assert imagetypes.parse_reference(str(ref)) == ref
    assert ref.docker_reference is None
    assert ref.transport is transport
    assert ref.path == Path(text)


def test_entry_point_gives_the_dir_transport() -> None:
    assert isinstance(imagetypes.get_transport("dir"), DirTransport)
    assert transport.name == "dir"


def test_reference_accepts_pathlike(tmp_path: Path) -> None:
    assert str(DirReference(tmp_path / "a")) == f"dir:{tmp_path / 'a'}"


@pytest.mark.parametrize("text", ["", "a\x00b"])
def test_invalid_references(text: str) -> None:
    with pytest.raises(InvalidReferenceError):
        transport.parse_reference(text)


def test_delete_is_unsupported(tmp_path: Path) -> None:
    write_image(tmp_path / "img", make_image(1))
    before = snapshot(tmp_path / "img")
    with pytest.raises(UnsupportedError, match="not implemented"):
        DirReference(tmp_path / "img").delete()
    assert snapshot(tmp_path / "img") == before


# -- writing and reading back --------------------------------------------------------------
@pytest.mark.parametrize("docker", [False, True])
def test_write_single_image_exact_files(tmp_path: Path, docker: bool) -> None:
    image = make_image(3, docker=docker)
    target = tmp_path / "img"
    write_image(target, image, signatures=[b"\xa3sig-one", b"\xa3sig-two"])
    want = expected_files(image)
    want["signature-1"] = b"\xa3sig-one"
    want["signature-2"] = b"\xa3sig-two"
    assert read_files(target) == want
    assert siblings(target) == []
    assert (target / "version").read_bytes() == VERSION == VERSION_TEXT
    # Files get the mode any file the user writes gets (not mkstemp's 0600).
    (tmp_path / "plain").write_bytes(b"")
    plain_mode = (tmp_path / "plain").stat().st_mode
    for name in want:
        assert (target / name).stat().st_mode == plain_mode


@pytest.mark.parametrize("docker", [False, True])
def test_read_back_single_image(tmp_path: Path, docker: bool) -> None:
    image = make_image(4, docker=docker)
    write_image(tmp_path / "img", image, signatures=[b"\xa3s"])
    with imagetypes.parse_reference(f"dir:{tmp_path / 'img'}").open_source() as src:
        assert isinstance(src, DirImageSource)
        caps = src.capabilities
        assert caps.ranged_reads
        assert caps.concurrent_blob_reads
        data, media_type = src.get_manifest()
        assert data == image.manifest
        assert media_type == image.media_type
        # The top manifest is also found by its own digest.
        assert src.get_manifest(image.digest) == (image.manifest, image.media_type)
        for digest, blob in image.blobs.items():
            desc = Descriptor("", digest, len(blob))
            with src.get_blob(desc) as r:
                assert r.read() == blob
            with src.get_blob_stream(desc, offset=10) as raw:
                assert raw.read() == blob[10:]
        assert src.get_signatures() == [b"\xa3s"]


@pytest.mark.parametrize("docker", [False, True])
def test_multiarch_round_trip(tmp_path: Path, docker: bool) -> None:
    index = make_multiarch(5, docker=docker)
    target = tmp_path / "multi"
    inst = index.images[1].digest
    write_image(target, index, signatures=[b"\xa3top"], instance_signatures={inst: [b"\xa3i"]})
    want = expected_files(index)
    want["signature-1"] = b"\xa3top"
    want[f"{inst.hex}.signature-1"] = b"\xa3i"
    assert read_files(target) == want
    with DirReference(target).open_source() as src:
        assert src.get_manifest() == (index.manifest, index.media_type)
        for img in index.images:
            assert src.get_manifest(img.digest) == (img.manifest, img.media_type)
        assert src.get_signatures(inst) == [b"\xa3i"]
        assert src.get_signatures(index.images[0].digest) == []
        assert src.get_signatures() == [b"\xa3top"]


def test_put_blob_with_unknown_digest_computes_it(tmp_path: Path) -> None:
    blob = b"some layer bytes" * 1000
    with DirReference(tmp_path / "d").open_destination() as dest:
        desc = dest.put_blob(io.BytesIO(blob), BlobInfo(mt.OCI_LAYER))
        assert desc == Descriptor(mt.OCI_LAYER, Digest.from_bytes(blob), len(blob))
        # An already-verifying stream is accepted too, and hashed once.
        other = b"other"
        desc2 = dest.put_blob(VerifyingReader(io.BytesIO(other)), BlobInfo())
        assert desc2.digest == Digest.from_bytes(other)
        dest.put_manifest(b"{}", "")
        dest.commit()
    assert (tmp_path / "d" / Digest.from_bytes(blob).hex).read_bytes() == blob


def test_sha512_blob_is_named_by_its_encoded_digest(tmp_path: Path) -> None:
    blob = b"sha512 content"
    digest = Digest.from_bytes(blob, "sha512")
    with DirReference(tmp_path / "d").open_destination() as dest:
        assert dest.put_blob(io.BytesIO(blob), BlobInfo("", digest, len(blob))).digest == digest
        dest.put_manifest(b"{}", "")
        dest.commit()
    assert (tmp_path / "d" / digest.hex).read_bytes() == blob
    src = DirReference(tmp_path / "d").open_source()
    with src, src.get_blob(Descriptor("", digest, len(blob))) as r:
        assert r.read() == blob


def test_try_reusing_blob_only_within_the_session(tmp_path: Path) -> None:
    image = make_image(6)
    write_image(tmp_path / "img", image)
    digest, blob = next(iter(image.blobs.items()))
    info = BlobInfo(mt.OCI_LAYER_GZIP, digest, len(blob))
    with DirReference(tmp_path / "img").open_destination() as dest:
        # The blob is in the old directory, but that is replaced at commit: no reuse.
        assert dest.try_reusing_blob(info) is None
        assert dest.try_reusing_blob(BlobInfo()) is None
        dest.put_blob(io.BytesIO(blob), info)
        assert dest.try_reusing_blob(info) == Descriptor(mt.OCI_LAYER_GZIP, digest, len(blob))


def test_concurrent_put_blob(tmp_path: Path) -> None:
    blobs = [bytes([i]) * (300_000 + i) for i in range(8)]
    errors: list[BaseException] = []
    with DirReference(tmp_path / "c").open_destination() as dest:
        assert dest.capabilities.concurrent_blob_writes

        def put(b: bytes) -> None:
            try:
                dest.put_blob(io.BytesIO(b), BlobInfo("", Digest.from_bytes(b), len(b)))
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=put, args=(b,)) for b in blobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        dest.put_manifest(b"{}", "")
        dest.commit()
    assert errors == []
    for b in blobs:
        assert (tmp_path / "c" / Digest.from_bytes(b).hex).read_bytes() == b
    assert sorted(os.listdir(tmp_path / "c")) == sorted(
        [Digest.from_bytes(b).hex for b in blobs] + ["manifest.json", "version"]
    )


def test_put_signatures_again_replaces_the_set(tmp_path: Path) -> None:
    with DirReference(tmp_path / "s").open_destination() as dest:
        dest.put_manifest(b"{}", "")
        dest.put_signatures([b"\xa3a", b"\xa3b", b"\xa3c"])
        dest.put_signatures([b"\xa3z"])
        dest.commit()
    names = sorted(os.listdir(tmp_path / "s"))
    assert names == ["manifest.json", "signature-1", "version"]
    assert (tmp_path / "s" / "signature-1").read_bytes() == b"\xa3z"


def test_capabilities_and_compression_options(tmp_path: Path) -> None:
    ref = DirReference(tmp_path / "x")
    with ref.open_destination() as dest:
        caps = dest.capabilities
        assert caps.manifest_types is None
        assert caps.supports_signatures
        assert caps.concurrent_blob_writes
        assert caps.layer_compression is LayerCompression.PRESERVE
        assert dest.reference is ref
    opts = TransportOptions(extra={"dir.compress": True})
    with ref.open_destination(opts) as dest:
        assert dest.capabilities.layer_compression is LayerCompression.COMPRESS
    opts = TransportOptions(extra={"dir.decompress": True})
    with ref.open_destination(opts) as dest:
        assert dest.capabilities.layer_compression is LayerCompression.DECOMPRESS
    with pytest.raises(UnsupportedError):
        ref.open_destination(TransportOptions(extra={"dir.compress": 1, "dir.decompress": 1}))
    assert not (tmp_path / "x").exists()
    assert siblings(tmp_path / "x") == []


# -- atomicity -----------------------------------------------------------------------------
def test_abort_leaves_new_path_absent_and_removes_created_parents(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "img"
    image = make_image(7)
    with DirReference(target).open_destination() as dest:
        put_image_blobs(dest, image)
        dest.put_manifest(image.manifest, image.media_type)
        dest.put_signatures([b"\xa3x"])
        assert not target.exists()  # nothing visible before commit
    assert not (tmp_path / "a").exists()
    assert os.listdir(tmp_path) == []


def test_abort_by_exception_leaves_existing_image_byte_identical(tmp_path: Path) -> None:
    target = tmp_path / "img"
    write_image(target, make_multiarch(8), signatures=[b"\xa3old"])
    before = snapshot(target)
    new = make_image(9)

    class Boom(Exception):
        pass

    def write_then_fail() -> None:
        with DirReference(target).open_destination() as dest:
            put_image_blobs(dest, new)
            dest.put_manifest(new.manifest, new.media_type)
            assert snapshot(target) == before
            raise Boom

    with pytest.raises(Boom):
        write_then_fail()
    assert snapshot(target) == before
    assert siblings(target) == []


def test_abort_leaves_existing_empty_directory_alone(tmp_path: Path) -> None:
    target = tmp_path / "empty"
    target.mkdir(mode=0o750)
    before = snapshot(target)
    with DirReference(target).open_destination() as dest:
        dest.put_manifest(b"{}", "")
    assert snapshot(target) == before
    assert siblings(target) == []


def test_overwrite_replaces_existing_dir_image_fully(tmp_path: Path) -> None:
    target = tmp_path / "img"
    old = make_multiarch(10)
    write_image(target, old, signatures=[b"\xa31", b"\xa32"])
    target.chmod(0o750)
    new = make_image(11, docker=True)
    write_image(target, new)
    assert read_files(target) == expected_files(new)  # no old blob, manifest or signature left
    assert target.stat().st_mode & 0o777 == 0o750  # the directory keeps its mode
    assert siblings(target) == []


def test_overwrite_accepts_an_empty_directory(tmp_path: Path) -> None:
    target = tmp_path / "img"
    target.mkdir()
    image = make_image(12)
    write_image(target, image)
    assert read_files(target) == expected_files(image)


def test_overwrite_through_a_symlink_keeps_the_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    write_image(real, make_image(13))
    link = tmp_path / "link"
    link.symlink_to(real)
    image = make_image(14)
    write_image(link, image)
    assert link.is_symlink()
    assert read_files(real) == expected_files(image)


@pytest.mark.parametrize(
    "content",
    [
        {"notes.txt": b"important"},
        {"manifest.json": b"{}"},  # looks similar, but has no version file
        {"version": b"something else\n"},
    ],
)
def test_refuses_non_empty_non_image_directory(tmp_path: Path, content: dict[str, bytes]) -> None:
    target = tmp_path / "docs"
    target.mkdir()
    for name, data in content.items():
        (target / name).write_bytes(data)
    before = snapshot(target)
    with pytest.raises(NotAnImageDirectoryError, match=r"refusing|version"):
        DirReference(target).open_destination()
    assert issubclass(NotAnImageDirectoryError, LayoutError)
    assert snapshot(target) == before
    assert siblings(target) == []


def test_refuses_a_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_bytes(b"data")
    with pytest.raises(NotAnImageDirectoryError, match="not a directory"):
        DirReference(target).open_destination()
    assert target.read_bytes() == b"data"
    assert siblings(target) == []


def test_refuses_at_commit_if_the_target_was_filled_meanwhile(tmp_path: Path) -> None:
    target = tmp_path / "img"
    with DirReference(target).open_destination() as dest:
        dest.put_manifest(b"{}", "")
        target.mkdir()
        (target / "notes.txt").write_bytes(b"mine")
        with pytest.raises(NotAnImageDirectoryError):
            dest.commit()
    assert read_files(target) == {"notes.txt": b"mine"}
    assert siblings(target) == []


def test_corrupted_stream_fails_and_nothing_is_committed(tmp_path: Path) -> None:
    target = tmp_path / "img"
    image = make_image(15)
    digest, blob = next(iter(image.blobs.items()))
    with DirReference(target).open_destination() as dest:
        corrupt = blob[:-1] + bytes([blob[-1] ^ 1])
        with pytest.raises(DigestMismatchError):
            dest.put_blob(io.BytesIO(corrupt), BlobInfo("", digest, len(blob)))
        with pytest.raises(SizeMismatchError):
            dest.put_blob(io.BytesIO(blob + b"x"), BlobInfo("", digest, len(blob)))
        assert dest.try_reusing_blob(BlobInfo("", digest, len(blob))) is None
        (staging,) = siblings(target)
        # Only the version file is staged: no partial or misnamed blob survives.
        assert os.listdir(tmp_path / staging) == ["version"]
    assert not target.exists()
    assert siblings(target) == []


def test_instance_manifest_must_match_its_digest(tmp_path: Path) -> None:
    image = make_image(16)
    with DirReference(tmp_path / "i").open_destination() as dest:
        with pytest.raises(DigestMismatchError):
            dest.put_manifest(image.manifest + b" ", image.media_type, image.digest)
        with pytest.raises(ManifestTooLargeError):
            dest.put_manifest(b" " * (4 * 1024 * 1024 + 1), mt.OCI_MANIFEST)


def test_commit_needs_a_manifest_and_ends_the_session(tmp_path: Path) -> None:
    with DirReference(tmp_path / "m").open_destination() as dest:
        with pytest.raises(LayoutError, match="manifest"):
            dest.commit()
        dest.put_manifest(b"{}", "")
        dest.commit()
        with pytest.raises(ImageError, match="committed"):
            dest.put_blob(io.BytesIO(b""), BlobInfo())
        with pytest.raises(ImageError):
            dest.commit()
    dest.close()  # idempotent, and must not touch the committed image
    assert read_files(tmp_path / "m") == {"manifest.json": b"{}", "version": VERSION_TEXT}
    with pytest.raises(ImageError, match="closed"):
        dest.put_manifest(b"{}", "")


def test_refuses_the_filesystem_root() -> None:
    with pytest.raises(LayoutError):
        DirReference("/").open_destination()


# -- reading errors ------------------------------------------------------------------------
def test_source_refuses_what_is_not_a_dir_image(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="does not exist"):
        DirReference(tmp_path / "missing").open_source()
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(LayoutError, match="not a directory"):
        DirReference(tmp_path / "file").open_source()
    (tmp_path / "empty").mkdir()
    with pytest.raises(LayoutError, match=r"manifest\.json"):
        DirReference(tmp_path / "empty").open_source()
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "version").write_bytes(b"Directory Transport Version: 2.0\n")
    (v2 / "manifest.json").write_bytes(b"{}")
    with pytest.raises(LayoutError, match=r"2\.0"):
        DirReference(v2).open_source()


def test_source_reads_a_directory_without_version_file(tmp_path: Path) -> None:
    # Directories from skopeo before 1.1 (and many hand-made ones) have no version file.
    image = make_image(17)
    root = tmp_path / "old"
    root.mkdir()
    for name, data in expected_files(image).items():
        if name != "version":
            (root / name).write_bytes(data)
    with DirReference(root).open_source() as src:
        assert src.get_manifest() == (image.manifest, image.media_type)


def test_source_errors(tmp_path: Path) -> None:
    index = make_multiarch(18)
    root = tmp_path / "img"
    write_image(root, index, signatures=[b"\xa31"])
    (root / "signature-3").write_bytes(b"\xa33")  # after a gap: not read
    tampered = index.images[0]
    (root / f"{tampered.digest.hex}.manifest.json").write_bytes(tampered.manifest + b"\n")
    with DirReference(root).open_source() as src:
        with pytest.raises(DigestMismatchError):
            src.get_manifest(tampered.digest)
        with pytest.raises(ManifestNotFoundError):
            src.get_manifest(Digest.from_bytes(b"nothing"))
        missing = Descriptor("", Digest.from_bytes(b"absent"), 6)
        with pytest.raises(BlobNotFoundError):
            src.get_blob_stream(missing)
        assert src.get_signatures() == [b"\xa31"]
        # A blob whose file was altered fails verification when read through get_blob.
        digest, blob = next(iter(index.images[1].blobs.items()))
        (root / digest.hex).write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
        desc = Descriptor("", digest, len(blob))
        with pytest.raises(DigestMismatchError), src.get_blob(desc) as r:
            r.read()


def test_source_bounds_the_manifest_size(tmp_path: Path) -> None:
    root = tmp_path / "big"
    root.mkdir()
    (root / "version").write_bytes(VERSION_TEXT)
    (root / "manifest.json").write_bytes(b" " * (4 * 1024 * 1024 + 1))
    with DirReference(root).open_source() as src, pytest.raises(ManifestTooLargeError):
        src.get_manifest()


def test_source_media_type_is_detected_from_bytes(tmp_path: Path) -> None:
    # An OCI manifest without a mediaType field is still recognised by its shape.
    image = make_image(19)
    obj = json.loads(image.manifest)
    del obj["mediaType"]
    raw = json.dumps(obj).encode()
    with DirReference(tmp_path / "n").open_destination() as dest:
        put_image_blobs(dest, image)
        dest.put_manifest(raw, mt.OCI_MANIFEST)
        dest.commit()
    with DirReference(tmp_path / "n").open_source() as src:
        assert src.get_manifest() == (raw, mt.OCI_MANIFEST)
