"""Time imagetypes against skopeo (and oras-py) on the same images, moved every way we support.

    python benchmarks/run.py [--runs 5] [--quick] [--only GROUPS] [--floor | --no-floor]
                             [--cache-dir DIR] [--output FILE]

The matrix, each row on the same fixtures for every tool:

- local: oci -> oci, oci -> dir, oci -> docker-archive, docker-archive -> oci, oci ->
  oci-archive, oci-archive -> oci;
- push (oci -> a fresh registry), pull (registry -> oci), registry -> registry (cold: to a fresh
  registry; mount: same registry, another repository), with oras-py too for push and pull;
- recompress: gzip -> zstd (``--dest-compress-format zstd``), oci -> oci;
- sync: 20 tags sharing layers, registry -> fresh registry;
- curve: oci -> oci of 1 to 200 small layers, for the cost of one layer;
- bytes: oci -> oci of one layer of 8 to 512 MiB, for the cost of a byte (and a peak RSS that
  does not grow with the layer);
- memory: gzip -> zstd between layouts and a push, of 2 to 32 layers of 6 MiB, for a peak RSS
  that does not grow with the number of layers either.

Registries are Debian's ``docker-registry`` on 127.0.0.1 with temporary storage, started here.
Fixtures (OCI layouts of random, incompressible data) are built once into a cache folder. Every
measured command runs as a child process; the report gives the median of ``--runs`` runs of its
wall time, CPU time (user + system) and peak RSS (from ``wait4``), judges each row against its
target, and is written as Markdown to ``docs/benchmarks.md`` (``--quick``: small fixtures,
report to stdout unless ``--output``).

The rows bound by requests rather than bytes (sync, and registry -> registry by mount) also time
``floorclient`` (benchmarks/floorclient, Go, built here when ``go`` is installed): the protocol's
minimum requests and nothing else, the least any client can take against the same registries,
which is the floor of those rows. (It holds each blob in memory: no floor for large layers.)

Set-up: ``pip install -e '.[bench]'`` (the fast compressors and oras-py) and Debian's
``skopeo`` and ``docker-registry``; a tool or group that is missing is skipped and said so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench_fixtures import (
    COMPRESSION_NOTE,
    TAG,
    Fixture,
    GiB,
    MiB,
    build_archive,
    build_fixture,
    curve_fixture,
    layer_files,
    size_fixture,
    size_text,
    sync_fixture,
)
from bench_floor import Floor, measure_floor
from bench_registry import REGISTRY_BIN, Registry, live_registry_cpu

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_OUTPUT = REPO / "docs" / "benchmarks.md"
ANALYSIS = HERE / "analysis.md"
ORAS_JOB = HERE / "oras_job.py"
FLOOR_CLIENT_SOURCE = HERE / "floorclient"
#: The tool name of benchmarks/floorclient in the tables.
FLOOR_CLIENT = "floor client"

#: The targets every row is judged by.
WALL_VS_SKOPEO = 0.5
WALL_VS_FLOOR = 1.5
RSS_LIMIT_MIB = 100

GROUPS = ("local", "push", "pull", "registry", "recompress", "sync", "curve", "bytes", "memory")
# Groups reported as curves (a fit through their rows), not judged against a target.
_CURVES = frozenset({"curve", "bytes", "memory"})
#: Groups whose rows talk to a registry: their tables show what the registries spent.
_SERVED_GROUPS = frozenset({"push", "pull", "registry", "sync"})

FULL_FIXTURES = (Fixture.uniform("4x64MiB", 4, 64 * MiB), Fixture.uniform("1x512MiB", 1, 512 * MiB))
QUICK_FIXTURES = (
    Fixture.uniform("quick-4x1MiB", 4, 1 * MiB),
    Fixture.uniform("quick-1x4MiB", 1, 4 * MiB),
)
FULL_CURVE = (1, 10, 50, 100, 200)
QUICK_CURVE = (1, 10)
FULL_SIZES = (8 * MiB, 32 * MiB, 128 * MiB, 512 * MiB)
QUICK_SIZES = (1 * MiB, 4 * MiB)
# Layer counts (and their size) of the memory group: many layers moved at once, each a few MiB
# (under 8 MiB, where a push held every worker's layer in memory until this group found it).
FULL_MEMORY = ((2, 8, 32), 6 * MiB)
QUICK_MEMORY = ((2, 4), 1 * MiB)
FULL_SYNC = sync_fixture(20, (16 * MiB, 8 * MiB), 1 * MiB, "sync-20x")
QUICK_SYNC = sync_fixture(3, (1 * MiB,), 64 * 1024, "quick-sync-3x")


# -- measuring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    wall: float
    cpu: float
    max_rss_kib: int
    #: CPU seconds the registries spent meanwhile (None for rows without a registry).
    server_cpu: float | None = None


@dataclass
class Result:
    tool: str
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None

    def median(self, attr: str) -> float:
        return float(statistics.median(getattr(s, attr) for s in self.samples))

    def server_cpu(self) -> float | None:
        """The median of the registries' CPU time, when every run measured it."""
        values = [s.server_cpu for s in self.samples]
        if not values or any(v is None for v in values):
            return None
        return float(statistics.median(v for v in values if v is not None))

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.samples)


class CommandFailed(RuntimeError):
    """A measured command exited non-zero, or did not leave what it should have."""


