"""Per-blob retry in the copy engine, over the in-memory transport and a flaky destination.

The destination reads part of what it is given and then fails, as an upload cut by the network
does: a fault a real server cannot be made to produce on demand. Tests against the real
registry, through a proxy that cuts uploads, are in tests/reliability/test_blob_retry.py.
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from imagebuilder import BuiltImage, make_image  # noqa: E402

from imagetypes import (  # noqa: E402
    BlobInfo,
    Descriptor,
    DigestMismatchError,
    ImageError,
    PutBlobOptions,
    RetryAttempt,
    RetryPolicy,
    TransportOptions,
    register_transport,
)
from imagetypes.copy import (  # noqa: E402
    BlobDone,
    BlobProgress,
    BlobStarted,
    CopyOptions,
    EventCollector,
    Retrying,
    copy_image,
)
from imagetypes.digest import Digest, Readable  # noqa: E402
from imagetypes.plugins import reset_transports  # noqa: E402
from imagetypes.testing.memory import (  # noqa: E402
    MemoryDestination,
    MemoryReference,
    MemorySource,
    MemoryStore,
    MemoryTransport,
)

FAST = RetryPolicy(attempts=2, backoff=0.0, jitter=False)


class CutError(ImageError):
    """What a transport raises when its connection broke: worth another try."""

    retryable = True


class Flaky:
    """Which puts fail: ``failures[digest]`` (or ``failures[None]`` for any blob) counts down."""

    def __init__(self) -> None:
        self.failures: dict[Digest | None, int] = {}
        self.error: type[ImageError] = CutError
        #: Wrap whatever reading the stream raised in ``error`` (as a careless transport might).
        self.wrap_read_errors = False
        self.puts: list[Digest | None] = []


class FlakyDestination(MemoryDestination):
    def __init__(self, reference: MemoryReference, flaky: Flaky) -> None:
        super().__init__(reference)
        self._flaky = flaky

    def put_blob(
        self, stream: Readable, info: BlobInfo, options: PutBlobOptions | None = None
    ) -> Descriptor:
        flaky = self._flaky
        flaky.puts.append(info.digest)
        key = info.digest if info.digest in flaky.failures else None
        if flaky.failures.get(key, 0) > 0:
            flaky.failures[key] -= 1
            try:
                stream.read(100)  # part of it went out, then the connection broke
                if flaky.wrap_read_errors:
                    while stream.read(64 * 1024):
                        pass
            except Exception as e:
                if flaky.wrap_read_errors:
                    raise flaky.error(f"sending {info.digest} failed: {e}") from e
                raise
            raise flaky.error(f"the connection broke while sending {info.digest}")
        return super().put_blob(stream, info, options)


class FlakyReference(MemoryReference):
    def open_destination(self, options: TransportOptions | None = None) -> FlakyDestination:
        transport = self.transport
        assert isinstance(transport, FlakyTransport)
        return FlakyDestination(self, transport.flaky)


class FlakyTransport(MemoryTransport):
    name = "flaky"

    def __init__(self, store: MemoryStore, flaky: Flaky) -> None:
        super().__init__(store)
        self.flaky = flaky

    def parse_reference(self, text: str) -> FlakyReference:
        return FlakyReference(self, text)


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    store = MemoryStore()
    register_transport(MemoryTransport(store), replace=True)
    yield store
    reset_transports()


@pytest.fixture
def flaky(store: MemoryStore) -> Flaky:
    flaky = Flaky()
    register_transport(FlakyTransport(store, flaky), replace=True)
    return flaky


def options(events: EventCollector | None = None, retry: RetryPolicy = FAST) -> CopyOptions:
    return CopyOptions(
        destination_options=TransportOptions(retry=retry),
        progress=events,
        concurrency=1,
    )


def the_layer(img: BuiltImage) -> Digest:
    return max((d for d in img.blobs if d != img.config_digest), key=lambda d: len(img.blobs[d]))


def test_a_failed_put_is_tried_again_from_a_fresh_read(store: MemoryStore, flaky: Flaky) -> None:
    img = make_image(1, (300_000, 2_000))
    store.add_built("src", img)
    layer = the_layer(img)
    flaky.failures[layer] = 1
    events = EventCollector()

    result = copy_image("memory:src", "flaky:dst", options(events))

    dst = store.get("dst")
    assert dst is not None
    assert dst.manifest == img.manifest
    assert dict(dst.blobs) == img.blobs
    assert flaky.puts.count(layer) == 2
    # The source was read again: the first stream was consumed by the failed put.
    assert store.stats("src").blob_reads[layer] == 2
    retries = [e for e in events.events if isinstance(e, Retrying)]
    assert len(retries) == 1
    (retry,) = retries
    assert retry.side == "destination"
    assert str(layer) in retry.operation
    assert retry.attempt == 1
    assert "connection broke" in retry.reason
    # One start and one end per blob; bytes are counted once, from the try that succeeded.
    started = [e.descriptor.digest for e in events.events if isinstance(e, BlobStarted)]
    done = [e for e in events.events if isinstance(e, BlobDone)]
    assert sorted(map(str, started)) == sorted(map(str, img.blobs))
    assert sorted(str(e.descriptor.digest) for e in done) == sorted(map(str, img.blobs))
    assert {e.descriptor.digest: e.size for e in done}[layer] == len(img.blobs[layer])
    assert result.blobs_copied == len(img.blobs)
    assert result.bytes_copied == sum(len(b) for b in img.blobs.values())
    progress = [e.bytes_done for e in events.events if isinstance(e, BlobProgress)]
    assert max(progress) <= len(img.blobs[layer])


def test_the_budget_is_per_blob(store: MemoryStore, flaky: Flaky) -> None:
    img = make_image(2, (5_000, 6_000, 7_000))
    store.add_built("src", img)
    for digest in img.blobs:
        flaky.failures[digest] = FAST.attempts  # each blob fails as often as the budget allows
    events = EventCollector()
    copy_image("memory:src", "flaky:dst", options(events))
    assert store.get("dst") is not None
    retries = events.of_type(Retrying)
    assert len(retries) == FAST.attempts * len(img.blobs)
    attempts = sorted(r.attempt for r in retries if isinstance(r, Retrying))
    assert attempts == sorted(list(range(1, FAST.attempts + 1)) * len(img.blobs))


def test_a_put_failing_every_time_fails_after_the_budget(store: MemoryStore, flaky: Flaky) -> None:
    img = make_image(3, (4_000,))
    store.add_built("src", img)
    store.add_built("dst", make_image(4, (1_000,)))
    before = store.get("dst")
    layer = the_layer(img)
    flaky.failures[layer] = 100
    events = EventCollector()
    with pytest.raises(CutError, match="connection broke"):
        copy_image("memory:src", "flaky:dst", options(events))
    assert flaky.puts.count(layer) == FAST.attempts + 1
    assert len(events.of_type(Retrying)) == FAST.attempts
    assert store.get("dst") == before  # nothing committed


def test_no_retry_with_a_policy_of_none(store: MemoryStore, flaky: Flaky) -> None:
    img = make_image(5, (4_000,))
    store.add_built("src", img)
    layer = the_layer(img)
    flaky.failures[layer] = 1
    with pytest.raises(CutError):
        copy_image("memory:src", "flaky:dst", options(retry=RetryPolicy.none()))
    assert flaky.puts.count(layer) == 1


def test_an_error_not_marked_retryable_is_not_retried(store: MemoryStore, flaky: Flaky) -> None:
    img = make_image(6, (4_000,))
    store.add_built("src", img)
    layer = the_layer(img)
    flaky.failures[layer] = 1
    flaky.error = ImageError  # e.g. refused credentials: trying again would not help
    with pytest.raises(ImageError, match="connection broke"):
        copy_image("memory:src", "flaky:dst", options())
    assert flaky.puts.count(layer) == 1
    assert store.get("dst") is None


def test_a_corrupt_source_is_not_retried_even_if_the_error_says_so(
    store: MemoryStore, flaky: Flaky
) -> None:
    img = make_image(7, (40_000,))
    store.add_built("src", img)
    layer = the_layer(img)
    store.corrupt_blob("src", layer)
    # The destination reads to the end and wraps the verification failure in a "retryable"
    # error: the digest mismatch in its causes still stops the copy at once.
    flaky.failures[layer] = 5
    flaky.wrap_read_errors = True
    with pytest.raises(CutError) as raised:
        copy_image("memory:src", "flaky:dst", options())
    assert isinstance(raised.value.__cause__, DigestMismatchError)
    assert flaky.puts.count(layer) == 1
    assert store.stats("src").blob_reads[layer] == 1


def test_a_corrupt_source_fails_with_the_mismatch_on_the_first_try(
    store: MemoryStore, flaky: Flaky
) -> None:
    img = make_image(8, (40_000,))
    store.add_built("src", img)
    layer = the_layer(img)
    store.corrupt_blob("src", layer)
    with pytest.raises(DigestMismatchError):
        copy_image("memory:src", "flaky:dst", options())
    assert flaky.puts.count(layer) == 1


def test_a_failing_source_is_not_read_again(store: MemoryStore, flaky: Flaky) -> None:
    img = make_image(9, (4_000,))
    store.add_built("src", img)
    # The source's own transport had its retries (a registry source resumes downloads): a
    # retryable error from reading the source is not the destination's to retry.
    store.configure("src", blob_read_error=CutError("the source registry went away"))
    events = EventCollector()
    with pytest.raises(CutError, match="source registry"):
        copy_image("memory:src", "flaky:dst", options(events))
    assert events.of_type(Retrying) == []
    assert flaky.puts == []


def test_a_source_error_wrapped_by_the_destination_is_not_retried(
    store: MemoryStore, flaky: Flaky, monkeypatch: pytest.MonkeyPatch
) -> None:
    img = make_image(10, (40_000,))
    store.add_built("src", img)
    layer = the_layer(img)

    class Breaking:
        """A source stream that breaks after some bytes."""

        def __init__(self, data: bytes) -> None:
            self._data = data
            self._pos = 0

        def read(self, size: int = -1, /) -> bytes:
            if self._pos >= 1000:
                raise CutError("the source connection broke")
            out = self._data[self._pos : self._pos + min(size, 500)]
            self._pos += len(out)
            return out

    original = MemorySource.get_blob_stream

    def breaking(self: MemorySource, descriptor: Descriptor, offset: int = 0) -> Readable:
        if descriptor.digest == layer:
            return Breaking(img.blobs[layer])
        return original(self, descriptor, offset)

    monkeypatch.setattr(MemorySource, "get_blob_stream", breaking)
    flaky.failures[layer] = 5
    flaky.wrap_read_errors = True
    with pytest.raises(CutError, match="source connection broke") as raised:
        copy_image("memory:src", "flaky:dst", options())
    assert isinstance(raised.value.__cause__, CutError)  # the destination wrapped it
    assert flaky.puts.count(layer) == 1


def test_a_decompressed_layer_is_rebuilt_on_retry(store: MemoryStore, flaky: Flaky) -> None:
    img = make_image(11, (200_000,))
    store.add_built("src", img)
    layer = the_layer(img)
    uncompressed = gzip.decompress(img.blobs[layer])
    diff_id = Digest.from_bytes(uncompressed)
    flaky.failures[diff_id] = 1
    events = EventCollector()
    opts = CopyOptions(
        destination_options=TransportOptions(retry=FAST),
        progress=events,
        dest_decompress=True,
    )
    result = copy_image("memory:src", "flaky:dst", opts)
    dst = store.get("dst")
    assert dst is not None
    assert dst.blobs[diff_id] == uncompressed
    assert flaky.puts.count(diff_id) == 2
    assert store.stats("src").blob_reads[layer] == 2
    assert len(events.of_type(Retrying)) == 1
    assert result.layers_recompressed == 1


def test_on_retry_hears_of_blob_retries_without_a_progress_callback(
    store: MemoryStore, flaky: Flaky
) -> None:
    img = make_image(12, (4_000,))
    store.add_built("src", img)
    layer = the_layer(img)
    flaky.failures[layer] = 1
    heard: list[RetryAttempt] = []
    opts = CopyOptions(destination_options=TransportOptions(retry=FAST, on_retry=heard.append))
    copy_image("memory:src", "flaky:dst", opts)
    assert [(a.attempt, str(layer) in a.operation) for a in heard] == [(1, True)]


def test_concurrent_blobs_retry_independently(store: MemoryStore, flaky: Flaky) -> None:
    img = make_image(13, (50_000, 60_000, 70_000, 80_000))
    store.add_built("src", img)
    for digest in img.blobs:
        flaky.failures[digest] = 1
    events = EventCollector()
    opts = CopyOptions(destination_options=TransportOptions(retry=FAST), progress=events)
    result = copy_image("memory:src", "flaky:dst", opts)
    dst = store.get("dst")
    assert dst is not None
    assert dict(dst.blobs) == img.blobs
    assert len(events.of_type(Retrying)) == len(img.blobs)
    assert result.bytes_copied == sum(len(b) for b in img.blobs.values())


def test_the_source_watch_keeps_readinto_and_records_failures() -> None:
    import io

    from imagetypes.copy._engine import _SourceWatch

    watch = _SourceWatch()
    stream = watch.open(lambda: io.BytesIO(b"abcdef"))
    buffer = bytearray(4)
    # Readers fill their buffers without a copy when the source can (ProgressReader.readinto).
    assert stream.readinto(buffer) == 4  # type: ignore[attr-defined]
    assert bytes(buffer) == b"abcd"
    assert watch.error is None

    class OnlyRead:
        def read(self, size: int = -1, /) -> bytes:
            raise CutError("gone")

    watch = _SourceWatch()
    stream = watch.open(OnlyRead)
    assert not hasattr(stream, "readinto")
    with pytest.raises(CutError) as raised:
        stream.read(10)
    assert watch.error is raised.value

    def failing() -> Readable:
        raise CutError("cannot open")

    watch = _SourceWatch()
    with pytest.raises(CutError) as raised:
        watch.open(failing)
    assert watch.error is raised.value
