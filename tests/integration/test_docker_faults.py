"""Faults the real registry cannot produce, injected by a loopback proxy in front of it: cut
connections, 429/500 answers, redirects to another host, corrupted bodies."""

from __future__ import annotations

import io
import json
import random
import time
from pathlib import Path

import attrs
import pytest
from imagebuilder import make_image
from registry_fixtures import Fault, FaultProxy, RecordingServer, RunningRegistry, free_port

from imagetypes import (
    BlobInfo,
    Descriptor,
    Digest,
    DigestMismatchError,
    RetryPolicy,
    TransportOptions,
)
from imagetypes.retry import RetryAttempt
from imagetypes_transports.docker import (
    DockerReference,
    RegistryConnectionError,
    RegistryError,
    TooManyRequestsError,
    transport,
)

pytestmark = pytest.mark.integration

FAST = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05)
OPTIONS = TransportOptions(tls_verify=False, retry=FAST)
LAYER = 300_000


@pytest.fixture(scope="module")
def stored(registry: RunningRegistry) -> tuple[str, object]:
    """An image pushed straight to the registry, read through the proxy by the tests."""
    img = make_image(40, (LAYER,))
    r = transport.parse_reference(f"//{registry.host}/faults/img:v1")
    with r.open_destination(TransportOptions(tls_verify=False)) as dest:
        for digest, blob in img.blobs.items():
            dest.put_blob(io.BytesIO(blob), BlobInfo("", digest, len(blob)))
        dest.put_manifest(img.manifest, img.media_type)
        dest.commit()
    return "faults/img", img


def via(proxy: FaultProxy, name: str) -> DockerReference:
    return transport.parse_reference(f"//{proxy.host}/{name}")


def layer_of(img: object) -> Descriptor:
    layers = json.loads(img.manifest)["layers"]  # type: ignore[attr-defined]
    return Descriptor.from_dict(layers[0])


def test_cut_download_resumes_with_range(proxy: FaultProxy, stored: tuple[str, object]) -> None:
    name, img = stored
    layer = layer_of(img)
    proxy.add(Fault("GET", f"/blobs/{layer.digest}", "cut", after=100_000))
    with via(proxy, f"{name}:v1").open_source(OPTIONS) as src, src.get_blob(layer) as reader:
        data = reader.read()
    assert data == img.blobs[layer.digest]  # type: ignore[attr-defined]
    gets = [s for s in proxy.seen if s.method == "GET" and str(layer.digest) in s.path]
    assert len(gets) == 2
    assert "Range" not in gets[0].headers
    assert gets[1].headers["Range"] == "bytes=100000-"


def test_cut_download_gives_up_after_the_retry_budget(
    proxy: FaultProxy, stored: tuple[str, object]
) -> None:
    name, img = stored
    layer = layer_of(img)
    proxy.add(Fault("GET", f"/blobs/{layer.digest}", "cut", after=1000, times=10))
    options = TransportOptions(tls_verify=False, retry=RetryPolicy(attempts=2, backoff=0.01))
    with (
        via(proxy, f"{name}:v1").open_source(options) as src,
        src.get_blob(layer) as reader,
        pytest.raises(RegistryConnectionError, match="broke at byte 3000"),
    ):
        reader.read()


def test_429_with_retry_after_then_success(proxy: FaultProxy, stored: tuple[str, object]) -> None:
    name, img = stored
    proxy.add(Fault("GET", "/manifests/v1", "status", status=429, headers={"Retry-After": "1"}))
    start = time.monotonic()
    with via(proxy, f"{name}:v1").open_source(OPTIONS) as src:
        assert src.get_manifest()[0] == img.manifest  # type: ignore[attr-defined]
    tries = [s for s in proxy.seen if "/manifests/v1" in s.path]
    assert len(tries) == 2
    assert tries[1].time - tries[0].time >= 0.95
    assert time.monotonic() - start >= 0.95


def test_429_until_retries_run_out(proxy: FaultProxy, stored: tuple[str, object]) -> None:
    name, _ = stored
    proxy.add(Fault("GET", "/manifests/v1", "status", status=429, times=10))
    with (
        via(proxy, f"{name}:v1").open_source(OPTIONS) as src,
        pytest.raises(TooManyRequestsError, match="injected fault"),
    ):
        src.get_manifest()
    assert len([s for s in proxy.seen if "/manifests/v1" in s.path]) == 4


