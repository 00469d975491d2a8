"""sync() without a registry: semver constraints, naming, folders, YAML errors; the renderers."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from imagebuilder import make_image, write_oci_layout  # noqa: E402

from imagetypes import RetryPolicy, TransportOptions  # noqa: E402
from imagetypes.cli._copyflags import BlobBars, SummaryLines  # noqa: E402
from imagetypes.copy import (  # noqa: E402
    BlobDone,
    BlobProgress,
    BlobStarted,
    CopyOptions,
    SyncError,
    SyncOptions,
    copy_image,
    list_sync_images,
    semver_constraint,
    sync,
)
from imagetypes.copy._sync import SyncSource, _destination  # noqa: E402
from imagetypes.descriptor import Descriptor  # noqa: E402
from imagetypes.digest import Digest  # noqa: E402


@pytest.mark.parametrize(
    ("constraint", "matching", "not_matching"),
    [
        (">=1.2, <2", ["1.2.0", "v1.9.9", "1.2"], ["1.1.9", "2.0.0", "2.0.0-rc1", "latest"]),
        ("~1.4", ["1.4.0", "1.4.9"], ["1.5.0", "1.3.9"]),
        ("^3", ["3.0.0", "3.9.1"], ["4.0.0", "2.9.9"]),
        ("^0.3.1", ["0.3.1", "0.3.9"], ["0.4.0", "0.3.0"]),
        ("1.x || >=2.1", ["1.0.0", "1.99.0", "2.1.0", "3.0"], ["2.0.5", "0.9"]),
        ("=1.2.3", ["1.2.3", "v1.2.3"], ["1.2.4"]),
        ("!=1.2.3", ["1.2.4"], ["1.2.3"]),
        (">1.2", ["1.3.0"], ["1.2.9", "1.2.0"]),
        ("<=1.2", ["1.2.9", "1.0.0"], ["1.3.0"]),
        (">=1.0.0-0", ["1.0.0-rc1", "1.0.0"], ["0.9.0"]),
    ],
)
def test_semver_constraints(constraint: str, matching: list[str], not_matching: list[str]) -> None:
    check = semver_constraint(constraint)
    assert [t for t in matching if not check(t)] == []
    assert [t for t in not_matching if check(t)] == []


def test_invalid_semver_constraint() -> None:
    with pytest.raises(SyncError, match="semver"):
        semver_constraint(">= banana")


def test_destination_names() -> None:
    item = SyncSource("docker://r.example/team/app:1.0", "r.example/team/app:1.0")
    assert _destination(item, "mirror.example/ns", "docker", SyncOptions()) == (
        "docker://mirror.example/ns/app:1.0"
    )
    assert _destination(item, "docker://m.example", "docker", SyncOptions(scoped=True)) == (
        "docker://m.example/r.example/team/app:1.0"
    )
    assert _destination(item, "/out", "dir", SyncOptions(append_suffix="-x")) == (
        "dir:/out/app:1.0-x"
    )


def test_folder_listing(tmp_path: Path) -> None:
    src = write_oci_layout(tmp_path / "layout", {"v1": make_image(1)})
    root = tmp_path / "images"
    copy_image(f"oci:{src}:v1", f"dir:{root / 'a' / 'one'}")
    copy_image(f"oci:{src}:v1", f"dir:{root / 'b'}")
    items = list_sync_images(str(root), "dir")
    assert [(i.reference, i.suffix) for i in items] == [
        (f"dir:{root / 'a' / 'one'}", "a/one"),
        (f"dir:{root / 'b'}", "b"),
    ]
    with pytest.raises(SyncError, match="not a directory"):
        list_sync_images(str(tmp_path / "missing"), "dir")


def test_dir_to_dir_and_empty_sources_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SyncError, match="'dir' to 'dir'"):
        sync(str(tmp_path), str(tmp_path / "o"), source_kind="dir", destination_kind="dir")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SyncError, match="no images"):
        sync(str(tmp_path / "empty"), "r.example", source_kind="dir", destination_kind="docker")


def test_dry_run_lists_without_copying(tmp_path: Path) -> None:
    src = write_oci_layout(tmp_path / "layout", {"v1": make_image(2)})
    root = tmp_path / "images"
    copy_image(f"oci:{src}:v1", f"dir:{root / 'tool'}")
    report = sync(
        str(root),
        "127.0.0.1:1/mirror",
        source_kind="dir",
        destination_kind="docker",
        options=SyncOptions(dry_run=True),
    )
    assert [(i.status, i.destination) for i in report.images] == [
        ("planned", "docker://127.0.0.1:1/mirror/tool")
    ]


def test_yaml_errors(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("r.example:\n  images: [not, a, mapping]\n")
    with pytest.raises(SyncError, match="must map"):
        list_sync_images(str(bad), "yaml")
    bad.write_text("r.example:\n  tls-verify: maybe\n  images:\n    a/b: [v1]\n")
    with pytest.raises(SyncError, match="tls-verify"):
        list_sync_images(str(bad), "yaml")
    good = tmp_path / "good.yaml"
    good.write_text(
        "r.example:\n  credentials: {username: u, password: p}\n  cert-dir: /certs\n"
        "  images:\n    team/app: [v1, 'sha256:" + "a" * 64 + "']\n"
    )
    items = list_sync_images(str(good), "yaml")
    assert [i.reference for i in items] == [
        "docker://r.example/team/app:v1",
        "docker://r.example/team/app@sha256:" + "a" * 64,
    ]
    assert items[0].options is not None
    assert items[0].options.credentials is not None
    assert items[0].options.credentials.username == "u"
    assert items[0].options.cert_dir == "/certs"


def test_failed_image_reported_with_keep_going(tmp_path: Path) -> None:
    root = tmp_path / "images"
    src = write_oci_layout(tmp_path / "layout", {"v1": make_image(3)})
    copy_image(f"oci:{src}:v1", f"dir:{root / 'good'}")
    (root / "broken").mkdir()
    (root / "broken" / "manifest.json").write_text("{not json")
    # A destination nobody listens on: both fail, quickly, and keep_going reports both.
    report = sync(
        str(root),
        "127.0.0.1:9/m",
        source_kind="dir",
        destination_kind="docker",
        options=SyncOptions(
            keep_going=True,
            copy_options=CopyOptions(
                destination_options=TransportOptions(tls_verify=False, retry=RetryPolicy.none())
            ),
        ),
    )
    assert [i.status for i in report.images] == ["failed", "failed"]
    assert not report.ok
    assert all(i.error for i in report.failed)


# -- renderers ----------------------------------------------------------------------------------


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_bars_redraw_in_place() -> None:
    out = FakeTTY()
    bars = BlobBars(out)
    d1 = Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", Digest.from_bytes(b"1"), 4096)
    d2 = Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", Digest.from_bytes(b"2"), 100)
    bars(BlobStarted(d1))
    bars(BlobStarted(d2, "recompress"))
    bars(BlobProgress(d1, 2048))
    bars(BlobDone(d2, 100))
    bars(BlobDone(d1, 4096))
    bars.close()
    text = out.getvalue()
    assert "\x1b[1F" in text or "\x1b[2F" in text  # cursor moved back up to redraw
    assert "Recompressing blob" in text
    assert f"Copying blob {d1.digest} done 4.0 KiB" in text
    assert "[" in text
    assert "]" in text


def test_summary_lines_are_periodic() -> None:
    out = io.StringIO()
    lines = SummaryLines(out, interval=3600)
    d1 = Descriptor("application/octet-stream", Digest.from_bytes(b"1"), 10)
    lines(BlobStarted(d1))
    lines(BlobDone(d1, 10))
    assert "Progress:" not in out.getvalue()  # not yet an interval since the start
    lines = SummaryLines(out, interval=0)
    lines(BlobStarted(d1))
    lines(BlobDone(d1, 10))
    assert "Progress: 1 blobs copied, 0 skipped, 10 B" in out.getvalue()


# -- signing flags ---------------------------------------------------------------------------


def test_sync_has_skopeos_signing_flags(capsys: pytest.CaptureFixture[str]) -> None:
    from imagetypes.cli import main

    assert main(["sync", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--sign-by", "--sign-by-sigstore-private-key", "--sign-passphrase-file"):
        assert flag in text
    # skopeo sync has no --sign-identity: each image is signed as its own destination.
    assert "--sign-identity" not in text
    assert "--additional-tag" not in text


def test_sync_signing_into_a_folder_needs_an_identity(tmp_path: Path) -> None:
    # Refused before the source (an unreachable registry here) is listed.
    with pytest.raises(SyncError, match="sign_identity"):
        sync(
            "registry.invalid/repo",
            str(tmp_path / "out"),
            source_kind="docker",
            destination_kind="dir",
            options=SyncOptions(copy_options=CopyOptions(sign_by="0123456789ABCDEF")),
        )
    assert not (tmp_path / "out").exists()
