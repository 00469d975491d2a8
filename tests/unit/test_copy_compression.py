"""Layer (de/re)compression in the copy engine, over the in-memory transport.

The oracle is independent of the code under test: Python's gzip module and the zstd module
decompress what the engine wrote, and tests/imagebuilder.py knows the diff IDs.
"""

from __future__ import annotations

import gzip
import importlib
import io
import json
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imagetypes import DigestChangeError

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from childpython import fork_while_held  # noqa: E402
from imagebuilder import BuiltImage, make_image, make_layer, make_multiarch  # noqa: E402

from imagetypes import (  # noqa: E402
    DigestMismatchError,
    LayerCompression,
    UnsupportedConversionError,
    register_transport,
)
from imagetypes import mediatypes as mt  # noqa: E402
from imagetypes.compression import zstd_available  # noqa: E402
from imagetypes.copy import (  # noqa: E402
    BlobDone,
    BlobSkipped,
    BlobStarted,
    CopyOptions,
    EventCollector,
    LayerRecompressed,
    copy_image,
)
from imagetypes.copy._progress import CopyCancelled  # noqa: E402
from imagetypes.descriptor import Descriptor  # noqa: E402
from imagetypes.digest import Digest  # noqa: E402
from imagetypes.plugins import reset_transports  # noqa: E402
from imagetypes.testing.memory import MemoryStore, MemoryTransport  # noqa: E402

needs_zstd = pytest.mark.skipif(not zstd_available(), reason="no zstd module installed")


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    store = MemoryStore()
    register_transport(MemoryTransport(store), replace=True)
    yield store
    reset_transports()


def zstd_decompress(data: bytes) -> bytes:
    try:
        zstd: Any = importlib.import_module("compression.zstd")
    except ImportError:
        zstd = importlib.import_module("backports.zstd")
    return bytes(zstd.decompress(data))


def uncompress(media_type: str, data: bytes) -> bytes:
    if media_type.endswith("+gzip") or media_type == mt.DOCKER_LAYER:
        return gzip.decompress(data)
    if media_type.endswith("+zstd"):
        return zstd_decompress(data)
    return data


def written(store: MemoryStore, name: str) -> tuple[dict[str, object], dict[Digest, bytes]]:
    image = store.get(name)
    assert image is not None
    return json.loads(image.manifest), dict(image.blobs)


def diff_ids(img: BuiltImage) -> list[str]:
    return list(json.loads(img.config)["rootfs"]["diff_ids"])


def check_layers(
    store: MemoryStore, name: str, img: BuiltImage, media_type: str
) -> list[dict[str, object]]:
    """The layers at ``name`` have ``media_type`` and uncompress to the image's diff IDs."""
    manifest, blobs = written(store, name)
    layers = manifest["layers"]
    assert isinstance(layers, list)
    assert [layer["mediaType"] for layer in layers] == [media_type] * len(layers)
    for layer, diff_id in zip(layers, diff_ids(img), strict=True):
        data = blobs[Digest.parse(layer["digest"])]
        assert len(data) == layer["size"]
        assert str(Digest.from_bytes(uncompress(media_type, data))) == diff_id
    config = manifest["config"]
    assert isinstance(config, dict)
    assert config["digest"] == str(img.config_digest)  # diff IDs unchanged: same config
    return layers


def uncompressed_image(seed: int, docker: bool = False) -> BuiltImage:
    """An image whose layers are plain tars (OCI_LAYER / Docker uncompressed)."""
    img = make_image(seed, (5000, 300_000), docker=docker)
    manifest = json.loads(img.manifest)
    blobs = {img.config_digest: img.config}
    layer_type = mt.DOCKER_UNCOMPRESSED_LAYER if docker else mt.OCI_LAYER
    for i, layer in enumerate(manifest["layers"]):
        tar, diff_id = make_layer(seed * 1000 + i, (5000, 300_000)[i], compress=False)
        assert Digest.from_bytes(tar) == diff_id
        blobs[diff_id] = tar
        layer.update(mediaType=layer_type, digest=str(diff_id), size=len(tar))
    raw = json.dumps(manifest, separators=(",", ":")).encode()
    return BuiltImage(raw, img.media_type, img.config, blobs)


# -- compress / decompress ----------------------------------------------------------------------


def test_destination_asking_for_decompression_gets_plain_tars(store: MemoryStore) -> None:
    img = make_image(1, (4000, 120_000))
    store.add_built("src", img)
    store.configure("plain", layer_compression=LayerCompression.DECOMPRESS)
    result = copy_image("memory:src", "memory:plain")
    layers = check_layers(store, "plain", img, mt.OCI_LAYER)
    assert [layer["digest"] for layer in layers] == diff_ids(img)
    assert result.layers_recompressed == 2
    assert result.blobs_copied == 3