#: Runs a command and writes its wall time, CPU time and peak RSS to a file. Why a launcher:
#: a child's ``ru_maxrss`` starts from the RSS of the process that forked it (with vfork, as
#: subprocess uses, from that process's peak), so measuring straight from this process would
#: add the benchmark's own memory (fixture data read for the floor) to every command. The
#: launcher is a bare Python (``-S``): what it passes on is a few MiB.
_LAUNCHER = """
import os, sys, time
out, argv = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
with open(out, "w") as f:
    f.write(f"{wall} {usage.ru_utime + usage.ru_stime} {usage.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def measure(argv: Sequence[str]) -> Sample:
    """Run ``argv`` to completion; its wall time, CPU time and peak RSS (``wait4``)."""
    with tempfile.TemporaryFile() as err, tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "usage"
        launcher = [sys.executable, "-S", "-c", _LAUNCHER, str(result), *argv]
        servers_before = live_registry_cpu()
        done = subprocess.run(launcher, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        servers_after = live_registry_cpu()
        if done.returncode != 0:
            err.seek(0)
            output = err.read().decode(errors="replace").strip()
            raise CommandFailed(f"{' '.join(argv)} failed ({done.returncode}):\n{output[-3000:]}")
        wall, cpu, maxrss = result.read_text().split()
    server_cpu = None
    if servers_before is not None and servers_after is not None:
        server_cpu = servers_after - servers_before
    # ru_maxrss is in KiB on Linux.
    return Sample(float(wall), float(cpu), int(maxrss), server_cpu)


@dataclass
class Job:
    """One measured command, what proves it worked, and what to remove afterwards."""

    argv: list[str]
    check: Callable[[], None] = lambda: None
    cleanup: Callable[[], None] = lambda: None


#: Makes the job of one run (the argument is the run's number; -1 for a warm-up).
Maker = Callable[[int], Job]


@dataclass
class Row:
    """One line of the matrix: the same job done by each tool."""

    group: str
    title: str
    fixture: Fixture
    nbytes: int
    #: The floor's stages (names of :class:`Floor` rates) every byte must pass through.
    floor_parts: tuple[str, ...]
    makers: dict[str, Maker]
    note: str = ""
    warmup: bool = False
    results: list[Result] = field(default_factory=list)

    def result(self, tool: str) -> Result | None:
        return next((r for r in self.results if r.tool == tool and r.ok), None)


@dataclass
class Skipped:
    group: str
    title: str
    reason: str


def run_row(row: Row, runs: int) -> None:
    """Run every tool ``runs`` times, taking turns run by run (a slow phase hits all alike)."""
    row.results = [Result(tool) for tool in row.makers]
    if row.warmup:
        for result in row.results:
            _attempt(row, result, -1, record=False)
    for i in range(runs):
        for result in row.results:
            if result.error is None:
                _attempt(row, result, i, record=True)


def warm_sources(argv: Sequence[str]) -> None:
    """Read every local file a command names into the page cache, untimed.

    The machine's memory manager evicts idle files (a 512 MiB archive was found 440 MiB
    resident between rows), which would make a row measure the disk instead of the tool.
    """
    for arg in argv:
        for part in arg.split(":")[1:2] or [arg]:
            path = Path(part)
            if not path.is_absolute() or not path.exists():
                continue
            files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
            for f in files:
                with f.open("rb") as stream:
                    while stream.read(8 << 20):
                        pass


def _attempt(row: Row, result: Result, index: int, *, record: bool) -> None:
    job: Job | None = None
    try:
        job = row.makers[result.tool](index)
        warm_sources(job.argv)
        sample = measure(job.argv)
        job.check()
        if record:
            result.samples.append(sample)
    except (CommandFailed, OSError, RuntimeError, ValueError, LookupError) as e:
        result.error = str(e).strip().splitlines()[-1][:300] if str(e).strip() else repr(e)
        print(f"  {result.tool} failed on {row.title}: {e}", file=sys.stderr)
    finally:
        if job is not None:
            job.cleanup()
        # Write back what this run (and its cleanup) left dirty before the next run starts:
        # otherwise the kernel's writeback of one tool's 512 MiB lands in the other's run.
        os.sync()


# -- the matrix --------------------------------------------------------------------------------


@dataclass
class Context:
    python: str
    scratch: Path
    cache: Path
    tools: list[str]
    have_oras: bool
    registry: Registry | None = None
    #: The built benchmarks/floorclient, when ``go`` could build it.
    floor_client: Path | None = None
    registry_sources: dict[str, str] = field(default_factory=dict)
    fresh: list[Registry] = field(default_factory=list)

    def blob_cache(self) -> str:
        return str(self.scratch / "imagetypes-blobinfo.sqlite")

    def new_registry(self) -> Registry:
        reg = Registry(self.scratch)
        self.fresh.append(reg)
        return reg

    def drop_registry(self, reg: Registry) -> None:
        reg.stop()
        if reg in self.fresh:
            self.fresh.remove(reg)


def build_floor_client(cache: Path) -> tuple[Path | None, str]:
    """Build benchmarks/floorclient into ``cache``; its path, or None and why not."""
    go = shutil.which("go")
    if go is None:
        return None, "`go` is not installed"
    out = cache / "floorclient"
    env = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    done = subprocess.run(
        [go, "build", "-o", str(out), "."],
        cwd=FLOOR_CLIENT_SOURCE,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return None, f"`go build` failed: {done.stderr.strip()[-300:]}"
    return out, ""


def _tools_with_floor(ctx: Context) -> list[str]:
    return [*ctx.tools, *([FLOOR_CLIENT] if ctx.floor_client else [])]


def _tls(src: str, dst: str) -> list[str]:
    flags = []
    if src.startswith("docker://"):
        flags.append("--src-tls-verify=false")
    if dst.startswith("docker://"):
        flags.append("--dest-tls-verify=false")
    return flags


def copy_argv(ctx: Context, tool: str, src: str, dst: str, *extra: str) -> list[str]:
    if tool == "imagetypes":
        head = [ctx.python, "-m", "imagetypes", "copy", "--quiet"]
        head += ["--blob-info-cache", ctx.blob_cache()]
    else:
        head = ["skopeo", "copy", "--quiet"]
    return [*head, *_tls(src, dst), *extra, src, dst]


def _rm(path: Path) -> Callable[[], None]:
    def cleanup() -> None:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    return cleanup


def _expect_file(path: Path) -> Callable[[], None]:
    def check() -> None:
        if not path.is_file():
            raise CommandFailed(f"reported success but wrote no {path.name}")

    return check


def _expect_tag(reg: Registry, repository: str, tag: str) -> Callable[[], None]:
    def check() -> None:
        if tag not in reg.tags(repository):
            raise CommandFailed(f"reported success but {reg.host}/{repository}:{tag} is missing")

    return check


def _expect_zstd(layout: Path) -> Callable[[], None]:
    def check() -> None:
        index = json.loads((layout / "index.json").read_bytes())
        digest = index["manifests"][0]["digest"].split(":", 1)[1]
        manifest = json.loads((layout / "blobs" / "sha256" / digest).read_bytes())
        types = {layer["mediaType"] for layer in manifest["layers"]}
        if not all(t.endswith("+zstd") for t in types):
            raise CommandFailed(f"layers were not recompressed to zstd: {sorted(types)}")

    return check


def _local_kind(kind: str, p: Path) -> tuple[str, Path]:
    """The destination reference of ``kind`` at ``p``, and the file that proves it was written."""
    if kind == "oci":
        return f"oci:{p}:{TAG}", p / "index.json"
    if kind == "dir":
        return f"dir:{p}", p / "manifest.json"
    if kind == "docker-archive":
        return f"docker-archive:{p}.tar:bench/out:latest", Path(f"{p}.tar")
    return f"oci-archive:{p}.tar:{TAG}", Path(f"{p}.tar")


def local_rows(ctx: Context, fixture: Fixture, layout: Path) -> list[Row]:
    rows = []

    def to(kind: str) -> Row:
        def maker_for(tool: str) -> Maker:
            def make(i: int) -> Job:
                ref, marker = _local_kind(kind, ctx.scratch / f"{tool}-{kind}-{i}")
                target = marker if kind.endswith("archive") else marker.parent
                return Job(
                    copy_argv(ctx, tool, f"oci:{layout}:{TAG}", ref),
                    _expect_file(marker),
                    _rm(target),
                )

            return make

        parts: tuple[str, ...] = ("sha256", "file_copy_fsync")
        note = ""
        if kind == "docker-archive":
            note = "layers are stored uncompressed in a docker-archive: both tools decompress"
            parts = ("sha256", "gunzip_stored", "sha256", "file_copy_fsync")
        return Row(
            "local",
            f"oci -> {kind}",
            fixture,
            fixture.total,
            parts,
            {tool: maker_for(tool) for tool in ctx.tools},
            note,
        )

    def archive_to_oci(kind: str) -> Row | None:
        try:
            archive = build_archive(ctx.cache, layout, kind, functools.partial(_setup_copy, ctx))
        except CommandFailed as e:
            print(f"cannot build the {kind} fixture: {e}", file=sys.stderr)
            return None
        suffix = ":bench/" + layout.name.lower() + ":latest" if kind == "docker-archive" else ""
        source = f"{kind}:{archive}{suffix}" if kind == "docker-archive" else f"{kind}:{archive}"

        def maker_for(tool: str) -> Maker:
            def make(i: int) -> Job:
                out = ctx.scratch / f"{tool}-from-{kind}-{i}"
                return Job(
                    copy_argv(ctx, tool, source, f"oci:{out}:{TAG}"),
                    _expect_file(out / "index.json"),
                    _rm(out),
                )

            return make

        note = ""
        parts: tuple[str, ...] = ("sha256", "file_copy_fsync")
        if kind == "docker-archive":
            note = (
                "the archive holds uncompressed layers and an OCI layout wants them compressed: "
                "both tools gzip every layer (the row measures the compressor)"
            )
            parts = ("sha256", "sha256", "file_copy_fsync")
        return Row(
            "local",
            f"{kind} -> oci",
            fixture,
            fixture.total,
            parts,
            {tool: maker_for(tool) for tool in ctx.tools},
            note,
        )

    rows.append(to("oci"))
    rows.append(to("dir"))
    rows.append(to("docker-archive"))
    row = archive_to_oci("docker-archive")
    if row is not None:
        rows.append(row)
    rows.append(to("oci-archive"))
    row = archive_to_oci("oci-archive")
    if row is not None:
        rows.append(row)
    return rows


def _setup_copy(ctx: Context, src: str, dst: str) -> None:
    """An untimed copy that prepares a fixture: with skopeo if installed, else imagetypes."""
    tool = "skopeo" if "skopeo" in ctx.tools else "imagetypes"
    measure(copy_argv(ctx, tool, src, dst))


def registry_rows(ctx: Context, fixture: Fixture, layout: Path, groups: set[str]) -> list[Row]:
    assert ctx.registry is not None
    main = ctx.registry
    repo = f"bench/{fixture.name.lower()}"
    source_ref = f"docker://{main.host}/{repo}:latest"
    if repo not in ctx.registry_sources:
        _setup_copy(ctx, f"oci:{layout}:{TAG}", source_ref)
        ctx.registry_sources[repo] = source_ref
    rows: list[Row] = []
    layers = layer_files(layout)

    # push: to a fresh registry every run, so nothing is there yet
    push_maker = _push_maker(ctx, layout, "bench/push")
    tools = list(ctx.tools) + (["oras"] if ctx.have_oras else [])
    rows.append(
        Row(
            "push",
            "oci -> registry (push)",
            fixture,
            fixture.total,
            _PUSH_STAGES,
            {tool: push_maker(tool) for tool in tools},
            "to a fresh registry each run; oras pushes the layer files as an artifact "
            "(its own manifest, no config conversion)",
        )
    )

    def pull_maker(tool: str) -> Maker:
        def make(i: int) -> Job:
            out = ctx.scratch / f"{tool}-pull-{i}"
            if tool == "oras":
                tmp = ctx.scratch / f"oras-tmp-pull-{i}"
                argv = [ctx.python, str(ORAS_JOB), "pull", str(tmp), main.host]
                argv += [f"{repo}:latest", str(out)]

                def cleanup() -> None:
                    _rm(out)()
                    _rm(tmp)()

                return Job(argv, _expect_layers(out, len(layers)), cleanup)
            argv = copy_argv(ctx, tool, source_ref, f"oci:{out}:{TAG}")
            return Job(argv, _expect_file(out / "index.json"), _rm(out))

        return make

    rows.append(
        Row(
            "pull",
            "registry -> oci (pull)",
            fixture,
            fixture.total,
            ("http_get", "sha256", "file_copy_fsync"),
            {tool: pull_maker(tool) for tool in tools},
            "oras writes each layer to a plain file, in 8 KiB writes, and checks no digest",
        )
    )

    def cold_maker(tool: str) -> Maker:
        def make(i: int) -> Job:
            reg = ctx.new_registry()
            argv = copy_argv(ctx, tool, source_ref, f"docker://{reg.host}/bench/copy:latest")
            return Job(
                argv, _expect_tag(reg, "bench/copy", "latest"), lambda: ctx.drop_registry(reg)
            )

        return make

    rows.append(
        Row(
            "registry",
            "registry -> registry (cold)",
            fixture,
            fixture.total,
            ("http_get", "sha256", "http_put"),
            {tool: cold_maker(tool) for tool in ctx.tools},
            "to a fresh registry each run",
        )
    )

    def mount_maker(tool: str) -> Maker:
        def make(i: int) -> Job:
            target = f"mount/{tool.replace(' ', '-')}-{'warm' if i < 0 else i}"
            if tool == FLOOR_CLIENT:
                argv = [str(ctx.floor_client), "mount", main.host, repo, target, "latest"]
            else:
                argv = copy_argv(ctx, tool, source_ref, f"docker://{main.host}/{target}:latest")
            return Job(argv, _expect_tag(main, target, "latest"))

        return make

    rows.append(
        Row(
            "registry",
            "registry -> registry (mount)",
            fixture,
            0,
            (),
            {tool: mount_maker(tool) for tool in _tools_with_floor(ctx)},
            "same registry, another repository: blobs are mounted, not moved; one untimed "
            "warm-up copy per tool first, so each tool's blob-info cache knows the source",
            warmup=True,
        )
    )
    return [r for r in rows if r.group in groups]


def _expect_layers(outdir: Path, count: int) -> Callable[[], None]:
    def check() -> None:
        files = [p for p in outdir.iterdir() if p.is_file()] if outdir.is_dir() else []
        if len(files) != count:
            raise CommandFailed(f"pulled {len(files)} files, expected {count}")

    return check


#: The floor's stages of a push, and of gzip -> zstd (hashing both forms of each layer).
_PUSH_STAGES = ("sha256", "http_put")
_RECOMPRESS_STAGES = ("gunzip_stored", "sha256", "zstd_compress", "sha256", "file_copy_fsync")


def _push_maker(ctx: Context, layout: Path, repository: str) -> Callable[[str], Maker]:
    """Each tool's push of ``layout`` to a fresh registry per run (oras pushes the layer files
    as an artifact, from a temporary folder of its own)."""
    layers = layer_files(layout)

    def maker_for(tool: str) -> Maker:
        def make(i: int) -> Job:
            reg = ctx.new_registry()
            tmp = ctx.scratch / f"oras-tmp-push-{i}"
            if tool == "oras":
                argv = [ctx.python, str(ORAS_JOB), "push", str(tmp), reg.host]
                argv += [f"{repository}:latest", *(str(p) for p in layers)]
            else:
                dest = f"docker://{reg.host}/{repository}:latest"
                argv = copy_argv(ctx, tool, f"oci:{layout}:{TAG}", dest)

            def cleanup() -> None:
                ctx.drop_registry(reg)
                _rm(tmp)()

            return Job(argv, _expect_tag(reg, repository, "latest"), cleanup)

        return make

    return maker_for


def _recompress_maker(ctx: Context, layout: Path, label: str) -> Callable[[str], Maker]:
    """Each tool's gzip -> zstd of ``layout`` into a new layout per run, named after ``label``."""

    def maker_for(tool: str) -> Maker:
        def make(i: int) -> Job:
            out = ctx.scratch / f"{tool}-{label}-{i}"
            argv = copy_argv(
                ctx,
                tool,
                f"oci:{layout}:{TAG}",
                f"oci:{out}:{TAG}",
                "--dest-compress-format",
                "zstd",
            )
            return Job(argv, _expect_zstd(out), _rm(out))

        return make

    return maker_for


