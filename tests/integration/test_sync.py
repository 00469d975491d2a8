"""sync() and ``imagetypes sync`` against a real registry and real folders."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from imagebuilder import BuiltImage, make_image, write_oci_layout
from registry_fixtures import RunningRegistry, counting_hooks, start_registry

from imagetypes import TransportOptions
from imagetypes.cli import main
from imagetypes.copy import (
    CopyOptions,
    SyncError,
    SyncOptions,
    copy_image,
    list_sync_images,
    sync,
)
from imagetypes.digest import Digest

pytestmark = pytest.mark.integration

INSECURE = TransportOptions(tls_verify=False)


def insecure_sync(**kw: object) -> SyncOptions:
    copy = kw.pop("copy_options", None) or CopyOptions(
        source_options=INSECURE, destination_options=INSECURE
    )
    return SyncOptions(copy_options=copy, **kw)  # type: ignore[arg-type]


def shared_layer_images(seed: int, count: int) -> list[BuiltImage]:
    """``count`` images sharing their first layer (same seed), each with a layer of its own."""
    base = make_image(seed, (40_000,))
    images = []
    for i in range(count):
        own = make_image(seed * 100 + i + 1, (3000 + i,))
        manifest = json.loads(base.manifest)
        config = json.loads(base.config)
        extra = json.loads(own.manifest)["layers"][0]
        manifest["layers"].append(extra)
        config["rootfs"]["diff_ids"] += json.loads(own.config)["rootfs"]["diff_ids"]
        config["config"]["Labels"] = {"n": str(i)}
        data = json.dumps(config, separators=(",", ":")).encode()
        manifest["config"].update(digest=str(Digest.from_bytes(data)), size=len(data))
        blobs = {d: b for d, b in base.blobs.items() if d != base.config_digest}
        blobs.update({d: b for d, b in own.blobs.items() if d != own.config_digest})
        blobs[Digest.from_bytes(data)] = data
        raw = json.dumps(manifest, separators=(",", ":")).encode()
        images.append(BuiltImage(raw, base.media_type, data, blobs))
    return images


def push_tags(
    registry: RunningRegistry, repo: str, images: list[BuiltImage], tmp_path: Path
) -> dict[str, BuiltImage]:
    tagged = {f"t{i}": img for i, img in enumerate(images)}
    layout = write_oci_layout(tmp_path / f"layout-{repo.replace('/', '-')}", tagged)
    for tag in tagged:
        copy_image(
            f"oci:{layout}:{tag}",
            f"docker://{registry.host}/{repo}:{tag}",
            CopyOptions(destination_options=INSECURE),
        )
    return tagged


@pytest.fixture(scope="module")
def source_repo(
    registry: RunningRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, BuiltImage]]]:
    tagged = push_tags(
        registry, "sync/app", shared_layer_images(1, 4), tmp_path_factory.mktemp("s")
    )
    return f"{registry.host}/sync/app", tagged


def test_listing_a_repository(source_repo: tuple[str, dict[str, BuiltImage]]) -> None:
    repo, tagged = source_repo
    items = list_sync_images(repo, "docker", INSECURE)
    assert sorted(i.reference for i in items) == sorted(f"docker://{repo}:{t}" for t in tagged)


def test_repository_into_a_registry_then_nothing_to_do(
    registry: RunningRegistry, source_repo: tuple[str, dict[str, BuiltImage]]
) -> None:
    repo, tagged = source_repo
    report = sync(
        repo,
        f"{registry.host}/mirror1",
        source_kind="docker",
        destination_kind="docker",
        options=insecure_sync(),
    )
    assert report.ok
    assert len(report.copied) == len(tagged)
    for image in report.images:
        tag = image.source.rsplit(":", 1)[1]
        assert image.destination == f"docker://{registry.host}/mirror1/app:{tag}"
        assert image.digest == str(tagged[tag].digest)
    # Again: every image is already there; one HEAD each (plus the source reads), no writes.
    hooks, sent = counting_hooks()
    dest = TransportOptions(tls_verify=False, extra={"docker.event_hooks": hooks})
    again = sync(
        repo,
        f"{registry.host}/mirror1",
        source_kind="docker",
        destination_kind="docker",
        options=insecure_sync(
            copy_options=CopyOptions(source_options=INSECURE, destination_options=dest)
        ),
    )
    assert len(again.unchanged) == len(tagged)
    assert not again.copied
    assert sorted(m for m, _ in sent if m != "GET") == ["HEAD"] * len(tagged)


def test_repository_into_a_folder_then_nothing_to_do(
    tmp_path: Path, source_repo: tuple[str, dict[str, BuiltImage]]
) -> None:
    repo, tagged = source_repo
    out = tmp_path / "mirror"
    report = sync(
        repo,
        str(out),
        source_kind="docker",
        destination_kind="dir",
        options=insecure_sync(scoped=True),
    )
    assert len(report.copied) == len(tagged)
    for tag, img in tagged.items():
        folder = out / f"{repo}:{tag}"
        assert (folder / "manifest.json").read_bytes() == img.manifest
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = sync(
        repo,
        str(out),
        source_kind="docker",
        destination_kind="dir",
        options=insecure_sync(scoped=True),
    )
    assert len(again.unchanged) == len(tagged)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_folder_into_a_registry_with_suffix(registry: RunningRegistry, tmp_path: Path) -> None:
    images = shared_layer_images(2, 2)
    src = tmp_path / "images"
    for i, img in enumerate(images):
        layout = write_oci_layout(tmp_path / f"l{i}", {"x": img})
        copy_image(f"oci:{layout}:x", f"dir:{src / 'team' / f'tool{i}:v{i}'}")
    report = sync(
        str(src),
        f"{registry.host}/fromdir",
        source_kind="dir",
        destination_kind="docker",
        options=insecure_sync(append_suffix="-mirror"),
    )
    assert sorted(i.destination for i in report.copied) == [
        f"docker://{registry.host}/fromdir/tool0:v0-mirror",
        f"docker://{registry.host}/fromdir/tool1:v1-mirror",
    ]


def _corrupt(registry: RunningRegistry, img: BuiltImage) -> None:
    layer = json.loads(img.manifest)["layers"][-1]["digest"]
    data = registry.blob_data(layer)
    content = bytearray(data.read_bytes())
    content[-1] ^= 0xFF
    data.write_bytes(bytes(content))


def test_keep_going_copies_the_others(registry: RunningRegistry, tmp_path: Path) -> None:
    tagged = push_tags(registry, "sync/broken", shared_layer_images(3, 3), tmp_path)
    _corrupt(registry, tagged["t1"])
    source = f"{registry.host}/sync/broken"
    with pytest.raises(SyncError, match="t1") as info:
        sync(
            source,
            str(tmp_path / "stop"),
            source_kind="docker",
            destination_kind="dir",
            options=insecure_sync(concurrency=1),
        )
    assert info.value.report is not None
    assert len(info.value.report.failed) == 1
    report = sync(
        source,
        str(tmp_path / "out"),
        source_kind="docker",
        destination_kind="dir",
        options=insecure_sync(keep_going=True),
    )
    assert [i.status for i in report.images] == ["copied", "failed", "copied"]
    assert "digest" in (report.failed[0].error or "").lower()
    assert (tmp_path / "out" / "broken:t0" / "manifest.json").exists()
    assert (tmp_path / "out" / "broken:t2" / "manifest.json").exists()
    assert not (tmp_path / "out" / "broken:t1").exists()


def test_yaml_source(
    registry: RunningRegistry, tmp_path: Path, source_repo: tuple[str, dict[str, BuiltImage]]
) -> None:
    pytest.importorskip("yaml")
    _repo, _tagged = source_repo
    config = tmp_path / "sync.yaml"
    config.write_text(
        f"{registry.host}:\n"
        "  tls-verify: false\n"
        "  images:\n"
        "    sync/app: [t0]\n"
        "  images-by-tag-regex:\n"
        "    sync/app: ^t[23]$\n"
    )
    report = sync(str(config), str(tmp_path / "out"), source_kind="yaml", destination_kind="dir")
    assert sorted(i.source.rsplit(":", 1)[1] for i in report.copied) == ["t0", "t2", "t3"]


def test_whole_registry(tmp_path: Path) -> None:
    reg = start_registry(tmp_path / "reg")
    try:
        push_tags(reg, "one/a", shared_layer_images(4, 1), tmp_path)
        push_tags(reg, "two/b", shared_layer_images(5, 2), tmp_path)
        report = sync(
            reg.host,
            str(tmp_path / "all"),
            source_kind="docker",
            destination_kind="dir",
            options=insecure_sync(scoped=True),
        )
        assert sorted(i.destination for i in report.copied) == [
            f"dir:{tmp_path / 'all' / reg.host}/one/a:t0",
            f"dir:{tmp_path / 'all' / reg.host}/two/b:t0",
            f"dir:{tmp_path / 'all' / reg.host}/two/b:t1",
        ]
    finally:
        reg.stop()


# -- the command ----------------------------------------------------------------------------------


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_cli_sync_prints_progress_lines_and_nothing_on_stdout(
    registry: RunningRegistry, tmp_path: Path, source_repo: tuple[str, dict[str, BuiltImage]]
) -> None:
    repo, tagged = source_repo
    args = (
        "sync",
        "--src",
        "docker",
        "--dest",
        "docker",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--progress-interval",
        "0",
        "--blob-info-cache",
        str(tmp_path / "cache.sqlite"),
        repo,
        f"{registry.host}/cli1",
    )
    code, out, err = run_cli(*args)
    assert code == 0, err
    assert out == ""
    assert "Copying blob" in err
    assert "Progress:" in err
    assert "blobs copied" in err
    assert f"Synced {len(tagged)} images: {len(tagged)} copied" in err
    code, out, err = run_cli(*args)
    assert code == 0
    assert out == ""
    assert f"{len(tagged)} already up to date" in err
    code, out, err = run_cli(*args[:-2], "--dry-run", repo, f"{registry.host}/cli2")
    assert code == 0
    assert out == ""
    assert err.count("Would copy") == len(tagged)
    code, out, err = run_cli(
        *args[:-2],
        "--quiet",
        "--digestfile",
        str(tmp_path / "d.txt"),
        repo,
        f"{registry.host}/cli1",
    )
    assert code == 0
    assert out == ""
    assert "Copying" not in err
    lines = (tmp_path / "d.txt").read_text().splitlines()
    assert sorted(line.split()[0] for line in lines) == sorted(
        str(i.digest) for i in tagged.values()
    )


def test_cli_sync_keep_going_exit_status(registry: RunningRegistry, tmp_path: Path) -> None:
    tagged = push_tags(registry, "sync/broken2", shared_layer_images(6, 2), tmp_path)
    _corrupt(registry, tagged["t0"])
    code, out, err = run_cli(
        "sync",
        "--src",
        "docker",
        "--dest",
        "dir",
        "--src-tls-verify=false",
        "--keep-going",
        "--no-blob-info-cache",
        f"{registry.host}/sync/broken2",
        str(tmp_path / "out"),
    )
    assert code == 1
    assert out == ""
    assert "Failed to copy" in err
    assert "1 copied" in err
    assert "1 failed" in err


CLI = (sys.executable, "-c", "import sys; from imagetypes.cli import main; sys.exit(main())")


def test_cli_copy_progress_in_a_subprocess(tmp_path: Path) -> None:
    """Through a pipe (not a terminal): plain lines and a summary on stderr, stdout empty."""
    img = make_image(7, (2_500_000,))
    src = write_oci_layout(tmp_path / "src", {"v1": img})
    done = subprocess.run(
        [
            *CLI,
            "copy",
            "--progress-interval",
            "0",
            "--no-blob-info-cache",
            "--dest-compress-format",
            "gzip",
            "--dest-decompress",
            f"oci:{src}:v1",
            f"dir:{tmp_path / 'out'}",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 2  # --dest-decompress with a compression format: a usage error
    assert done.stdout == ""
    done = subprocess.run(
        [
            *CLI,
            "copy",
            "--progress-interval",
            "0",
            "--no-blob-info-cache",
            "--dest-decompress",
            f"oci:{src}:v1",
            f"dir:{tmp_path / 'out'}",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "decompressed (gzip -> none)" in done.stderr
    assert "Progress:" in done.stderr
    assert done.stderr.rstrip().splitlines()[-1] == "Writing manifest to image destination"