def test_dest_decompress_option_keeps_docker_types(store: MemoryStore) -> None:
    img = make_image(2, docker=True)
    store.add_built("src", img)
    result = copy_image("memory:src", "memory:plain", CopyOptions(dest_decompress=True))
    check_layers(store, "plain", img, mt.DOCKER_UNCOMPRESSED_LAYER)
    assert result.media_type == mt.DOCKER_MANIFEST


def test_destination_asking_for_compression_compresses_plain_tars(store: MemoryStore) -> None:
    img = uncompressed_image(3)
    store.add_built("src", img)
    store.configure("gz", layer_compression=LayerCompression.COMPRESS)
    result = copy_image("memory:src", "memory:gz")
    check_layers(store, "gz", img, mt.OCI_LAYER_GZIP)
    assert result.layers_recompressed == 2


def test_compression_level_is_honoured(store: MemoryStore) -> None:
    img = uncompressed_image(4)
    store.add_built("src", img)
    copy_image("memory:src", "memory:fast", CopyOptions(dest_compress=True, dest_compress_level=1))
    copy_image("memory:src", "memory:best", CopyOptions(dest_compress=True, dest_compress_level=9))
    fast = check_layers(store, "fast", img, mt.OCI_LAYER_GZIP)
    best = check_layers(store, "best", img, mt.OCI_LAYER_GZIP)
    assert fast[1]["digest"] != best[1]["digest"]


def test_preserve_destination_leaves_layers_alone(store: MemoryStore) -> None:
    img = uncompressed_image(5)
    store.add_built("src", img)
    result = copy_image("memory:src", "memory:same")
    _manifest, _ = written(store, "same")
    assert result.manifest_digest == img.digest
    assert result.layers_recompressed == 0


@needs_zstd
def test_gzip_zstd_gzip_keeps_diff_ids(store: MemoryStore) -> None:
    img = make_image(6, (70_000, 2_500_000))
    store.add_built("src", img)
    events = EventCollector()
    to_zstd = copy_image(
        "memory:src", "memory:zstd", CopyOptions(dest_compress_format="zstd", progress=events)
    )
    check_layers(store, "zstd", img, mt.OCI_LAYER_ZSTD)
    assert to_zstd.layers_recompressed == 2
    back = copy_image("memory:zstd", "memory:gzip", CopyOptions(dest_compress_format="gzip"))
    check_layers(store, "gzip", img, mt.OCI_LAYER_GZIP)
    assert back.layers_recompressed == 2
    # Events: recompression is announced, counted in source bytes, and reported.
    started = [e for e in events.events if isinstance(e, BlobStarted)]
    assert sorted(e.operation for e in started) == ["copy", "recompress", "recompress"]
    done = {e.descriptor.digest: e.size for e in events.events if isinstance(e, BlobDone)}
    assert done == {d: len(b) for d, b in img.blobs.items()}
    recompressed = [e for e in events.events if isinstance(e, LayerRecompressed)]
    assert {(e.from_compression, e.to_compression) for e in recompressed} == {("gzip", "zstd")}
    manifest, _ = written(store, "zstd")
    assert {e.stored.digest for e in recompressed} == {
        Digest.parse(layer["digest"])
        for layer in manifest["layers"]  # type: ignore[attr-defined]
    }


@needs_zstd
def test_zstd_cannot_go_into_a_docker_manifest(store: MemoryStore) -> None:
    store.add_built("src", make_image(7, docker=True))
    with pytest.raises(UnsupportedConversionError, match="zstd"):
        copy_image("memory:src", "memory:dst", CopyOptions(dest_compress_format="zstd"))
    assert store.stats("dst").puts == 0
    # As OCI it works, Docker's gzip layers becoming zstd OCI layers.
    img = make_image(7, docker=True)
    copy_image("memory:src", "memory:oci", CopyOptions(dest_compress_format="zstd", format="oci"))
    check_layers(store, "oci", img, mt.OCI_LAYER_ZSTD)


