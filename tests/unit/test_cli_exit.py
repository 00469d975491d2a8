"""How the ``imagetypes`` program ends (imagetypes.cli.run).

After the command it skips the interpreter's teardown (os._exit), once the atexit handlers have
run and standard output is flushed, and falls back to an ordinary exit wherever skipping could
lose something. Each test runs a fresh interpreter, as the console script and ``python -m
imagetypes`` do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parents[1]
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

from childpython import checkout_environ  # noqa: E402
from imagebuilder import make_image, write_oci_layout  # noqa: E402


def _python(
    args: list[str], cwd: Path, *, close_stdout: bool = False
) -> subprocess.CompletedProcess[str]:
    environ = checkout_environ()
    environ.pop("PYTHONUNBUFFERED", None)  # output waits in its buffer, as it does for users
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        # Started with no file descriptor 1: Python's sys.stdout is then None.
        preexec_fn=(lambda: os.close(1)) if close_stdout else None,
    )


def _script(body: str, argv: list[str]) -> str:
    """A program that sets things up with ``body``, then is the ``imagetypes`` command."""
    return textwrap.dedent(body) + textwrap.dedent(
        f"""
        import sys
        sys.argv = ["imagetypes", *{argv!r}]
        from imagetypes.cli import run
        run()
        raise AssertionError("run() returned")
        """
    )


# An object whose finalizer runs in an ordinary exit's teardown (module globals are cleared;
# builtins may be gone by then, so it keeps what it needs).
_FINALIZER = """
import os as _os

class _Witness:
    def __init__(self):
        self.fd = _os.open(FLAG, _os.O_WRONLY | _os.O_CREAT | _os.O_APPEND)
        self.write = _os.write

    def __del__(self):
        self.write(self.fd, b"finalized\\n")

witness = _Witness()
"""


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    return write_oci_layout(tmp_path / "src", {"v1": make_image(11, (4096, 8192, 1024))})


def test_output_is_complete_and_the_status_kept(tmp_path: Path, layout: Path) -> None:
    done = _python(["-m", "imagetypes", "inspect", "--raw", f"oci:{layout}:v1"], tmp_path)
    assert done.returncode == 0, done.stderr
    manifest = json.loads(done.stdout)  # every byte written before the exit
    assert len(manifest["layers"]) == 3

    failed = _python(["-m", "imagetypes", "inspect", f"oci:{tmp_path / 'none'}:v1"], tmp_path)
    assert failed.returncode == 1
    assert failed.stderr.startswith("imagetypes: error: ")
    assert "Traceback" not in failed.stderr

    usage = _python(["-m", "imagetypes", "copy"], tmp_path)
    assert usage.returncode == 2


def _witnessed_version(tmp_path: Path, setup: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """``imagetypes --version`` after ``setup`` (which may write to the file ``FLAG``), beside
    a module object that writes ``finalized`` there when an ordinary exit tears it down; the
    run and what the file holds afterwards."""
    flag = tmp_path / "flag"
    body = f"FLAG = {str(flag)!r}\n" + _FINALIZER + textwrap.dedent(setup)
    done = _python(["-c", _script(body, ["--version"])], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("imagetypes ")
    return done, flag.read_text()


def test_atexit_handlers_run_and_the_teardown_is_skipped(tmp_path: Path) -> None:
    _, written = _witnessed_version(
        tmp_path,
        """
        import atexit
        def _handler():
            with open(FLAG, "a") as f:
                f.write("atexit\\n")
        atexit.register(_handler)
        """,
    )
    # The handler ran; the module's objects were never torn down.
    assert written == "atexit\n"


def test_a_running_thread_gets_an_ordinary_exit(tmp_path: Path) -> None:
    _, written = _witnessed_version(
        tmp_path,
        """
        import threading, time
        def _late():
            time.sleep(0.5)
            with open(FLAG, "a") as f:
                f.write("thread\\n")
        threading.Thread(target=_late).start()
        """,
    )
    # The exit waited for the thread, then tore the interpreter down as always.
    lines = written.splitlines()
    assert lines[0] == "thread"
    assert "finalized" in lines


def test_a_daemon_thread_does_not_hold_the_exit(tmp_path: Path) -> None:
    _, written = _witnessed_version(
        tmp_path,
        """
        import threading, time
        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
        """,
    )
    assert written == ""  # no teardown: the fast exit


def test_a_profiler_still_reports(tmp_path: Path) -> None:
    # python -m cProfile prints its statistics after the program returns: an ordinary exit.
    done = _python(["-m", "cProfile", "-m", "imagetypes", "--version"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("imagetypes ")
    assert "function calls" in done.stdout
    assert "ncalls" in done.stdout


@pytest.mark.parametrize("command", ["version", "inspect"])
def test_output_that_cannot_be_written_fails_the_command(
    tmp_path: Path, layout: Path, command: str
) -> None:
    # fd 1 is closed. --version's line waits in stdout's buffer and fails only in the final
    # flush (Python's own exit said "Exception ignored" and exited 120); inspect's output fails
    # inside the command, which says so itself. One line either way.
    argv = ["--version"] if command == "version" else ["inspect", f"oci:{layout}:v1"]
    done = _python(["-c", _script("import os\nos.close(1)\n", argv)], tmp_path)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    if command == "version":
        assert (
            lines[0]
            == "imagetypes: error: could not write the output: [Errno 9] Bad file descriptor"
        )
    else:
        assert lines[0] == "imagetypes: error: [Errno 9] Bad file descriptor"


def test_a_program_started_without_stdout_ends_as_before(tmp_path: Path) -> None:
    # sys.stdout is None: --version goes to stderr (argparse), and the exit has no stdout to
    # flush. An ordinary exit ended this with status 0; so does this one, without a traceback.
    done = _python(["-m", "imagetypes", "--version"], tmp_path, close_stdout=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("imagetypes ")
    assert "Traceback" not in done.stderr


def test_a_reader_that_went_away_fails_silently(tmp_path: Path, layout: Path) -> None:
    body = """
        import os
        read_end, write_end = os.pipe()
        os.close(read_end)
        os.dup2(write_end, 1)
        """
    done = _python(["-c", _script(body, ["inspect", "--raw", f"oci:{layout}:v1"])], tmp_path)
    assert done.returncode == 1
    assert done.stderr == ""
