"""Hostile and broken docker-archive files: each is refused with a typed error naming the problem,
and reading one never writes anything (the archive is never unpacked)."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from imagetypes.errors import ArchiveError, DigestMismatchError, ImageError
from imagetypes.manifest import parse_manifest
from imagetypes.types import TransportOptions
from imagetypes_transports.docker_archive import transport
from tests.unit.test_docker_archive_support import (
    add_file,
    add_link,
    dumps,
    make_docker_image,
    tree,
    write_docker_archive,
)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder holding the archive, an (empty) spool folder and a sentinel folder."""
    (tmp_path / "spool").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "keep").write_bytes(b"untouched")
    return tmp_path


def read_everything(path: Path, spool: Path) -> None:
    """Open the archive and read the manifest and every blob, as a copy would."""
    options = TransportOptions(tmpdir=str(spool))
    with transport.parse_reference(str(path)).open_source(options) as src:
        raw, media_type = src.get_manifest()
        manifest = parse_manifest(raw, media_type)
        for desc in (manifest.config, *manifest.layers):  # type: ignore[attr-defined]
            src.get_blob(desc).read_to_end()


def assert_refused(
    workdir: Path, path: Path, error: type[ImageError], match: str
) -> pytest.ExceptionInfo[ImageError]:
    before = tree(workdir)
    with pytest.raises(error, match=match) as info:
        read_everything(path, workdir / "spool")
    assert tree(workdir) == before  # nothing written anywhere, spool left empty
    return info


def raw_archive(path: Path, build: Callable[[tarfile.TarFile], None]) -> Path:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        build(tar)
    return path


def with_valid_image(extra: Callable[[tarfile.TarFile], None]) -> Callable[[tarfile.TarFile], None]:
    image = make_docker_image(1)

    def build(tar: tarfile.TarFile) -> None:
        add_file(tar, f"{image.config_digest.hex}.json", image.config)
        for layer, diff_id in zip(image.layers, image.diff_ids, strict=True):
            add_file(tar, f"{diff_id.hex}.tar", layer)
        extra(tar)
        items = [
            {
                "Config": f"{image.config_digest.hex}.json",
                "RepoTags": [],
                "Layers": [f"{d.hex}.tar" for d in image.diff_ids],
            }
        ]
        add_file(tar, "manifest.json", dumps(items))

    return build


def test_dot_dot_member(workdir: Path) -> None:
    path = raw_archive(
        workdir / "a.tar", with_valid_image(lambda t: add_file(t, "../outside/keep", b"evil"))
    )
    assert_refused(workdir, path, ArchiveError, r"'\.\./outside/keep' has a '\.\.' component")


def test_absolute_member(workdir: Path) -> None:
    def build(tar: tarfile.TarFile) -> None:
        add_file(tar, str(workdir / "outside" / "keep"), b"evil")

    path = raw_archive(workdir / "a.tar", with_valid_image(build))
    assert_refused(workdir, path, ArchiveError, "has an absolute path")


def test_symlink_pointing_outside(workdir: Path) -> None:
    path = raw_archive(
        workdir / "a.tar",
        with_valid_image(lambda t: add_link(t, "abc/layer.tar", "../../outside/keep")),
    )
    assert_refused(workdir, path, ArchiveError, "points outside the archive")


def test_absolute_symlink(workdir: Path) -> None:
    path = raw_archive(
        workdir / "a.tar", with_valid_image(lambda t: add_link(t, "abc/layer.tar", "/etc/passwd"))
    )
    assert_refused(workdir, path, ArchiveError, "points to the absolute path '/etc/passwd'")