def recompress_rows(ctx: Context, fixture: Fixture, layout: Path) -> list[Row]:
    maker_for = _recompress_maker(ctx, layout, "zstd")
    return [
        Row(
            "recompress",
            "oci -> oci, gzip -> zstd",
            fixture,
            fixture.total,
            _RECOMPRESS_STAGES,
            {tool: maker_for(tool) for tool in ctx.tools},
            "`--dest-compress-format zstd`; the floor counts hashing both forms of each layer",
        )
    ]


def sync_rows(ctx: Context, fixture: Fixture) -> list[Row]:
    assert ctx.registry is not None
    layout = fixture_layout(ctx.cache, fixture)
    main = ctx.registry
    repo = "sync/src"
    if sorted(main.tags(repo)) != sorted(fixture.images):
        for tag in fixture.images:
            _setup_copy(ctx, f"oci:{layout}:{tag}", f"docker://{main.host}/{repo}:{tag}")
    wanted = sorted(fixture.images)

    def maker_for(tool: str) -> Maker:
        def make(i: int) -> Job:
            reg = ctx.new_registry()
            if tool == FLOOR_CLIENT:
                # Where skopeo sync puts them: the repository's last name, at the top.
                argv = [str(ctx.floor_client), "copy", main.host, repo, reg.host]
                argv.append(repo.rsplit("/", 1)[-1])
            else:
                if tool == "imagetypes":
                    argv = [ctx.python, "-m", "imagetypes", "sync", "--quiet"]
                    argv += ["--blob-info-cache", ctx.blob_cache()]
                else:
                    argv = ["skopeo", "sync"]
                argv += ["--src", "docker", "--dest", "docker"]
                argv += ["--src-tls-verify=false", "--dest-tls-verify=false"]
                argv += [f"{main.host}/{repo}", reg.host]

            def check() -> None:
                found = {r: sorted(reg.tags(r)) for r in reg.repositories()}
                if wanted not in found.values():
                    raise CommandFailed(
                        f"the destination holds {found}, not the {len(wanted)} tags"
                    )

            return Job(argv, check, lambda: ctx.drop_registry(reg))

        return make

    return [
        Row(
            "sync",
            f"sync {len(fixture.images)} tags, registry -> registry",
            fixture,
            fixture.total,
            ("http_get", "sha256", "http_put"),
            {tool: maker_for(tool) for tool in _tools_with_floor(ctx)},
            "to a fresh registry each run; shared layers are moved once",
        )
    ]