def test_500_then_success(proxy: FaultProxy, stored: tuple[str, object]) -> None:
    name, img = stored
    layer = layer_of(img)
    proxy.add(Fault("GET", f"/blobs/{layer.digest}", "status", status=500))
    with via(proxy, f"{name}:v1").open_source(OPTIONS) as src, src.get_blob(layer) as reader:
        assert reader.read() == img.blobs[layer.digest]  # type: ignore[attr-defined]


def test_500_is_not_retried_for_non_idempotent_requests(
    proxy: FaultProxy, stored: tuple[str, object]
) -> None:
    name, _ = stored
    proxy.add(Fault("POST", "/blobs/uploads/", "status", status=500, times=1))
    with (
        via(proxy, f"{name}:v2").open_destination(OPTIONS) as dest,
        pytest.raises(RegistryError, match=r"HTTP 500|UNKNOWN") as info,
    ):
        dest.put_blob(io.BytesIO(b"abc"), BlobInfo("", Digest.from_bytes(b"abc"), 3))
    assert info.value.status == 500


def test_redirected_blob_download_gets_no_credentials(
    proxy: FaultProxy, stored: tuple[str, object]
) -> None:
    name, img = stored
    layer = layer_of(img)
    blob = img.blobs[layer.digest]  # type: ignore[attr-defined]
    path = f"/v2/{name}/blobs/{layer.digest}"
    storage = RecordingServer("127.0.0.2", {path: blob})
    try:
        proxy.add(Fault("GET", f"/blobs/{layer.digest}", "redirect", location=storage.url))
        options = TransportOptions(tls_verify=False, retry=FAST, registry_token="secret-token")
        with via(proxy, f"{name}:v1").open_source(options) as src:
            assert src.get_manifest()[0] == img.manifest  # type: ignore[attr-defined]
            with src.get_blob(layer) as reader:
                assert reader.read() == blob
    finally:
        storage.stop()
    assert all(s.headers.get("Authorization") == "Bearer secret-token" for s in proxy.seen)
    assert len(storage.seen) == 1
    assert "Authorization" not in storage.seen[0].headers


def test_corrupted_blob_is_a_digest_mismatch(proxy: FaultProxy, stored: tuple[str, object]) -> None:
    name, img = stored
    layer = layer_of(img)
    proxy.add(Fault("GET", f"/blobs/{layer.digest}", "corrupt"))
    with (
        via(proxy, f"{name}:v1").open_source(OPTIONS) as src,
        src.get_blob(layer) as reader,
        pytest.raises(DigestMismatchError),
    ):
        reader.read()


@pytest.mark.parametrize("by", ["tag", "digest"])
def test_corrupted_manifest_is_a_digest_mismatch(
    proxy: FaultProxy, stored: tuple[str, object], by: str
) -> None:
    name, img = stored
    suffix = ":v1" if by == "tag" else f"@{img.digest}"  # type: ignore[attr-defined]
    proxy.add(Fault("GET", "/manifests/", "corrupt"))
    with (
        via(proxy, name + suffix).open_source(OPTIONS) as src,
        pytest.raises(DigestMismatchError),
    ):
        src.get_manifest()


