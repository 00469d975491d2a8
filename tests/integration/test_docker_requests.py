"""What the docker transport asks a real registry, and over which connections: a pull sends one
request per blob and nothing else, answers without a body leave their connection reusable, and
large blobs read straight from the socket still resume with a Range request and verify."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from imagebuilder import BuiltImage, make_image
from registry_fixtures import Fault, FaultProxy, RunningRegistry, start_registry

from imagetypes import BlobInfo, Descriptor, Digest, RetryPolicy, TransportOptions
from imagetypes.copy import CopyOptions, copy_image
from imagetypes_transports.docker import RegistryClient, transport
from imagetypes_transports.docker._client import DIRECT_READ_MIN

pytestmark = pytest.mark.integration

BIG = 3 * 1024 * 1024 + 17  # read straight from the socket (over DIRECT_READ_MIN)
SMALL = 200_000  # read through httpx
FAST = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05)
PLAIN = TransportOptions(tls_verify=False)


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    status: int
    range: str | None
    connection: int


class Recorder:
    """An httpx response hook: every request sent, its answer, and the connection it used."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []

    def __call__(self, response: httpx.Response) -> None:
        request = response.request
        stream = response.extensions.get("network_stream")
        self.seen.append(
            Seen(
                request.method,
                request.url.path,
                response.status_code,
                request.headers.get("Range"),
                id(stream),
            )
        )

    def options(self, **extra: object) -> TransportOptions:
        hooks = {"docker.event_hooks": {"response": [self]}}
        return TransportOptions(tls_verify=False, retry=FAST, extra={**hooks, **extra})


def push(host: str, name: str, img: BuiltImage) -> None:
    r = transport.parse_reference(f"//{host}/{name}")
    with r.open_destination(TransportOptions(tls_verify=False)) as dest:
        for digest, blob in img.blobs.items():
            dest.put_blob(io.BytesIO(blob), BlobInfo("", digest, len(blob)))
        dest.put_manifest(img.manifest, img.media_type)
        dest.commit()


def layers_of(img: BuiltImage) -> list[Descriptor]:
    return [Descriptor.from_dict(d) for d in json.loads(img.manifest)["layers"]]


def layout_blob(layout: Path, digest: Digest) -> bytes:
    return (layout / "blobs" / digest.algorithm / digest.hex).read_bytes()


@pytest.fixture(scope="module")
def image(registry: RunningRegistry) -> tuple[str, BuiltImage]:
    assert BIG > DIRECT_READ_MIN > SMALL
    img = make_image(91, (BIG, SMALL, BIG))
    push(registry.host, "requests/app:v1", img)
    return "requests/app:v1", img


def test_a_pull_sends_one_request_per_blob(
    registry: RunningRegistry, image: tuple[str, BuiltImage], tmp_path: Path
) -> None:
    name, img = image
    rec = Recorder()
    out = tmp_path / "out"
    copy_image(
        f"docker://{registry.host}/{name}",
        f"oci:{out}:v1",
        CopyOptions(source_options=rec.options()),
    )
    calls = [(s.method, s.path, s.status) for s in rec.seen]
    blob_gets = sorted(p for m, p, _ in calls if m == "GET" and "/blobs/" in p)
    assert blob_gets == sorted(f"/v2/requests/app/blobs/{d}" for d in img.blobs)
    # Besides the blobs: one ping and one manifest; no HEAD, no token, no second ping.
    others = [c for c in calls if "/blobs/" not in c[1]]
    assert others == [("GET", "/v2/", 200), ("GET", "/v2/requests/app/manifests/v1", 200)]
    for digest, blob in img.blobs.items():
        assert layout_blob(out, digest) == blob


def test_answers_without_a_body_keep_their_connection(
    registry: RunningRegistry, image: tuple[str, BuiltImage]
) -> None:
    _, img = image
    layer = layers_of(img)[1]
    rec = Recorder()
    with RegistryClient(registry.host, rec.options(), repository="requests/copy") as client:
        assert client.blob_size("requests/app", layer.digest) == layer.size
        assert client.blob_size("requests/copy", layer.digest) is None
        client.head_manifest("requests/app", "v1")
        assert client.mount_blob("requests/copy", layer.digest, "requests/app")
        client.get_manifest("requests/app", "v1")
        assert client.blob_size("requests/copy", layer.digest) == layer.size
    assert [s.method for s in rec.seen] == ["GET", "HEAD", "HEAD", "HEAD", "POST", "GET", "HEAD"]
    # The ping's connection carries every later request (httpcore drops a connection whose
    # answer was closed unread, even an empty one).
    assert len({s.connection for s in rec.seen}) == 1


def test_a_small_blob_keeps_its_connection_a_big_one_does_not(
    registry: RunningRegistry, image: tuple[str, BuiltImage]
) -> None:
    _, img = image
    big, small, _ = layers_of(img)
    rec = Recorder()
    with RegistryClient(registry.host, rec.options()) as client:
        for desc in (small, small, big, small):
            with client.blob_reader("requests/app", desc.digest, desc.size) as reader:
                assert Digest.from_bytes(reader.read()) == desc.digest
                assert (reader.direct_bytes > 0) is (desc is big)
    connections = [s.connection for s in rec.seen]
    # ping, small, small on one connection; the big blob's connection is closed after it.
    assert connections[0] == connections[1] == connections[2] == connections[3]
    assert connections[4] != connections[3]