def curve_rows(ctx: Context, fixture: Fixture, group: str = "curve") -> list[Row]:
    """oci -> oci of ``fixture``: one point of the layer-count (``curve``) or size (``bytes``)
    curve."""
    layout = fixture_layout(ctx.cache, fixture)

    def maker_for(tool: str) -> Maker:
        def make(i: int) -> Job:
            out = ctx.scratch / f"{tool}-{group}-{i}"
            argv = copy_argv(ctx, tool, f"oci:{layout}:{TAG}", f"oci:{out}:{TAG}")
            return Job(argv, _expect_file(out / "index.json"), _rm(out))

        return make

    return [
        Row(
            group,
            f"oci -> oci, {fixture.describe()}",
            fixture,
            fixture.total,
            ("sha256", "file_copy_fsync"),
            {tool: maker_for(tool) for tool in ctx.tools},
        )
    ]


def memory_rows(ctx: Context, fixture: Fixture) -> list[Row]:
    """gzip -> zstd between layouts, and a push to a fresh registry, of ``fixture``: one point of
    the peak memory by layer count."""
    layout = fixture_layout(ctx.cache, fixture)
    recompress_maker = _recompress_maker(ctx, layout, "memory-zstd")
    push_maker = _push_maker(ctx, layout, "memory/push")
    rows = [
        Row(
            "memory",
            MEMORY_RECOMPRESS,
            fixture,
            fixture.total,
            _RECOMPRESS_STAGES,
            {tool: recompress_maker(tool) for tool in ctx.tools},
        )
    ]
    if ctx.registry is not None:
        rows.append(
            Row(
                "memory",
                MEMORY_PUSH,
                fixture,
                fixture.total,
                _PUSH_STAGES,
                {tool: push_maker(tool) for tool in ctx.tools},
            )
        )
    return rows


