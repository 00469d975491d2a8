"""Reuse against a real registry and real layouts: identical images are skipped after one HEAD,
and the blob-info cache turns a later push into cross-repository mounts."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from imagebuilder import make_image, make_multiarch, write_oci_layout
from registry_fixtures import RunningRegistry, counting_hooks

from imagetypes import TransportOptions
from imagetypes.copy import BlobInfoCache, CopyOptions, EventCollector, ImageSkipped, copy_image

pytestmark = pytest.mark.integration

INSECURE = TransportOptions(tls_verify=False)


def hooked() -> tuple[TransportOptions, list[tuple[str, str]]]:
    """Options recording (method, path) of every request, and the queries in ``QUERIES``."""
    hooks, sent = counting_hooks()

    def on_request(request: httpx.Request) -> None:
        QUERIES.append(request.url.query.decode())

    QUERIES.clear()
    hooks["request"].append(on_request)
    return TransportOptions(tls_verify=False, extra={"docker.event_hooks": hooks}), sent


QUERIES: list[str] = []


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_identical_image_in_a_layout_is_skipped(tmp_path: Path) -> None:
    img = make_image(1)
    src = write_oci_layout(tmp_path / "src", {"v1": img})
    dst = f"oci:{tmp_path / 'dst'}:v1"
    first = copy_image(f"oci:{src}:v1", dst)
    assert not first.unchanged
    before = tree(tmp_path / "dst")
    events = EventCollector()
    again = copy_image(f"oci:{src}:v1", dst, CopyOptions(progress=events, skip_identical=True))
    assert again.unchanged
    assert again.manifest_digest == img.digest
    assert again.blobs_copied == again.blobs_reused == 0
    assert events.of_type(ImageSkipped) == [ImageSkipped(img.digest, dst)]
    assert tree(tmp_path / "dst") == before
    # Another tag in the same layout is not "identical": it is written.
    other = copy_image(
        f"oci:{src}:v1", f"oci:{tmp_path / 'dst'}:v2", CopyOptions(skip_identical=True)
    )
    assert not other.unchanged
    # Without skip_identical (the default, as skopeo copy) it is copied anyway (blobs reused).
    forced = copy_image(f"oci:{src}:v1", dst)
    assert not forced.unchanged
    assert forced.blobs_reused == len(img.blobs)


def test_identical_image_in_a_registry_costs_one_head(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    index = make_multiarch(2)
    src = write_oci_layout(tmp_path / "src", {"v1": index})
    name = f"docker://{registry.host}/reuse/skip:v1"
    copy_image(f"oci:{src}:v1", name, CopyOptions(instances="all", destination_options=INSECURE))
    options, sent = hooked()
    again = copy_image(
        f"oci:{src}:v1",
        name,
        CopyOptions(instances="all", destination_options=options, skip_identical=True),
    )
    assert again.unchanged
    assert again.manifest_digest == index.digest
    assert [r for r in sent if r[1] != "/v2/"] == [("HEAD", "/v2/reuse/skip/manifests/v1")]
    # A different image under that tag is copied.
    img = make_image(3)
    other = write_oci_layout(tmp_path / "other", {"v1": img})
    replaced = copy_image(
        f"oci:{other}:v1", name, CopyOptions(destination_options=INSECURE, skip_identical=True)
    )
    assert not replaced.unchanged
    assert replaced.manifest_digest == img.digest


def test_cache_makes_a_later_push_mount_from_where_the_blobs_were_pulled(
    registry: RunningRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    img = make_image(4, (30_000, 50_000))
    cache = BlobInfoCache(tmp_path / "cache" / "blobinfo.sqlite")
    src = write_oci_layout(tmp_path / "src", {"v1": img})
    repo_a = f"docker://{registry.host}/reuse/a:v1"
    copy_image(f"oci:{src}:v1", repo_a, CopyOptions(destination_options=INSECURE))
    # Pull a to a layout, remembering where the blobs came from...
    pulled = tmp_path / "pulled"
    copy_image(
        repo_a, f"oci:{pulled}:v1", CopyOptions(source_options=INSECURE, blob_info_cache=cache)
    )
    # ... so that pushing the layout to b mounts every blob from a: nothing is uploaded.
    # The locations of all its blobs are read in one query, not one per blob by the workers.
    lookups: list[str] = []
    per_blob, batched = cache.locations, cache.locations_of
    monkeypatch.setattr(cache, "locations", lambda *a: lookups.append("one") or per_blob(*a))
    monkeypatch.setattr(cache, "locations_of", lambda d: lookups.append("all") or batched(d))
    options, sent = hooked()
    pushed = copy_image(
        f"oci:{pulled}:v1",
        f"docker://{registry.host}/reuse/b:v1",
        CopyOptions(destination_options=options, blob_info_cache=cache),
    )
    assert pushed.blobs_reused == len(img.blobs)
    assert pushed.blobs_copied == 0
    assert lookups == ["all"]
    mounts = [path for method, path in sent if method == "POST"]
    assert len(mounts) == len(img.blobs)
    assert all(path == "/v2/reuse/b/blobs/uploads/" for path in mounts)
    assert sorted(q for q in QUERIES if "mount=" in q) == sorted(
        f"mount={str(d).replace(':', '%3A')}&from=reuse%2Fa" for d in img.blobs
    )
    assert not [
        r for r in sent if r[0] in ("PATCH",) or ("/blobs/uploads/" in r[1] and r[0] == "PUT")
    ]
    for digest in img.blobs:
        assert registry.layer_link("reuse/b", str(digest)).exists()


def test_without_the_cache_the_push_uploads(registry: RunningRegistry, tmp_path: Path) -> None:
    img = make_image(5, (30_000,))
    src = write_oci_layout(tmp_path / "src", {"v1": img})
    copy_image(
        f"oci:{src}:v1",
        f"docker://{registry.host}/reuse/c:v1",
        CopyOptions(destination_options=INSECURE),
    )
    options, sent = hooked()
    pushed = copy_image(
        f"oci:{src}:v1",
        f"docker://{registry.host}/reuse/d:v1",
        CopyOptions(destination_options=options),
    )
    assert pushed.blobs_copied == len(img.blobs)
    assert [r for r in sent if r[0] == "POST"]  # uploads
    assert not [q for q in QUERIES if "mount=" in q]


def test_a_copy_between_layouts_leaves_the_cache_closed(tmp_path: Path) -> None:
    # Nothing a later copy could use: a local copy neither reads nor writes the cache.
    src = write_oci_layout(tmp_path / "src", {"v1": make_image(6)})
    cache = BlobInfoCache(tmp_path / "c.sqlite")
    copy_image(f"oci:{src}:v1", f"oci:{tmp_path / 'dst'}:v1", CopyOptions(blob_info_cache=cache))
    assert (tmp_path / "dst" / "index.json").exists()
    assert not cache.path.exists()