@needs_zstd
def test_zstd_oci_to_docker_recompressed_to_gzip(store: MemoryStore) -> None:
    img = make_image(8)
    store.add_built("src", img)
    copy_image("memory:src", "memory:zstd", CopyOptions(dest_compress_format="zstd"))
    with pytest.raises(UnsupportedConversionError, match="zstd"):
        copy_image("memory:zstd", "memory:docker", CopyOptions(format="v2s2"))
    result = copy_image(
        "memory:zstd", "memory:docker", CopyOptions(format="v2s2", dest_compress_format="gzip")
    )
    assert result.media_type == mt.DOCKER_MANIFEST
    check_layers(store, "docker", img, mt.DOCKER_LAYER)


def test_layers_are_recompressed_in_parallel(store: MemoryStore) -> None:
    img = uncompressed_image(9)
    store.add_built("src", img)
    store.configure("gz", put_blob_delay=0.2)
    copy_image("memory:src", "memory:gz", CopyOptions(dest_compress=True, concurrency=4))
    assert store.stats("gz").max_in_flight >= 2


@needs_zstd
@pytest.mark.parametrize("turns", [2, 3])
def test_the_process_transforms_a_bounded_number_of_layers_at_once(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch, turns: int
) -> None:
    """More layers than turns, and workers for all: at most ``transform_streams`` are
    recompressed at once (the config is put beside them), and the allocator is given back
    its free memory after each (glibc's malloc_trim, where the C library has it)."""
    from imagetypes.copy import _engine

    trims: list[int] = []
    monkeypatch.setattr(_engine, "transform_streams", turns)
    monkeypatch.setattr(_engine, "_malloc_trim", lambda: trims.append)
    img = make_image(21, (3000,) * 7)
    store.add_built("src", img)
    store.configure("zst", put_blob_delay=0.15)
    options = CopyOptions(dest_compress_format="zstd", concurrency=8)
    copy_image("memory:src", "memory:zst", options)
    check_layers(store, "zst", img, mt.OCI_LAYER_ZSTD)
    assert store.stats("zst").max_in_flight == turns + 1
    assert trims == [0] * 7
    # Without the bound, the same copy had them all in flight: the test can tell.
    monkeypatch.setattr(_engine, "transform_streams", 99)
    store.configure("zst2", put_blob_delay=0.15)
    copy_image("memory:src", "memory:zst2", options)
    assert store.stats("zst2").max_in_flight >= 6


def test_a_copy_abandoned_while_waiting_for_a_turn_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    from imagetypes.copy import _engine

    monkeypatch.setattr(_engine, "transform_streams", 1)
    cancel = threading.Event()
    desc = Descriptor(mt.OCI_LAYER_GZIP, Digest.from_bytes(b"x"), 1)
    with _engine._transform_turn(desc, cancel):
        cancel.set()
        # The one turn is taken: the second waits, then sees the copy abandoned.
        with pytest.raises(CopyCancelled), _engine._transform_turn(desc, cancel):
            pass
    with _engine._transform_turn(desc, threading.Event()):  # given back
        pass


def test_index_instances_are_recompressed(store: MemoryStore) -> None:
    index = make_multiarch(10)
    store.add_built("src", index)
    result = copy_image(
        "memory:src", "memory:plain", CopyOptions(instances="all", dest_decompress=True)
    )
    image = store.get("plain")
    assert image is not None
    top = json.loads(image.manifest)
    assert [e["digest"] for e in top["manifests"]] == [str(d) for d in result.instance_digests]
    assert result.layers_recompressed == 6
    for entry, built in zip(top["manifests"], index.images, strict=True):
        raw, _ = image.manifests[Digest.parse(entry["digest"])]
        assert entry["size"] == len(raw)
        assert [x["digest"] for x in json.loads(raw)["layers"]] == diff_ids(built)


# -- verification -------------------------------------------------------------------------------


def _with_wrong_diff_id(img: BuiltImage) -> BuiltImage:
    config = json.loads(img.config)
    config["rootfs"]["diff_ids"][1] = "sha256:" + "0" * 64
    data = json.dumps(config, separators=(",", ":")).encode()
    manifest = json.loads(img.manifest)
    manifest["config"].update(digest=str(Digest.from_bytes(data)), size=len(data))
    blobs = {d: b for d, b in img.blobs.items() if d != img.config_digest}
    blobs[Digest.from_bytes(data)] = data
    return BuiltImage(json.dumps(manifest).encode(), img.media_type, data, blobs)


def test_decompressed_layer_must_match_its_diff_id(store: MemoryStore) -> None:
    store.add_built("src", _with_wrong_diff_id(make_image(11)))
    with pytest.raises(DigestMismatchError, match="diff ID") as info:
        copy_image("memory:src", "memory:plain", CopyOptions(dest_decompress=True))
    assert info.value.expected == Digest.parse("sha256:" + "0" * 64)
    assert store.get("plain") is None


