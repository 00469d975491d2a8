"""Time ``imagetypes copy`` against ``skopeo copy`` on the same OCI layouts.

    python benchmarks/run.py [--runs 5] [--quick] [--cache-dir DIR] [--output FILE]

Fixtures (OCI layouts of random, incompressible data) are built once into a cache folder and
reused by later runs. Each scenario copies a fixture to a fresh destination with each tool, as
a child process, ``--runs`` times; the report gives the median wall time, throughput, CPU time
(user + system) and peak RSS of the child (from ``wait4``), and is written as Markdown to
``docs/benchmarks.md`` (``--quick``: small fixtures, report to stdout unless ``--output``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import json
import os
import platform
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO / "docs" / "benchmarks.md"
TAG = "bench"
CHUNK = 1 * MiB
#: How layers are stored, said in the report. Random data does not compress, and deflate's
#: stored blocks keep building fast while the layers stay real gzip streams.
COMPRESSION_NOTE = (
    "gzip streams at level 0 (deflate stored blocks: valid gzip, no compression; the data is "
    "random and would not compress anyway)"
)


@dataclass(frozen=True)
class Fixture:
    """An OCI layout to build: ``layers`` layers of ``layer_size`` bytes of random data."""

    name: str
    layers: int
    layer_size: int

    @property
    def total(self) -> int:
        return self.layers * self.layer_size

    def describe(self) -> str:
        return f"{self.layers} layer{'s' if self.layers > 1 else ''} x {_size(self.layer_size)}"


FULL_FIXTURES = (Fixture("4x64MiB", 4, 64 * MiB), Fixture("1x512MiB", 1, 512 * MiB))
QUICK_FIXTURES = (Fixture("quick-4x1MiB", 4, 1 * MiB), Fixture("quick-1x4MiB", 1, 4 * MiB))


def _size(n: int) -> str:
    return f"{n // MiB} MiB" if n % MiB == 0 else f"{n / MiB:.1f} MiB"


# -- fixtures ----------------------------------------------------------------------------------


class _HashingWriter:
    """Writes to a file, hashing and counting what passes."""

    def __init__(self, f: io.BufferedWriter) -> None:
        self.f = f
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.f.write(data)
        self.sha.update(data)
        self.size += len(data)


def _write_layer(tmp: Path, seed: int, size: int) -> tuple[Path, str, int, str]:
    """One gzip-wrapped tar layer with a single random file; (path, digest, size, diff_id)."""
    rnd = random.Random(seed)
    diff = hashlib.sha256()
    crc = 0
    raw_len = 0
    compressor = zlib.compressobj(0, zlib.DEFLATED, -zlib.MAX_WBITS)
    path = tmp / f"layer-{seed}"
    with open(path, "wb") as f:
        out = _HashingWriter(f)
        out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")  # gzip header: mtime 0, OS unknown

        def feed(data: bytes) -> None:
            nonlocal crc, raw_len
            diff.update(data)
            crc = zlib.crc32(data, crc)
            raw_len += len(data)
            out.write(compressor.compress(data))

        info = tarfile.TarInfo(f"data-{seed}.bin")
        info.size = size
        info.mode = 0o644
        feed(info.tobuf(tarfile.USTAR_FORMAT))
        left = size
        while left:
            n = min(CHUNK, left)
            feed(rnd.randbytes(n))
            left -= n
        feed(b"\0" * (-size % tarfile.BLOCKSIZE))  # pad the file to a 512-byte block
        feed(b"\0" * (2 * tarfile.BLOCKSIZE))  # end-of-archive marker
        out.write(compressor.flush())
        out.write(struct.pack("<II", crc & 0xFFFFFFFF, raw_len & 0xFFFFFFFF))
    return path, "sha256:" + out.sha.hexdigest(), out.size, "sha256:" + diff.hexdigest()


def _put_blob(layout: Path, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return "sha256:" + digest, len(data)


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def build_fixture(cache: Path, fixture: Fixture) -> Path:
    """The fixture's layout in ``cache``, built unless a complete one is there already."""
    layout = cache / fixture.name
    if (layout / ".complete").is_file():
        return layout
    shutil.rmtree(layout, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{fixture.name}-", dir=cache))
    try:
        blobs = staging / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        layers, diff_ids = [], []
        for i in range(fixture.layers):
            path, digest, size, diff_id = _write_layer(staging, i + 1, fixture.layer_size)
            os.replace(path, blobs / digest.split(":", 1)[1])
            mt = "application/vnd.oci.image.layer.v1.tar+gzip"
            layers.append({"mediaType": mt, "digest": digest, "size": size})
            diff_ids.append(diff_id)
        config = {
            "created": "2024-01-01T00:00:00Z",
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
        config_digest, config_size = _put_blob(staging, _dumps(config))
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size,
            },
            "layers": layers,
        }
        manifest_digest, manifest_size = _put_blob(staging, _dumps(manifest))
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": manifest_digest,
                    "size": manifest_size,
                    "annotations": {"org.opencontainers.image.ref.name": TAG},
                }
            ],
        }
        (staging / "oci-layout").write_bytes(b'{"imageLayoutVersion":"1.0.0"}')
        (staging / "index.json").write_bytes(_dumps(index))
        (staging / ".complete").write_bytes(b"")
        os.rename(staging, layout)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return layout


