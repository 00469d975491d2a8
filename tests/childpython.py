"""Child processes of tests: a Python that runs this checkout's code, a forked child."""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def checkout_environ(**overrides: str) -> dict[str, str]:
    """This process's environment with the checkout first on ``PYTHONPATH`` (whatever is
    installed, as pytest's own ``pythonpath`` does), and ``overrides`` applied."""
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), environ.get("PYTHONPATH", "")) if p
    )
    environ.update(overrides)
    return environ


def fork_while_held(
    held: Callable[[], AbstractContextManager[object]],
    target: Callable[..., object],
    *args: object,
    timeout: float = 30,
) -> int | None:
    """Fork a child (multiprocessing's ``fork``) running ``target(*args)`` while another thread
    of this process is inside ``held()``; the child's exit code, ``None`` when it was still
    running after ``timeout`` seconds (it hung on something the parent's thread held) and had
    to be killed. The thread leaves ``held()`` before this returns."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with held():
            holding.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        child = multiprocessing.get_context("fork").Process(target=target, args=args)
        child.start()
        child.join(timeout)
        if child.exitcode is None:
            child.kill()
            child.join()
            return None
        return child.exitcode
    finally:
        release.set()
        holder.join()