MEMORY_RECOMPRESS = "oci -> oci, gzip -> zstd"
MEMORY_PUSH = "oci -> registry (push)"


def fixture_layout(cache: Path, fixture: Fixture) -> Path:
    """Build (or find) the fixture's layout, saying how long it took."""
    start = time.perf_counter()
    layout = build_fixture(cache, fixture)
    took = time.perf_counter() - start
    print(f"fixture {fixture.name}: {layout} ({took:.1f} s)", file=sys.stderr)
    return layout


def cli_has(python: str, command: str, flag: str | None = None) -> bool:
    """Whether ``imagetypes COMMAND`` exists (and takes ``flag``), by its ``--help``."""
    done = subprocess.run(
        [python, "-m", "imagetypes", command, "--help"], capture_output=True, text=True, check=False
    )
    return done.returncode == 0 and (flag is None or flag in done.stdout)


# -- the report --------------------------------------------------------------------------------


def _first_line(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.strip().splitlines()[0] if out.strip() else "unknown"


def _package_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"


def machine_info(python: str) -> dict[str, str]:
    """The machine and the versions of everything measured."""
    cpu = "unknown"
    memory = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "CPUs (nproc)": str(os.cpu_count() or "unknown"),
        "CPU model": cpu,
        "Memory": memory,
        "OS": f"{platform.system()} {platform.release()}",
        "Load average at the start (1/5/15 min)": load,
        "Python version": platform.python_version(),
        "imagetypes version": _first_line([python, "-m", "imagetypes", "--version"]),
        "skopeo version": _first_line(["skopeo", "--version"])
        if shutil.which("skopeo")
        else "missing",
        "docker-registry version": _first_line([REGISTRY_BIN, "--version"])
        if REGISTRY_BIN
        else "missing",
        "oras-py version": _package_version("oras"),
        "isal (fast gzip) version": _package_version("isal"),
        "go version (floor client)": _first_line(["go", "version"])
        if shutil.which("go")
        else "missing",
    }


@dataclass(frozen=True)
class Verdict:
    floor: float | None
    target: float | None
    basis: str
    wall_ok: bool | None
    rss_ok: bool | None


def judge(row: Row, floor: Floor | None) -> Verdict:
    """Is imagetypes within its targets on this row?"""
    ours = row.result("imagetypes")
    theirs = row.result("skopeo")
    floor_s = floor.seconds(row.nbytes, *row.floor_parts) if floor and row.floor_parts else None
    floor_name = "floor"
    # Where the row has one, the floor client's time is the floor when it is the larger: what
    # the registries themselves take to serve the protocol's minimum requests.
    protocol = row.result(FLOOR_CLIENT)
    if protocol is not None and (floor_s is None or protocol.median("wall") > floor_s):
        floor_s, floor_name = protocol.median("wall"), FLOOR_CLIENT
    target: float | None = None
    basis = "no skopeo"
    if theirs is not None:
        target = WALL_VS_SKOPEO * theirs.median("wall")
        basis = f"{WALL_VS_SKOPEO}x skopeo"
        if floor_s is not None and floor_s > target:
            target = WALL_VS_FLOOR * floor_s
            basis = f"{WALL_VS_FLOOR}x {floor_name}"
    wall_ok = None if ours is None or target is None else ours.median("wall") <= target
    rss_ok = None if ours is None else ours.median("max_rss_kib") / 1024 < RSS_LIMIT_MIB
    return Verdict(floor_s, target, basis, wall_ok, rss_ok)


