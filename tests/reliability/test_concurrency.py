"""Many writers and readers at once: processes copying into one OCI layout while another
deletes tags, threads sharing one registry client and one DockerImageSource, threads copying
into different repositories of one registry. Every entry must be present and complete, no
file corrupt, nothing lost."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from chaos_proxy import ChaosProxy, Fault
from imagebuilder import BuiltImage, make_image, write_oci_layout
from registry_fixtures import RunningRegistry, environ_without_proxies
from reliability_support import (
    check_layout,
    check_registry_tag,
    iterations,
    python,
    rng_for,
    subprocess_env,
    tally,
)

from imagetypes import BlobInfo, Descriptor, RetryPolicy, TransportOptions
from imagetypes.copy import CopyOptions, copy_image
from imagetypes_transports.docker import DockerImageSource, RegistryClient, transport

pytestmark = pytest.mark.integration

PLAIN = TransportOptions(tls_verify=False)
WRITERS = 8
SIZES = (120_000, 6_000)

# A writer retries a copy that failed because a concurrent delete removed a blob it meant to
# reuse (the OCI destination notices under the layout lock and fails cleanly).
WRITER = r"""
import pathlib, sys, time
from imagetypes import ImageError
from imagetypes.copy import copy_image
src, dst, go = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
print("ready", flush=True)
deadline = time.monotonic() + 60
while not go.exists():
    if time.monotonic() > deadline:
        sys.exit("no go signal")
    time.sleep(0.002)
for attempt in range(5):
    try:
        copy_image(src, dst)
        break
    except ImageError as e:
        print(f"conflict {type(e).__name__}: {e}", flush=True)
else:
    sys.exit("gave up after 5 attempts")
print("done", flush=True)
"""

DELETER = r"""
import pathlib, random, sys, time
from imagetypes import parse_reference
layout, go, seed = sys.argv[1], pathlib.Path(sys.argv[2]), int(sys.argv[3])
tags = sys.argv[4:]
rng = random.Random(seed)
print("ready", flush=True)
deadline = time.monotonic() + 60
while not go.exists():
    if time.monotonic() > deadline:
        sys.exit("no go signal")
    time.sleep(0.002)
for tag in tags:
    time.sleep(rng.uniform(0, 0.05))
    parse_reference(f"oci:{layout}:{tag}").delete()
