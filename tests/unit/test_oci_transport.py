"""The oci: transport: references, reading layouts, staged writing, tag replacement, deletion."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

import imagetypes
from imagetypes import mediatypes as mt
from imagetypes.descriptor import BlobInfo, Descriptor
from imagetypes.digest import CHUNK_SIZE, Digest
from imagetypes.errors import (
    BlobNotFoundError,
    DigestMismatchError,
    ImageError,
    InvalidReferenceError,
    LayoutError,
    ManifestNotFoundError,
    ManifestTooLargeError,
    SizeMismatchError,
    UnsupportedManifestTypeError,
)
from imagetypes.types import LayerCompression, TransportOptions
from imagetypes_transports.oci import (
    ACCEPT_UNCOMPRESSED_LAYERS,
    REF_NAME_ANNOTATION,
    OCIImageDestination,
    OCILayout,
    OCIReference,
    OCITransport,
    transport,
)
from tests.imagebuilder import (
    BuiltImage,
    BuiltIndex,
    make_image,
    make_multiarch,
    write_oci_layout,
)


# -- helpers -------------------------------------------------------------------------------
def snapshot(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every entry under root (root included): relative path -> (mode, content or None)."""
    out: dict[str, tuple[int, bytes | None]] = {}
    if not os.path.lexists(root):
        return out
    out["."] = (os.lstat(root).st_mode, None)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            data = p.read_bytes() if stat.S_ISREG(st.st_mode) else None
            out[str(p.relative_to(root))] = (st.st_mode, data)
    return out


