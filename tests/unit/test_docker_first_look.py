"""A run's first look at its destination repository: what it spares, and that a failed look
spares nothing but breaks nothing (in-memory registry, in process)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from imagebuilder import make_image, write_oci_layout  # noqa: E402

from imagetypes import RetryPolicy, SharedState, TransportOptions  # noqa: E402
from imagetypes.copy import CopyOptions, copy_image  # noqa: E402
from imagetypes.testing import InMemoryRegistry  # noqa: E402

SHARED = make_image(301, (5000, 7000))
OTHER = make_image(302, (3000,))
FAST = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05)


class Gate(httpx.BaseTransport):
    """A registry's transport that records every request and answers tag listings with
    ``tags_status`` when it is set."""

    def __init__(self, registry: InMemoryRegistry, tags_status: int | None = None) -> None:
        self.registry = registry
        self.inner = registry.transport()
        self.tags_status = tags_status
        self.seen: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.method, request.url.path))
        if self.tags_status and request.url.path.endswith("/tags/list"):
            body = {"errors": [{"code": "DENIED", "message": "no"}]}
            return httpx.Response(self.tags_status, json=body if self.tags_status != 404 else {})
        return self.inner.handle_request(request)

    def heads(self) -> list[str]:
        return [path for method, path in self.seen if method == "HEAD"]


def _copy_two(tmp_path: Path, gate: Gate, *, shared_state: bool) -> InMemoryRegistry:
    layout = write_oci_layout(tmp_path / "src", {"a": SHARED, "b": SHARED, "c": OTHER})
    options = TransportOptions(tls_verify=False, retry=FAST, extra={"docker.http_transport": gate})
    with SharedState() as state:
        dest_options = state.attach(options) if shared_state else options
        for tag in ("a", "b", "c"):
            copy_image(
                f"oci:{layout}:{tag}",
                f"docker://registry.test/app:{tag}",
                CopyOptions(destination_options=dest_options),
            )
    return gate.registry


def _check(registry: InMemoryRegistry) -> None:
    for tag, image in (("a", SHARED), ("b", SHARED), ("c", OTHER)):
        assert registry.tags("app")[tag] == image.digest
        for digest, blob in image.blobs.items():
            assert registry.blob("app", digest) == blob


def test_a_new_repository_is_listed_once_and_nothing_is_asked(tmp_path: Path) -> None:
    gate = Gate(InMemoryRegistry())
    _check(_copy_two(tmp_path, gate, shared_state=True))
    assert [p for m, p in gate.seen if p.endswith("/tags/list")] == ["/v2/app/tags/list"]
    assert gate.heads() == []


def test_without_a_run_every_copy_asks(tmp_path: Path) -> None:
    gate = Gate(InMemoryRegistry())
    _check(_copy_two(tmp_path, gate, shared_state=False))
    assert not [p for m, p in gate.seen if p.endswith("/tags/list")]
    blob_heads = [p for p in gate.heads() if "/blobs/" in p]
    assert len(blob_heads) == 3 * 3 - 1  # every blob of every copy (c has one layer)
    assert len([p for p in gate.heads() if "/manifests/" in p]) == 0  # copy_image: no skip


@pytest.mark.parametrize("status", [401, 403, 404, 500])
def test_a_failed_look_falls_back_to_asking(tmp_path: Path, status: int) -> None:
    # Denied, a 404 without NAME_UNKNOWN, a server error: nothing is assumed, each blob is
    # asked for as without a run, and the copies succeed.
    gate = Gate(InMemoryRegistry(), status)
    _check(_copy_two(tmp_path, gate, shared_state=True))
    listings = [p for m, p in gate.seen if p.endswith("/tags/list")]
    assert set(listings) == {"/v2/app/tags/list"}
    # Looked once for the whole run (a 5xx retried as any request is), never once per image.
    assert len(listings) == (1 + FAST.attempts if status >= 500 else 1)  # retries
    blob_heads = [p for p in gate.heads() if "/blobs/" in p]
    # The first copy asks for its 3 blobs; later copies only for blobs the run has not put.
    assert len(blob_heads) == len(set(SHARED.blobs) | set(OTHER.blobs))
