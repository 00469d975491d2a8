"""imagetypes.testing.conformance: passes a correct transport, and catches broken ones.

The broken transports are the public memory transport with one contract broken each.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import pytest

from imagetypes.descriptor import BlobInfo, Descriptor
from imagetypes.digest import CHUNK_SIZE, Digest, Readable
from imagetypes.testing.conformance import (
    CHECK_NAMES,
    ConformanceError,
    ConformanceSuite,
    check_transport,
)
from imagetypes.testing.memory import (
    MemoryDestination,
    MemoryReference,
    MemorySource,
    MemoryStore,
    MemoryTransport,
)
from imagetypes.types import PutBlobOptions, TransportOptions


def factory(
    source: type[MemorySource] = MemorySource,
    destination: type[MemoryDestination] = MemoryDestination,
) -> Callable[[str], MemoryReference]:
    """References of a fresh memory store, opening the given source and destination classes."""

    class Reference(MemoryReference):
        def open_source(self, options: TransportOptions | None = None) -> MemorySource:
            return source(self)

        def open_destination(self, options: TransportOptions | None = None) -> MemoryDestination:
            return destination(self)

    transport = MemoryTransport(MemoryStore())
    return lambda name: Reference(transport, name)


def failures(make: Callable[[str], MemoryReference], **kw: bool) -> dict[str, str]:
    report = ConformanceSuite(make_reference=make, supports_signatures=True, **kw).run_all()
    return {r.name: r.message for r in report.failures}


def test_memory_transport_passes_everything() -> None:
    report = check_transport(factory(), supports_signatures=True)
    assert report.ok
    assert report.passed == CHECK_NAMES
    assert report.skipped == ()


def test_names_and_unknown_check() -> None:
    suite = ConformanceSuite(make_reference=factory())
    assert suite.names == CHECK_NAMES
    assert suite.run("roundtrip-oci").passed
    with pytest.raises(ValueError, match="unknown conformance check"):
        suite.run("no-such-check")


def test_skips_are_reported() -> None:
    suite = ConformanceSuite(make_reference=factory(), supports_index=False)
    result = suite.run("roundtrip-index")
    assert result.skipped
    assert "indexes" in result.message


# -- broken transports -----------------------------------------------------------------------------
class VisibleBeforeCommit(MemoryDestination):
    def put_manifest(
        self, manifest: bytes, media_type: str, instance: Digest | None = None
    ) -> None:
        super().put_manifest(manifest, media_type, instance)
        if instance is None:
            self.commit()
            self._closed = False  # keep accepting calls, as if nothing happened


class TrustingDestination(MemoryDestination):
    def put_blob(
        self, stream: Readable, info: BlobInfo, options: PutBlobOptions | None = None
    ) -> Descriptor:
        parts = []
        while chunk := stream.read(CHUNK_SIZE):
            parts.append(chunk)
        data = b"".join(parts)
        # Stores under the digest it was told, without checking.
        digest = info.digest or Digest.from_bytes(data)
        with self._lock:
            self._blobs[digest] = data
        return Descriptor(info.media_type, digest, len(data))


class LyingReuse(MemoryDestination):
    def try_reusing_blob(self, info: BlobInfo) -> Descriptor | None:
        if info.digest is None:
            return None
        return Descriptor(info.media_type, info.digest, info.size or 0)


class ReformattingSource(MemorySource):
    def get_manifest(self, instance: Digest | None = None) -> tuple[bytes, str]:
        data, media_type = super().get_manifest(instance)
        return json.dumps(json.loads(data), indent=2).encode(), media_type


class KeyErrorSource(MemorySource):
    def get_blob_stream(self, descriptor: Descriptor, offset: int = 0) -> Readable:
        if descriptor.digest not in self._image.blobs:
            raise KeyError(str(descriptor.digest))
        return super().get_blob_stream(descriptor, offset)


class CorruptingSource(MemorySource):
    def get_blob_stream(self, descriptor: Descriptor, offset: int = 0) -> Readable:
        data = bytearray(self._image.blobs[descriptor.digest])
        data[0] ^= 1
        return io.BytesIO(bytes(data))


def test_catches_visible_before_commit() -> None:
    found = failures(factory(destination=VisibleBeforeCommit))
    assert "abort-without-commit" in found
    assert "readable, but nothing was committed" in found["abort-without-commit"]


def test_catches_unverified_blobs() -> None:
    found = failures(factory(destination=TrustingDestination))
    assert "accepted a corrupt stream" in found["corrupt-blob"]


def test_catches_lying_reuse() -> None:
    found = failures(factory(destination=LyingReuse))
    assert "claimed a blob that was never written" in found["blob-reuse"]


def test_catches_rewritten_manifests() -> None:
    found = failures(factory(source=ReformattingSource))
    assert "differs from what was written" in found["roundtrip-oci"]
    assert "roundtrip-index" in found
    # Declared as a transport that rewrites manifests, the roundtrips pass.
    relaxed = failures(factory(source=ReformattingSource), preserves_manifests=False)
    assert "roundtrip-oci" not in relaxed


def test_catches_wrong_error_type() -> None:
    found = failures(factory(source=KeyErrorSource))
    assert set(found) == {"unknown-blob"}
    assert "KeyError" in found["unknown-blob"]


def test_catches_corrupt_reads() -> None:
    found = failures(factory(source=CorruptingSource))
    assert "roundtrip-oci" in found
    assert "DigestMismatchError" in found["roundtrip-oci"]


def test_check_transport_raises_with_every_failure() -> None:
    with pytest.raises(ConformanceError) as info:
        check_transport(factory(destination=TrustingDestination), supports_signatures=True)
    message = str(info.value)
    assert message.startswith("1 conformance check(s) failed:")
    assert "- corrupt-blob:" in message
    assert isinstance(info.value, AssertionError)


def test_signature_declaration_mismatch() -> None:
    store = MemoryStore()
    transport = MemoryTransport(store)
    store.configure("conformance-signatures", supports_signatures=False)
    suite = ConformanceSuite(
        make_reference=lambda name: transport.parse_reference(name), supports_signatures=True
    )
    result = suite.run("signatures")
    assert result.failed
    assert "do not declare it" in result.message
    # And a transport that refuses signatures passes when it says it has none.
    assert ConformanceSuite(make_reference=transport.parse_reference).run("signatures").passed
