"""imagetypes.testing.memory: the public memory: transport (its contracts: see the conformance
tests; here, what is specific to it)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest

from imagetypes import (
    BlobInfo,
    ManifestNotFoundError,
    copy_image,
    get_transport,
    parse_reference,
    register_transport,
    reset_transports,
)
from imagetypes import mediatypes as mt
from imagetypes.digest import Digest
from imagetypes.errors import InvalidReferenceError, ManifestError
from imagetypes.testing import memory
from imagetypes.testing.memory import MemoryStore, MemoryTransport
from imagetypes.testing.random import random_image, random_index


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    store = MemoryStore()
    register_transport(MemoryTransport(store), replace=True)
    try:
        yield store
    finally:
        reset_transports()


def test_name_and_module_transport() -> None:
    assert memory.transport.name == "memory"
    assert memory.transport.store is memory.default_store
    with pytest.raises(InvalidReferenceError):
        memory.transport.parse_reference("")


def test_copy_between_memory_images(store: MemoryStore) -> None:
    index = random_index(1)
    store.add_built("src", index)
    result = copy_image("memory:src", "memory:dst", None)
    copied = store.get("dst")
    assert copied is not None
    assert result.manifest_digest == copied.digest
    assert get_transport("memory").store is store  # type: ignore[attr-defined]
    assert str(parse_reference("memory:dst")) == "memory:dst"


def test_nothing_visible_before_commit(store: MemoryStore) -> None:
    image = random_image(2)
    ref = parse_reference("memory:img")
    with ref.open_destination() as destination:
        image.write_into(destination)
        assert store.get("img") is None
        destination.commit()
    assert store.get("img") is not None
    assert store.stats("img").commits == 1


def test_manifest_needs_its_blobs(store: MemoryStore) -> None:
    image = random_image(3)
    with parse_reference("memory:x").open_destination() as destination:
        with pytest.raises(ManifestError, match="not written"):
            destination.put_manifest(image.manifest, image.media_type)
        layer = image.parsed.layers[0]
        destination.put_blob(io.BytesIO(image.layers[0]), BlobInfo.from_descriptor(layer))
        assert store.stats("x").puts == 1


def test_missing_image(store: MemoryStore) -> None:
    with pytest.raises(ManifestNotFoundError):
        parse_reference("memory:nothing").open_source()


def test_stores_docker_schema1_manifests(store: MemoryStore) -> None:
    layers = [b"layer one", b"layer two"]
    sums = [str(Digest.from_bytes(data)) for data in layers]
    # Schema 1 lists layers top-down and repeats blobs (empty layers): each must be present.
    manifest = json.dumps(
        {
            "schemaVersion": 1,
            "name": "library/x",
            "tag": "latest",
            "architecture": "amd64",
            "fsLayers": [{"blobSum": sums[1]}, {"blobSum": sums[0]}, {"blobSum": sums[1]}],
            "history": [{"v1Compatibility": "{}"}] * 3,
        }
    ).encode()
    with parse_reference("memory:s1").open_destination() as destination:
        destination.put_blob(io.BytesIO(layers[1]), BlobInfo(digest=Digest.from_bytes(layers[1])))
        with pytest.raises(ManifestError, match=sums[0]):
            destination.put_manifest(manifest, mt.DOCKER_SCHEMA1_MANIFEST)
        destination.put_blob(io.BytesIO(layers[0]), BlobInfo(digest=Digest.from_bytes(layers[0])))
        destination.put_manifest(manifest, mt.DOCKER_SCHEMA1_MANIFEST)
        destination.commit()
    stored = store.get("s1")
    assert stored is not None
    assert stored.manifest == manifest
    assert stored.media_type == mt.DOCKER_SCHEMA1_MANIFEST
    assert set(stored.blobs) == {Digest.parse(s) for s in sums}
    with parse_reference("memory:s1").open_source() as source:
        assert source.get_manifest() == (manifest, mt.DOCKER_SCHEMA1_MANIFEST)