def test_chunked_upload_resumes_after_a_500(proxy: FaultProxy) -> None:
    data = random.Random(2).randbytes(3 * 1024 * 1024 + 5)
    digest = Digest.from_bytes(data)
    options = TransportOptions(
        tls_verify=False,
        retry=FAST,
        extra={"docker.upload_chunk_size": 1024 * 1024, "docker.monolithic_limit": 0},
    )
    # A 500 on a PATCH: the registry has nothing of that chunk, so all of it is sent again.
    proxy.add(Fault("PATCH", "/blobs/uploads/", "status", status=500))
    with via(proxy, "faults/upload:t").open_destination(options) as dest:
        got = dest.put_blob(io.BytesIO(data), BlobInfo("", digest, len(data)))
    assert got.digest == digest
    assert len([s for s in proxy.seen if s.method == "PATCH"]) == 5
    status_checks = [s for s in proxy.seen if s.method == "GET" and "/blobs/uploads/" in s.path]
    assert len(status_checks) == 1
    # A chunk that arrived but whose answer was lost: distribution will not resume such an
    # upload (its upload state records the old offset). All of it is still at hand (under the
    # replay window): the client starts a new upload and sends it again.
    proxy.seen.clear()
    proxy.add(Fault("PATCH", "/blobs/uploads/", "drop"))
    with via(proxy, "faults/upload2:t").open_destination(options) as dest:
        got = dest.put_blob(io.BytesIO(data), BlobInfo("", digest, len(data)))
    assert got.digest == digest
    assert len([s for s in proxy.seen if s.method == "POST"]) == 2
    # One streamed PATCH, with a replay window too small to start over: that is said.
    small = attrs.evolve(
        options,
        extra={
            "docker.monolithic_limit": 0,
            "docker.upload_chunk_size": 0,
            "docker.upload_replay_window": 512 * 1024,
        },
    )
    proxy.add(Fault("PATCH", "/blobs/uploads/", "drop"))
    with (
        via(proxy, "faults/upload3:t").open_destination(small) as dest,
        pytest.raises(RegistryError, match=r"could not be resumed.*BLOB_UPLOAD_INVALID"),
    ):
        dest.put_blob(io.BytesIO(data), BlobInfo("", digest, len(data)))


def test_unreachable_registry_is_a_connection_error() -> None:
    r = transport.parse_reference(f"//127.0.0.1:{free_port()}/nothing/here:v1")
    options = TransportOptions(tls_verify=False, retry=RetryPolicy(attempts=1, backoff=0.01))
    with (
        r.open_source(options) as src,
        pytest.raises(RegistryConnectionError, match="cannot reach"),
    ):
        src.get_manifest()


def test_retries_are_reported_to_on_retry(proxy: FaultProxy, stored: tuple[str, object]) -> None:
    name, img = stored
    layer = layer_of(img)
    proxy.add(Fault("GET", "/manifests/v1", "status", status=503))
    proxy.add(Fault("GET", f"/blobs/{layer.digest}", "cut", after=100))
    seen: list[RetryAttempt] = []
    options = attrs.evolve(OPTIONS, on_retry=seen.append)
    with via(proxy, f"{name}:v1").open_source(options) as src:
        assert src.get_manifest()[0] == img.manifest  # type: ignore[attr-defined]
        with src.get_blob(layer) as reader:
            assert reader.read() == img.blobs[layer.digest]  # type: ignore[attr-defined]
    assert [(a.attempt, a.reason) for a in seen[:1]] == [(1, "HTTP 503")]
    assert "manifest" in seen[0].operation
    assert seen[0].operation.endswith(":v1")
    assert len(seen) == 2
    assert str(layer.digest) in seen[1].operation
    assert "from byte 100" in seen[1].operation


def test_copy_reports_retries_as_progress_events_and_cli_lines(
    proxy: FaultProxy,
    stored: tuple[str, object],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from imagetypes.cli import main
    from imagetypes.copy import CopyOptions, EventCollector, Retrying, copy_image

    name, img = stored
    layer = layer_of(img)
    proxy.add(Fault("GET", f"/blobs/{layer.digest}", "status", status=500))
    events = EventCollector()
    copy_image(
        f"docker://{proxy.host}/{name}:v1",
        f"oci:{tmp_path / 'api'}:v1",
        CopyOptions(source_options=OPTIONS, progress=events),
    )
    retries = events.of_type(Retrying)
    assert len(retries) == 1
    event = retries[0]
    assert isinstance(event, Retrying)
    assert (event.side, event.attempt, event.reason) == ("source", 1, "HTTP 500")
    assert str(layer.digest) in event.operation

    proxy.add(Fault("GET", f"/blobs/{layer.digest}", "status", status=503))
    argv = ["--insecure-policy", "copy", "--src-tls-verify=false", "--no-blob-info-cache"]
    assert main([*argv, f"docker://{proxy.host}/{name}:v1", f"dir:{tmp_path / 'cli'}"]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert any(
        line.startswith("Retrying ") and "(attempt 1)" in line and line.endswith("HTTP 503")
        for line in err.splitlines()
    )
