"""Copies through a fault-injecting proxy in front of the real registry.

Each scenario runs ``iterations(N)`` copies, each with its own seeded faults (offsets of cuts,
stalls and truncations, the blob hit, the length of a storm). After every copy the destination
is read back by an oracle that does not use imagetypes and classified: the copy completed
(the destination holds exactly the new image, byte for byte), failed cleanly (an ImageError,
and the destination holds the old image or nothing), or left it corrupt (never allowed).
The figures are printed at the end of the run (see conftest.py).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import attrs
import pytest
from chaos_proxy import ChaosProxy, Fault
from imagebuilder import BuiltImage, make_image, write_oci_layout
from registry_fixtures import RunningRegistry
from reliability_support import (
    Corrupt,
    attempt,
    check_layout,
    check_registry_tag,
    iterations,
    rng_for,
    tally,
)

from imagetypes import Descriptor, Digest, RetryPolicy, TransportOptions
from imagetypes import mediatypes as mt
from imagetypes.copy import CopyOptions, copy_image
from imagetypes_transports.docker import transport

pytestmark = pytest.mark.integration

RETRY = RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.05, max_retry_after=0.2)
#: The client's network timeout (``docker.timeout``) in the stall scenarios; stalls last three
#: times as long. Other scenarios keep a generous timeout, so that a slow CI machine never
#: turns into a fault nobody injected.
TIMEOUT = 1.0
STALL = 3 * TIMEOUT
_CHUNKS = {"docker.monolithic_limit": 0, "docker.upload_chunk_size": 64 * 1024}
OPTIONS = TransportOptions(tls_verify=False, retry=RETRY, extra={"docker.timeout": 30.0})
CHUNKED = attrs.evolve(OPTIONS, extra={"docker.timeout": 30.0, **_CHUNKS})
STALLING = attrs.evolve(OPTIONS, extra={"docker.timeout": TIMEOUT})
STALLING_CHUNKED = attrs.evolve(OPTIONS, extra={"docker.timeout": TIMEOUT, **_CHUNKS})

IMAGE = make_image(71, (150_000, 300_000, 80_000))
OLD = make_image(72, (5_000,))
LAYERS = [d for d in IMAGE.blobs if d != IMAGE.config_digest]
BLOBS = list(IMAGE.blobs)

FaultMaker = Callable[[random.Random], list[Fault]]


@dataclass(frozen=True)
class Scenario:
    name: str
    #: ``pull``: registry (through the proxy) -> OCI layout; ``push``: OCI layout -> registry.
    direction: str
    faults: FaultMaker
    #: The retry policy should cope: every run must complete. Otherwise every run must fail
    #: cleanly (a wrong byte must never be accepted).
    copes: bool
    runs: int = 4
    options: TransportOptions = OPTIONS


def _blob_path(rng: random.Random, choices: list[object] | None = None) -> str:
    return f"/blobs/{rng.choice(choices or LAYERS)}"


def _storm(
    method: str, path: str, statuses: tuple[int, ...], count: int, rng: random.Random, **kw: object
) -> list[Fault]:
    return [
        Fault(method, path, "status", status=rng.choice(statuses), **kw)  # type: ignore[arg-type]
        for _ in range(count)
    ]


SCENARIOS = [
    # -- pulls ---------------------------------------------------------------------------------
    Scenario(
        "pull/cut-blob",
        "pull",
        lambda r: [Fault("GET", _blob_path(r), "cut", at=r.random(), times=r.randint(1, 3))],
        copes=True,
    ),
    Scenario(
        "pull/cut-every-blob",
        "pull",
        lambda r: [Fault("GET", f"/blobs/{d}", "cut", at=r.random()) for d in BLOBS],
        copes=True,
    ),
    Scenario(
        "pull/stall-blob",
        "pull",
        lambda r: [Fault("GET", _blob_path(r), "stall", at=r.random(), stall=STALL)],
        copes=True,
        runs=3,
        options=STALLING,
    ),
    Scenario(
        "pull/truncated-blob",
        "pull",
        lambda r: [Fault("GET", _blob_path(r), "truncate", at=r.random(), times=r.randint(1, 2))],
        copes=True,
    ),
    Scenario(
        "pull/429-storm-retry-after",
        "pull",
        lambda r: _storm(
            "GET", _blob_path(r), (429, 503), r.randint(1, 4), r, headers={"Retry-After": "1"}
        ),
        copes=True,
        runs=3,
    ),
    Scenario(
        "pull/5xx-storm",
        "pull",
        lambda r: _storm("GET", r.choice(["/manifests/", "/blobs/"]), (500, 502, 503, 504), 4, r),
        copes=True,
    ),
    Scenario(
        "pull/storm-beyond-budget",
        "pull",
        lambda r: _storm("GET", _blob_path(r), (429, 500, 503), 5, r),
        copes=False,
        runs=3,
    ),
    Scenario(
        "pull/corrupt-blob",
        "pull",
        lambda r: [Fault("GET", _blob_path(r, BLOBS), "corrupt", at=r.random())],
        copes=False,
    ),
    Scenario(
        "pull/wrong-blob-same-length",
        "pull",
        lambda r: [
            Fault(
                "GET",
                f"/blobs/{LAYERS[0]}",
                "substitute",
                body=r.randbytes(len(IMAGE.blobs[LAYERS[0]])),
            )
        ],
        copes=False,
        runs=2,
    ),
    Scenario(
        "pull/truncated-manifest",
        "pull",
        lambda r: [Fault("GET", "/manifests/", "truncate", at=r.random())],
        copes=False,
        runs=2,
    ),
    # -- pushes --------------------------------------------------------------------------------
    Scenario(
        "push/cut-chunked-upload",
        "push",
        lambda r: [
            Fault("PATCH", "/blobs/uploads/", "cut_request", at=r.random(), times=r.randint(1, 3))
        ],
        copes=True,
        options=CHUNKED,
    ),
    Scenario(
        "push/stall-chunked-upload",
        "push",
        lambda r: [Fault("PATCH", "/blobs/uploads/", "stall_request", at=r.random(), stall=STALL)],
        copes=True,
        options=STALLING_CHUNKED,
        runs=3,
    ),
    Scenario(
        "push/5xx-storm",
        "push",
        lambda r: [
            *_storm("HEAD", "/blobs/", (500, 502, 503), r.randint(1, 4), r),
            *_storm("PATCH", "/blobs/uploads/", (500, 502, 503, 429), r.randint(1, 4), r),
            *_storm("PUT", "/manifests/", (500, 503), r.randint(1, 4), r),
        ],
        copes=True,
        options=CHUNKED,
    ),
    Scenario(
        "push/manifest-put-cut-or-lost",
        "push",
        lambda r: [Fault("PUT", "/manifests/", r.choice(["cut_request", "drop"]), at=r.random())],
        copes=True,
    ),
    Scenario(
        # The PUT that completes a monolithic upload cannot be resent (the upload is gone, or
        # done): the copy engine puts the blob again, in a new upload.
        "push/cut-monolithic-upload",
        "push",
        lambda r: [Fault("PUT", "/blobs/uploads/", "cut_request", at=r.random())],
        copes=True,
    ),
    Scenario(
        "push/monolithic-upload-answer-lost",
        "push",
        lambda r: [Fault("PUT", "/blobs/uploads/", "drop")],
        copes=True,
        runs=2,
    ),
    Scenario(
        # Cut on every try of one blob: past the copy's budget for it, the copy fails cleanly.
        "push/cut-monolithic-upload-beyond-budget",
        "push",
        lambda r: [
            Fault(
                "PUT", r.choice(LAYERS).hex, "cut_request", at=r.random(), times=RETRY.attempts + 1
            )
        ],
        copes=False,
        runs=2,
    ),
]


@pytest.fixture(scope="module")
def source_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_oci_layout(tmp_path_factory.mktemp("faults") / "src", {"v1": IMAGE, "old": OLD})


@pytest.fixture(scope="module")
def pushed(registry: RunningRegistry, source_layout: Path) -> str:
    """The image in the registry, pushed directly (not through the proxy)."""
    copy_image(
        f"oci:{source_layout}:v1",
        f"docker://{registry.host}/rel/source:v1",
        CopyOptions(destination_options=TransportOptions(tls_verify=False)),
    )
    assert check_registry_tag(registry.host, "rel/source", "v1") == str(IMAGE.digest)
    return "rel/source:v1"


def _layout_state(path: Path, new: BuiltImage, old: BuiltImage) -> str:
    tags = check_layout(path)
    if tags.get("old") != str(old.digest):
        raise Corrupt(f"the old image is damaged or gone: {tags}")
    got = tags.get("new")
    if got is None:
        return "absent"
    if got != str(new.digest):
        raise Corrupt(f"the tag points to {got}, neither old nor new")
    return "new"


def _registry_state(host: str, repository: str) -> str:
    got = check_registry_tag(host, repository, "t")
    if got == str(IMAGE.digest):
        return "new"
    if got == str(OLD.digest):
        return "old"
    raise Corrupt(f"{repository}:t points to {got}")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_copy_under_faults(
    scenario: Scenario,
    chaos: ChaosProxy,
    registry: RunningRegistry,
    source_layout: Path,
    pushed: str,
    tmp_path: Path,
) -> None:
    t = tally(scenario.name)
    options = CopyOptions(source_options=scenario.options, destination_options=scenario.options)
    for run in range(iterations(scenario.runs)):
        rng = rng_for(scenario.name, run)
        chaos.clear()
        faults = scenario.faults(rng)
        verify: Callable[[], str]
        if scenario.direction == "pull":
            dest = write_oci_layout(tmp_path / f"dst{run}", {"old": OLD})
            src, dst = f"docker://{chaos.host}/{pushed}", f"oci:{dest}:new"
            verify = lambda dest=dest: _layout_state(dest, IMAGE, OLD)  # noqa: E731
        else:
            repository = f"rel/{scenario.name.replace('/', '-')}-{run}"
            # The tag holds an old image, pushed directly: it must survive a failed copy.
            copy_image(
                f"oci:{source_layout}:old",
                f"docker://{registry.host}/{repository}:t",
                CopyOptions(destination_options=TransportOptions(tls_verify=False)),
            )
            src, dst = f"oci:{source_layout}:v1", f"docker://{chaos.host}/{repository}:t"
            verify = lambda r=repository: _registry_state(registry.host, r)  # noqa: E731
        chaos.add(*faults)
        outcome = attempt(t, lambda s=src, d=dst: copy_image(s, d, options), verify)
        t.faults += chaos.applied()
        assert outcome in ("completed", "failed"), t.problems
    assert t.corrupt == 0, t.problems
    assert t.escaped == 0, t.problems
    assert t.faults > 0, "no fault was injected: the scenario tested nothing"
    if scenario.copes:
        assert t.completed == t.attempted, (t.errors, t.problems)
    else:
        assert t.failed_clean == t.attempted, (t.errors, t.problems)


# -- single faults, with precise expectations ------------------------------------------------
def test_a_stall_is_cut_short_by_the_docker_timeout(chaos: ChaosProxy, pushed: str) -> None:
    """``docker.timeout`` bounds a silent connection: the blob resumes after ~TIMEOUT, not
    after the 30 s the proxy would stay silent."""
    layer = LAYERS[0]
    chaos.add(Fault("GET", f"/blobs/{layer}", "stall", at=0.3, stall=30))
    ref = transport.parse_reference(f"//{chaos.host}/{pushed}")
    start = time.monotonic()
    with ref.open_source(STALLING) as src, src.get_blob(_descriptor(layer)) as reader:
        assert reader.read() == IMAGE.blobs[layer]
    assert time.monotonic() - start < 10 * TIMEOUT
    gets = [s for s in chaos.seen if s.method == "GET" and str(layer) in s.path]
    assert len(gets) == 2
    assert gets[1].headers["Range"].startswith("bytes=")


@pytest.mark.parametrize("action", ["cut", "stall"])
def test_a_broken_manifest_body_is_retried(chaos: ChaosProxy, pushed: str, action: str) -> None:
    chaos.add(Fault("GET", "/manifests/", action, at=0.5, stall=STALL))
    with transport.parse_reference(f"//{chaos.host}/{pushed}").open_source(STALLING) as src:
        assert src.get_manifest()[0] == IMAGE.manifest


def test_429_on_the_upload_start_is_retried(
    chaos: ChaosProxy, registry: RunningRegistry, source_layout: Path
) -> None:
    chaos.add(Fault("POST", "/blobs/uploads/", "status", status=429, headers={"Retry-After": "1"}))
    options = CopyOptions(destination_options=OPTIONS)
    copy_image(f"oci:{source_layout}:v1", f"docker://{chaos.host}/rel/post429:t", options)
    assert check_registry_tag(registry.host, "rel/post429", "t") == str(IMAGE.digest)


def _descriptor(digest: object) -> Descriptor:
    return Descriptor(mt.OCI_LAYER_GZIP, Digest.parse(str(digest)), len(IMAGE.blobs[digest]))  # type: ignore[index]