def test_hardlink_pointing_outside(workdir: Path) -> None:
    path = raw_archive(
        workdir / "a.tar",
        with_valid_image(lambda t: add_link(t, "x", "../outside/keep", tarfile.LNKTYPE)),
    )
    assert_refused(workdir, path, ArchiveError, r"has a '\.\.' component")


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        (tarfile.CHRTYPE, "is a device file"),
        (tarfile.BLKTYPE, "is a device file"),
        (tarfile.FIFOTYPE, "is a FIFO"),
    ],
)
def test_device_files(workdir: Path, kind: bytes, message: str) -> None:
    def build(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("dev/null")
        info.type = kind
        info.devmajor, info.devminor = 1, 3
        tar.addfile(info)

    path = raw_archive(workdir / "a.tar", with_valid_image(build))
    assert_refused(workdir, path, ArchiveError, f"'dev/null' {message}")


def test_duplicate_members(workdir: Path) -> None:
    # A second manifest.json would decide, for a reader that keeps the last one, which
    # image is read: refused rather than guessed.
    path = raw_archive(
        workdir / "a.tar", with_valid_image(lambda t: add_file(t, "./manifest.json", b"[]"))
    )
    assert_refused(workdir, path, ArchiveError, "'manifest.json' appears more than once")


def test_oversized_manifest_json(workdir: Path) -> None:
    image = make_docker_image(2)
    padding = [{"Config": "x.json", "RepoTags": ["a" * 100] * 100, "Layers": []}] * 120
    path = write_docker_archive(workdir / "a.tar", [image], manifest=padding)
    assert (len(dumps(padding))) > 1024 * 1024
    assert_refused(workdir, path, ArchiveError, "manifest 'manifest.json' is .* over the 1048576")


def test_manifest_naming_a_missing_file(workdir: Path) -> None:
    image = make_docker_image(3)
    items = [
        {
            "Config": f"{image.config_digest.hex}.json",
            "RepoTags": [],
            "Layers": [f"{image.diff_ids[0].hex}.tar", "missing/layer.tar"],
        }
    ]
    path = write_docker_archive(workdir / "a.tar", [image], manifest=items)
    assert_refused(workdir, path, ArchiveError, "layer 'missing/layer.tar' is missing")


def test_manifest_naming_a_file_outside(workdir: Path) -> None:
    image = make_docker_image(4)
    items = [{"Config": "../outside/keep", "RepoTags": [], "Layers": []}]
    path = write_docker_archive(workdir / "a.tar", [image], manifest=items)
    assert_refused(workdir, path, ArchiveError, r"has a '\.\.' component")


def test_manifest_giving_the_wrong_size(workdir: Path) -> None:
    image = make_docker_image(5)
    diff_id = image.diff_ids[0]
    items = [
        {
            "Config": f"{image.config_digest.hex}.json",
            "RepoTags": [],
            "Layers": [f"{d.hex}.tar" for d in image.diff_ids],
            "LayerSources": {
                str(diff_id): {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar",
                    "digest": str(diff_id),
                    "size": len(image.layers[0]) + 1,
                }
            },
        }
    ]
    path = write_docker_archive(workdir / "a.tar", [image], manifest=items)
    assert_refused(workdir, path, ArchiveError, f"gives {len(image.layers[0]) + 1} for {diff_id}")


def test_config_with_the_wrong_digest(workdir: Path) -> None:
    image = make_docker_image(6)
    path = write_docker_archive(workdir / "a.tar", [image])
    data = path.read_bytes().replace(b'"seed":"6"', b'"seed":"7"')  # same size, other bytes
    path.write_bytes(data)
    assert_refused(workdir, path, ArchiveError, "hashes to .*not the digest its name gives")


def test_uncompressed_layer_named_with_the_wrong_digest(workdir: Path) -> None:
    image = make_docker_image(7)
    wrong = "blobs/sha256/" + "0" * 64

    def build(tar: tarfile.TarFile) -> None:
        add_file(tar, f"blobs/sha256/{image.config_digest.hex}", image.config)
        add_file(tar, wrong, image.layers[0])
        add_file(tar, f"blobs/sha256/{image.diff_ids[1].hex}", image.layers[1])
        items = [
            {
                "Config": f"blobs/sha256/{image.config_digest.hex}",
                "Layers": [wrong, f"blobs/sha256/{image.diff_ids[1].hex}"],
            }
        ]
        add_file(tar, "manifest.json", dumps(items))

    path = raw_archive(workdir / "a.tar", build)
    assert_refused(workdir, path, ArchiveError, "named sha256:0{64} but the config gives")


def test_corrupt_header_is_not_taken_for_the_end(workdir: Path) -> None:
    image = make_docker_image(13)
    path = write_docker_archive(workdir / "a.tar", [image])
    data = bytearray(path.read_bytes())
    at = data.index(f"{image.diff_ids[1].hex}.tar".encode())  # the second layer's header
    data[at] ^= 0x01  # its checksum no longer matches
    path.write_bytes(bytes(data))
    assert_refused(workdir, path, ArchiveError, "invalid tar header at offset")


def test_layer_content_not_matching_its_diff_id(workdir: Path) -> None:
    image = make_docker_image(8)
    path = write_docker_archive(workdir / "a.tar", [image])
    marker = image.layers[1][600:640]
    assert marker
    assert path.read_bytes().count(marker) == 1
    path.write_bytes(path.read_bytes().replace(marker, bytes(reversed(marker))))
    # The digest (the diff ID) is checked as the layer streams, as for any source.
    assert_refused(workdir, path, DigestMismatchError, f"expected {image.diff_ids[1]}")


def test_layer_count_not_matching_the_config(workdir: Path) -> None:
    image = make_docker_image(9)
    items = [
        {
            "Config": f"{image.config_digest.hex}.json",
            "RepoTags": [],
            "Layers": [f"{image.diff_ids[0].hex}.tar"],
        }
    ]
    path = write_docker_archive(workdir / "a.tar", [image], manifest=items)
    assert_refused(workdir, path, ArchiveError, "lists 1 layers but the config has 2 diff IDs")


def test_truncated_archive(workdir: Path) -> None:
    path = write_docker_archive(workdir / "a.tar", [make_docker_image(10)])
    data = path.read_bytes()
    cut = data.index(b"manifest.json") - 2000  # inside the last layer's data
    path.write_bytes(data[:cut])
    assert_refused(workdir, path, ArchiveError, "truncated|not a valid tar archive")


def test_symlink_loop(workdir: Path) -> None:
    image = make_docker_image(11)

    def build(tar: tarfile.TarFile) -> None:
        add_link(tar, "a/layer.tar", "../b/layer.tar")
        add_link(tar, "b/layer.tar", "../a/layer.tar")

    items = [{"Config": f"{image.config_digest.hex}.json", "Layers": ["a/layer.tar"] * 2}]
    path = write_docker_archive(workdir / "a.tar", [image], manifest=items)
    with tarfile.open(path, "a") as tar:
        build(tar)
    assert_refused(workdir, path, ArchiveError, "too many levels of links")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a tar at all" * 100, "not a valid tar archive"),
        (b"", "not a valid tar archive|no manifest.json"),
    ],
)
def test_not_an_archive(workdir: Path, content: bytes, message: str) -> None:
    path = workdir / "a.tar"
    path.write_bytes(content)
    assert_refused(workdir, path, ArchiveError, message)


