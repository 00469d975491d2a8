"""The copy engine, over the in-memory transport (imagetypes.testing.memory)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from imagebuilder import BuiltImage, make_image, make_index, make_multiarch  # noqa: E402

from imagetypes import (  # noqa: E402
    BlobNotFoundError,
    CopyError,
    DigestMismatchError,
    InvalidPlatformError,
    LayerCompression,
    Platform,
    PlatformMismatchError,
    TransportOptions,
    UnsupportedError,
    UnsupportedManifestTypeError,
    parse_reference,
    register_transport,
)
from imagetypes import mediatypes as mt  # noqa: E402
from imagetypes.copy import (  # noqa: E402
    BlobDone,
    BlobProgress,
    BlobSkipped,
    BlobStarted,
    CopyDone,
    CopyOptions,
    CopyStarted,
    EventCollector,
    ManifestConverted,
    ManifestWritten,
    copy_image,
)
from imagetypes.digest import Digest  # noqa: E402
from imagetypes.manifest import parse_manifest  # noqa: E402
from imagetypes.plugins import reset_transports  # noqa: E402
from imagetypes.testing.memory import MemoryStore, MemoryTransport  # noqa: E402

DOCKER_ONLY = (mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST)
OCI_ONLY = (mt.OCI_MANIFEST, mt.OCI_INDEX)


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    store = MemoryStore()
    register_transport(MemoryTransport(store), replace=True)
    yield store
    reset_transports()


def blob_digests(img: BuiltImage) -> set[Digest]:
    return set(img.blobs)


def with_options(**kw: object) -> CopyOptions:
    return CopyOptions(**kw)  # type: ignore[arg-type]


def on(platform: str) -> TransportOptions:
    return TransportOptions(platform=Platform.parse(platform))


# -- single images -------------------------------------------------------------------------------


def test_single_image_keeps_bytes_and_digest(store: MemoryStore) -> None:
    img = make_image(1, (1000, 3000, 500))
    store.add_built("src", img)

    result = copy_image("memory:src", "memory:dst")

    dst = store.get("dst")
    assert dst is not None
    assert dst.manifest == img.manifest
    assert dst.media_type == mt.OCI_MANIFEST
    assert dict(dst.blobs) == img.blobs
    assert result.manifest_digest == img.digest == result.source_digest
    assert result.manifest == img.manifest
    assert result.media_type == mt.OCI_MANIFEST
    assert result.blobs_copied == 4
    assert result.blobs_reused == 0
    assert result.bytes_copied == sum(len(b) for b in img.blobs.values())
    assert not result.converted
    assert result.instance_digests == ()
    # Every blob reached the destination as the source's own verifying reader: hashed once.
    assert store.stats("dst").passthrough_puts == 4
    assert store.stats("dst").commits == 1


def test_references_may_be_objects(store: MemoryStore) -> None:
    img = make_image(2)
    store.add_built("src", img)
    result = copy_image(parse_reference("memory:src"), parse_reference("memory:other"))
    assert result.manifest_digest == img.digest
    assert store.get("other") is not None


def test_docker_image_stays_docker(store: MemoryStore) -> None:
    img = make_image(3, docker=True)
    store.add_built("src", img)
    result = copy_image("memory:src", "memory:dst")
    dst = store.get("dst")
    assert dst is not None
    assert dst.manifest == img.manifest
    assert result.media_type == mt.DOCKER_MANIFEST


# -- indexes -----------------------------------------------------------------------------------


def test_index_system_copies_the_matching_image_alone(store: MemoryStore) -> None:
    index = make_multiarch(1)
    store.add_built("src", index)
    arm64 = index.images[1]

    result = copy_image("memory:src", "memory:dst", with_options(source_options=on("linux/arm64")))

    dst = store.get("dst")
    assert dst is not None
    assert dst.manifest == arm64.manifest
    assert dst.media_type == mt.OCI_MANIFEST
    assert set(dst.blobs) == blob_digests(arm64)
    assert set(dst.manifests) == {arm64.digest}
    assert result.manifest_digest == arm64.digest
    assert result.source_digest == index.digest
    assert result.instance_digests == ()


def test_index_system_defaults_to_this_machine(store: MemoryStore) -> None:
    here = Platform.current()
    other = "s390x" if here.architecture != "s390x" else "ppc64le"
    images = [
        make_image(10, architecture=other),
        make_image(11, os=here.os, architecture=here.architecture, variant=here.variant),
    ]
    store.add_built("src", make_index(images))
    result = copy_image("memory:src", "memory:dst")
    assert result.manifest_digest == images[1].digest


def test_index_all(store: MemoryStore) -> None:
    index = make_multiarch(2)
    store.add_built("src", index)

    result = copy_image("memory:src", "memory:dst", with_options(instances="all"))

    dst = store.get("dst")
    assert dst is not None
    assert dst.manifest == index.manifest
    assert dst.media_type == mt.OCI_INDEX
    assert set(dst.manifests) == {index.digest} | {img.digest for img in index.images}
    assert set(dst.blobs) == set().union(*(blob_digests(i) for i in index.images))
    assert result.manifest_digest == index.digest
    assert result.instance_digests == tuple(img.digest for img in index.images)
    assert result.blobs_copied == 9


def test_index_all_docker_list(store: MemoryStore) -> None:
    index = make_multiarch(3, docker=True)
    store.add_built("src", index)
    result = copy_image("memory:src", "memory:dst", with_options(instances="all"))
    dst = store.get("dst")
    assert dst is not None
    assert dst.manifest == index.manifest
    assert result.media_type == mt.DOCKER_MANIFEST_LIST


def test_index_subset_lists_only_the_chosen_instances(store: MemoryStore) -> None:
    index = make_multiarch(4)
    store.add_built("src", index)
    amd64, arm64, arm = index.images

    # Asked in another order than the index's: the index order is kept.
    options = with_options(instances=["linux/arm64", Platform.parse("linux/amd64")])
    result = copy_image("memory:src", "memory:dst", options)

    dst = store.get("dst")
    assert dst is not None
    written = json.loads(dst.manifest)
    assert written["mediaType"] == mt.OCI_INDEX
    assert [e["digest"] for e in written["manifests"]] == [str(amd64.digest), str(arm64.digest)]
    assert [e["platform"]["architecture"] for e in written["manifests"]] == ["amd64", "arm64"]
    assert result.manifest_digest == Digest.from_bytes(dst.manifest) != index.digest
    assert result.instance_digests == (amd64.digest, arm64.digest)
    assert set(dst.manifests) == {result.manifest_digest, amd64.digest, arm64.digest}
    assert not blob_digests(arm) & set(dst.blobs)
    assert not result.converted


def test_index_subset_of_everything_keeps_the_index(store: MemoryStore) -> None:
    index = make_multiarch(5)
    store.add_built("src", index)
    options = with_options(instances=["linux/amd64", "linux/arm64", "linux/arm/v7"])
    result = copy_image("memory:src", "memory:dst", options)
    assert result.manifest == index.manifest


def test_single_image_ignores_instance_selection(store: MemoryStore) -> None:
    img = make_image(6)
    store.add_built("src", img)
    result = copy_image("memory:src", "memory:dst", with_options(instances=["linux/s390x"]))
    assert result.manifest == img.manifest


def test_platform_mismatch_lists_available_platforms(store: MemoryStore) -> None:
    store.add_built("src", make_multiarch(7))
    with pytest.raises(PlatformMismatchError) as info:
        copy_image("memory:src", "memory:dst", with_options(source_options=on("windows/amd64")))
    message = str(info.value)
    assert "windows/amd64" in message
    for plat in ("linux/amd64", "linux/arm64/v8", "linux/arm/v7"):
        assert plat in message
    assert store.get("dst") is None


def test_platform_mismatch_in_subset(store: MemoryStore) -> None:
    store.add_built("src", make_multiarch(8))
    with pytest.raises(PlatformMismatchError, match="linux/ppc64le"):
        copy_image(
            "memory:src", "memory:dst", with_options(instances=["linux/amd64", "linux/ppc64le"])
        )
    assert store.get("dst") is None
    assert store.stats("dst").puts == 0


# -- conversion -------------------------------------------------------------------------------


def test_converts_to_docker_when_the_destination_wants_it(store: MemoryStore) -> None:
    img = make_image(20)
    store.add_built("src", img)
    store.configure("dst", manifest_types=DOCKER_ONLY)
    events = EventCollector()

    result = copy_image("memory:src", "memory:dst", with_options(progress=events))

    dst = store.get("dst")
    assert dst is not None
    assert dst.media_type == mt.DOCKER_MANIFEST
    written = parse_manifest(dst.manifest, dst.media_type)
    assert written.config.digest == img.config_digest  # type: ignore[attr-defined]
    assert written.config.media_type == mt.DOCKER_CONFIG  # type: ignore[attr-defined]
    assert [d.media_type for d in written.layers] == [mt.DOCKER_LAYER] * 2  # type: ignore[attr-defined]
    assert set(dst.blobs) == blob_digests(img)
    assert result.converted
    assert result.manifest_digest == written.digest != img.digest
    conversions = events.of_type(ManifestConverted)
    assert len(conversions) == 1
    event = conversions[0]
    assert isinstance(event, ManifestConverted)
    assert (event.from_type, event.to_type, event.digest) == (
        mt.OCI_MANIFEST,
        mt.DOCKER_MANIFEST,
        img.digest,
    )
    assert "does not accept" in event.reason


def test_converts_to_oci_when_the_destination_wants_it(store: MemoryStore) -> None:
    img = make_image(21, docker=True)
    store.add_built("src", img)
    store.configure("dst", manifest_types=OCI_ONLY)
    events = EventCollector()
    result = copy_image("memory:src", "memory:dst", with_options(progress=events))
    assert result.media_type == mt.OCI_MANIFEST
    written = parse_manifest(result.manifest)
    assert written.config.media_type == mt.OCI_CONFIG  # type: ignore[attr-defined]
    assert [e.to_type for e in events.of_type(ManifestConverted)] == [mt.OCI_MANIFEST]  # type: ignore[attr-defined]


def test_index_all_converted_with_its_instances(store: MemoryStore) -> None:
    index = make_multiarch(22)
    store.add_built("src", index)
    store.configure("dst", manifest_types=DOCKER_ONLY)
    events = EventCollector()

    result = copy_image("memory:src", "memory:dst", with_options(instances="all", progress=events))

    assert result.media_type == mt.DOCKER_MANIFEST_LIST
    listed = parse_manifest(result.manifest)
    dst = store.get("dst")
    assert dst is not None
    entries = listed.manifests  # type: ignore[attr-defined]
    assert [d.digest for d in entries] == list(result.instance_digests)
    assert all(d.media_type == mt.DOCKER_MANIFEST for d in entries)
    for entry, img in zip(entries, index.images, strict=True):
        raw, media_type = dst.manifests[entry.digest]
        assert media_type == mt.DOCKER_MANIFEST
        assert entry.size == len(raw)
        assert parse_manifest(raw).config.digest == img.config_digest  # type: ignore[attr-defined]
        assert entry.platform is not None
        assert entry.platform.architecture == img.platform[1]
    kinds = [(e.from_type, e.to_type) for e in events.of_type(ManifestConverted)]  # type: ignore[attr-defined]
    assert kinds == [(mt.OCI_MANIFEST, mt.DOCKER_MANIFEST)] * 3 + [
        (mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST)
    ]


def test_format_forces_conversion(store: MemoryStore) -> None:
    img = make_image(23)
    store.add_built("src", img)
    events = EventCollector()
    result = copy_image("memory:src", "memory:dst", with_options(format="v2s2", progress=events))
    assert result.media_type == mt.DOCKER_MANIFEST
    assert result.converted
    (event,) = events.of_type(ManifestConverted)
    assert "format" in event.reason  # type: ignore[attr-defined]


def test_format_matching_the_source_changes_nothing(store: MemoryStore) -> None:
    img = make_image(24)
    store.add_built("src", img)
    result = copy_image("memory:src", "memory:dst", with_options(format="oci"))
    assert result.manifest == img.manifest
    assert not result.converted


def test_forced_format_the_destination_refuses_fails_before_any_blob(store: MemoryStore) -> None:
    store.add_built("src", make_image(25))
    store.configure("dst", manifest_types=OCI_ONLY)
    with pytest.raises(UnsupportedManifestTypeError, match="does not accept"):
        copy_image("memory:src", "memory:dst", with_options(format="v2s2"))
    assert store.stats("dst").puts == 0
    assert store.get("dst") is None


def test_index_subset_converted(store: MemoryStore) -> None:
    index = make_multiarch(26)
    store.add_built("src", index)
    store.configure("dst", manifest_types=DOCKER_ONLY)
    result = copy_image("memory:src", "memory:dst", with_options(instances=["linux/arm64"]))
    listed = parse_manifest(result.manifest)
    assert listed.media_type == mt.DOCKER_MANIFEST_LIST
    (entry,) = listed.manifests  # type: ignore[attr-defined]
    assert entry.media_type == mt.DOCKER_MANIFEST
    assert entry.platform == Platform("linux", "arm64", "v8")
    dst = store.get("dst")
    assert dst is not None
    raw, _ = dst.manifests[entry.digest]
    assert parse_manifest(raw).config.digest == index.images[1].config_digest  # type: ignore[attr-defined]


def test_destination_without_index_types_refuses_all(store: MemoryStore) -> None:
    store.add_built("src", make_multiarch(27))
    store.configure("dst", manifest_types=(mt.OCI_MANIFEST,))
    with pytest.raises(UnsupportedManifestTypeError, match="accepts none of"):
        copy_image("memory:src", "memory:dst", with_options(instances="all"))
    assert store.stats("dst").puts == 0
    # One image out of it is fine.
    result = copy_image("memory:src", "memory:dst", with_options(source_options=on("linux/arm/v7")))
    assert result.media_type == mt.OCI_MANIFEST


# -- blobs ------------------------------------------------------------------------------------


def test_blob_present_at_destination_is_reused_not_read(store: MemoryStore) -> None:
    img = make_image(30, (800, 900))
    store.add_built("src", img)
    other = make_image(31)
    store.add_built("dst", other)
    layer = next(d for d in img.blobs if d != img.config_digest)
    store.add_blob("dst", img.blobs[layer])
    events = EventCollector()

    result = copy_image("memory:src", "memory:dst", with_options(progress=events))

    assert store.stats("src").blob_reads[layer] == 0
    assert result.blobs_reused == 1
    assert result.blobs_copied == 2
    skipped = events.of_type(BlobSkipped)
    assert [e.descriptor.digest for e in skipped] == [layer]  # type: ignore[attr-defined]
    assert layer not in {e.descriptor.digest for e in events.of_type(BlobStarted)}  # type: ignore[attr-defined]
    dst = store.get("dst")
    assert dst is not None
    assert dst.manifest == img.manifest


def test_shared_blobs_are_copied_once(store: MemoryStore) -> None:
    index = make_multiarch(32)
    store.add_built("src", index)
    store.add_built("dst0", index.images[0])
    result = copy_image("memory:src", "memory:dst", with_options(instances="all"))
    assert result.blobs_copied == len(set().union(*(blob_digests(i) for i in index.images)))
    assert all(n == 1 for n in store.stats("src").blob_reads.values())


def test_corrupt_source_blob_fails_and_leaves_no_image(store: MemoryStore) -> None:
    img = make_image(33, (700, 800, 900))
    store.add_built("src", img)
    bad = next(d for d in img.blobs if d != img.config_digest)
    store.corrupt_blob("src", bad)
    before = store.snapshot()

    with pytest.raises(DigestMismatchError) as info:
        copy_image("memory:src", "memory:dst")

    assert info.value.expected == bad
    assert store.snapshot() == before
    assert store.get("dst") is None


def test_corrupt_source_blob_leaves_an_existing_image_unchanged(store: MemoryStore) -> None:
    img = make_image(34)
    store.add_built("src", img)
    store.add_built("dst", make_image(35))
    store.corrupt_blob("src", img.config_digest)
    before = store.snapshot()
    with pytest.raises(DigestMismatchError):
        copy_image("memory:src", "memory:dst", with_options(concurrency=1))
    assert store.snapshot() == before
    assert store.stats("dst").commits == 0


def test_first_failure_cancels_the_remaining_transfers(store: MemoryStore) -> None:
    img = make_image(36, (100,) * 12)
    store.add_built("src", img)
    layer0 = json.loads(img.manifest)["layers"][0]["digest"]
    store.corrupt_blob("src", Digest.parse(layer0))
    store.configure("dst", put_blob_delay=0.05)
    with pytest.raises(DigestMismatchError):
        copy_image("memory:src", "memory:dst", with_options(concurrency=2))
    assert store.stats("dst").puts < 6  # of 13 blobs


def test_os_errors_become_copy_errors(store: MemoryStore) -> None:
    store.add_built("src", make_image(37))
    store.configure("src", blob_read_error=OSError(5, "Input/output error"))
    with pytest.raises(CopyError, match="Input/output error") as info:
        copy_image("memory:src", "memory:dst")
    assert isinstance(info.value.__cause__, OSError)
    assert store.get("dst") is None


def test_blobs_are_copied_in_parallel_when_allowed(store: MemoryStore) -> None:
    store.add_built("src", make_image(40, (100,) * 7))
    store.configure("dst", put_blob_delay=0.05)
    copy_image("memory:src", "memory:dst", with_options(concurrency=4))
    assert 2 <= store.stats("dst").max_in_flight <= 4


def test_blobs_are_copied_serially_when_the_destination_says_so(store: MemoryStore) -> None:
    store.add_built("src", make_image(41, (100,) * 7))
    store.configure("dst", put_blob_delay=0.02, concurrent_blob_writes=False)
    result = copy_image("memory:src", "memory:dst", with_options(concurrency=4))
    assert store.stats("dst").max_in_flight == 1
    assert result.blobs_copied == 8


def test_blobs_are_copied_serially_when_the_source_says_so(store: MemoryStore) -> None:
    store.add_built("src", make_image(42, (100,) * 7))
    store.configure("src", concurrent_blob_reads=False)
    store.configure("dst", put_blob_delay=0.02)
    copy_image("memory:src", "memory:dst", with_options(concurrency=4))
    assert store.stats("dst").max_in_flight == 1


def _foreign_image() -> tuple[bytes, dict[Digest, bytes], Digest]:
    img = make_image(43, (100,))
    obj = json.loads(img.manifest)
    foreign = Digest.from_bytes(b"not distributed here")
    obj["layers"].append(
        {
            "mediaType": mt.OCI_NONDISTRIBUTABLE_LAYER_GZIP,
            "digest": str(foreign),
            "size": 20,
            "urls": ["https://example.com/layer.tar.gz"],
        }
    )
    return json.dumps(obj).encode(), img.blobs, foreign


def test_foreign_layers_are_left_where_they_are(store: MemoryStore) -> None:
    manifest, blobs, foreign = _foreign_image()
    store.add_image("src", manifest, mt.OCI_MANIFEST, blobs)
    store.configure("dst", accepts_foreign_layers=True)
    events = EventCollector()
    result = copy_image("memory:src", "memory:dst", with_options(progress=events))
    assert result.manifest == manifest
    assert (result.blobs_copied, result.blobs_reused) == (2, 1)
    skipped = events.of_type(BlobSkipped)
    assert [(e.descriptor.digest, e.reason) for e in skipped] == [(foreign, "foreign")]  # type: ignore[attr-defined]


def test_missing_blob_error_propagates_unchanged(store: MemoryStore) -> None:
    manifest, blobs, _ = _foreign_image()
    store.add_image("src", manifest, mt.OCI_MANIFEST, blobs)
    with pytest.raises(BlobNotFoundError):
        copy_image("memory:src", "memory:dst")
    assert store.get("dst") is None


def test_layer_compression_follows_the_destination(store: MemoryStore) -> None:
    # Was refused before the engine could change compression; see test_copy_compression.py.
    img = make_image(44)
    store.add_built("src", img)
    store.configure("gz", layer_compression=LayerCompression.COMPRESS)
    assert (
        copy_image("memory:src", "memory:gz").blobs_copied == 3
    )  # already compressed: nothing to do
    store.configure("plain", layer_compression=LayerCompression.DECOMPRESS)
    result = copy_image("memory:src", "memory:plain")
    assert result.layers_recompressed == 2
    assert result.manifest_digest != img.digest


# -- progress ---------------------------------------------------------------------------------


def test_progress_events_order_and_totals(store: MemoryStore) -> None:
    big = 3 * 1024 * 1024 + 123
    img = make_image(50, (big, 2000))
    store.add_built("src", img)
    events = EventCollector()

    result = copy_image("memory:src", "memory:dst", with_options(progress=events, concurrency=2))

    evs = events.events
    assert evs[0] == CopyStarted("memory:src", "memory:dst")
    assert isinstance(evs[-1], CopyDone)
    assert evs[-1].result == result
    done = [e for e in evs if isinstance(e, BlobDone)]
    assert {e.descriptor.digest for e in done} == set(img.blobs)
    assert sum(e.size for e in done) == result.bytes_copied
    for d in img.blobs:
        started = next(
            i for i, e in enumerate(evs) if isinstance(e, BlobStarted) and e.descriptor.digest == d
        )
        finished = next(
            i for i, e in enumerate(evs) if isinstance(e, BlobDone) and e.descriptor.digest == d
        )
        progress = [
            (i, e.bytes_done)
            for i, e in enumerate(evs)
            if isinstance(e, BlobProgress) and e.descriptor.digest == d
        ]
        assert started < finished
        assert all(started < i < finished for i, _ in progress)
        sizes = [n for _, n in progress]
        assert sizes == sorted(sizes)
        assert sizes[-1] == len(img.blobs[d])
    big_digest = max(img.blobs, key=lambda d: len(img.blobs[d]))
    big_progress = [
        e for e in evs if isinstance(e, BlobProgress) and e.descriptor.digest == big_digest
    ]
    assert 3 <= len(big_progress) <= 5  # about one per MiB, not one per read
    written = [i for i, e in enumerate(evs) if isinstance(e, ManifestWritten)]
    assert len(written) == 1
    assert all(i < written[0] for i, e in enumerate(evs) if isinstance(e, BlobDone))
    (manifest_event,) = (evs[i] for i in written)
    assert manifest_event == ManifestWritten(result.manifest_digest, mt.OCI_MANIFEST, False)


def test_index_progress_reports_instances_then_the_index(store: MemoryStore) -> None:
    index = make_multiarch(51)
    store.add_built("src", index)
    events = EventCollector()
    copy_image("memory:src", "memory:dst", with_options(instances="all", progress=events))
    written = events.of_type(ManifestWritten)
    assert [(e.digest, e.instance) for e in written] == [  # type: ignore[attr-defined]
        *((img.digest, True) for img in index.images),
        (index.digest, False),
    ]


def test_failing_progress_callback_aborts(store: MemoryStore) -> None:
    store.add_built("src", make_image(52))

    def explode(event: object) -> None:
        if isinstance(event, BlobDone):
            raise RuntimeError("renderer broke")

    with pytest.raises(CopyError, match="renderer broke"):
        copy_image("memory:src", "memory:dst", with_options(progress=explode))
    assert store.get("dst") is None


# -- signatures -------------------------------------------------------------------------------


def test_signatures_are_copied(store: MemoryStore) -> None:
    img = make_image(60)
    store.add_built("src", img, signatures={None: [b"sig-1", b"sig-2"]})
    copy_image("memory:src", "memory:dst")
    dst = store.get("dst")
    assert dst is not None
    assert dst.signatures[None] == (b"sig-1", b"sig-2")


def test_signatures_of_the_chosen_instance_are_copied(store: MemoryStore) -> None:
    index = make_multiarch(61)
    arm64 = index.images[1]
    store.add_built("src", index, signatures={arm64.digest: [b"arm64-sig"], None: [b"top"]})
    copy_image("memory:src", "memory:dst", with_options(source_options=on("linux/arm64")))
    dst = store.get("dst")
    assert dst is not None
    assert dict(dst.signatures) == {None: (b"arm64-sig",)}


def test_signatures_the_destination_cannot_store(store: MemoryStore) -> None:
    store.add_built("src", make_image(62), signatures={None: [b"sig"]})
    store.configure("dst", supports_signatures=False)
    with pytest.raises(UnsupportedError, match="remove_signatures"):
        copy_image("memory:src", "memory:dst")
    assert store.stats("dst").puts == 0
    result = copy_image("memory:src", "memory:dst", with_options(remove_signatures=True))
    dst = store.get("dst")
    assert dst is not None
    assert not dst.signatures
    assert result.blobs_copied == 3


def test_conversion_would_invalidate_signatures(store: MemoryStore) -> None:
    store.add_built("src", make_image(63), signatures={None: [b"sig"]})
    with pytest.raises(UnsupportedError, match="invalidate"):
        copy_image("memory:src", "memory:dst", with_options(format="v2s2"))
    result = copy_image(
        "memory:src", "memory:dst", with_options(format="v2s2", remove_signatures=True)
    )
    assert result.converted


def test_subset_would_invalidate_index_signatures(store: MemoryStore) -> None:
    store.add_built("src", make_multiarch(64), signatures={None: [b"index-sig"]})
    with pytest.raises(UnsupportedError, match="invalidate"):
        copy_image("memory:src", "memory:dst", with_options(instances=["linux/amd64"]))
    result = copy_image("memory:src", "memory:dst", with_options(instances="all"))
    dst = store.get("dst")
    assert dst is not None
    assert dst.signatures[None] == (b"index-sig",)
    assert result.manifest_digest == dst.digest


# -- options ----------------------------------------------------------------------------------


def test_options_validation() -> None:
    assert CopyOptions().instances == "system"
    assert CopyOptions(instances="linux/arm64").instances == (Platform("linux", "arm64"),)
    options = CopyOptions(instances=["linux/amd64", "linux/amd64", Platform.parse("linux/arm")])
    assert options.instances == (Platform("linux", "amd64"), Platform("linux", "arm"))
    with pytest.raises(InvalidPlatformError):
        CopyOptions(instances=[])
    with pytest.raises(InvalidPlatformError):
        CopyOptions(instances=["linux"])
    with pytest.raises(ValueError, match="format"):
        CopyOptions(format="v2s3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="concurrency"):
        CopyOptions(concurrency=0)
