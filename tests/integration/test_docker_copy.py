"""copy_image() through a real registry: OCI layout -> registry -> OCI layout, all instances."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from imagebuilder import make_image, make_multiarch, write_oci_layout
from peakmem import command_peak_mib
from registry_fixtures import RunningRegistry

from imagetypes import TransportOptions
from imagetypes.copy import CopyOptions, copy_image

pytestmark = pytest.mark.integration

INSECURE = TransportOptions(tls_verify=False)


def test_copy_index_through_the_registry(registry: RunningRegistry, tmp_path: Path) -> None:
    index = make_multiarch(60)
    src = write_oci_layout(tmp_path / "src", {"v1": index})
    dst = tmp_path / "dst"
    name = f"docker://{registry.host}/copy/multi:v1"
    up = copy_image(
        f"oci:{src}:v1", name, CopyOptions(instances="all", destination_options=INSECURE)
    )
    assert up.manifest == index.manifest
    down = copy_image(name, f"oci:{dst}:v1", CopyOptions(instances="all", source_options=INSECURE))
    assert down.manifest == index.manifest
    for img in index.images:
        for digest, blob in img.blobs.items():
            assert (dst / "blobs" / digest.algorithm / digest.hex).read_bytes() == blob
    entry = json.loads((dst / "index.json").read_text())["manifests"][0]
    assert entry["digest"] == str(index.digest)


def test_second_copy_reuses_every_blob(registry: RunningRegistry, tmp_path: Path) -> None:
    img = make_image(61, (20_000,))
    src = write_oci_layout(tmp_path / "src", {"v1": img})
    first = copy_image(
        f"oci:{src}:v1",
        f"docker://{registry.host}/copy/single:v1",
        CopyOptions(destination_options=INSECURE),
    )
    assert first.blobs_copied == len(img.blobs)
    again = copy_image(
        f"oci:{src}:v1",
        f"docker://{registry.host}/copy/single:v2",
        CopyOptions(destination_options=INSECURE),
    )
    assert again.blobs_copied == 0
    assert again.blobs_reused == len(img.blobs)


def test_copy_between_repositories_of_one_registry_mounts(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    img = make_image(62, (30_000, 40_000))
    src = write_oci_layout(tmp_path / "src", {"v1": img})
    first = f"docker://{registry.host}/mount/origin:v1"
    copy_image(f"oci:{src}:v1", first, CopyOptions(destination_options=INSECURE))
    seen: list[str] = []

    def record(request: object) -> None:
        seen.append(f"{request.method} {request.url}")  # type: ignore[attr-defined]

    dst_options = TransportOptions(
        tls_verify=False, extra={"docker.event_hooks": {"request": [record]}}
    )
    result = copy_image(
        first,
        f"docker://{registry.host}/mount/other:v1",
        CopyOptions(source_options=INSECURE, destination_options=dst_options),
    )
    # Every blob came across by a cross-repository mount: no blob was uploaded (PATCH/PUT of
    # blob data) and none was read from the source.
    assert result.blobs_copied == 0
    assert result.blobs_reused == len(img.blobs)
    mounts = [s for s in seen if "mount=" in s and "from=mount%2Forigin" in s]
    assert len(mounts) == len(img.blobs)
    assert not [s for s in seen if s.startswith("PATCH")]


def test_concurrent_copies_upload_a_shared_blob_once(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    import threading

    img = make_image(63, (3_000_000, 3_000_000))
    src = write_oci_layout(tmp_path / "src", {"v1": img})
    posts: list[str] = []

    def record(request: object) -> None:
        if request.method == "POST" and "/blobs/uploads/" in str(request.url):  # type: ignore[attr-defined]
            posts.append(str(request.url))  # type: ignore[attr-defined]

    options = TransportOptions(
        tls_verify=False, extra={"docker.event_hooks": {"request": [record]}}
    )
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def copy(tag: str) -> None:
        barrier.wait()
        try:
            copy_image(
                f"oci:{src}:v1",
                f"docker://{registry.host}/shared/app:{tag}",
                CopyOptions(destination_options=options),
            )
        except BaseException as e:  # reported below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=copy, args=(f"t{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # Four copies of one image into one repository at once: each blob is uploaded once.
    assert len(posts) == len(img.blobs)
    for i in range(4):
        got = copy_image(
            f"docker://{registry.host}/shared/app:t{i}",
            f"oci:{tmp_path / 'back'}:t{i}",
            CopyOptions(source_options=INSECURE),
        )
        assert got.manifest == img.manifest


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_push_memory_does_not_grow_with_the_number_of_layers(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    """Pushing twenty-four 6 MiB layers needs about what eight need (the six workers busy in
    both), under 100 MiB: only blobs under docker.monolithic_limit are held in memory for their
    one PUT (with an 8 MiB limit each worker held its layer: about 150 MiB for sixteen). Two
    layers would keep four workers idle: the memory of the other four is the workers', not
    the layers' (a 2-against-16 comparison once measured 25 MiB)."""
    peaks = {}
    for count in (8, 24):
        img = make_image(40 + count, (6 * 1024 * 1024,) * count, compresslevel=0)
        src = write_oci_layout(tmp_path / f"src{count}", {"t": img})
        dest = f"docker://{registry.host}/peak/push{count}:t"
        peaks[count] = command_peak_mib(
            "copy", "--quiet", "--dest-tls-verify=false", f"oci:{src}:t", dest
        )
        pulled = tmp_path / f"back{count}"
        result = copy_image(dest, f"oci:{pulled}:t", CopyOptions(source_options=INSECURE))
        assert result.manifest_digest == img.digest  # every layer there, byte for byte
    assert peaks[24] < 100, peaks
    assert peaks[24] - peaks[8] < 24, peaks
