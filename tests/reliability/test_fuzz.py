"""Property-based fuzzing of everything that parses untrusted input: manifests (arbitrary bytes
and almost-valid JSON), image names, transport references, WWW-Authenticate challenges, and
docker-archive files (random and mutated tars). No exception but an ImageError may escape, no
input may hang (a hard per-example alarm besides hypothesis' deadline), and big inputs are
handled in bounded memory (tracemalloc).

Deterministic in CI: ``derandomize=True`` and no example database. ``IMAGETYPES_SOAK=N``
multiplies the number of examples.
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_support import SOAK

from imagetypes import (
    ImageConfig,
    ImageError,
    ManifestTooLargeError,
    Reference,
    TransportOptions,
    list_transports,
    parse_manifest,
    parse_reference,
)
from imagetypes import mediatypes as mt
from imagetypes.digest import Digest
from imagetypes.platform import Platform
from imagetypes_transports.docker._auth import Scope, parse_challenges
from imagetypes_transports.docker_archive import transport as archive_transport

EXAMPLES = 150 * SOAK


def fuzz_settings(examples: int = EXAMPLES) -> settings:
    return settings(
        derandomize=True,
        database=None,
        max_examples=examples,
        deadline=timedelta(seconds=2),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


class Hang(BaseException):
    """Raised by the alarm: a BaseException, so no ``except Exception`` in the code swallows it."""


@contextlib.contextmanager
def alarm(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (main thread only, where pytest runs tests)."""

    def fire(signum: int, frame: object) -> None:
        raise Hang(f"still running after {seconds}s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


#: The context manager a case measures its code under test with (see peak_in_fresh_process).
Measured = Callable[[], contextlib.AbstractContextManager[None]]

_MEASURE = """
import contextlib, sys, tracemalloc
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import test_fuzz
peaks = []

@contextlib.contextmanager
def measured():
    tracemalloc.start()
    try:
        yield
    finally:
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()

getattr(test_fuzz, sys.argv[3])(measured, *sys.argv[4:])
print(peaks[0])
"""


def peak_in_fresh_process(case: str, *args: str) -> int:
    """The peak of Python memory (tracemalloc) allocated inside ``case``'s measured block.

    ``case`` (a function of this module, given the ``measured`` context manager and ``args``)
    runs in a fresh interpreter, so that only the code under test counts: in the test process,
    state left by earlier tests once pushed a 2.3 MB peak to 4.25 MB, past a 4 MiB bound, in a
    long run.
    """
    here = Path(__file__).resolve().parent
    argv = [sys.executable, "-c", _MEASURE, str(here), str(here.parent), case, *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return int(done.stdout.split()[-1])


def only_image_errors(fn: Callable[[], object], seconds: float = 5.0) -> object | None:
    """Run ``fn``; an ImageError is fine (returned as None), anything else fails the test."""
    with alarm(seconds):
        try:
            return fn()
        except ImageError:
            return None


# -- manifests ---------------------------------------------------------------------------------
D1 = "sha256:" + "a" * 64
D2 = "sha256:" + "b" * 64

VALID: dict[str, dict[str, Any]] = {
    mt.OCI_MANIFEST: {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": D1, "size": 10},
        "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": D2, "size": 20}],
        "annotations": {"a": "b"},
    },
    mt.DOCKER_MANIFEST: {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": {"mediaType": mt.DOCKER_CONFIG, "digest": D1, "size": 10},
        "layers": [{"mediaType": mt.DOCKER_LAYER, "digest": D2, "size": 20}],
    },
    mt.OCI_INDEX: {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            {
                "mediaType": mt.OCI_MANIFEST,
                "digest": D1,
                "size": 10,
                "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
            }
        ],
    },
    mt.DOCKER_MANIFEST_LIST: {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST_LIST,
        "manifests": [
            {
                "mediaType": mt.DOCKER_MANIFEST,
                "digest": D1,
                "size": 10,
                "platform": {"os": "linux", "architecture": "amd64"},
            }
        ],
    },
    mt.DOCKER_SCHEMA1_MANIFEST: {
        "schemaVersion": 1,
        "name": "library/x",
        "tag": "latest",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": D2}],
        "history": [{"v1Compatibility": '{"id":"x"}'}],
    },
}

