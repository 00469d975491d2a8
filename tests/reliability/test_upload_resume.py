"""Streamed blob uploads cut mid-PATCH, through a loopback proxy in front of the real registry.

A blob goes to the registry in one streamed PATCH (or several, with ``docker.upload_chunk_size``).
The proxy reads part of a PATCH and closes the connection without forwarding it, so the
registry keeps the bytes of the PATCHes before it: the client asks where the upload stands
and goes on from there, in the same upload, with the bytes it kept (its replay window). A cut
further back than the window can reach fails cleanly; a blob that fits the window starts over.
"""

from __future__ import annotations

import io
import random
import threading
import urllib.request
from collections.abc import Iterator

import pytest
from chaos_proxy import ChaosProxy, Fault
from registry_fixtures import RunningRegistry

from imagetypes import BlobInfo, Descriptor, Digest, RetryPolicy, TransportOptions
from imagetypes_transports.docker import RegistryError, transport

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
RETRY = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05)


class SkippingProxy(ChaosProxy):
    """The chaos proxy, letting the first ``skip`` PATCHes through before its faults apply."""

    def __init__(self, upstream: str, skip: int = 0) -> None:
        super().__init__(upstream)
        self.skip = skip
        self._skip_lock = threading.Lock()

    def _take(self, method: str, path: str) -> Fault | None:
        with self._skip_lock:
            if method == "PATCH" and self.skip > 0:
                self.skip -= 1
                return None
        return super()._take(method, path)


@pytest.fixture
def proxy(registry: RunningRegistry) -> Iterator[SkippingProxy]:
    p = SkippingProxy(registry.host)
    try:
        yield p
    finally:
        p.stop()


def options(**extra: object) -> TransportOptions:
    return TransportOptions(
        tls_verify=False,
        retry=RETRY,
        extra={"docker.monolithic_limit": 0, "docker.timeout": 30.0, **extra},
    )


def blob(size: int, seed: int) -> tuple[bytes, Digest]:
    data = random.Random(seed).randbytes(size)
    return data, Digest.from_bytes(data)


def push(proxy: ChaosProxy, repository: str, data: bytes, opts: TransportOptions) -> Digest:
    ref = transport.parse_reference(f"//{proxy.host}/{repository}:t")
    digest = Digest.from_bytes(data)
    with ref.open_destination(opts) as dest:
        got: Descriptor = dest.put_blob(io.BytesIO(data), BlobInfo("", digest, len(data)))
    return got.digest


def stored(registry: RunningRegistry, repository: str, digest: Digest) -> bytes | None:
    """The blob as the registry serves it (straight, not through the proxy)."""
    url = f"{registry.url}/v2/{repository}/blobs/{digest}"
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return bytes(answer.read())
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def requests(proxy: ChaosProxy, method: str) -> list[dict[str, str]]:
    return [s.headers for s in proxy.seen if s.method == method and "/blobs/uploads/" in s.path]


@pytest.mark.parametrize("at", [0.0, 0.3, 0.95])
def test_a_cut_stream_patch_resumes_in_the_same_upload(
    proxy: SkippingProxy, registry: RunningRegistry, at: float
) -> None:
    data, digest = blob(3 * MiB + 5, 1)
    proxy.add(Fault("PATCH", "/blobs/uploads/", "cut_request", at=at))
    repository = f"resume/stream-{int(at * 100)}"
    assert push(proxy, repository, data, options()) == digest
    assert stored(registry, repository, digest) == data
    assert len(requests(proxy, "POST")) == 1  # resumed, not started over
    first, second = requests(proxy, "PATCH")
    assert "Content-Range" not in first
    assert first["Content-Length"] == second["Content-Length"] == str(len(data))
    assert len(requests(proxy, "GET")) == 1  # where does the upload stand?
    assert len(requests(proxy, "PUT")) == 1


@pytest.mark.parametrize(("patch", "at"), [(1, 0.5), (3, 0.1), (5, 0.9)])
def test_a_cut_patch_resumes_from_the_registry_offset(
    proxy: SkippingProxy, registry: RunningRegistry, patch: int, at: float
) -> None:
    data, digest = blob(6 * MiB + 7, 2)
    proxy.skip = patch
    proxy.add(Fault("PATCH", "/blobs/uploads/", "cut_request", at=at))
    repository = f"resume/chunked-{patch}"
    opts = options(**{"docker.upload_chunk_size": MiB, "docker.upload_replay_window": 2 * MiB})
    assert push(proxy, repository, data, opts) == digest
    assert stored(registry, repository, digest) == data
    assert len(requests(proxy, "POST")) == 1
    ranges = [p.get("Content-Range") for p in requests(proxy, "PATCH")]
    start = patch * MiB
    # The cut PATCH, then the same bytes again from the offset the registry reported.
    expected_end = min(start + MiB, len(data)) - 1
    assert ranges[patch] == ranges[patch + 1] == f"{start}-{expected_end}"
    assert len(ranges) == 8  # 7 PATCHes of up to 1 MiB, one of them twice


def test_a_cut_beyond_the_replay_window_fails_cleanly(
    proxy: SkippingProxy, registry: RunningRegistry
) -> None:
    data, digest = blob(6 * MiB, 3)
    # One streamed PATCH; the registry keeps none of it, and only the last 1 MiB is at hand.
    proxy.add(Fault("PATCH", "/blobs/uploads/", "cut_request", at=0.8))
    repository = "resume/beyond"
    small = options(**{"docker.upload_replay_window": MiB})
    with pytest.raises(RegistryError, match=r"cannot resume.*has 0 bytes, only bytes"):
        push(proxy, repository, data, small)
    assert stored(registry, repository, digest) is None
    assert len(requests(proxy, "DELETE")) == 1  # the upload was cancelled
    # Nothing is left behind that would spoil the next attempt.
    assert push(proxy, repository, data, small) == digest
    assert stored(registry, repository, digest) == data


def test_an_upload_that_cannot_be_resumed_starts_over_within_the_window(
    proxy: SkippingProxy, registry: RunningRegistry
) -> None:
    data, digest = blob(3 * MiB, 4)
    # The whole PATCH reaches the registry, the answer is lost: distribution will not resume
    # (its upload state records offset 0), the 3 MiB are still at hand: a new upload.
    proxy.add(Fault("PATCH", "/blobs/uploads/", "drop"))
    repository = "resume/over"
    assert push(proxy, repository, data, options()) == digest
    assert stored(registry, repository, digest) == data
    assert len(requests(proxy, "POST")) == 2
    assert len(requests(proxy, "PUT")) == 1