print("done", flush=True)
"""


def writer_image(i: int) -> BuiltImage:
    # Same layer seeds as victim_image(i): the two share every layer, so deleting the victim
    # races with the writer reusing its layers.
    return make_image(300 + i, SIZES, labels={"writer": str(i)})


def victim_image(i: int) -> BuiltImage:
    return make_image(300 + i, SIZES, labels={"victim": str(i)})


def _spawn(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [python(), "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )


def _wait_ready(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        assert p.stdout is not None
        line = p.stdout.readline().strip()
        assert line == "ready", (line, p.stderr.read() if p.stderr else "")


def _validate(path: Path) -> None:
    """oci-image-tool (1.0.0-rc1) checks every image of the layout; with ``--ref name=...``
    it wrongly reports some unique names as "not unique", so it is run without."""
    if shutil.which("oci-image-tool") is None:
        return
    out = subprocess.run(
        ["oci-image-tool", "validate", "--type", "image", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ_without_proxies(),
    )
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert "Validation succeeded" in out.stdout


@pytest.mark.parametrize("round_", range(iterations(2)))
def test_eight_copy_processes_and_a_deleter_share_one_layout(tmp_path: Path, round_: int) -> None:
    t = tally("concurrency/oci-8-copiers+deleter")
    started = time.monotonic()
    src = write_oci_layout(tmp_path / "src", {f"w{i}": writer_image(i) for i in range(WRITERS)})
    keep = make_image(399, (2_000,))
    victims = {f"v{i}": victim_image(i) for i in range(WRITERS)}
    dest = write_oci_layout(tmp_path / "dest", {**victims, "keep": keep})
    go = tmp_path / "go"
    writers = [_spawn(WRITER, f"oci:{src}:w{i}", f"oci:{dest}:w{i}", str(go)) for i in range(8)]
    seed = rng_for("oci-deleter", round_).randrange(1 << 30)
    deleter = _spawn(DELETER, str(dest), str(go), str(seed), *victims)
    procs = [*writers, deleter]
    try:
        _wait_ready(procs)
        go.touch()
        for i, p in enumerate(procs):
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, f"process {i} failed:\n{out}\n{err}"
            for line in out.splitlines():
                if line.startswith("conflict "):
                    t.errors[f"retried: {line.split()[1].rstrip(':')}"] += 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    t.attempted += WRITERS
    t.completed += WRITERS
    tags = check_layout(dest)  # every blob file hashes to its name, every image complete
    expected = {f"w{i}": str(writer_image(i).digest) for i in range(WRITERS)}
    expected["keep"] = str(keep.digest)
    assert tags == expected
    # The deleted images' own blobs (their configs) were collected; shared layers stayed.
    for image in victims.values():
        assert not (dest / "blobs/sha256" / image.config_digest.hex).exists()
    _validate(dest)
    assert [n for n in dest.iterdir() if n.name.startswith(".")] == []
    t.seconds += time.monotonic() - started


def _many_layer_image() -> BuiltImage:
    return make_image(400, tuple(40_000 + 1_000 * i for i in range(16)))


@pytest.fixture(scope="module")
def many_layers(registry: RunningRegistry, tmp_path_factory: pytest.TempPathFactory) -> str:
    img = _many_layer_image()
    ref = transport.parse_reference(f"//{registry.host}/conc/many:v1")
    with ref.open_destination(PLAIN) as dest:
        for digest, blob in img.blobs.items():
            dest.put_blob(io.BytesIO(blob), BlobInfo("", digest, len(blob)))
        dest.put_manifest(img.manifest, img.media_type)
        dest.commit()
    return "conc/many:v1"


def _hammer(work: Callable[[int], None], threads: int = 8) -> None:
    """Run ``work(i)`` for i in range(threads) at once; re-raise the first failure."""
    barrier = threading.Barrier(threads)

    def run(i: int) -> None:
        barrier.wait(timeout=30)
        work(i)

    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(run, i) for i in range(threads)]:
            future.result(timeout=120)


@pytest.mark.parametrize("faults", [False, True], ids=["clean", "with-cuts"])
def test_eight_threads_share_one_source(
    registry: RunningRegistry, chaos: ChaosProxy, many_layers: str, faults: bool
) -> None:
    """8 threads pull different blobs through one DockerImageSource (and its one client),
    optionally with cut connections the source resumes concurrently."""
    t = tally(f"concurrency/8-threads-one-source/{'cuts' if faults else 'clean'}")
    started = time.monotonic()
    img = _many_layer_image()
    layers = json.loads(img.manifest)["layers"]
    retry = RetryPolicy(attempts=6, backoff=0.005, max_backoff=0.02)
    options = TransportOptions(tls_verify=False, retry=retry)
    ref = transport.parse_reference(f"//{chaos.host}/{many_layers}")
    for rnd in range(iterations(3)):
        rng = rng_for("one-source", rnd)
        chaos.clear()
        if faults:
            chaos.add(
                *[Fault("GET", f"/blobs/{d['digest']}", "cut", at=rng.random()) for d in layers]
            )
        with ref.open_source(options) as src:
            assert isinstance(src, DockerImageSource)

            def work(i: int, src: DockerImageSource = src) -> None:
                assert src.get_manifest()[0] == img.manifest
                for d in layers[i::8]:
                    desc = Descriptor.from_dict(d)
                    with src.get_blob(desc) as reader:
                        assert reader.read() == img.blobs[desc.digest]

            t.attempted += 8
            _hammer(work)
            t.completed += 8
        t.faults += chaos.applied()
    t.seconds += time.monotonic() - started
    if faults:
        assert t.faults > 0


def test_eight_threads_share_one_registry_client(
    registry: RunningRegistry, many_layers: str
) -> None:
    t = tally("concurrency/8-threads-one-client")
    started = time.monotonic()
    img = _many_layer_image()
    layers = [Descriptor.from_dict(d) for d in json.loads(img.manifest)["layers"]]
    repository = many_layers.split(":")[0]
    with RegistryClient(registry.host, PLAIN, repository=repository) as client:

        def work(i: int) -> None:
            for _ in range(iterations(3)):
                _, _, digest = client.get_manifest(repository, "v1")
                assert digest == img.digest
                for desc in layers[i::8]:
                    assert client.blob_size(repository, desc.digest) == desc.size
                    with client.blob_reader(repository, desc.digest, desc.size) as reader:
                        assert reader.read() == img.blobs[desc.digest]

        t.attempted += 8
        _hammer(work)
        t.completed += 8
    t.seconds += time.monotonic() - started


def test_eight_threads_copy_into_one_registry(registry: RunningRegistry, tmp_path: Path) -> None:
    """Half the copies come from a layout (uploads), half from the registry (mounts)."""
    t = tally("concurrency/8-threads-copy-to-registry")
    started = time.monotonic()
    images = {f"c{i}": make_image(500 + i % 4, (60_000, 3_000)) for i in range(8)}
    src = write_oci_layout(tmp_path / "src", images)
    stamp = int(time.time() * 1000) % 1_000_000
    # The registry-side sources of the mounting copies.
    for i in range(4):
        copy_image(
            f"oci:{src}:c{i}",
            f"docker://{registry.host}/conc/origin{stamp}-{i}:v",
            CopyOptions(destination_options=PLAIN),
        )
    options = CopyOptions(source_options=PLAIN, destination_options=PLAIN)

    def work(i: int) -> None:
        for rnd in range(iterations(1)):
            dest = f"docker://{registry.host}/conc/dest{stamp}-{i}-{rnd}:t"
            if i < 4:
                copy_image(f"oci:{src}:c{i}", dest, options)
            else:
                copy_image(f"docker://{registry.host}/conc/origin{stamp}-{i - 4}:v", dest, options)

    t.attempted += 8 * iterations(1)
    _hammer(work)
    for i in range(8):
        for rnd in range(iterations(1)):
            got = check_registry_tag(registry.host, f"conc/dest{stamp}-{i}-{rnd}", "t")
            assert got == str(images[f"c{i % 4}"].digest)
            t.completed += 1
    t.seconds += time.monotonic() - started
