"""The copy engine puts a blob again when its upload broke beyond repair, against the real registry.

The chaos proxy cuts the PATCH that streams a layer mid-way and forwards none of it. The
client cannot go on in the same upload (the registry has none of the bytes, and the first ones
are no longer in its replay window), so it cancels the upload and raises a retryable error; the
engine then reads the layer from the source again (rebuilding any (de)compression on the way)
and puts it in a new upload, within the destination's retry policy, one budget per blob. A
corrupt source is never retried. (A layer whose compression changes is uploaded with chunked
encoding, which the proxy cannot forward: tests/unit/test_copy_retry.py covers the rebuilt
pipeline.) The registry is read back by oracles that do not use
imagetypes (and skopeo, where installed).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from chaos_proxy import ChaosProxy, Fault
from imagebuilder import BuiltImage, make_image, write_oci_layout
from registry_fixtures import RunningRegistry
from reliability_support import check_registry_tag

from imagetypes import DigestMismatchError, RetryPolicy, TransportOptions
from imagetypes.copy import (
    BlobDone,
    BlobStarted,
    CopyOptions,
    EventCollector,
    Retrying,
    copy_image,
)
from imagetypes.digest import Digest
from imagetypes_transports.docker import RegistryError

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
RETRY = RetryPolicy(attempts=2, backoff=0.01, max_backoff=0.05)
#: A layer larger than the client's default replay window (4 MiB): a PATCH cut at 70% cannot
#: be resent from the bytes at hand.
BIG = make_image(91, (12 * MiB,))
#: A smaller one, for a replay window of 1 MiB.
MEDIUM = make_image(92, (6 * MiB,))
OLD = make_image(93, (2_000,))
DIRECT = TransportOptions(tls_verify=False)


def _layer(img: BuiltImage) -> Digest:
    return max((d for d in img.blobs if d != img.config_digest), key=lambda d: len(img.blobs[d]))


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_oci_layout(
        tmp_path_factory.mktemp("blob-retry") / "src", {"big": BIG, "medium": MEDIUM, "old": OLD}
    )


def _options(
    events: EventCollector, *, window: int | None = None, monolithic: int = MiB
) -> CopyOptions:
    # By default blobs over 1 MiB (the layers) are streamed in a PATCH, the config goes in
    # one PUT.
    extra: dict[str, object] = {"docker.timeout": 30.0, "docker.monolithic_limit": monolithic}
    if window is not None:
        extra["docker.upload_replay_window"] = window
    dest = TransportOptions(tls_verify=False, retry=RETRY, extra=extra)
    return CopyOptions(destination_options=dest, progress=events)


def _seed_old(layout: Path, registry: RunningRegistry, repository: str) -> None:
    """The tag holds an old image, pushed directly: a failed copy must leave it as it is."""
    target = f"docker://{registry.host}/{repository}:t"
    copy_image(f"oci:{layout}:old", target, CopyOptions(destination_options=DIRECT))
    assert check_registry_tag(registry.host, repository, "t") == str(OLD.digest)


def _served(registry: RunningRegistry, repository: str, digest: Digest) -> bytes | None:
    """A blob as the registry serves it (straight, not through the proxy)."""
    r = httpx.get(f"{registry.url}/v2/{repository}/blobs/{digest}", timeout=30)
    return r.content if r.status_code == 200 else None


def _uploads(proxy: ChaosProxy, method: str) -> int:
    return sum(1 for s in proxy.seen if s.method == method and "/blobs/uploads/" in s.path)


def _engine_retries(events: EventCollector, digest: Digest) -> list[Retrying]:
    return [
        e
        for e in events.events
        if isinstance(e, Retrying) and e.operation == f"copying blob {digest}"
    ]


def test_a_cut_upload_beyond_the_replay_window_is_put_again(
    chaos: ChaosProxy, registry: RunningRegistry, layout: Path
) -> None:
    repository = "retry/big"
    _seed_old(layout, registry, repository)
    layer = _layer(BIG)
    chaos.add(Fault("PATCH", "/blobs/uploads/", "cut_request", at=0.7))
    events = EventCollector()

    result = copy_image(
        f"oci:{layout}:big", f"docker://{chaos.host}/{repository}:t", _options(events)
    )

    assert result.manifest_digest == BIG.digest
    assert check_registry_tag(registry.host, repository, "t") == str(BIG.digest)
    assert _served(registry, repository, layer) == BIG.blobs[layer]
    (retry,) = _engine_retries(events, layer)
    assert retry.side == "destination"
    assert retry.attempt == 1
    assert "resume" in retry.reason  # the client could not resume: why the blob was put again
    assert chaos.applied() == 1
    assert _uploads(chaos, "PATCH") == 2  # the cut one, then the whole layer in a new upload
    assert _uploads(chaos, "DELETE") == 1  # the broken upload was cancelled
    # Reported once, counted once.
    started = [e for e in events.events if isinstance(e, BlobStarted)]
    assert [e.descriptor.digest for e in started].count(layer) == 1
    done = [e for e in events.events if isinstance(e, BlobDone) and e.descriptor.digest == layer]
    assert [e.size for e in done] == [len(BIG.blobs[layer])]
    assert result.bytes_copied == sum(len(b) for b in BIG.blobs.values())
    if shutil.which("skopeo"):
        out = subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", f"docker://{registry.host}/{repository}:t"],
            capture_output=True,
            check=True,
            timeout=60,
        )
        inspected = json.loads(out.stdout)
        assert inspected["Digest"] == str(BIG.digest)
        assert inspected["Layers"] == [str(layer)]


@pytest.mark.parametrize("action", ["cut_request", "drop"])
def test_a_monolithic_upload_cut_or_unanswered_is_put_again(
    chaos: ChaosProxy, registry: RunningRegistry, layout: Path, action: str
) -> None:
    """The PUT that sends a small blob and closes its upload cannot be sent again (the upload
    is gone, or done): the blob is put again in a new upload."""
    repository = f"retry/monolithic-{action}"
    _seed_old(layout, registry, repository)
    layer = _layer(MEDIUM)
    # The query of that PUT names the digest: only the layer's upload is hit.
    chaos.add(Fault("PUT", layer.hex, action, at=0.5))
    events = EventCollector()
    opts = _options(events, monolithic=8 * MiB)

    copy_image(f"oci:{layout}:medium", f"docker://{chaos.host}/{repository}:t", opts)

    assert chaos.applied() == 1
    assert check_registry_tag(registry.host, repository, "t") == str(MEDIUM.digest)
    assert _served(registry, repository, layer) == MEDIUM.blobs[layer]
    assert [r.attempt for r in _engine_retries(events, layer)] == [1]
    assert sum(1 for s in chaos.seen if s.method == "PUT" and layer.hex in s.path) == 2


def test_a_cut_on_every_attempt_fails_after_the_budget(
    chaos: ChaosProxy, registry: RunningRegistry, layout: Path
) -> None:
    repository = "retry/always"
    _seed_old(layout, registry, repository)
    layer = _layer(MEDIUM)
    chaos.add(Fault("PATCH", "/blobs/uploads/", "cut_request", at=0.8, times=100))
    events = EventCollector()
    opts = _options(events, window=MiB)

    with pytest.raises(RegistryError, match="resume") as raised:
        copy_image(f"oci:{layout}:medium", f"docker://{chaos.host}/{repository}:t", opts)

    assert raised.value.retryable
    assert [r.attempt for r in _engine_retries(events, layer)] == [1, 2]
    assert chaos.applied() == RETRY.attempts + 1  # one PATCH per try, each cut
    assert _uploads(chaos, "DELETE") == RETRY.attempts + 1  # every broken upload cancelled
    assert check_registry_tag(registry.host, repository, "t") == str(OLD.digest)
    assert _served(registry, repository, layer) is None


def test_a_corrupt_source_is_not_put_again(
    chaos: ChaosProxy, registry: RunningRegistry, layout: Path, tmp_path: Path
) -> None:
    repository = "retry/corrupt"
    _seed_old(layout, registry, repository)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(layout, corrupt)
    layer = _layer(MEDIUM)
    blob = corrupt / "blobs" / "sha256" / layer.hex
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))
    events = EventCollector()

    with pytest.raises(DigestMismatchError):
        copy_image(
            f"oci:{corrupt}:medium", f"docker://{chaos.host}/{repository}:t", _options(events)
        )

    assert events.of_type(Retrying) == []
    assert _uploads(chaos, "PATCH") == 1  # one attempt
    assert check_registry_tag(registry.host, repository, "t") == str(OLD.digest)
    assert _served(registry, repository, layer) is None
