"""benchmarks/run.py runs end to end on small fixtures and writes its Markdown report."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_quick_benchmark_writes_report(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    cache = tmp_path / "cache"
    argv = [sys.executable, str(SCRIPT), "--quick", "--runs", "1"]
    argv += ["--cache-dir", str(cache), "--output", str(report)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    text = report.read_text(encoding="utf-8")
    assert "| Tool | Wall (s) | MiB/s | CPU (s) | Peak RSS (MiB) |" in text
    for scenario in ("## oci -> oci: 4 layers x 1 MiB", "## oci -> dir: 1 layer x 4 MiB"):
        assert scenario in text
    rows = [line for line in text.splitlines() if line.startswith(("| imagetypes |", "| skopeo |"))]
    assert len(rows) == 8  # two tools x four scenarios
    assert "imagetypes / skopeo: wall" in text
    # The fixtures stay cached for the next run.
    assert (cache / "quick-4x1MiB" / ".complete").is_file()
