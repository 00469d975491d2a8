"""Copies run in child processes, to be killed with SIGKILL by test_crash_safety.py.

    python crash_child.py

A "zygote": it imports imagetypes once, then reads one JSON request per line on standard
input, ``{"source": ..., "destination": ..., "die_at": "rename:3"}``, forks a child that runs
``copy_image(source, destination)`` and answers ``pid N`` at once, then ``exit N CODE``
when that child ended (CODE is ``-9`` for SIGKILL). Forking from a warm, single-threaded
process makes a killed copy cost milliseconds instead of an interpreter start.

``die_at`` makes the child SIGKILL itself just before its N-th ``os.rename``/``os.replace``
(``rename:N``) or HTTP request (``request:N``), so every state between two steps of a commit
is reached, not only those a random delay happens to hit. A child that completes exits 0
after writing how many of each step it took to ``counts`` (a file path), if given.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from collections import Counter
from typing import Any

import httpx

from imagetypes import RetryPolicy, TransportOptions
from imagetypes.copy import CopyOptions, copy_image

_COUNTS: Counter[str] = Counter()
_DIE_AT: tuple[str, int] = ("", 0)

_real_rename, _real_replace = os.rename, os.replace
_real_send = httpx.Client.send


def _step(what: str) -> None:
    _COUNTS[what] += 1
    if what == _DIE_AT[0] and _COUNTS[what] == _DIE_AT[1]:
        os.kill(os.getpid(), signal.SIGKILL)


def _rename(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
    _step("rename")
    _real_rename(src, dst, *args, **kwargs)


def _replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
    _step("rename")
    _real_replace(src, dst, *args, **kwargs)


def _send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
    _step("request")
    return _real_send(self, request, **kwargs)


def _child(request: dict[str, Any]) -> int:
    global _DIE_AT
    kind, _, number = str(request.get("die_at") or "").partition(":")
    _DIE_AT = (kind, int(number) if number else 0)
    os.rename, os.replace = _rename, _replace  # type: ignore[assignment]
    httpx.Client.send = _send  # type: ignore[method-assign]
    options = TransportOptions(tls_verify=False, retry=RetryPolicy(attempts=1, backoff=0.01))
    try:
        copy_image(
            request["source"],
            request["destination"],
            CopyOptions(source_options=options, destination_options=options, concurrency=2),
        )
    except BaseException:
        traceback.print_exc()
        return 1
    if request.get("counts"):
        with open(request["counts"], "w") as f:
            json.dump(dict(_COUNTS), f)
    return 0


def main() -> int:
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                sys.stdin.close()
                code = _child(request)
            finally:
                sys.stderr.flush()
                os._exit(code)
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(f"exit {pid} {code}", flush=True)
    return 0


if __name__ == "__main__":
    print("ready", flush=True)
    sys.exit(main())
