"""Fixtures of the reliability suite, and the figures table printed at the end of a run.

The real registry comes from tests/integration/registry_fixtures.py (a session registry of
its own here, so faults and crashes never disturb the integration tests' registry).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
for _path in (str(_HERE), str(_HERE.parent), str(_HERE.parent / "integration")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from chaos_proxy import ChaosProxy  # noqa: E402
from registry_fixtures import RunningRegistry, registry  # noqa: E402
from reliability_support import FIGURES, LEFTOVERS, SEED, SOAK  # noqa: E402

__all__ = ["chaos", "registry"]


@pytest.fixture
def chaos(registry: RunningRegistry) -> Iterator[ChaosProxy]:
    """A fault-injecting proxy in front of the session registry."""
    proxy = ChaosProxy(registry.host)
    try:
        yield proxy
    finally:
        proxy.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    tr = terminalreporter
    tr.section(f"reliability figures (IMAGETYPES_SEED={SEED}, IMAGETYPES_SOAK={SOAK})")
    head = (
        f"{'scenario':<42} {'attempted':>9} {'completed':>9} {'failed-clean':>12} "
        f"{'corrupt':>7} {'escaped':>7} {'faults':>6} {'seconds':>8}"
    )
    tr.write_line(head)
    tr.write_line("-" * len(head))
    totals = [0, 0, 0, 0, 0, 0]
    seconds = 0.0
    for name in sorted(FIGURES):
        t = FIGURES[name]
        row = [t.attempted, t.completed, t.failed_clean, t.corrupt, t.escaped, t.faults]
        totals = [a + b for a, b in zip(totals, row, strict=True)]
        seconds += t.seconds
        tr.write_line(
            f"{name:<42} {t.attempted:>9} {t.completed:>9} {t.failed_clean:>12} "
            f"{t.corrupt:>7} {t.escaped:>7} {t.faults:>6} {t.seconds:>8.1f}"
        )
    tr.write_line("-" * len(head))
    tr.write_line(
        f"{'total':<42} {totals[0]:>9} {totals[1]:>9} {totals[2]:>12} "
        f"{totals[3]:>7} {totals[4]:>7} {totals[5]:>6} {seconds:>8.1f}"
    )
    errors = {name: t.errors for name, t in sorted(FIGURES.items()) if t.errors}
    if errors:
        tr.write_line("")
        tr.write_line("errors seen (clean failures, and conflicts a writer retried):")
        for name, counter in errors.items():
            said = ", ".join(f"{k} x{v}" for k, v in counter.most_common())
            tr.write_line(f"  {name}: {said}")
    if LEFTOVERS:
        tr.write_line("")
        tr.write_line("leftovers of killed copies (hidden, never listed as images):")
        for kind, names in sorted(LEFTOVERS.items()):
            tr.write_line(f"  {kind}: {', '.join(sorted(names))}")
    problems = {name: t.problems for name, t in sorted(FIGURES.items()) if t.problems}
    for name, items in problems.items():
        tr.write_line(f"PROBLEMS in {name}:")
        for item in items[:5]:
            tr.write_line(f"  {item}")