MEDIA_TYPES = st.sampled_from([None, "", "application/json", *VALID, mt.OCI_CONFIG]) | st.text(
    max_size=40
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from([D1, "sha256:", "sha256:zz", "md5:" + "a" * 32, mt.OCI_MANIFEST, -1, 0]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


@st.composite
def almost_valid_manifests(draw: st.DrawFn) -> tuple[bytes, str | None]:
    media_type = draw(st.sampled_from(sorted(VALID)))
    obj = copy.deepcopy(VALID[media_type])
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(obj) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = obj
        for key in path[:-1]:
            parent = parent[key]
        op = draw(st.sampled_from(["delete", "replace", "duplicate"]))
        if op == "delete":
            del parent[path[-1]]
        elif op == "replace":
            parent[path[-1]] = draw(json_values)
        elif isinstance(parent, list):
            parent.append(copy.deepcopy(parent[path[-1]]))
        else:
            parent[draw(st.text(max_size=8))] = copy.deepcopy(parent[path[-1]])
    data = json.dumps(obj, separators=draw(st.sampled_from([(",", ":"), (", ", ": ")]))).encode()
    given_type = draw(st.sampled_from([None, media_type, *VALID]))
    return data, given_type


def _use(manifest: Any) -> None:
    """Touch what a caller would use of a parsed manifest."""
    manifest.to_dict()
    assert manifest.digest == Digest.from_bytes(manifest.raw)
    for name in ("config", "layers", "manifests", "fs_layers", "history", "annotations"):
        getattr(manifest, name, None)
    again = parse_manifest(manifest.raw, manifest.media_type)
    assert again == manifest


@fuzz_settings()
@given(data=st.binary(max_size=4096), media_type=MEDIA_TYPES)
def test_parse_manifest_arbitrary_bytes(data: bytes, media_type: str | None) -> None:
    result = only_image_errors(lambda: parse_manifest(data, media_type))
    if result is not None:
        only_image_errors(lambda: _use(result))


@fuzz_settings(3 * EXAMPLES)
@given(case=almost_valid_manifests())
def test_parse_manifest_almost_valid_json(case: tuple[bytes, str | None]) -> None:
    data, media_type = case
    result = only_image_errors(lambda: parse_manifest(data, media_type))
    if result is not None:
        _use(result)


@fuzz_settings(EXAMPLES // 3)
@given(case=almost_valid_manifests())
def test_image_config_and_platform_parsers(case: tuple[bytes, str | None]) -> None:
    data, _ = case
    only_image_errors(lambda: ImageConfig.parse(data))
    text = data[:40].decode("utf-8", "replace")
    only_image_errors(lambda: Platform.parse(text))
    only_image_errors(lambda: Digest.parse(text))


def _huge_manifest_case(measured: Measured) -> None:
    big = b'{"schemaVersion":2,"layers":[' + b'{"digest":"x"},' * 600_000 + b"{}]}"
    assert len(big) > 8 * 1024 * 1024
    with measured(), alarm(10), pytest.raises(ManifestTooLargeError):
        parse_manifest(big)


def test_huge_manifest_is_refused_in_bounded_memory() -> None:
    # Refused from its length, without decoding it: far less than the input itself.
    peak = peak_in_fresh_process("_huge_manifest_case")
    assert peak < 1024 * 1024, peak


def test_deeply_nested_manifest_is_a_manifest_error() -> None:
    deep = b'{"schemaVersion":2,"mediaType":"' + mt.OCI_MANIFEST.encode() + b'","config":'
    deep += b"[" * 100_000 + b"]" * 100_000 + b"}"
    result = only_image_errors(lambda: parse_manifest(deep), seconds=10)
    assert result is None


# -- image names and transport references ------------------------------------------------------
NAME_ALPHABET = "abcxyz019ABZ._-/:@+ \t\n\x00é"
reference_texts = (
    st.text(alphabet=NAME_ALPHABET, max_size=120)
    | st.from_regex(
        r"\A([a-z0-9.-]{1,20}(:[0-9]{1,6})?/)?[a-z0-9._-]{1,30}(/[a-z0-9._-]{1,10}){0,3}"
        r"(:[A-Za-z0-9._-]{1,20})?(@sha256:[0-9a-f]{64})?\Z"
    )
    | st.text(max_size=300)
)


@fuzz_settings(3 * EXAMPLES)
@given(text=reference_texts)
def test_reference_grammar(text: str) -> None:
    ref = only_image_errors(lambda: Reference.parse(text))
    if ref is not None:
        # What parses prints back to something that parses to the same reference.
        assert Reference.parse(str(ref)) == ref


@pytest.fixture
def quiet_dir(tmp_path: Path) -> Iterator[Path]:
    """An empty working directory for one test: parsing a reference must create nothing."""
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(old)


@settings(
    parent=fuzz_settings(4 * EXAMPLES),
    # The folder is made once for the whole test; each example checks it stays empty.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    transport=st.sampled_from(sorted(t.name for t in list_transports())) | st.text(max_size=10),
    text=reference_texts,
)
def test_transport_reference_parsers(quiet_dir: Path, transport: str, text: str) -> None:
    # docker:// references are network names; the others are paths under the working folder.
    ref = only_image_errors(lambda: parse_reference(f"{transport}:{text}"))
    if ref is not None:
        again = only_image_errors(lambda: parse_reference(str(ref)))
        assert again == ref, (str(ref), again)
    assert os.listdir(quiet_dir) == []


# -- WWW-Authenticate --------------------------------------------------------------------------
token68 = st.text(alphabet="abcXYZ019-._~+/=", min_size=1, max_size=20)
param_names = st.sampled_from(["realm", "service", "scope", "error", "x"]) | st.from_regex(
    r"\A[A-Za-z][A-Za-z0-9_.-]{0,10}\Z"
)
param_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@st.composite
def challenges(draw: st.DrawFn) -> tuple[str, list[tuple[str, dict[str, str]]]]:
    """A well-formed header and what it says."""
    parts = []
    expected = []
    for _ in range(draw(st.integers(1, 3))):
        scheme = draw(st.sampled_from(["Bearer", "Basic", "Digest", "Negotiate"]))
        # At least one parameter: a bare scheme followed by a comma is the known bug below.
        params = draw(st.dictionaries(param_names, param_values, min_size=1, max_size=4))
        quoted = [
            f'{k}="' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for k, v in params.items()
        ]
        parts.append(f"{scheme} " + ", ".join(quoted) if quoted else scheme)
        lowered = {}
        for k, v in params.items():
            lowered[k.lower()] = v
        expected.append((scheme.lower(), lowered))
    return ", ".join(parts), expected


@fuzz_settings(3 * EXAMPLES)
@given(header=st.text(max_size=300) | st.text(alphabet='Bearer realm="\\,= ', max_size=300))
def test_www_authenticate_arbitrary_text(header: str) -> None:
    # A pure parser: nothing at all may be raised, whatever a registry sends.
    with alarm(5):
        for challenge in parse_challenges([header]):
            assert challenge.scheme == challenge.scheme.lower()
            assert all(isinstance(v, str) for v in challenge.params.values())
        Scope.parse(header)


@fuzz_settings()
@given(case=challenges())
def test_www_authenticate_well_formed(case: tuple[str, list[tuple[str, dict[str, str]]]]) -> None:
    header, expected = case
    got = parse_challenges([header])
    assert [(c.scheme, dict(c.params)) for c in got] == expected


def test_www_authenticate_bare_scheme_then_another_challenge() -> None:
    got = parse_challenges(['Basic, Bearer realm="https://auth.example/token",service="r"'])
    assert [c.scheme for c in got] == ["basic", "bearer"]
    assert got[1].params["realm"] == "https://auth.example/token"


@pytest.mark.parametrize(
    "header",
    [
        'Bearer realm="' + "\\" * 200_001,
        "Bearer " + "a=b," * 100_000,
        "Bearer " + "a=" * 100_000,
        "Bearer " + ", " * 100_000,
        "Bearer " + 'realm="' + "x\\" * 100_000,
        "B " * 100_000,
    ],
    ids=["backslashes", "many-params", "equals", "commas", "escapes", "many-schemes"],
)
def test_www_authenticate_adversarial_headers_are_linear(header: str) -> None:
    start = time.monotonic()
    with alarm(10):
        parse_challenges([header])
    assert time.monotonic() - start < 2.0


# -- docker-archive ----------------------------------------------------------------------------
def _tar_bytes(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def valid_archive_members(seed: int = 1) -> list[tuple[tarfile.TarInfo, bytes]]:
    """A small, valid ``docker save`` archive, built without imagetypes."""
    layer = _tar_bytes([_file(f"file{seed}", bytes([seed % 256]) * 3000)])
    diff_id = hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        }
    ).encode()
    config_hex = hashlib.sha256(config).hexdigest()
    manifest = json.dumps(
        [
            {
                "Config": f"{config_hex}.json",
                "RepoTags": ["example.com/fuzz:latest"],
                "Layers": [f"{diff_id}/layer.tar"],
            }
        ]
    ).encode()
    return [
        _file(f"{config_hex}.json", config),
        _file(f"{diff_id}/layer.tar", layer),
        _file("manifest.json", manifest),
    ]


def read_archive(path: Path, spool: Path) -> None:
    """Everything a copy reads from an archive."""
    options = TransportOptions(tmpdir=str(spool))
    with archive_transport.parse_reference(str(path)).open_source(options) as src:
        raw, media_type = src.get_manifest()
        manifest = parse_manifest(raw, media_type)
        for desc in (manifest.config, *manifest.layers):  # type: ignore[attr-defined]
            src.get_blob(desc).read_to_end()


@st.composite
def mutated_archives(draw: st.DrawFn) -> bytes:
    members = valid_archive_members(draw(st.integers(0, 3)))
    kind = draw(st.sampled_from(["bytes", "json", "names", "types", "sizes", "truncate", "raw"]))
    if kind == "json":
        info, data = members[-1]
        obj = json.loads(data)
        paths = [p for p in _paths(obj) if p]
        path = draw(st.sampled_from(paths))
        parent = obj
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = draw(json_values)
        members[-1] = _file("manifest.json", json.dumps(obj).encode())
    elif kind == "names":
        i = draw(st.integers(0, len(members) - 1))
        bad = draw(
            st.sampled_from(["../x", "/abs", "a/../../b", "./manifest.json", "a\\b", ""])
            | st.text(max_size=30)
        )
        info, data = members[i]
        info.name = bad or "x"
    elif kind == "types":
        i = draw(st.integers(0, len(members) - 1))
        info, data = members[i]
        info.type = draw(
            st.sampled_from(
                [
                    tarfile.SYMTYPE,
                    tarfile.LNKTYPE,
                    tarfile.CHRTYPE,
                    tarfile.FIFOTYPE,
                    tarfile.DIRTYPE,
                ]
            )
        )
        info.linkname = draw(
            st.sampled_from(["../../etc/passwd", "/etc/passwd", "manifest.json", "loop", "x"])
        )
        if not info.isreg():
            info.size = 0
    elif kind == "sizes":
        # A member whose data is cut short, or padded with zeros past its real end.
        i = draw(st.integers(0, len(members) - 1))
        info, data = members[i]
        info.size = draw(st.integers(0, 2 * len(data) + 10))
        members[i] = (info, data[: info.size].ljust(info.size, b"\0"))
    archive = _tar_bytes(members)
    if kind == "bytes":
        out = bytearray(archive)
        for _ in range(draw(st.integers(1, 8))):
            out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
        archive = bytes(out)
    elif kind == "truncate":
        archive = archive[: draw(st.integers(0, len(archive)))]
    elif kind == "raw":
        archive = draw(st.binary(max_size=3000))
    if draw(st.booleans()) and kind != "raw":
        archive = gzip.compress(archive, mtime=0)
    return archive


@pytest.fixture(scope="module")
def archive_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("archives")
    (root / "spool").mkdir()
    return root


_counter = iter(range(10**9))


@fuzz_settings(2 * EXAMPLES)
@given(archive=mutated_archives())
def test_docker_archive_reader_on_mutated_archives(archive_dir: Path, archive: bytes) -> None:
    # A new name each time: the reader caches indexes by file identity.
    path = archive_dir / f"a{next(_counter)}.tar"
    path.write_bytes(archive)
    try:
        only_image_errors(lambda: read_archive(path, archive_dir / "spool"))
    finally:
        path.unlink()
    # Nothing written next to the archive or left in the spool folder.
    assert sorted(os.listdir(archive_dir)) == ["spool"]
    assert os.listdir(archive_dir / "spool") == []


def test_valid_archive_reads(archive_dir: Path) -> None:
    """The fuzzer's seed archive is valid: the mutations start from something that works."""
    path = archive_dir / "valid.tar"
    path.write_bytes(_tar_bytes(valid_archive_members()))
    read_archive(path, archive_dir / "spool")
    path.unlink()


def _huge_manifest_json_case(measured: Measured, folder: str, compressed: str) -> None:
    root = Path(folder)
    members = valid_archive_members()
    huge = b"[" + b" " * (16 * 1024 * 1024) + b"]"
    members[-1] = _file("manifest.json", huge)
    archive = _tar_bytes(members)
    path = root / ("huge.tar.gz" if compressed == "yes" else "huge.tar")
    path.write_bytes(gzip.compress(archive, compresslevel=1) if compressed == "yes" else archive)
    del archive, members, huge
    try:
        with measured(), alarm(30), pytest.raises(ImageError, match="manifest"):
            read_archive(path, root / "spool")
    finally:
        path.unlink()


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_docker_archive_with_a_huge_manifest_json_is_read_in_bounded_memory(
    archive_dir: Path, compressed: bool
) -> None:
    flag = "yes" if compressed else "no"
    peak = peak_in_fresh_process("_huge_manifest_json_case", str(archive_dir), flag)
    # manifest.json is read with a 1 MiB bound; spooling streams in chunks.
    assert peak < 4 * 1024 * 1024, peak
    assert os.listdir(archive_dir / "spool") == []


def _huge_layer_case(measured: Measured, folder: str) -> None:
    root = Path(folder)
    layer = _tar_bytes([_file("big", os.urandom(24 * 1024 * 1024))])
    diff_id = hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"diff_ids": [f"sha256:{diff_id}"]}}
    ).encode()
    config_hex = hashlib.sha256(config).hexdigest()
    manifest = [{"Config": f"{config_hex}.json", "RepoTags": [], "Layers": ["big.tar"]}]
    members = [
        _file(f"{config_hex}.json", config),
        _file("big.tar", layer),
        _file("manifest.json", json.dumps(manifest).encode()),
    ]
    path = root / "biglayer.tar"
    path.write_bytes(_tar_bytes(members))
    del layer, members
    try:
        with measured(), alarm(60):
            read_archive(path, root / "spool")
    finally:
        path.unlink()


def test_docker_archive_with_a_huge_layer_streams_in_bounded_memory(archive_dir: Path) -> None:
    peak = peak_in_fresh_process("_huge_layer_case", str(archive_dir))
    assert peak < 4 * 1024 * 1024, peak


@pytest.mark.parametrize("size", [0, 1, 511, 512, 1024, 10240])
def test_docker_archive_of_zeros_or_nothing(archive_dir: Path, size: int) -> None:
    path = archive_dir / "zeros.tar"
    path.write_bytes(b"\0" * size)
    try:
        assert only_image_errors(lambda: read_archive(path, archive_dir / "spool")) is None
    finally:
        path.unlink()