@needs_zstd
def test_recompressed_layer_must_match_its_diff_id(store: MemoryStore) -> None:
    store.add_built("src", _with_wrong_diff_id(make_image(12)))
    with pytest.raises(DigestMismatchError, match="diff ID"):
        copy_image("memory:src", "memory:zstd", CopyOptions(dest_compress_format="zstd"))
    assert store.get("zstd") is None


def test_corrupt_compressed_layer_is_detected(store: MemoryStore) -> None:
    img = make_image(13)
    store.add_built("src", img)
    layer = Digest.parse(json.loads(img.manifest)["layers"][0]["digest"])
    store.corrupt_blob("src", layer)
    from imagetypes import ImageError

    with pytest.raises(ImageError):
        copy_image("memory:src", "memory:plain", CopyOptions(dest_decompress=True))
    assert store.get("plain") is None


# -- reuse ----------------------------------------------------------------------------------------


def test_destination_holding_the_uncompressed_layer_is_not_written_again(
    store: MemoryStore,
) -> None:
    img = make_image(14)
    store.add_built("src", img)
    copy_image("memory:src", "memory:plain", CopyOptions(dest_decompress=True))
    puts = store.stats("plain").puts
    events = EventCollector()
    result = copy_image(
        "memory:src",
        "memory:plain",
        CopyOptions(dest_decompress=True, progress=events, skip_identical=False),
    )
    assert store.stats("plain").puts == puts
    assert result.blobs_reused == 3
    skipped = [e for e in events.events if isinstance(e, BlobSkipped)]
    assert {str(e.stored.digest) for e in skipped if e.stored is not None} == set(diff_ids(img))


# -- preserve_digests -----------------------------------------------------------------------------


def test_preserve_digests_refuses_and_names_the_change(store: MemoryStore) -> None:
    store.add_built("src", make_image(15))
    with pytest.raises(DigestChangeError, match="decompressing layer 0") as info:
        copy_image(
            "memory:src", "memory:x", CopyOptions(dest_decompress=True, preserve_digests=True)
        )
    assert len(info.value.changes) == 2
    with pytest.raises(DigestChangeError, match="converting the manifest"):
        copy_image("memory:src", "memory:x", CopyOptions(format="v2s2", preserve_digests=True))
    store.add_built("multi", make_multiarch(15))
    with pytest.raises(DigestChangeError, match="dropping 2 of the 3 entries"):
        copy_image(
            "memory:multi",
            "memory:x",
            CopyOptions(instances=["linux/amd64"], preserve_digests=True),
        )
    assert store.stats("x").puts == 0
    # Nothing to change: fine.
    copy_image("memory:src", "memory:x", CopyOptions(preserve_digests=True))
    assert store.get("x") is not None


def test_preserve_digests_allows_an_unchanged_index(store: MemoryStore) -> None:
    index = make_multiarch(16)
    store.add_built("src", index)
    result = copy_image(
        "memory:src", "memory:x", CopyOptions(instances="all", preserve_digests=True)
    )
    assert result.manifest_digest == index.digest


def test_tar_content_survives_the_round_trip(store: MemoryStore) -> None:
    img = make_image(17, (50_000,))
    store.add_built("src", img)
    copy_image("memory:src", "memory:plain", CopyOptions(dest_decompress=True))
    manifest, blobs = written(store, "plain")
    layers = manifest["layers"]
    assert isinstance(layers, list)
    (layer,) = layers
    with tarfile.open(fileobj=io.BytesIO(blobs[Digest.parse(layer["digest"])])) as tar:
        assert tar.getnames() == ["file-17000"]


# -- zstd on worker threads for large layers ---------------------------------------------------


def zstd_oracle(data: bytes, *, workers: bool) -> bytes:
    """zstd as the compression module documents it, one thread or zstd's worker threads."""
    from imagetypes.compression import ZSTD_JOB_SIZE, ZSTD_OVERLAP_LOG

    try:
        zstd: Any = importlib.import_module("compression.zstd")
    except ImportError:
        zstd = importlib.import_module("backports.zstd")
    param = zstd.CompressionParameter
    options: dict[Any, int] = {}
    if workers:
        options = {param.nb_workers: 2, param.job_size: ZSTD_JOB_SIZE}
        options[param.overlap_log] = ZSTD_OVERLAP_LOG
    obj = zstd.ZstdCompressor(options=options)
    return bytes(obj.compress(data) + obj.flush(obj.FLUSH_FRAME))


