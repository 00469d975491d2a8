"""A copy killed with SIGKILL at any moment leaves every destination valid: the old image
intact, or the new one complete.

Copies run in children forked from a warm zygote process (crash_child.py) and are killed
after seeded random delays (0 to 1.3 times a complete copy's duration), and also just before
each ``os.rename``/``os.replace`` (local destinations) or HTTP request (registry) a complete
copy makes, so every state between two commit steps is checked, not only those a delay
happens to hit. Each destination is then checked by the oracle (plain hashing), by skopeo
(``skopeo inspect`` and ``skopeo copy`` of each image to a scratch layout) and, for layouts,
by ``oci-image-tool validate``. Leftovers (staging files and folders) may exist but must be
hidden (a dot name) and are listed in the figures summary.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from imagebuilder import make_image, write_oci_layout
from registry_fixtures import RunningRegistry, environ_without_proxies
from reliability_support import (
    LEFTOVERS,
    Corrupt,
    check_layout,
    check_registry_tag,
    iterations,
    python,
    rng_for,
    subprocess_env,
    tally,
)

from imagetypes import TransportOptions
from imagetypes.copy import CopyOptions, copy_image

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed"),
]

HERE = Path(__file__).resolve().parent
NEW = make_image(81, (400_000, 400_000, 400_000, 400_000, 400_000))
OLD = make_image(82, (4_000,))
OTHER = make_image(83, (3_000,))
PLAIN = TransportOptions(tls_verify=False)


# -- the zygote --------------------------------------------------------------------------------
class Zygote:
    """crash_child.py, started once per module: forks a child per copy."""

    def __init__(self, log: Path) -> None:
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [python(), str(HERE / "crash_child.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=subprocess_env(),
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        assert self._next(60) == "ready"

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.strip())

    def _next(self, timeout: float) -> str:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the zygote said nothing for {timeout}s") from None

    def start(self, source: str, destination: str, die_at: str = "", counts: str = "") -> int:
        assert self.proc.stdin is not None
        request = {"source": source, "destination": destination, "die_at": die_at}
        if counts:
            request["counts"] = counts
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self._next(30)
        assert line.startswith("pid "), line
        return int(line.split()[1])

    def wait(self, pid: int, timeout: float = 120) -> int:
        line = self._next(timeout)
        kind, got, code = line.split()
        assert kind == "exit", line
        assert int(got) == pid, line
        return int(code)

    def run(self, source: str, destination: str, **kw: str) -> tuple[int, float]:
        start = time.monotonic()
        pid = self.start(source, destination, **kw)
        code = self.wait(pid)
        return code, time.monotonic() - start

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote]:
    z = Zygote(tmp_path_factory.mktemp("zygote") / "stderr.log")
    try:
        yield z
    finally:
        z.close()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("crash-src")
    return write_oci_layout(root / "src", {"new": NEW, "old": OLD})


# -- peers -------------------------------------------------------------------------------------
def _peer(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, timeout=timeout, env=environ_without_proxies()
    )


def skopeo_check(ref: str, scratch: Path, docker: bool = False) -> str:
    """The sha256 of the manifest skopeo reads at ``ref``, after skopeo copied the image
    (every blob verified) to a scratch layout."""
    tls = ["--src-tls-verify=false"] if docker else []
    raw = _peer("skopeo", "inspect", "--raw", *(["--tls-verify=false"] if docker else []), ref)
    if raw.returncode != 0:
        raise Corrupt(f"skopeo inspect {ref}: {raw.stderr.decode().strip()}")
    if scratch.exists():
        shutil.rmtree(scratch)
    copied = _peer("skopeo", "copy", "--quiet", *tls, ref, f"oci:{scratch}:x")
    if copied.returncode != 0:
        raise Corrupt(f"skopeo copy {ref}: {copied.stderr.decode().strip()}")
    return "sha256:" + hashlib.sha256(raw.stdout).hexdigest()


def skopeo_config_digest(ref: str) -> str:
    out = _peer("skopeo", "inspect", "--config", "--raw", ref)
    if out.returncode != 0:
        raise Corrupt(f"skopeo inspect --config {ref}: {out.stderr.decode().strip()}")
    return "sha256:" + hashlib.sha256(out.stdout).hexdigest()


def oci_validate(path: Path) -> None:
    """oci-image-tool checks every image of the layout (run without ``--ref``: version
    1.0.0-rc1 wrongly reports some unique names as "not unique")."""
    if shutil.which("oci-image-tool") is None:
        return
    out = _peer("oci-image-tool", "validate", "--type", "image", path)
    if out.returncode != 0 or b"Validation succeeded" not in out.stdout:
        raise Corrupt(f"oci-image-tool validate: {out.stdout!r} {out.stderr!r}")


_SUFFIX = re.compile(r"[-_.][A-Za-z0-9_]{4,}$")


def note_leftovers(kind: str, parent: Path, before: set[str], dest: str, inside: bool) -> None:
    """Record (and check) what a killed copy left: only hidden names may appear."""
    found = [n for n in os.listdir(parent) if n not in before and n != dest]
    if inside and (parent / dest).is_dir():
        inside_dir = parent / dest
        found += [f"{dest}/{n}" for n in os.listdir(inside_dir) if n.startswith(".")]
    for name in found:
        base = name.rsplit("/", 1)[-1]
        if not base.startswith("."):
            raise Corrupt(f"a visible leftover: {name}")
        LEFTOVERS.setdefault(kind, set()).add(_SUFFIX.sub("-*", name.replace(dest, "DEST")))


# -- destinations --------------------------------------------------------------------------------
@dataclass
class Target:
    """A destination of one kind: how to prepare it and how to judge it after a crash."""

    kind: str
    #: Make a fresh destination (run number); return its transport reference.
    make: Callable[[int], str]
    #: The state of the destination of that run: "new", "old" or "absent"; raises Corrupt.
    state: Callable[[int], str]
    #: States allowed after a crash (besides "new").
    allowed: tuple[str, ...]
    #: What a complete copy counts to decide where to die ("rename" or "request").
    step: str
    leftovers: Callable[[int], None]
    #: The folder the destinations of the runs are made in.
    folder: Path

    def prepare(self, run: int) -> str:
        ref = self.make(run)
        _BEFORE[(str(self.folder), run)] = set(os.listdir(self.folder))
        return ref


def make_target(
    kind: str, tmp: Path, source: Path, registry: RunningRegistry | None, stamp: str
) -> Target:
    scratch = tmp / "scratch"
    tmp = tmp / "dst"
    tmp.mkdir(exist_ok=True)
    if kind == "oci":

        def prepare(run: int) -> str:
            path = write_oci_layout(tmp / f"layout{run}", {"other": OTHER, "target": OLD})
            return f"oci:{path}:target"

        def state(run: int) -> str:
            path = tmp / f"layout{run}"
            tags = check_layout(path)
            if tags.get("other") != str(OTHER.digest):
                raise Corrupt(f"the other tag was damaged: {tags}")
            oci_validate(path)
            got = skopeo_check(f"oci:{path}:target", scratch)
            if got != tags.get("target"):
                raise Corrupt(f"skopeo reads {got}, index.json says {tags.get('target')}")
            return {str(NEW.digest): "new", str(OLD.digest): "old"}.get(got, f"? {got}")

        def leftovers(run: int) -> None:
            note_leftovers(kind, tmp, _before(tmp, run), f"layout{run}", True)

        return Target(kind, prepare, state, ("old",), "rename", leftovers, tmp)

    if kind == "dir":

        def prepare(run: int) -> str:
            ref = f"dir:{tmp / f'dir{run}'}"
            copy_image(f"oci:{source}:old", ref)
            return ref

        def state(run: int) -> str:
            path = tmp / f"dir{run}"
            if not path.is_dir():
                raise Corrupt(f"{path.name} is gone: neither the old nor the new image is there")
            manifest = (path / "manifest.json").read_bytes()
            for d in [json.loads(manifest)["config"], *json.loads(manifest)["layers"]]:
                blob = path / d["digest"].split(":")[1]
                if hashlib.sha256(blob.read_bytes()).hexdigest() != d["digest"].split(":")[1]:
                    raise Corrupt(f"{blob.name} does not match its digest")
            got = skopeo_check(f"dir:{path}", scratch)
            return {str(NEW.digest): "new", str(OLD.digest): "old"}.get(got, f"? {got}")

        def leftovers(run: int) -> None:
            note_leftovers(kind, tmp, _before(tmp, run), f"dir{run}", False)

        return Target(kind, prepare, state, ("old",), "rename", leftovers, tmp)

    if kind == "docker-archive":

        def prepare(run: int) -> str:
            return f"docker-archive:{tmp / f'image{run}.tar'}:example.com/crash:new"

        def state(run: int) -> str:
            path = tmp / f"image{run}.tar"
            if not path.exists():
                return "absent"
            ref = f"docker-archive:{path}"
            skopeo_check(ref, scratch)
            config = skopeo_config_digest(ref)
            if config != str(NEW.config_digest):
                raise Corrupt(f"the archive holds config {config}")
            return "new"

        def leftovers(run: int) -> None:
            note_leftovers(kind, tmp, _before(tmp, run), f"image{run}.tar", False)

        return Target(kind, prepare, state, ("absent",), "rename", leftovers, tmp)

    assert kind == "docker"
    assert registry is not None
    host = registry.host

    def prepare(run: int) -> str:
        ref = f"docker://{host}/crash/{stamp}-{run}:t"
        copy_image(f"oci:{source}:old", ref, CopyOptions(destination_options=PLAIN))
        return ref

    def state(run: int) -> str:
        repository = f"crash/{stamp}-{run}"
        got = check_registry_tag(host, repository, "t")
        seen = skopeo_check(f"docker://{host}/{repository}:t", scratch, docker=True)
        if seen != got:
            raise Corrupt(f"skopeo reads {seen}, the registry oracle {got}")
        return {str(NEW.digest): "new", str(OLD.digest): "old"}.get(str(got), f"? {got}")

    def leftovers(run: int) -> None:
        # Blobs uploaded before the kill stay in the registry's storage, unreferenced (and
        # upload sessions, which the registry expires): the tag is all a client sees.
        LEFTOVERS.setdefault(kind, set()).add("unreferenced blobs / upload sessions (registry)")

    return Target(kind, prepare, state, ("old",), "request", leftovers, tmp)


_BEFORE: dict[tuple[str, int], set[str]] = {}


def _before(tmp: Path, run: int) -> set[str]:
    return _BEFORE.get((str(tmp), run), set())


def judge(target: Target, run: int, code: int, scenario: str) -> str:
    """Check the destination of a run that exited with ``code``; count it."""
    t = tally(scenario)
    t.attempted += 1
    try:
        st = target.state(run)
        target.leftovers(run)
    except Corrupt as e:
        t.corrupt += 1
        t.problems.append(f"run {run} (exit {code}): {e}")
        raise
    if code == 0:
        if st != "new":
            t.corrupt += 1
            t.problems.append(f"run {run}: the copy completed but the destination holds {st}")
            raise Corrupt(t.problems[-1])
        t.completed += 1
    elif code == -signal.SIGKILL:
        if st not in ("new", *target.allowed):
            t.corrupt += 1
            t.problems.append(f"run {run}: after the kill the destination holds {st}")
            raise Corrupt(t.problems[-1])
        t.failed_clean += 1
        t.faults += 1
    else:
        t.escaped += 1
        t.problems.append(f"run {run}: the child failed with exit code {code}")
        raise AssertionError(t.problems[-1])
    return st


KINDS = ["oci", "dir", "docker-archive", "docker"]


def _needs(kind: str, request: pytest.FixtureRequest) -> RunningRegistry | None:
    return request.getfixturevalue("registry") if kind == "docker" else None


@pytest.mark.parametrize("kind", KINDS)
def test_sigkill_at_random_moments(
    kind: str, zygote: Zygote, source: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    target = make_target(kind, tmp_path, source, _needs(kind, request), f"random-{kind}")
    scenario = f"crash/{kind}/random-delay"
    started = time.monotonic()
    # A complete copy first: its duration bounds the delays.
    ref = target.prepare(0)
    code, duration = zygote.run(f"oci:{source}:new", ref)
    assert judge(target, 0, code, scenario) == "new"
    for run in range(1, iterations(6) + 1):
        rng = rng_for(scenario, run)
        ref = target.prepare(run)
        pid = zygote.start(f"oci:{source}:new", ref)
        time.sleep(rng.uniform(0, 1.3 * duration))
        with contextlib.suppress(ProcessLookupError):  # it may have finished
            os.kill(pid, signal.SIGKILL)
        judge(target, run, zygote.wait(pid), scenario)
    # After a crash the same copy, run again in this process, succeeds. A docker-archive the
    # last run managed to complete is not overwritten (as skopeo refuses to): it is new already.
    if not (kind == "docker-archive" and target.state(run) == "new"):
        copy_image(f"oci:{source}:new", ref, CopyOptions(destination_options=PLAIN))
    assert target.state(run) == "new"
    tally(scenario).seconds += time.monotonic() - started


def _sweep(total: int) -> list[int]:
    return list(range(1, total + 1))


@pytest.mark.parametrize("kind", KINDS)
def test_sigkill_before_every_commit_step(
    kind: str, zygote: Zygote, source: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    target = make_target(kind, tmp_path, source, _needs(kind, request), f"steps-{kind}")
    scenario = f"crash/{kind}/before-each-{target.step}"
    started = time.monotonic()
    counts = tmp_path / "counts.json"
    ref = target.prepare(0)
    code, _ = zygote.run(f"oci:{source}:new", ref, counts=str(counts))
    assert judge(target, 0, code, scenario) == "new"
    total = json.loads(counts.read_text()).get(target.step, 0)
    assert total > 0, f"a complete copy made no {target.step}"
    for n in _sweep(total):
        ref = target.prepare(n)
        code, _ = zygote.run(f"oci:{source}:new", ref, die_at=f"{target.step}:{n}")
        assert code == -signal.SIGKILL, f"the child did not reach {target.step} {n}"
        judge(target, n, code, scenario)
    tally(scenario).seconds += time.monotonic() - started


def test_dir_swap_survives_a_kill_between_its_renames(
    zygote: Zygote, source: Path, tmp_path: Path
) -> None:
    target = make_target("dir", tmp_path, source, None, "swap")
    counts = tmp_path / "counts.json"
    ref = target.prepare(0)
    code, _ = zygote.run(f"oci:{source}:new", ref, counts=str(counts))
    assert code == 0
    last = json.loads(counts.read_text())["rename"]
    ref = target.prepare(1)
    # Die just before the last rename (staging -> target), after the old one moved aside.
    code, _ = zygote.run(f"oci:{source}:new", ref, die_at=f"rename:{last}")
    assert code == -signal.SIGKILL
    assert target.state(1) in ("old", "new")