def test_no_manifest_json(workdir: Path) -> None:
    path = raw_archive(workdir / "a.tar", lambda t: add_file(t, "hello.txt", b"hi"))
    assert_refused(workdir, path, ArchiveError, "not a docker-archive")
    path = raw_archive(workdir / "b.tar", lambda t: add_file(t, "repositories", b"{}"))
    assert_refused(workdir, path, ArchiveError, "legacy format of Docker before 1.10")


@pytest.mark.parametrize(
    "manifest",
    [{"not": "a list"}, [1], [{"Layers": []}], [{"Config": "c", "RepoTags": "x"}]],
)
def test_malformed_manifest_json(workdir: Path, manifest: object) -> None:
    path = write_docker_archive(workdir / "a.tar", [make_docker_image(12)], manifest=manifest)
    assert_refused(workdir, path, ArchiveError, "manifest.json")


def test_compressed_hostile_archive_leaves_no_spool(workdir: Path) -> None:
    import gzip

    path = raw_archive(
        workdir / "a.tar", with_valid_image(lambda t: add_file(t, "../escape", b"x"))
    )
    gz = workdir / "a.tar.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    path.unlink()
    assert_refused(workdir, gz, ArchiveError, r"'\.\.' component")


def test_error_messages_name_the_reference(workdir: Path) -> None:
    path = raw_archive(workdir / "a.tar", lambda t: add_file(t, "hello.txt", b"hi"))
    info = assert_refused(workdir, path, ArchiveError, "docker-archive:")
    assert str(path) in str(info.value)


def test_valid_archive_reads_through_the_same_checks(workdir: Path) -> None:
    path = raw_archive(workdir / "a.tar", with_valid_image(lambda t: None))
    read_everything(path, workdir / "spool")
    with transport.parse_reference(str(path)).open_source() as src:
        config = json.loads(src.get_blob_bytes(parse_manifest(src.get_manifest()[0]).config))  # type: ignore[attr-defined]
    assert config["config"]["Labels"] == {"seed": "1"}
