"""The peak memory of one run of the ``imagetypes`` command, for tests of bounded memory."""

from __future__ import annotations

import subprocess
import sys

from childpython import checkout_environ

# Runs the command and reports its peak resident memory: VmHWM counts this program's memory
# only, where the rusage of a child also counts the parent it was forked from, before the exec.
_MEASURED_COMMAND = """
import atexit, runpy, sys
def peak():
    with open("/proc/self/status") as f:
        kib = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    sys.stderr.write(f"\\nPEAK-KIB {kib}\\n")
atexit.register(peak)
sys.argv = ["imagetypes", *sys.argv[1:]]
runpy.run_module("imagetypes", run_name="__main__")
"""


def command_peak_mib(*args: str) -> int:
    """Run ``imagetypes ARGS`` (it must succeed); its peak resident memory, in MiB (Linux)."""
    done = subprocess.run(
        [sys.executable, "-c", _MEASURED_COMMAND, *args],
        env=checkout_environ(),  # this checkout's code, whatever is installed
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stderr.split("PEAK-KIB")[-1].split()[0]) // 1024
