"""benchmarks/run.py runs its whole matrix end to end on small fixtures and writes its report."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPT = BENCHMARKS / "run.py"


def _load_run() -> ModuleType:
    sys.path.insert(0, str(BENCHMARKS))  # run.py imports its sibling modules
    try:
        spec = importlib.util.spec_from_file_location("bench_run", SCRIPT)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_run"] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_linear_fit_finds_slope_and_intercept() -> None:
    run = _load_run()
    a, b = run.linear_fit([(1.0, 0.5 + 0.01), (10.0, 0.5 + 0.1), (100.0, 0.5 + 1.0)])
    assert b == pytest.approx(0.01)
    assert a == pytest.approx(0.5)
    assert run.linear_fit([(1.0, 1.0), (1.0, 2.0)]) is None


def test_target_is_half_skopeo_unless_the_floor_is_higher() -> None:
    run = _load_run()
    fixture = run.Fixture.uniform("f", 1, run.MiB)
    floor = run.Floor(
        sample_bytes=run.MiB,
        sha256=100.0,  # MiB/s: 100 MiB take 1 s to hash
        file_copy_fsync=100.0,
        file_write_fsync=100.0,
        gunzip_stored=100.0,
        zstd_compress=None,
        http_get=None,
        http_put=None,
        python_startup=0.0,
        imagetypes_startup=0.0,
    )

    def row(ours: float, theirs: float, parts: tuple[str, ...]) -> Any:
        r = run.Row("local", "t", fixture, 100 * run.MiB, parts, {})
        r.results = [
            run.Result("imagetypes", [run.Sample(ours, ours, 50 * 1024)]),
            run.Result("skopeo", [run.Sample(theirs, theirs, 20 * 1024)]),
        ]
        return r

    # Floor 2 s (hash + copy) is above 0.5 x 3 s: the target is 1.5 x floor = 3 s.
    v = run.judge(row(2.9, 3.0, ("sha256", "file_copy_fsync")), floor)
    assert v.floor == pytest.approx(2.0)
    assert v.target == pytest.approx(3.0)
    assert v.wall_ok is True
    assert v.rss_ok is True
    # Floor 1 s is below 0.5 x 10 s: the target is 5 s.
    v = run.judge(row(5.5, 10.0, ("sha256",)), floor)
    assert v.target == pytest.approx(5.0)
    assert v.wall_ok is False
    # A stage not measured: no floor, the skopeo rule alone.
    v = run.judge(row(1.0, 10.0, ("zstd_compress",)), floor)
    assert v.floor is None
    assert v.wall_ok is True
    # The floor client's time is the floor where it is the larger: 6 s > 0.5 x 10 s.
    r = row(8.5, 10.0, ("sha256",))
    r.results.append(run.Result(run.FLOOR_CLIENT, [run.Sample(6.0, 1.0, 10 * 1024)]))
    v = run.judge(r, floor)
    assert v.floor == pytest.approx(6.0)
    assert v.target == pytest.approx(9.0)
    assert v.basis == "1.5x floor client"
    assert v.wall_ok is True
    # ... and not where the bytes' floor is larger, nor where it is under half of skopeo's.
    r = row(2.9, 3.0, ("sha256", "file_copy_fsync"))
    r.results.append(run.Result(run.FLOOR_CLIENT, [run.Sample(1.5, 1.0, 10 * 1024)]))
    assert run.judge(r, floor).basis == "1.5x floor"
    r = row(5.5, 10.0, ("sha256",))
    r.results.append(run.Result(run.FLOOR_CLIENT, [run.Sample(3.0, 1.0, 10 * 1024)]))
    v = run.judge(r, floor)
    assert v.floor == pytest.approx(3.0)
    assert v.basis == "0.5x skopeo"
    assert v.wall_ok is False


def test_the_floor_client_is_built_where_go_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _load_run()
    if shutil.which("go"):
        built, why = run.build_floor_client(tmp_path)
        assert built is not None, why
        done = subprocess.run([str(built)], capture_output=True, text=True, check=False)
        assert done.returncode == 1
        assert "usage: floorclient" in done.stderr
    which = shutil.which
    monkeypatch.setattr(run.shutil, "which", lambda name: None if name == "go" else which(name))
    assert run.build_floor_client(tmp_path / "none") == (None, "`go` is not installed")


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_quick_benchmark_writes_report(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    cache = tmp_path / "cache"
    argv = [sys.executable, str(SCRIPT), "--quick", "--runs", "1", "--floor"]
    argv += ["--cache-dir", str(cache), "--output", str(report)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    text = report.read_text(encoding="utf-8")
    assert "## Summary" in text
    assert "| Row | Fixture | imagetypes (s) | skopeo (s) |" in text
    local = (
        "oci -> oci",
        "oci -> dir",
        "oci -> docker-archive",
        "docker-archive -> oci",
        "oci -> oci-archive",
        "oci-archive -> oci",
    )
    for title in local:
        for fixture in ("4 layers x 1 MiB", "1 layer x 4 MiB"):
            assert f"### {title}: {fixture}" in text
    if shutil.which("docker-registry"):
        for title in (
            "oci -> registry (push)",
            "registry -> oci (pull)",
            "registry -> registry (cold)",
            "registry -> registry (mount)",
        ):
            assert f"### {title}: 4 layers x 1 MiB" in text
        assert "loopback HTTP GET" in text
        assert "not measured |" not in text.split("GET")[1][:40]
        # The protocol floor: timed beside the tools where go builds it, else said why not.
        mount = text.split("### registry -> registry (mount): 4 layers x 1 MiB")[1][:1500]
        if shutil.which("go"):
            assert "| floor client | " in mount
            assert "| floor client | failed" not in text
        else:
            assert "floor client: `go` is not installed" in text
    assert "## Cost per layer" in text
    assert "ms per layer" in text
    assert "## Cost per byte" in text
    assert "| 4 MiB |" in text.split("## Cost per byte")[1]
    assert "s per GiB" in text
    assert "## Peak memory by layer count" in text
    memory = text.split("## Peak memory by layer count")[1].split("\n## ")[0]
    assert "| 4 | 4 MiB |" in memory
    assert "oci -> oci, gzip -> zstd: imagetypes (MiB)" in memory
    assert "- Peak RSS by layer count (2 to 4 layers" in text
    assert "## The physical floor" in text
    # Every measured command worked (a failure is listed as "failed: ..." in its table).
    for tool in ("imagetypes", "skopeo"):
        assert f"| {tool} | failed" not in text
    # The fixtures stay cached for the next run.
    assert (cache / "quick-4x1MiB" / ".complete").is_file()
    # No machine path of this run leaks into the report.
    assert str(tmp_path) not in text
