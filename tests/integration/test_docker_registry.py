"""The docker transport against a real distribution registry (plain http, tls_verify=False)."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator

import pytest
from imagebuilder import BuiltImage, BuiltIndex, make_image, make_multiarch
from registry_fixtures import RunningRegistry, counting_hooks

import imagetypes
from imagetypes import (
    BlobInfo,
    Descriptor,
    Digest,
    DigestMismatchError,
    ManifestNotFoundError,
    TransportOptions,
    UnsupportedError,
)
from imagetypes import mediatypes as mt
from imagetypes_transports.docker import (
    DockerImageDestination,
    DockerImageSource,
    DockerReference,
    RegistryClient,
    RegistryTLSError,
    RepositoryNotFoundError,
    open_registry,
    transport,
)

pytestmark = pytest.mark.integration

INSECURE = TransportOptions(tls_verify=False)


def ref(registry: RunningRegistry, name: str) -> DockerReference:
    return transport.parse_reference(f"//{registry.host}/{name}")


def push(
    dest: DockerImageDestination, item: BuiltImage | BuiltIndex, *, commit: bool = True
) -> int:
    """Write an image (or index) with the ImageDestination API; return blobs uploaded."""
    uploaded = 0
    images = item.images if isinstance(item, BuiltIndex) else [item]
    for img in images:
        for digest, blob in img.blobs.items():
            info = BlobInfo("application/octet-stream", digest, len(blob))
            if dest.try_reusing_blob(info) is None:
                got = dest.put_blob(io.BytesIO(blob), info)
                assert got.digest == digest
                assert got.size == len(blob)
                uploaded += 1
        if isinstance(item, BuiltIndex):
            dest.put_manifest(img.manifest, img.media_type, img.digest)
    dest.put_manifest(item.manifest, item.media_type)
    if commit:
        dest.commit()
    return uploaded


def push_ref(
    reference: DockerReference, item: BuiltImage | BuiltIndex, options: TransportOptions = INSECURE
) -> int:
    with reference.open_destination(options) as dest:
        return push(dest, item)


def test_reference_round_trip_through_the_plugin_registry() -> None:
    r = imagetypes.parse_reference("docker://busybox")
    assert isinstance(r, DockerReference)
    assert str(r) == "docker://docker.io/library/busybox:latest"
    assert imagetypes.parse_reference(str(r)) == r
    assert r.docker_reference is not None
    assert str(r.docker_reference) == "docker.io/library/busybox:latest"


def test_push_then_pull_is_byte_identical(registry: RunningRegistry) -> None:
    img = make_image(11, (3000, 70_000))
    r = ref(registry, "itest/pushpull:v1")
    assert push_ref(r, img) == 3
    with r.open_source(INSECURE) as src:
        assert isinstance(src, DockerImageSource)
        assert src.capabilities.ranged_reads
        data, media_type = src.get_manifest()
        assert data == img.manifest
        assert media_type == mt.OCI_MANIFEST
        obj = json.loads(data)
        for d in [obj["config"], *obj["layers"]]:
            desc = Descriptor.from_dict(d)
            with src.get_blob(desc) as reader:
                assert reader.read() == img.blobs[desc.digest]
            # A ranged read returns the tail.
            tail = src.get_blob_stream(desc, offset=100).read()
            assert tail == img.blobs[desc.digest][100:]
    # What the registry stores is what we sent.
    for digest, blob in img.blobs.items():
        assert registry.blob_data(str(digest)).read_bytes() == blob


def test_index_push_pull_by_digest(registry: RunningRegistry) -> None:
    index = make_multiarch(12, docker=True)
    r = ref(registry, "itest/multi:list")
    push_ref(r, index)
    by_digest = ref(registry, f"itest/multi@{index.digest}")
    with by_digest.open_source(INSECURE) as src:
        data, media_type = src.get_manifest()
        assert data == index.manifest
        assert media_type == mt.DOCKER_MANIFEST_LIST
        for img in index.images:
            assert src.get_manifest(img.digest) == (img.manifest, img.media_type)


def test_nothing_is_tagged_before_commit(registry: RunningRegistry) -> None:
    first = make_image(13)
    second = make_image(14)
    r = ref(registry, "itest/nocommit:t")
    push_ref(r, first)
    with r.open_destination(INSECURE) as dest:
        push(dest, second, commit=False)
    # Closed without commit: the tag still names the first image.
    with r.open_source(INSECURE) as src:
        assert src.get_manifest()[0] == first.manifest


def test_wrong_digest_for_a_by_digest_destination(registry: RunningRegistry) -> None:
    img = make_image(15)
    other = make_image(16)
    r = ref(registry, f"itest/bydigest@{img.digest}")
    with r.open_destination(INSECURE) as dest:
        push(dest, img)  # fine: the manifest has that digest
        with pytest.raises(DigestMismatchError):
            dest.put_manifest(other.manifest, other.media_type)


def test_put_blob_refuses_a_lying_stream(registry: RunningRegistry) -> None:
    blob = b"x" * 5000
    wrong = Digest.from_bytes(b"something else")
    r = ref(registry, "itest/lying:t")
    with r.open_destination(INSECURE) as dest, pytest.raises(DigestMismatchError):
        dest.put_blob(io.BytesIO(blob), BlobInfo("", wrong, len(blob)))
    with RegistryClient(registry.host, INSECURE) as client:
        assert client.blob_size("itest/lying", wrong) is None


def test_large_blob_is_streamed_small_one_in_one_put(registry: RunningRegistry) -> None:
    hooks, sent = counting_hooks()
    options = TransportOptions(tls_verify=False, extra={"docker.event_hooks": hooks})
    big = random.Random(1).randbytes(20 * 1024 * 1024)
    small = b"small blob"
    r = ref(registry, "itest/chunks:t")
    with r.open_destination(options) as dest:
        # Unknown size and digest: computed while streaming.
        got = dest.put_blob(io.BytesIO(big), BlobInfo(""))
        assert got.digest == Digest.from_bytes(big)
        assert got.size == len(big)
        patches = [p for m, p in sent if m == "PATCH"]
        assert len(patches) == 1  # one streamed PATCH for the whole blob
        del sent[:]
        got_small = dest.put_blob(io.BytesIO(small), BlobInfo("", Digest.from_bytes(small), 10))
        assert got_small.size == 10
        methods = [m for m, p in sent if "/blobs/uploads/" in p]
        assert methods == ["POST", "PUT"]
    assert registry.blob_data(str(got.digest)).read_bytes() == big


def test_cross_repository_mount_uploads_nothing(registry: RunningRegistry) -> None:
    img = make_image(17, (4000,))
    push_ref(ref(registry, "itest/mount-src:t"), img)
    hooks, sent = counting_hooks()
    options = TransportOptions(
        tls_verify=False,
        extra={"docker.event_hooks": hooks, "docker.mount_from": ["itest/mount-src"]},
    )
    target = ref(registry, "itest/mount-dst:t")
    with target.open_destination(options) as dest:
        assert dest.mount_sources == ("itest/mount-src",)
        assert push(dest, img) == 0
    assert not [p for m, p in sent if m in ("PATCH", "PUT") and "/blobs/" in p]
    mounts = [p for m, p in sent if m == "POST"]
    assert len(mounts) == len(img.blobs)
    for digest in img.blobs:
        assert registry.layer_link("itest/mount-dst", str(digest)).exists()
    with target.open_source(INSECURE) as src:
        assert src.get_manifest()[0] == img.manifest


def test_add_mount_source_ignores_other_registries(registry: RunningRegistry) -> None:
    with ref(registry, "itest/x:t").open_destination(INSECURE) as dest:
        assert not dest.add_mount_source(transport.parse_reference("//quay.io/a/b:c"))
        assert dest.add_mount_source(ref(registry, "itest/y:t"))
        assert dest.mount_sources == ("itest/y",)


def test_tags_catalog_and_delete(registry: RunningRegistry) -> None:
    img = make_image(18)
    for tag in ["t1", "t2", "t3", "t4", "t5"]:
        push_ref(ref(registry, f"itest/tags:{tag}"), img)
    with open_registry(
        f"docker://{registry.host}",
        tls_verify=False,
        options=TransportOptions(extra={"docker.page_size": 2}),
    ) as reg:
        repo = reg.repository("itest/tags")
        assert sorted(repo.tags()) == ["t1", "t2", "t3", "t4", "t5"]
        names = list(reg.repositories())
        assert "itest/tags" in names
        assert names == sorted(names)  # the registry pages in order; we followed every page
        assert len(names) > 2
        with pytest.raises(UnsupportedError):
            list(reg.search("busybox"))
        with pytest.raises(RepositoryNotFoundError):
            list(reg.repository("itest/never-pushed").tags())
        assert repo.reference("t1") == ref(registry, "itest/tags:t1")

    ref(registry, "itest/tags:t3").delete(INSECURE)
    # Deleting by digest removes the manifest: every tag of it is gone.
    with (
        ref(registry, "itest/tags:t1").open_source(INSECURE) as src,
        pytest.raises(ManifestNotFoundError, match="MANIFEST_UNKNOWN"),
    ):
        src.get_manifest()
    with pytest.raises(ManifestNotFoundError):
        ref(registry, "itest/tags:t3").delete(INSECURE)


def test_catalog_pages_lazily(registry: RunningRegistry) -> None:
    img = make_image(19)
    for name in ["itest/lazy-a", "itest/lazy-b", "itest/lazy-c"]:
        push_ref(ref(registry, f"{name}:t"), img)
    hooks, sent = counting_hooks()
    with RegistryClient(
        registry.host, TransportOptions(tls_verify=False, extra={"docker.event_hooks": hooks})
    ) as client:
        it: Iterator[str] = client.catalog(page_size=1)
        first = next(it)
        assert first
        pages_before = sum(1 for _, p in sent if p == "/v2/_catalog")
        rest = list(it)
        pages_after = sum(1 for _, p in sent if p == "/v2/_catalog")
    assert pages_before == 1
    # One page per repository, and perhaps a last, empty one.
    assert pages_after in (1 + len(rest), 2 + len(rest))
    assert {"itest/lazy-a", "itest/lazy-b", "itest/lazy-c"} <= {first, *rest}


def test_referrers_fallback_tag_schema(registry: RunningRegistry) -> None:
    subject = make_image(20)
    r = ref(registry, "itest/refs:v1")
    push_ref(r, subject)
    empty = b"{}"
    empty_digest = Digest.from_bytes(empty)
    artifact = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": "application/vnd.example.sbom",
            "config": {"mediaType": mt.OCI_EMPTY, "digest": str(empty_digest), "size": 2},
            "layers": [{"mediaType": mt.OCI_EMPTY, "digest": str(empty_digest), "size": 2}],
            "subject": {
                "mediaType": mt.OCI_MANIFEST,
                "digest": str(subject.digest),
                "size": len(subject.manifest),
            },
        },
        separators=(",", ":"),
    ).encode()
    artifact_digest = Digest.from_bytes(artifact)
    with ref(registry, f"itest/refs@{artifact_digest}").open_destination(INSECURE) as dest:
        dest.put_blob(io.BytesIO(empty), BlobInfo(mt.OCI_EMPTY, empty_digest, 2))
        dest.put_manifest(artifact, mt.OCI_MANIFEST)
        dest.commit()
    with r.open_source(INSECURE) as src:
        found = src.referrers()
        assert [d.digest for d in found] == [artifact_digest]
        assert found[0].artifact_type == "application/vnd.example.sbom"
        assert src.referrers(artifact_type="application/other") == []
    # The fallback tag is a plain OCI index others can read.
    with ref(registry, f"itest/refs:sha256-{subject.digest.hex}").open_source(INSECURE) as src:
        data, media_type = src.get_manifest()
        assert media_type == mt.OCI_INDEX
        assert json.loads(data)["manifests"][0]["digest"] == str(artifact_digest)


def test_plain_http_needs_tls_verify_false(registry: RunningRegistry) -> None:
    with (
        ref(registry, "itest/pushpull:v1").open_source() as src,
        pytest.raises(RegistryTLSError, match="tls_verify"),
    ):
        src.get_manifest()