def _mark(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


def _fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def linear_fit(points: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """Least squares ``y = a + b x``: (a, b); None with fewer than two distinct x."""
    if len({x for x, _ in points}) < 2:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    b = sxy / sxx
    return my - b * mx, b


def render(
    rows: Sequence[Row],
    skipped: Sequence[Skipped],
    floor: Floor | None,
    info: dict[str, str],
    argv_text: str,
    runs: int,
) -> str:
    """The Markdown report."""
    matrix = [r for r in rows if r.group not in _CURVES]
    curve = [r for r in rows if r.group == "curve"]
    sizes = [r for r in rows if r.group == "bytes"]
    memory = [r for r in rows if r.group == "memory"]
    verdicts = {id(r): judge(r, floor) for r in rows}
    judged = [r for r in matrix if verdicts[id(r)].wall_ok is not None]
    met = [r for r in judged if verdicts[id(r)].wall_ok]
    rss_judged = [r for r in matrix if verdicts[id(r)].rss_ok is not None]
    rss_met = [r for r in rss_judged if verdicts[id(r)].rss_ok]
    failed = [(r, res) for r in rows for res in r.results if res.error is not None]

    lines = ["# Benchmarks", ""]
    lines += [
        "## Summary",
        "",
        f"- Wall-time target (at most {WALL_VS_SKOPEO}x skopeo's wall time, or within "
        f"{WALL_VS_FLOOR}x of the physical floor where the floor is above that): met on "
        f"**{len(met)} of {len(judged)}** rows.",
        f"- Peak RSS under {RSS_LIMIT_MIB} MiB: met on "
        f"**{len(rss_met)} of {len(rss_judged)}** rows.",
    ]
    peaks = [res.median("max_rss_kib") / 1024 for r in memory if (res := r.result("imagetypes"))]
    if peaks:
        counts = sorted({r.fixture.layer_count for r in memory})
        lines.append(
            f"- Peak RSS by layer count ({counts[0]} to {counts[-1]} layers, see below): at most "
            f"**{max(peaks):.0f} MiB**."
        )
    missed = [r for r in judged if not verdicts[id(r)].wall_ok]
    if missed:
        lines.append(
            "- Rows missing the wall-time target: "
            + "; ".join(f"{r.title} ({r.fixture.describe()})" for r in missed)
            + "."
        )
    if failed:
        lines.append(
            "- Failed runs: "
            + "; ".join(f"{res.tool} on {r.title} ({r.fixture.describe()})" for r, res in failed)
            + " (see below)."
        )
    lines += ["", *analysis_block()]
    lines += [
        "",
        "## How it was measured",
        "",
        f"Generated by `{argv_text}` on {dt.date.today().isoformat()}. Every number is the "
        f"median of {runs} run{'s' if runs > 1 else ''}; tools take turns run by run, each a "
        "child process, with a fresh destination every run. Set-up: `pip install -e '.[bench]'` "
        "(ISA-L, zstd and oras-py) and Debian's `skopeo` and `docker-registry`.",
        "",
        "- **Wall**: elapsed time of the child process, start-up included; **MiB/s**: layer "
        "bytes / wall time.",
        "- **CPU**: user + system time of the child; **RSS**: its peak `ru_maxrss` (`wait4`, "
        "taken by a bare launcher process so that the benchmark's own memory is not counted). "
        "The registry's own CPU is not counted (it is another process).",
        f"- Layers: random bytes in a tar, stored as {COMPRESSION_NOTE}.",
        "- Sources are read into the page cache before every run (untimed); local destinations "
        "are on the same file system.",
        "- The package is byte-compiled first (`compileall`), as an installed wheel is.",
        "- Registries: `docker-registry` on 127.0.0.1, plain HTTP, temporary storage; "
        '"fresh" means a new registry process (and port) for every run.',
        "- imagetypes gets a blob-info cache private to the benchmark run (`--blob-info-cache`); "
        "skopeo uses its own persistent one, as it always does.",
        "- **Floor**: the row's bytes passed once through each stage the job cannot avoid, at "
        "the rates measured on this machine (see [the floor](#the-physical-floor)); start-up is "
        "not part of it. On the sync and mount rows, where the registries' work per request "
        "outweighs the bytes, the wall time of the **floor client** where that is larger: "
        "`benchmarks/floorclient`, a compiled Go program that sends the protocol's minimum "
        "requests and nothing else (blobs held in memory, digests checked, no authentication, "
        "retry, cache, policy or progress), the least any client can take against the same "
        "registries. **Target**: "
        f"{WALL_VS_SKOPEO}x skopeo's wall time, or {WALL_VS_FLOOR}x the floor where that is "
        "larger.",
        "- The machine is shared (other work ran during the measurements): read the per-run "
        "lists for the spread before drawing conclusions from small differences.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {key} | {value} |" for key, value in info.items()]

    lines += [
        "",
        "## Targets, row by row",
        "",
        "| Row | Fixture | imagetypes (s) | skopeo (s) | imagetypes / skopeo | Floor (s) "
        "| Target (s) | Wall target met | imagetypes RSS (MiB) | RSS < 100 MiB |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in matrix:
        v = verdicts[id(r)]
        ours, theirs = r.result("imagetypes"), r.result("skopeo")
        ow = ours.median("wall") if ours else None
        tw = theirs.median("wall") if theirs else None
        ratio = f"{ow / tw:.2f}x" if ow is not None and tw else "n/a"
        rss = ours.median("max_rss_kib") / 1024 if ours else None
        target = f"{_fmt(v.target)} ({v.basis})" if v.target is not None else "n/a"
        lines.append(
            f"| {r.title} | {r.fixture.describe()} | {_fmt(ow)} | {_fmt(tw)} | {ratio} | "
            f"{_fmt(v.floor)} | {target} | {_mark(v.wall_ok)} | {_fmt(rss, 0)} | "
            f"{_mark(v.rss_ok)} |"
        )

    lines += ["", "## Every row, every tool", ""]
    for r in matrix:
        lines += [f"### {r.title}: {r.fixture.describe()}", ""]
        if r.note:
            lines += [f"_{r.note}._", ""]
        lines += [
            "| Tool | Wall (s) | MiB/s | CPU (s) | Registries' CPU (s) | Peak RSS (MiB) | "
            "Runs (wall, s) |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for res in r.results:
            if not res.ok:
                lines.append(f"| {res.tool} | failed: {res.error} | | | | | |")
                continue
            wall = res.median("wall")
            rate = f"{r.nbytes / MiB / wall:.0f}" if r.nbytes else "-"
            runs_text = ", ".join(f"{s.wall:.2f}" for s in res.samples)
            served = res.server_cpu() if r.group in _SERVED_GROUPS else None
            served_text = f"{served:.2f}" if served is not None else "-"
            lines.append(
                f"| {res.tool} | {wall:.2f} | {rate} | {res.median('cpu'):.2f} | "
                f"{served_text} | {res.median('max_rss_kib') / 1024:.0f} | {runs_text} |"
            )
        lines.append("")

    if curve:
        lines += _render_curve(curve)
    if sizes:
        lines += _render_sizes(sizes)
    if memory:
        lines += _render_memory(memory)
    if floor is not None:
        lines += _render_floor(floor)
    if skipped:
        lines += ["## Rows not measured", ""]
        lines += [f"- {s.group}: {s.title}: {s.reason}" for s in skipped]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


_ANALYSIS_START = "<!-- analysis: benchmarks/analysis.md -->"
_ANALYSIS_END = "<!-- end of analysis -->"


def analysis_block() -> list[str]:
    """The hand-written findings (benchmarks/analysis.md), between markers."""
    text = ANALYSIS.read_text(encoding="utf-8").strip() if ANALYSIS.is_file() else ""
    return [_ANALYSIS_START, "", text, "", _ANALYSIS_END] if text else []


def refresh_analysis(report: Path) -> None:
    """Replace the findings in an existing report with benchmarks/analysis.md (no measuring)."""
    text = report.read_text(encoding="utf-8")
    start, end = text.find(_ANALYSIS_START), text.find(_ANALYSIS_END)
    if start < 0 or end < start:
        raise SystemExit(f"{report} has no analysis block to refresh")
    block = "\n".join(analysis_block())
    report.write_text(text[:start] + block + text[end + len(_ANALYSIS_END) :], encoding="utf-8")


def _render_curve(curve: Sequence[Row]) -> list[str]:
    size = next(iter(next(iter(curve[0].fixture.images.values())))).size
    return _render_fit(
        curve,
        "Cost per layer",
        f"oci -> oci of one image of N layers of {size_text(size)} each (the size is small so "
        "that what is measured is the cost of a layer, not of its bytes). The per-layer cost "
        "is the slope of a least-squares line through the medians; the intercept is start-up "
        "plus the per-image work.",
        ("Layers", "Bytes"),
        lambda r: (str(r.fixture.layer_count), size_text(r.nbytes)),
        lambda r: float(r.fixture.layer_count),
        lambda b: f"{b * 1000:.1f} ms per layer",
    )


def _render_sizes(sizes: Sequence[Row]) -> list[str]:
    return _render_fit(
        sizes,
        "Cost per byte",
        "oci -> oci of one image of one layer, of each size. The cost of a byte is the slope "
        "of a least-squares line through the medians; the peak RSS must not grow with the "
        "layer (blobs are streamed).",
        ("Layer",),
        lambda r: (size_text(r.nbytes),),
        lambda r: r.nbytes / GiB,
        lambda b: f"{b:.2f} s per GiB ({1024 / b:.0f} MiB/s)",
    )


def _render_memory(memory: Sequence[Row]) -> list[str]:
    """Peak RSS by layer count: a line per count, a column per operation and tool."""
    size = next(iter(next(iter(memory[0].fixture.images.values())))).size
    titles = [t for t in (MEMORY_RECOMPRESS, MEMORY_PUSH) if any(r.title == t for r in memory)]
    tools = [t for t in ("imagetypes", "skopeo") if any(r.result(t) for r in memory)]
    counts = sorted({r.fixture.layer_count for r in memory})
    lines = [
        "## Peak memory by layer count",
        "",
        f"One image of N layers of {size_text(size)} each, {' and '.join(titles)} (a fresh "
        "registry each run): the peak RSS of each tool, the median of its runs. Memory must not "
        f"grow with the image, whatever its size or number of layers (target: under "
        f"{RSS_LIMIT_MIB} MiB).",
        "",
        "| Layers | Bytes | "
        + " | ".join(f"{title}: {tool} (MiB)" for title in titles for tool in tools)
        + " |",
        "|---:|---:|" + "---:|" * (len(titles) * len(tools)),
    ]
    worst: float = 0
    for count in counts:
        at = {r.title: r for r in memory if r.fixture.layer_count == count}
        any_row = next(iter(at.values()))
        cells = [str(count), size_text(any_row.nbytes)]
        for title in titles:
            for tool in tools:
                res = at[title].result(tool) if title in at else None
                if res is None:
                    cells.append("failed")
                    continue
                mib = res.median("max_rss_kib") / 1024
                if tool == "imagetypes":
                    worst = max(worst, mib)
                cells.append(f"{mib:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    verdict = "under" if worst < RSS_LIMIT_MIB else "**over**"
    lines += ["", f"- imagetypes: at most {worst:.0f} MiB, {verdict} {RSS_LIMIT_MIB} MiB.", ""]
    return lines


def _render_fit(
    rows: Sequence[Row],
    title: str,
    intro: str,
    columns: tuple[str, ...],
    cells_of: Callable[[Row], tuple[str, ...]],
    x_of: Callable[[Row], float],
    slope_text: Callable[[float], str],
) -> list[str]:
    """A curve: each row's wall time and peak RSS per tool, then a line fitted through them."""
    tools = [t for t in ("imagetypes", "skopeo") if any(r.result(t) for r in rows)]
    lines = [
        f"## {title}",
        "",
        intro,
        "",
        "| "
        + " | ".join(columns)
        + " | "
        + " | ".join(f"{t} wall (s) | {t} RSS (MiB)" for t in tools)
        + " |",
        "|" + "---:|" * len(columns) + "---:|---:|" * len(tools),
    ]
    for r in rows:
        cells = list(cells_of(r))
        for t in tools:
            res = r.result(t)
            cells.append(
                f"{res.median('wall'):.2f} | {res.median('max_rss_kib') / 1024:.0f}"
                if res
                else "failed | "
            )
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for t in tools:
        points = [(x_of(r), res.median("wall")) for r in rows if (res := r.result(t)) is not None]
        fit = linear_fit(points)
        if fit is not None:
            a, b = fit
            lines.append(
                f"- {t}: {slope_text(b)}, {a:.2f} s fixed (fit over {len(points)} points)."
            )
    lines.append("")
    return lines


def _render_floor(floor: Floor) -> list[str]:
    def rate(x: float | None) -> str:
        return "not measured" if x is None else f"{x:.0f} MiB/s"

    return [
        "## The physical floor",
        "",
        f"Measured in the benchmark process on a {size_text(floor.sample_bytes)} layer file "
        "(warm in the page cache), median of 3:",
        "",
        "| Stage | Rate |",
        "|---|---:|",
        f"| sha256 (hashlib, 1 MiB reads into one buffer) | {rate(floor.sha256)} |",
        "| file copy + fsync (read/write through one 1 MiB buffer) | "
        f"{rate(floor.file_copy_fsync)} |",
        f"| file write + fsync (from memory) | {rate(floor.file_write_fsync)} |",
        f"| gunzip of the fixture's level-0 gzip | {rate(floor.gunzip_stored)} |",
        f"| zstd level 3 compression of random data | {rate(floor.zstd_compress)} |",
        f"| loopback HTTP GET of a blob from docker-registry | {rate(floor.http_get)} |",
        f"| loopback HTTP PUT of a blob (monolithic upload) to docker-registry | "
        f"{rate(floor.http_put)} |",
        "",
        f"Start-up, not part of any floor: `python -c pass` {floor.python_startup:.2f} s, "
        f"`python -m imagetypes --version` {floor.imagetypes_startup:.2f} s.",
        "",
    ]


# -- main --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per tool and row (5)")
    parser.add_argument("--quick", action="store_true", help="small fixtures, for a smoke run")
    parser.add_argument(
        "--only",
        help=f"comma-separated groups to run (default: all of {', '.join(GROUPS)})",
    )
    parser.add_argument(
        "--floor",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure the physical floor and judge rows against it (default: on, off with --quick)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "imagetypes-bench",
        help="where fixtures are built once and kept (default: under the system temp dir)",
    )
    parser.add_argument(
        "--output",
        help="Markdown report to write, '-' for stdout "
        "(default: docs/benchmarks.md; with --quick, stdout)",
    )
    parser.add_argument(
        "--refresh-analysis",
        action="store_true",
        help="only put the current benchmarks/analysis.md into the existing report",
    )
    args = parser.parse_args(argv)
    if args.refresh_analysis:
        refresh_analysis(Path(args.output or DEFAULT_OUTPUT))
        return 0
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    groups = set(GROUPS)
    if args.only:
        groups = {g.strip() for g in args.only.split(",") if g.strip()}
        if unknown := groups - set(GROUPS):
            parser.error(f"unknown groups: {', '.join(sorted(unknown))}")
    want_floor = (not args.quick) if args.floor is None else args.floor
    output = args.output or ("-" if args.quick else str(DEFAULT_OUTPUT))
    python = sys.executable

    tools = ["imagetypes"]
    if shutil.which("skopeo"):
        tools.append("skopeo")
    else:
        print("skopeo is not installed: measuring imagetypes alone", file=sys.stderr)
    have_oras = importlib.util.find_spec("oras") is not None
    info = machine_info(python)
    # Compiled bytecode, as an installed wheel has it: without it (an editable checkout under
    # PYTHONDONTWRITEBYTECODE) every measured run would compile the package again.
    subprocess.run(
        [python, "-m", "compileall", "-q", str(REPO / "imagetypes"), str(REPO / "transports")],
        check=True,
    )

    skipped: list[Skipped] = []
    cache: Path = args.cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    fixtures = QUICK_FIXTURES if args.quick else FULL_FIXTURES
    print(f"layers are {COMPRESSION_NOTE}", file=sys.stderr)

    scratch = Path(tempfile.mkdtemp(prefix="runs-", dir=cache))
    ctx = Context(python, scratch, cache, tools, have_oras)
    if groups & {"registry", "sync"}:
        ctx.floor_client, why_not = build_floor_client(cache)
        if ctx.floor_client is None:
            skipped.append(Skipped("registry/sync", FLOOR_CLIENT, why_not))
    rows: list[Row] = []
    floor: Floor | None = None
    try:
        layouts = {f.name: fixture_layout(cache, f) for f in fixtures}
        needs_registry = bool(groups & {"push", "pull", "registry", "sync", "memory"}) or want_floor
        if needs_registry and REGISTRY_BIN is not None:
            ctx.registry = Registry(scratch)
        if want_floor:
            sample = max(layer_files(layouts[fixtures[0].name]), key=lambda p: p.stat().st_size)
            print("measuring the floor ...", file=sys.stderr)
            floor = measure_floor(
                sample, scratch, ctx.registry.host if ctx.registry else None, python
            )

        planned: list[Callable[[], list[Row]]] = []
        for fixture in fixtures:
            layout = layouts[fixture.name]
            if "local" in groups:
                planned.append(functools.partial(local_rows, ctx, fixture, layout))
            if groups & {"push", "pull", "registry"}:
                if ctx.registry is None:
                    skipped.append(Skipped("registry", fixture.describe(), "no docker-registry"))
                else:
                    planned.append(functools.partial(registry_rows, ctx, fixture, layout, groups))
            if "recompress" in groups:
                if cli_has(python, "copy", "--dest-compress-format"):
                    planned.append(functools.partial(recompress_rows, ctx, fixture, layout))
                else:
                    skipped.append(
                        Skipped(
                            "recompress",
                            "gzip -> zstd",
                            "`imagetypes copy` has no `--dest-compress-format`",
                        )
                    )
        if not have_oras and groups & {"push", "pull"}:
            skipped.append(
                Skipped("push/pull", "oras-py", "oras-py (PyPI `oras`) is not installed")
            )
        if "sync" in groups:
            sync_fix = QUICK_SYNC if args.quick else FULL_SYNC
            if ctx.registry is None:
                skipped.append(Skipped("sync", sync_fix.describe(), "no docker-registry"))
            elif not cli_has(python, "sync"):
                skipped.append(Skipped("sync", sync_fix.describe(), "no `imagetypes sync`"))
            else:
                planned.append(functools.partial(sync_rows, ctx, sync_fix))
        if "curve" in groups:
            for n in QUICK_CURVE if args.quick else FULL_CURVE:
                planned.append(functools.partial(curve_rows, ctx, curve_fixture(n)))
        if "bytes" in groups:
            for size in QUICK_SIZES if args.quick else FULL_SIZES:
                planned.append(functools.partial(curve_rows, ctx, size_fixture(size), "bytes"))
        if "memory" in groups:
            counts, layer_size = QUICK_MEMORY if args.quick else FULL_MEMORY
            for count in counts:
                fixture = Fixture.uniform(
                    f"{'quick-' if args.quick else ''}memory-{count}x{layer_size // MiB}MiB",
                    count,
                    layer_size,
                )
                planned.append(functools.partial(memory_rows, ctx, fixture))

        for plan in planned:
            for row in plan():
                print(f"{row.title}, {row.fixture.describe()} ...", file=sys.stderr)
                start = time.perf_counter()
                run_row(row, args.runs)
                print(f"  done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
                rows.append(row)
    finally:
        for reg in list(ctx.fresh):
            reg.stop()
        if ctx.registry is not None:
            ctx.registry.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    shown = ["python", "benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])]
    report = render(rows, skipped, floor, info, " ".join(_strip_paths(shown)), args.runs)
    if output == "-":
        sys.stdout.write(report)
    else:
        Path(output).write_text(report, encoding="utf-8")
        print(f"wrote {output}", file=sys.stderr)
    return 0


def _strip_paths(argv: list[str]) -> list[str]:
    """``argv`` without the values of ``--output`` and ``--cache-dir`` (machine paths)."""
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--output", "--cache-dir"):
            skip = True
            continue
        if a.startswith(("--output=", "--cache-dir=")):
            continue
        out.append(a)
    return out


if __name__ == "__main__":
    sys.exit(main())