@pytest.fixture
def small_zstd_threshold(monkeypatch: pytest.MonkeyPatch) -> int:
    """Layers of 1 MiB or more (as their descriptors say) go to zstd's worker threads."""
    from imagetypes import compression

    monkeypatch.setattr(compression, "ZSTD_PARALLEL_THRESHOLD", 1024 * 1024)
    return 1024 * 1024


def zstd_turns() -> int:
    from imagetypes import compression

    return sum(compression._zstd_holders.values())


@needs_zstd
def test_large_layers_go_to_zstd_worker_threads_by_descriptor_size(
    store: MemoryStore, small_zstd_threshold: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imagetypes import compression

    monkeypatch.setattr(compression, "zstd_parallel_streams", 1)
    img = make_image(21, (70_000, 2_500_000, 1_200_000, 1_500_000))
    store.add_built("src", img)
    options = CopyOptions(dest_compress_format="zstd", concurrency=4)
    copy_image("memory:src", "memory:one", options)
    copy_image("memory:src", "memory:two", options)
    layers = check_layers(store, "one", img, mt.OCI_LAYER_ZSTD)
    _, blobs = written(store, "one")
    source_layers = json.loads(img.manifest)["layers"]
    for layer, source in zip(layers, source_layers, strict=True):
        data = blobs[Digest.parse(str(layer["digest"]))]
        plain = zstd_decompress(data)
        # The source descriptor's size picks the mode: fixed for the blob, whatever the load.
        large = source["size"] >= small_zstd_threshold
        assert data == zstd_oracle(plain, workers=large)
    # Three layers took turns (one at a time), the same bytes every time.
    assert written(store, "two")[0] == written(store, "one")[0]
    assert zstd_turns() == 0


@needs_zstd
def test_large_layer_on_zstd_worker_threads_must_match_its_diff_id(
    store: MemoryStore, small_zstd_threshold: int
) -> None:
    img = make_image(22, (5000, 2_000_000))
    store.add_built("src", _with_wrong_diff_id(img))
    with pytest.raises(DigestMismatchError, match="diff ID") as info:
        copy_image("memory:src", "memory:zstd", CopyOptions(dest_compress_format="zstd"))
    assert info.value.expected == Digest.parse("sha256:" + "0" * 64)
    assert store.get("zstd") is None
    assert zstd_turns() == 0


@needs_zstd
def test_corrupt_large_layer_on_zstd_worker_threads_fails_and_frees_the_turn(
    store: MemoryStore, small_zstd_threshold: int
) -> None:
    from imagetypes import ImageError

    img = make_image(23, (5000, 2_000_000))
    store.add_built("src", img)
    layer = Digest.parse(json.loads(img.manifest)["layers"][1]["digest"])
    store.corrupt_blob("src", layer)
    with pytest.raises(ImageError):
        copy_image("memory:src", "memory:zstd", CopyOptions(dest_compress_format="zstd"))
    assert store.get("zstd") is None
    assert zstd_turns() == 0
    # The turn is free: the next copy of a large layer does not wait for the failed one.
    good = make_image(24, (5000, 2_000_000))
    store.add_built("good", good)
    copy_image("memory:good", "memory:zstd2", CopyOptions(dest_compress_format="zstd"))
    check_layers(store, "zstd2", good, mt.OCI_LAYER_ZSTD)


def _child_takes_a_turn_and_the_writer(key: tuple[str, str, Digest]) -> None:
    import threading

    from imagetypes.copy import _engine

    desc = Descriptor(mt.OCI_LAYER_GZIP, key[2], 1)
    with _engine._transform_turn(desc, threading.Event()), _engine._sole_writer(key):
        pass


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_a_forked_child_does_not_wait_for_the_parents_turns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A thread of the parent holds the one transform turn and a blob's writer lock when the
    process forks: the child, where that thread does not exist, takes both at once."""
    import contextlib
    import threading

    from imagetypes.copy import _engine

    monkeypatch.setattr(_engine, "transform_streams", 1)
    key = ("docker", "r.example/app", Digest.from_bytes(b"layer"))
    desc = Descriptor(mt.OCI_LAYER_GZIP, key[2], 1)

    @contextlib.contextmanager
    def turn_and_writer() -> Iterator[None]:
        with _engine._transform_turn(desc, threading.Event()), _engine._sole_writer(key):
            yield

    assert fork_while_held(turn_and_writer, _child_takes_a_turn_and_the_writer, key) == 0
    _child_takes_a_turn_and_the_writer(key)  # the parent's are free again