@pytest.mark.parametrize("cut", [1000, 1_500_000, BIG - 1])
def test_a_cut_direct_download_resumes_with_a_range_and_verifies(
    proxy: FaultProxy, image: tuple[str, BuiltImage], tmp_path: Path, cut: int
) -> None:
    name, img = image
    big = layers_of(img)[0]
    proxy.add(Fault("GET", f"/blobs/{big.digest}", "cut", after=cut))
    rec = Recorder()
    out = tmp_path / "out"
    copy_image(
        f"docker://{proxy.host}/{name}",
        f"oci:{out}:v1",
        CopyOptions(source_options=rec.options()),
    )
    gets = [s for s in rec.seen if s.path.endswith(f"/blobs/{big.digest}")]
    assert [g.range for g in gets] == [None, f"bytes={cut}-"]
    assert [g.status for g in gets] == [200, 206]
    assert layout_blob(out, big.digest) == img.blobs[big.digest]


def test_a_corrupt_direct_download_is_refused(
    proxy: FaultProxy, image: tuple[str, BuiltImage], tmp_path: Path
) -> None:
    from imagetypes import ImageError

    name, img = image
    big = layers_of(img)[0]
    proxy.add(Fault("GET", f"/blobs/{big.digest}", "corrupt"))
    out = tmp_path / "out"
    with pytest.raises(ImageError, match="digest"):
        copy_image(
            f"docker://{proxy.host}/{name}",
            f"oci:{out}:v1",
            CopyOptions(source_options=TransportOptions(tls_verify=False, retry=FAST)),
        )
    assert not (out / "blobs" / "sha256" / big.digest.hex).exists()


def test_images_of_one_run_ask_once_per_shared_blob(
    registry: RunningRegistry, image: tuple[str, BuiltImage], tmp_path: Path
) -> None:
    # Two tags of one image into one repository, as a sync copies them: with the run's shared
    # state the second copy's client already knows every blob is there and asks nothing.
    from imagetypes import SharedState

    name, img = image
    # A repository that exists (a repository new to the run is not asked at all: see
    # test_sync_clients), so the first copy's client puts each blob there.
    push(registry.host, "requests/once:base", make_image(92, (100,)))
    rec = Recorder()
    with SharedState() as state:
        options = state.attach(rec.options())
        for tag in ("a", "b"):
            copy_image(
                f"docker://{registry.host}/{name}",
                f"docker://{registry.host}/requests/once:{tag}",
                CopyOptions(source_options=state.attach(PLAIN), destination_options=options),
            )
    to_dest = [(s.method, s.path, s.status) for s in rec.seen if "/requests/once/" in s.path]
    # The source is on this registry: each blob mounted from it in one request (no HEAD
    # first), by the first copy only.
    mounts = [c for c in to_dest if c[0] == "POST"]
    assert mounts == [("POST", "/v2/requests/once/blobs/uploads/", 201)] * len(img.blobs)
    assert not [c for c in to_dest if c[0] == "HEAD" and "/blobs/" in c[1]]
    assert [c for c in to_dest if c[0] == "PUT" and "/manifests/" in c[1]] == [
        ("PUT", "/v2/requests/once/manifests/a", 201),
        ("PUT", "/v2/requests/once/manifests/b", 201),
    ]
    # Without shared state every copy has a client of its own, which mounts again (one
    # request a blob, though the blobs are there already: a HEAD would be one as well).
    rec2 = Recorder()
    copy_image(
        f"docker://{registry.host}/{name}",
        f"docker://{registry.host}/requests/once:c",
        CopyOptions(source_options=PLAIN, destination_options=rec2.options()),
    )
    blob_requests = [s for s in rec2.seen if "/blobs/" in s.path]
    assert [(s.method, s.status) for s in blob_requests] == [("POST", 201)] * len(img.blobs)


def test_a_copy_from_another_registry_asks_for_each_blob_first(
    registry: RunningRegistry, image: tuple[str, BuiltImage], tmp_path: Path
) -> None:
    # No mount can work across registries: one HEAD a blob, then the uploads.
    _, img = image
    other = start_registry(tmp_path / "far")
    try:
        push(other.host, "requests/far:v1", img)
        push(registry.host, "requests/near:base", make_image(93, (100,)))
        rec = Recorder()
        copy_image(
            f"docker://{other.host}/requests/far:v1",
            f"docker://{registry.host}/requests/near:v1",
            CopyOptions(source_options=PLAIN, destination_options=rec.options()),
        )
    finally:
        other.stop()
    heads = [(s.method, s.status) for s in rec.seen if s.method == "HEAD" and "/blobs/" in s.path]
    assert heads == [("HEAD", 404)] * len(img.blobs)
    assert not [s for s in rec.seen if s.method == "POST" and s.status == 201]