def index_json(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((path / "index.json").read_bytes())
    return result


def names(path: Path) -> list[str | None]:
    return [
        (m.get("annotations") or {}).get(REF_NAME_ANNOTATION) for m in index_json(path)["manifests"]
    ]


def blob_files(path: Path) -> set[str]:
    folder = path / "blobs" / "sha256"
    return set(os.listdir(folder)) if folder.is_dir() else set()


def hidden_entries(path: Path) -> list[str]:
    """Staging leftovers: hidden names inside the layout and beside it."""
    inside = [n for n in os.listdir(path) if n.startswith(".")] if path.is_dir() else []
    beside = [n for n in os.listdir(path.parent) if n.startswith(f".{path.name}.")]
    return inside + beside


def write_image(
    ref: str | OCIReference,
    item: BuiltImage | BuiltIndex,
    options: TransportOptions | None = None,
) -> None:
    """Write ``item`` through the ImageDestination API: blobs, instance manifests, top, commit."""
    reference = ref if isinstance(ref, OCIReference) else transport.parse_reference(ref)
    with reference.open_destination(options) as dest:
        put_all(dest, item)
        dest.commit()


def put_all(dest: OCIImageDestination, item: BuiltImage | BuiltIndex) -> None:
    images = item.images if isinstance(item, BuiltIndex) else [item]
    for img in images:
        for digest, blob in img.blobs.items():
            got = dest.put_blob(io.BytesIO(blob), BlobInfo("", digest, len(blob)))
            assert got.digest == digest
            assert got.size == len(blob)
        if isinstance(item, BuiltIndex):
            dest.put_manifest(img.manifest, img.media_type, img.digest)
    dest.put_manifest(item.manifest, item.media_type)


def read_all(ref: str) -> dict[Digest, bytes]:
    """Every manifest and blob of the image at ``ref``, read (and verified) through our source."""
    out: dict[Digest, bytes] = {}
    with transport.parse_reference(ref).open_source() as src:
        top, media_type = src.get_manifest()
        out[Digest.from_bytes(top)] = top
        instances = [top]
        if mt.is_index(media_type):
            instances = []
            for entry in json.loads(top)["manifests"]:
                data, _ = src.get_manifest(Digest.parse(entry["digest"]))
                out[Digest.parse(entry["digest"])] = data
                instances.append(data)
        for manifest in instances:
            obj = json.loads(manifest)
            for d in [obj["config"], *obj["layers"]]:
                desc = Descriptor.from_dict(d)
                with src.get_blob(desc) as reader:
                    out[desc.digest] = reader.read()
    return out


@pytest.fixture
def single() -> BuiltImage:
    return make_image(1, (1024, 4096))


@pytest.fixture
def multi() -> BuiltIndex:
    return make_multiarch(2)


@pytest.fixture
def layout(tmp_path: Path, single: BuiltImage, multi: BuiltIndex) -> Path:
    return write_oci_layout(tmp_path / "layout", {"one": single, "multi": multi})


# -- references ----------------------------------------------------------------------------
class TestReferences:
    def test_transport_is_registered(self) -> None:
        assert imagetypes.get_transport("oci") is transport
        assert isinstance(transport, OCITransport)
        assert transport.name == "oci"

    @pytest.mark.parametrize(
        "ref_name", ["latest", "v1.0", "a/b/c", "x--y", "1.0:extra@sha256+z", "UPPER_case"]
    )
    def test_round_trip(self, tmp_path: Path, ref_name: str) -> None:
        text = f"oci:{tmp_path}/lay:{ref_name}"
        ref = imagetypes.parse_reference(text)
        assert isinstance(ref, OCIReference)
        assert ref.path == tmp_path / "lay"
        assert ref.ref_name == ref_name
        assert str(ref) == text
        assert ref.string_within_transport() == f"{tmp_path}/lay:{ref_name}"
        again = imagetypes.parse_reference(str(ref))
        assert again == ref
        assert hash(again) == hash(ref)
        assert ref.docker_reference is None

    def test_without_ref_name(self, tmp_path: Path) -> None:
        ref = transport.parse_reference(str(tmp_path))
        assert ref.ref_name is None
        assert str(ref) == f"oci:{tmp_path}"
        # A trailing ':' means "no name" in containers/image; it is the same reference.
        assert transport.parse_reference(f"{tmp_path}:") == ref

    def test_relative_path_is_made_absolute(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        ref = transport.parse_reference("sub/../lay:t")
        assert ref.path == tmp_path / "lay"
        assert str(ref) == f"oci:{tmp_path}/lay:t"
        monkeypatch.chdir("/")
        assert transport.parse_reference(ref.string_within_transport()) == ref

    def test_path_ends_at_first_colon(self, tmp_path: Path) -> None:
        ref = transport.parse_reference(f"{tmp_path}/a:b:c")
        assert ref.path == tmp_path / "a"
        assert ref.ref_name == "b:c"

    @pytest.mark.parametrize(
        "text", ["", ":tag", "/x:-bad", "/x:a//b", "/x:a b", "/x:a/", "/x:.a", "/x:a..", "/x:a/-b"]
    )
    def test_invalid(self, text: str) -> None:
        with pytest.raises(InvalidReferenceError):
            transport.parse_reference(text)

    def test_constructor_refuses_colon_in_path(self) -> None:
        with pytest.raises(InvalidReferenceError, match="contains ':'"):
            OCIReference("/a:b")
        with pytest.raises(InvalidReferenceError):
            OCIReference("/a", "not valid")
        assert OCIReference("/a", "").ref_name is None


# -- reading -------------------------------------------------------------------------------
class TestSource:
    def test_single_image(self, layout: Path, single: BuiltImage) -> None:
        with transport.parse_reference(f"{layout}:one").open_source() as src:
            caps = src.capabilities
            assert caps.ranged_reads
            assert caps.concurrent_blob_reads
            data, media_type = src.get_manifest()
            assert data == single.manifest
            assert media_type == mt.OCI_MANIFEST
            assert src.get_manifest(single.digest) == (single.manifest, mt.OCI_MANIFEST)
            config = Descriptor(mt.OCI_CONFIG, single.config_digest, len(single.config))
            assert src.get_blob_bytes(config) == single.config
        assert read_all(f"{layout}:one") == {single.digest: single.manifest, **single.blobs}

    def test_multi_arch(self, layout: Path, multi: BuiltIndex) -> None:
        with transport.parse_reference(f"{layout}:multi").open_source() as src:
            assert src.get_manifest() == (multi.manifest, mt.OCI_INDEX)
            for img in multi.images:
                assert src.get_manifest(img.digest) == (img.manifest, mt.OCI_MANIFEST)
        expected: dict[Digest, bytes] = {multi.digest: multi.manifest}
        for img in multi.images:
            expected[img.digest] = img.manifest
            expected.update(img.blobs)
        assert read_all(f"{layout}:multi") == expected

    def test_ranged_read(self, layout: Path, single: BuiltImage) -> None:
        digest, blob = max(single.blobs.items(), key=lambda kv: len(kv[1]))
        desc = Descriptor(mt.OCI_LAYER_GZIP, digest, len(blob))
        with transport.parse_reference(f"{layout}:one").open_source() as src:
            stream = src.get_blob_stream(desc, offset=100)
            assert isinstance(stream, io.BufferedIOBase)
            with stream:
                assert stream.read() == blob[100:]

    def test_only_image_without_name(self, tmp_path: Path, single: BuiltImage) -> None:
        path = write_oci_layout(tmp_path / "l", {"solo": single})
        with transport.parse_reference(str(path)).open_source() as src:
            assert src.get_manifest()[0] == single.manifest

    def test_several_images_need_a_name(self, layout: Path) -> None:
        with pytest.raises(ManifestNotFoundError) as info:
            transport.parse_reference(str(layout)).open_source()
        assert "'one'" in str(info.value)
        assert "'multi'" in str(info.value)

    def test_unknown_name_lists_available(self, layout: Path) -> None:
        with pytest.raises(ManifestNotFoundError, match=r"'nope'.*'one', 'multi'"):
            transport.parse_reference(f"{layout}:nope").open_source()

    def test_empty_layout(self, tmp_path: Path) -> None:
        path = write_oci_layout(tmp_path / "l", {})
        with pytest.raises(ManifestNotFoundError, match="holds no images"):
            transport.parse_reference(str(path)).open_source()

    def test_missing_blob(self, layout: Path) -> None:
        desc = Descriptor(mt.OCI_LAYER_GZIP, Digest.from_bytes(b"absent"), 6)
        with (
            transport.parse_reference(f"{layout}:one").open_source() as src,
            pytest.raises(BlobNotFoundError, match=str(desc.digest)),
        ):
            src.get_blob_stream(desc)

    def test_missing_instance_manifest(self, layout: Path) -> None:
        with (
            transport.parse_reference(f"{layout}:one").open_source() as src,
            pytest.raises(ManifestNotFoundError),
        ):
            src.get_manifest(Digest.from_bytes(b"nothing"))

    def test_corrupt_manifest(self, layout: Path, single: BuiltImage) -> None:
        blob = layout / "blobs" / "sha256" / single.digest.hex
        blob.write_bytes(single.manifest.replace(b"amd64", b"AMD64") + b" ")
        with (
            transport.parse_reference(f"{layout}:one").open_source() as src,
            pytest.raises(DigestMismatchError),
        ):
            src.get_manifest()

    def test_corrupt_blob_fails_verification(self, layout: Path, single: BuiltImage) -> None:
        digest, blob = next(iter(single.blobs.items()))
        (layout / "blobs" / "sha256" / digest.hex).write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
        desc = Descriptor(mt.OCI_LAYER_GZIP, digest, len(blob))
        with transport.parse_reference(f"{layout}:one").open_source() as src:
            reader = src.get_blob(desc)
            try:
                with pytest.raises(DigestMismatchError):
                    reader.read()
            finally:
                reader.close()

    def test_oversized_manifest(self, tmp_path: Path) -> None:
        big = json.dumps({"schemaVersion": 2, "pad": "x" * (4 * 1024 * 1024)}).encode()
        path = write_oci_layout(tmp_path / "l", {})
        digest = Digest.from_bytes(big)
        (path / "blobs" / "sha256").mkdir(parents=True)
        (path / "blobs" / "sha256" / digest.hex).write_bytes(big)
        entry = {"mediaType": mt.OCI_MANIFEST, "digest": str(digest), "size": len(big)}
        (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
        with (
            transport.parse_reference(str(path)).open_source() as src,
            pytest.raises(ManifestTooLargeError),
        ):
            src.get_manifest()

    def test_entry_without_media_type(self, tmp_path: Path, multi: BuiltIndex) -> None:
        path = write_oci_layout(tmp_path / "l", {"m": multi})
        index = index_json(path)
        del index["manifests"][0]["mediaType"]
        (path / "index.json").write_text(json.dumps(index))
        with transport.parse_reference(f"{path}:m").open_source() as src:
            assert src.get_manifest() == (multi.manifest, mt.OCI_INDEX)

    def test_not_a_layout(self, tmp_path: Path) -> None:
        with pytest.raises(LayoutError, match=str(tmp_path / "absent")):
            transport.parse_reference(f"{tmp_path}/absent:x").open_source()
        (tmp_path / "plain").mkdir()
        with pytest.raises(LayoutError, match="no oci-layout"):
            transport.parse_reference(f"{tmp_path}/plain:x").open_source()

    @pytest.mark.parametrize(
        ("file", "content", "message"),
        [
            ("index.json", b"{not json", "not valid JSON"),
            ("index.json", b"[]", "JSON object"),
            ("index.json", b'{"manifests": {}}', "must be a list"),
            ("index.json", b'{"manifests": [{"digest": "sha256:zz", "size": 1}]}', "entry 0"),
            ("oci-layout", b'{"imageLayoutVersion": "2.0.0"}', "unsupported imageLayoutVersion"),
            ("oci-layout", b"nope", "not valid JSON"),
        ],
    )
    def test_invalid_layout(self, layout: Path, file: str, content: bytes, message: str) -> None:
        (layout / file).write_bytes(content)
        with pytest.raises(LayoutError, match=message) as info:
            transport.parse_reference(f"{layout}:one").open_source()
        assert str(layout) in str(info.value)

    def test_layout_helper(self, layout: Path, single: BuiltImage) -> None:
        helper = OCILayout(layout)
        assert helper.ref_names() == ["one", "multi"]
        assert helper.resolve("one").digest == single.digest
        assert helper.reference("one") == transport.parse_reference(f"{layout}:one")
        assert helper.blob_size(single.digest) == len(single.manifest)


# -- writing -------------------------------------------------------------------------------
class TestDestination:
    def test_capabilities(self, tmp_path: Path) -> None:
        ref = transport.parse_reference(f"{tmp_path}/l:t")
        with ref.open_destination() as dest:
            caps = dest.capabilities
            assert caps.manifest_types == (mt.OCI_MANIFEST, mt.OCI_INDEX)
            assert caps.concurrent_blob_writes
            assert not caps.supports_signatures
            assert caps.layer_compression is LayerCompression.COMPRESS
        options = TransportOptions(extra={ACCEPT_UNCOMPRESSED_LAYERS: True})
        with ref.open_destination(options) as dest:
            assert dest.capabilities.layer_compression is LayerCompression.PRESERVE

    @pytest.mark.parametrize("kind", ["single", "multi"])
    def test_write_new_layout_and_read_back(
        self, tmp_path: Path, kind: str, single: BuiltImage, multi: BuiltIndex
    ) -> None:
        item: BuiltImage | BuiltIndex = single if kind == "single" else multi
        path = tmp_path / "deep" / "new"
        write_image(f"{path}:tag", item)
        assert (path / "oci-layout").read_bytes() == b'{"imageLayoutVersion":"1.0.0"}'
        index = index_json(path)
        assert index["schemaVersion"] == 2
        assert index["manifests"] == [
            {
                "mediaType": item.media_type,
                "digest": str(item.digest),
                "size": len(item.manifest),
                "annotations": {REF_NAME_ANNOTATION: "tag"},
            }
        ]
        with transport.parse_reference(f"{path}:tag").open_source() as src:
            assert src.get_manifest() == (item.manifest, item.media_type)
        expected: dict[Digest, bytes] = {item.digest: item.manifest}
        for img in item.images if isinstance(item, BuiltIndex) else [item]:
            expected[img.digest] = img.manifest
            expected.update(img.blobs)
        assert read_all(f"{path}:tag") == expected
        # Exactly the blobs needed, readable by everyone, and no staging left over.
        assert blob_files(path) == {d.hex for d in expected}
        for name in blob_files(path):
            assert stat.S_IMODE(os.stat(path / "blobs" / "sha256" / name).st_mode) == 0o644
        assert stat.S_IMODE(os.stat(path).st_mode) & 0o755 == 0o755
        assert hidden_entries(path) == []

    def test_write_into_existing_layout(
        self, layout: Path, single: BuiltImage, multi: BuiltIndex
    ) -> None:
        other = make_image(7)
        write_image(f"{layout}:other", other)
        assert names(layout) == ["one", "multi", "other"]
        assert read_all(f"{layout}:other") == {other.digest: other.manifest, **other.blobs}
        assert read_all(f"{layout}:one")[single.digest] == single.manifest
        assert hidden_entries(layout) == []

    def test_write_into_empty_directory(self, tmp_path: Path, single: BuiltImage) -> None:
        path = tmp_path / "empty"
        path.mkdir()
        write_image(f"{path}:t", single)
        assert (path / "oci-layout").is_file()
        assert read_all(f"{path}:t")[single.digest] == single.manifest
        assert hidden_entries(path) == []

    def test_try_reusing_blob(self, layout: Path, single: BuiltImage) -> None:
        digest, blob = next(iter(single.blobs.items()))
        ref = transport.parse_reference(f"{layout}:again")
        with ref.open_destination() as dest:
            hit = dest.try_reusing_blob(BlobInfo(mt.OCI_LAYER_GZIP, digest, len(blob)))
            assert hit == Descriptor(mt.OCI_LAYER_GZIP, digest, len(blob))
            assert dest.try_reusing_blob(BlobInfo("", digest)) is not None
            assert dest.try_reusing_blob(BlobInfo("", digest, len(blob) + 1)) is None
            absent = Digest.from_bytes(b"not there")
            assert dest.try_reusing_blob(BlobInfo("", absent, 9)) is None
            assert dest.try_reusing_blob(BlobInfo("", None, 9)) is None
            # A blob put in this session is reusable before commit.
            dest.put_blob(io.BytesIO(b"not there"), BlobInfo())
            assert dest.try_reusing_blob(BlobInfo("", absent, 9)) == Descriptor("", absent, 9)

    def test_reuse_everything_then_commit(self, layout: Path, single: BuiltImage) -> None:
        with transport.parse_reference(f"{layout}:alias").open_destination() as dest:
            for digest, blob in single.blobs.items():
                assert dest.try_reusing_blob(BlobInfo("", digest, len(blob))) is not None
            dest.put_manifest(single.manifest, single.media_type)
            dest.commit()
        assert read_all(f"{layout}:alias") == read_all(f"{layout}:one")

    def test_reused_blob_deleted_before_commit(self, layout: Path, single: BuiltImage) -> None:
        digest, blob = next(iter(single.blobs.items()))
        with transport.parse_reference(f"{layout}:alias").open_destination() as dest:
            assert dest.try_reusing_blob(BlobInfo("", digest, len(blob))) is not None
            dest.put_manifest(single.manifest, single.media_type)
            (layout / "blobs" / "sha256" / digest.hex).unlink()
            with pytest.raises(BlobNotFoundError, match="removed"):
                dest.commit()
        assert "alias" not in names(layout)

    def test_close_without_commit_new_path(self, tmp_path: Path, multi: BuiltIndex) -> None:
        before = snapshot(tmp_path)
        path = tmp_path / "a" / "b" / "new"
        with transport.parse_reference(f"{path}:t").open_destination() as dest:
            put_all(dest, multi)
            assert not path.exists()  # nothing visible before commit
        assert not path.exists()
        assert not (tmp_path / "a").exists()
        assert snapshot(tmp_path) == before

    def test_close_without_commit_existing_layout(self, layout: Path, single: BuiltImage) -> None:
        before = snapshot(layout)
        before_blobs = blob_files(layout)
        other = make_multiarch(9)
        with transport.parse_reference(f"{layout}:one").open_destination() as dest:
            put_all(dest, other)
            # Nothing is visible before commit: same tag, same blobs.
            with transport.parse_reference(f"{layout}:one").open_source() as src:
                assert src.get_manifest()[0] == single.manifest
            assert blob_files(layout) == before_blobs
        assert snapshot(layout) == before

    def test_exception_inside_context_discards(self, layout: Path) -> None:
        before = snapshot(layout)

        def failing_copy() -> None:
            with transport.parse_reference(f"{layout}:x").open_destination() as dest:
                put_all(dest, make_image(3))
                raise RuntimeError("copy failed")

        with pytest.raises(RuntimeError, match="copy failed"):
            failing_copy()
        assert snapshot(layout) == before

    @pytest.mark.parametrize("existing", [True, False])
    def test_corrupt_stream_leaves_nothing(
        self, tmp_path: Path, single: BuiltImage, existing: bool
    ) -> None:
        path = tmp_path / "l"
        if existing:
            write_oci_layout(path, {"one": single})
        before = snapshot(tmp_path)
        blob = b"x" * (3 * CHUNK_SIZE + 5)
        good = Digest.from_bytes(blob)
        corrupted = blob[:-1] + b"y"
        with transport.parse_reference(f"{path}:t").open_destination() as dest:
            with pytest.raises(DigestMismatchError):
                dest.put_blob(io.BytesIO(corrupted), BlobInfo("", good, len(blob)))
            with pytest.raises(SizeMismatchError):
                dest.put_blob(io.BytesIO(blob + b"!"), BlobInfo("", good, len(blob)))
            assert dest.try_reusing_blob(BlobInfo("", good, len(blob))) is None
            # No temporary or staged file survives the failures.
            for staged in hidden_entries(path):
                root = (path if existing else path.parent) / staged
                assert [f for _, _, fs in os.walk(root) for f in fs] == []
        assert snapshot(tmp_path) == before

    def test_replace_tag_keeps_other_tags(
        self, layout: Path, single: BuiltImage, multi: BuiltIndex
    ) -> None:
        index = index_json(layout)
        index["annotations"] = {"org.example.keep": "yes"}
        index["x-unknown"] = {"nested": [1, 2]}
        index["manifests"][1]["x-entry-field"] = True
        (layout / "index.json").write_text(json.dumps(index))
        new = make_image(5)
        write_image(f"{layout}:one", new)
        after = index_json(layout)
        assert names(layout) == ["multi", "one"]
        assert after["annotations"] == {"org.example.keep": "yes"}
        assert after["x-unknown"] == {"nested": [1, 2]}
        assert after["manifests"][0] == index["manifests"][1]  # untouched, unknown field too
        assert read_all(f"{layout}:one")[new.digest] == new.manifest
        assert read_all(f"{layout}:multi")[multi.digest] == multi.manifest

    def test_unnamed_entries(self, tmp_path: Path, single: BuiltImage) -> None:
        path = tmp_path / "l"
        write_image(str(path), single)
        write_image(str(path), single)  # the same image again: no duplicate entry
        assert names(path) == [None]
        other = make_image(4)
        write_image(str(path), other)  # another image without a name: appended
        assert names(path) == [None, None]
        write_image(f"{path}:named", single)  # naming it takes over the unnamed entry
        assert names(path) == ["named", None]
        assert [m["digest"] for m in index_json(path)["manifests"]] == [
            str(single.digest),
            str(other.digest),
        ]

    def test_rejects_docker_manifests(self, tmp_path: Path) -> None:
        docker = make_image(1, docker=True)
        with transport.parse_reference(f"{tmp_path}/l:t").open_destination() as dest:
            with pytest.raises(UnsupportedManifestTypeError):
                dest.put_manifest(docker.manifest, docker.media_type)
            with pytest.raises(UnsupportedManifestTypeError):
                dest.put_manifest(docker.manifest, "")

    def test_put_manifest_checks(self, tmp_path: Path, multi: BuiltIndex) -> None:
        img = multi.images[0]
        with transport.parse_reference(f"{tmp_path}/l:t").open_destination() as dest:
            with pytest.raises(DigestMismatchError):
                dest.put_manifest(img.manifest, img.media_type, multi.images[1].digest)
            with pytest.raises(ImageError, match="given as"):
                dest.put_manifest(multi.manifest, mt.OCI_MANIFEST)
            with pytest.raises(ImageError, match="put_manifest"):
                dest.commit()
        assert not (tmp_path / "l").exists()

    def test_closed_after_commit(self, tmp_path: Path, single: BuiltImage) -> None:
        with transport.parse_reference(f"{tmp_path}/l:t").open_destination() as dest:
            put_all(dest, single)
            dest.commit()
            with pytest.raises(ImageError, match="closed"):
                dest.put_blob(io.BytesIO(b"late"), BlobInfo())
            with pytest.raises(ImageError, match="closed"):
                dest.commit()
        assert read_all(f"{tmp_path}/l:t")[single.digest] == single.manifest

    def test_layout_created_while_writing(self, tmp_path: Path, single: BuiltImage) -> None:
        path = tmp_path / "l"
        with transport.parse_reference(f"{path}:mine").open_destination() as dest:
            put_all(dest, single)
            other = make_image(8)
            write_oci_layout(path, {"theirs": other})  # someone else made it meanwhile
            dest.commit()
        assert names(path) == ["theirs", "mine"]
        assert read_all(f"{path}:mine")[single.digest] == single.manifest
        assert read_all(f"{path}:theirs")[other.digest] == other.manifest
        assert hidden_entries(path) == []

    def test_refuses_a_file(self, tmp_path: Path) -> None:
        (tmp_path / "f").write_bytes(b"")
        with pytest.raises(LayoutError, match="not a directory"):
            transport.parse_reference(f"{tmp_path}/f:t").open_destination()

    @pytest.mark.parametrize(
        ("file", "content"),
        [("index.json", b"{"), ("oci-layout", b'{"imageLayoutVersion":"9.0.0"}')],
    )
    def test_refuses_a_broken_layout(self, layout: Path, file: str, content: bytes) -> None:
        (layout / file).write_bytes(content)
        before = snapshot(layout)
        with pytest.raises(LayoutError, match=str(layout)):
            transport.parse_reference(f"{layout}:t").open_destination()
        assert snapshot(layout) == before

    def test_large_blob_streams_in_bounded_memory(self, tmp_path: Path) -> None:
        total = 48 * CHUNK_SIZE

        class Zeros:
            def __init__(self) -> None:
                self.left = total
                self.largest = 0

            def read(self, size: int = -1, /) -> bytes:
                self.largest = max(self.largest, size)
                n = min(self.left, size if size >= 0 else self.left)
                self.left -= n
                return bytes(n)

        source = Zeros()
        tracemalloc.start()
        try:
            with transport.parse_reference(f"{tmp_path}/l:big").open_destination() as dest:
                desc = dest.put_blob(source, BlobInfo())
                _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert desc.size == total
        assert desc.digest == Digest("sha256", hashlib.sha256(bytes(total)).hexdigest())
        assert source.largest <= CHUNK_SIZE
        assert peak < 8 * CHUNK_SIZE

    def test_concurrent_put_blob_threads(self, tmp_path: Path) -> None:
        images = [make_image(20 + i, (2048,)) for i in range(2)]
        blobs = {d: b for img in images for d, b in img.blobs.items()}
        path = tmp_path / "l"
        with transport.parse_reference(f"{path}:t").open_destination() as dest:
            errors: list[BaseException] = []

            def put(digest: Digest, blob: bytes) -> None:
                try:
                    for _ in range(3):  # the same blob several times, concurrently
                        dest.put_blob(io.BytesIO(blob), BlobInfo("", digest, len(blob)))
                except BaseException as e:  # reported below
                    errors.append(e)

            threads = [threading.Thread(target=put, args=kv) for kv in blobs.items()]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert errors == []
            dest.put_manifest(images[0].manifest, images[0].media_type)
            dest.commit()
        assert {d.hex for d in blobs} <= blob_files(path)


# -- deleting ------------------------------------------------------------------------------
class TestDelete:
    def test_delete_keeps_shared_blobs(self, tmp_path: Path) -> None:
        # Same seed: the same layers, but different configs (labels).
        first = make_image(3, labels={"n": "1"})
        second = make_image(3, labels={"n": "2"})
        layers = set(first.blobs) - {first.config_digest}
        assert layers == set(second.blobs) - {second.config_digest}
        path = write_oci_layout(tmp_path / "l", {"first": first, "second": second})
        transport.parse_reference(f"{path}:first").delete()
        assert names(path) == ["second"]
        remaining = blob_files(path)
        assert first.digest.hex not in remaining
        assert first.config_digest.hex not in remaining
        assert {d.hex for d in layers} <= remaining
        assert read_all(f"{path}:second") == {second.digest: second.manifest, **second.blobs}

    def test_delete_index_removes_instances(self, layout: Path, single: BuiltImage) -> None:
        before = blob_files(layout)
        transport.parse_reference(f"{layout}:multi").delete()
        assert names(layout) == ["one"]
        assert blob_files(layout) == {single.digest.hex} | {d.hex for d in single.blobs}
        assert before > blob_files(layout)

    def test_delete_same_image_under_two_names(self, tmp_path: Path, single: BuiltImage) -> None:
        path = write_oci_layout(tmp_path / "l", {"a": single, "b": single})
        before = blob_files(path)
        transport.parse_reference(f"{path}:a").delete()
        assert names(path) == ["b"]
        assert blob_files(path) == before

    def test_delete_missing(self, layout: Path) -> None:
        before = snapshot(layout)
        with pytest.raises(ManifestNotFoundError, match="'nope'"):
            transport.parse_reference(f"{layout}:nope").delete()
        with pytest.raises(ManifestNotFoundError):
            transport.parse_reference(str(layout)).delete()  # two images, no name
        assert snapshot(layout) == before

    def test_delete_only_image_without_name(self, tmp_path: Path, single: BuiltImage) -> None:
        path = write_oci_layout(tmp_path / "l", {"solo": single})
        transport.parse_reference(str(path)).delete()
        assert index_json(path)["manifests"] == []
        assert blob_files(path) == set()