# -- measuring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    wall: float
    cpu: float
    max_rss_kib: int


@dataclass
class Result:
    tool: str
    samples: list[Sample] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return float(statistics.median(getattr(s, attr) for s in self.samples))


def measure(argv: Sequence[str]) -> Sample:
    """Run ``argv`` to completion; its wall time, CPU time and peak RSS (from ``wait4``)."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        if proc.returncode != 0:
            err.seek(0)
            output = err.read().decode(errors="replace").strip()
            raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{output}")
    # ru_maxrss is in KiB on Linux.
    return Sample(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)


def _commands(tool: str, source: str, destination: str) -> list[str]:
    if tool == "imagetypes":
        return [sys.executable, "-m", "imagetypes", "copy", "--quiet", source, destination]
    return ["skopeo", "copy", "--quiet", source, destination]


def _destination(kind: str, path: Path) -> tuple[str, Path]:
    """A destination reference of ``kind`` and the marker file that proves it was written."""
    if kind == "oci":
        return f"oci:{path}:{TAG}", path / "index.json"
    return f"dir:{path}", path / "manifest.json"


def run_scenario(
    tools: Sequence[str], layout: Path, kind: str, runs: int, scratch: Path
) -> list[Result]:
    """Copy ``layout`` to a fresh ``kind`` destination ``runs`` times with each tool.

    Tools take turns run by run, so a slow phase of a shared machine hits both alike.
    """
    results = [Result(tool) for tool in tools]
    source = f"oci:{layout}:{TAG}"
    for _ in range(runs):
        for result in results:
            target = scratch / f"{result.tool}-{kind}"
            shutil.rmtree(target, ignore_errors=True)
            reference, marker = _destination(kind, target)
            result.samples.append(measure(_commands(result.tool, source, reference)))
            if not marker.is_file():
                raise RuntimeError(f"{result.tool} reported success but wrote no {marker.name}")
            shutil.rmtree(target)
    return results


# -- the report --------------------------------------------------------------------------------


def _first_line(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.strip().splitlines()[0] if out.strip() else "unknown"


def machine_info() -> dict[str, str]:
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
    return {
        "CPUs (nproc)": str(os.cpu_count() or "unknown"),
        "CPU model": cpu,
        "Memory": memory,
        "OS": f"{platform.system()} {platform.release()}",
        "Python version": platform.python_version(),
        "imagetypes version": _first_line([sys.executable, "-m", "imagetypes", "--version"]),
        "skopeo version": _first_line(["skopeo", "--version"])
        if shutil.which("skopeo")
        else "missing",
    }


def render(
    scenarios: Sequence[tuple[Fixture, str, list[Result]]],
    info: dict[str, str],
    runs: int,
    quick: bool,
) -> str:
    """The Markdown report."""
    lines = [
        "# Benchmarks",
        "",
        "`imagetypes copy` against `skopeo copy` on the same OCI layouts, each tool run as a "
        "child process with `--quiet` and copying to a fresh destination every run. Numbers "
        f"are medians of {runs} run{'s' if runs > 1 else ''}; tools take turns run by run.",
        "",
        "- **Wall**: elapsed time of the child process; **MiB/s**: layer bytes / wall time.",
        "- **CPU**: user + system time of the child; **Peak RSS**: its `ru_maxrss` (`wait4`).",
        f"- Layers: random bytes in a tar, stored as {COMPRESSION_NOTE}.",
        "- The source is warm in the page cache; destinations are on the same file system.",
        "- Every run's wall time is listed, so the spread shows; on a shared or busy machine,",
        "  rerun with more `--runs` before drawing conclusions from small differences.",
        "",
        f"Generated by `python benchmarks/run.py --runs {runs}{' --quick' if quick else ''}` "
        f"on {dt.date.today().isoformat()}.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {key} | {value} |" for key, value in info.items()]
    for fixture, kind, results in scenarios:
        lines += [
            "",
            f"## oci -> {kind}: {fixture.describe()} ({_size(fixture.total)})",
            "",
            "| Tool | Wall (s) | MiB/s | CPU (s) | Peak RSS (MiB) | Runs (wall, s) |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for r in results:
            wall = r.median("wall")
            runs_text = ", ".join(f"{s.wall:.2f}" for s in r.samples)
            lines.append(
                f"| {r.tool} | {wall:.2f} | {fixture.total / MiB / wall:.0f} | "
                f"{r.median('cpu'):.2f} | {r.median('max_rss_kib') / 1024:.0f} | {runs_text} |"
            )
        by_tool = {r.tool: r for r in results}
        if "imagetypes" in by_tool and "skopeo" in by_tool:
            ours, theirs = by_tool["imagetypes"], by_tool["skopeo"]
            lines += [
                "",
                f"imagetypes / skopeo: wall {ours.median('wall') / theirs.median('wall'):.2f}x, "
                f"CPU {ours.median('cpu') / max(theirs.median('cpu'), 1e-9):.2f}x, "
                f"peak RSS {ours.median('max_rss_kib') / theirs.median('max_rss_kib'):.2f}x "
                "(below 1 means imagetypes used less).",
            ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per tool and scenario (5)")
    parser.add_argument("--quick", action="store_true", help="small fixtures, for a smoke run")
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
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    output = args.output or ("-" if args.quick else str(DEFAULT_OUTPUT))

    tools = ["imagetypes"]
    if shutil.which("skopeo"):
        tools.append("skopeo")
    else:
        print("skopeo is not installed: measuring imagetypes alone", file=sys.stderr)

    cache: Path = args.cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    fixtures = QUICK_FIXTURES if args.quick else FULL_FIXTURES
    print(f"layers are {COMPRESSION_NOTE}", file=sys.stderr)
    layouts = {}
    for fixture in fixtures:
        start = time.perf_counter()
        layouts[fixture.name] = build_fixture(cache, fixture)
        took = time.perf_counter() - start
        print(f"fixture {fixture.name}: {layouts[fixture.name]} ({took:.1f} s)", file=sys.stderr)

    scenarios = []
    scratch = Path(tempfile.mkdtemp(prefix="runs-", dir=cache))
    try:
        for fixture in fixtures:
            for kind in ("oci", "dir"):
                print(f"oci -> {kind}, {fixture.describe()} ...", file=sys.stderr)
                results = run_scenario(tools, layouts[fixture.name], kind, args.runs, scratch)
                scenarios.append((fixture, kind, results))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    report = render(scenarios, machine_info(), args.runs, args.quick)
    if output == "-":
        sys.stdout.write(report)
    else:
        Path(output).write_text(report, encoding="utf-8")
        print(f"wrote {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
