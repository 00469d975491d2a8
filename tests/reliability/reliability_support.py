"""Shared pieces of the reliability suite: iteration counts, the figures table, and oracles
that check a destination without the code under test (plain JSON, hashlib and httpx).

``IMAGETYPES_SOAK=N`` multiplies every iteration count (default 1) for a long run;
``IMAGETYPES_SEED`` changes the base seed (default 0) so a long run can explore other cases.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from imagetypes import ImageError

__all__ = [
    "FIGURES",
    "LEFTOVERS",
    "REPO_ROOT",
    "SEED",
    "SOAK",
    "Corrupt",
    "Tally",
    "attempt",
    "check_layout",
    "check_registry_tag",
    "iterations",
    "python",
    "rng_for",
    "subprocess_env",
    "tally",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
SOAK = max(1, int(os.environ.get("IMAGETYPES_SOAK", "1") or "1"))
SEED = int(os.environ.get("IMAGETYPES_SEED", "0") or "0")

_MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


def iterations(default: int) -> int:
    """How many times to run a loop: ``default`` times the soak factor."""
    return default * SOAK


def rng_for(scenario: str, run: int) -> random.Random:
    """The seeded random source of one run of one scenario (stable across processes)."""
    return random.Random(zlib.crc32(f"{SEED}:{scenario}:{run}".encode()))


# -- figures -----------------------------------------------------------------------------------
@dataclass
class Tally:
    """What happened to the runs of one scenario."""

    scenario: str
    attempted: int = 0
    #: The copy said it succeeded and the destination holds exactly the new image.
    completed: int = 0
    #: The copy raised an ImageError and the destination is valid (old image, none, or new).
    failed_clean: int = 0
    #: A destination that is unreadable or partial, or a success claimed for what is not there.
    corrupt: int = 0
    #: An exception other than ImageError escaped.
    escaped: int = 0
    #: Requests the proxy actually faulted (0 would mean the scenario tested nothing).
    faults: int = 0
    seconds: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


#: Every scenario's tally, printed by the terminal summary hook of conftest.py.
FIGURES: dict[str, Tally] = {}
#: What killed copies left behind, by destination kind (names with random parts as ``*``).
LEFTOVERS: dict[str, set[str]] = {}


def tally(scenario: str) -> Tally:
    """The tally of ``scenario`` (created empty on first use)."""
    return FIGURES.setdefault(scenario, Tally(scenario))


class Corrupt(AssertionError):
    """A destination is not valid: something visible is unreadable or partial."""


def _error_name(error: BaseException) -> str:
    names = [type(error).__name__]
    cause = error.__cause__
    if cause is not None and type(cause).__name__ not in names:
        names.append(type(cause).__name__)
    return "<-".join(names)


def attempt(
    t: Tally,
    copy: Callable[[], object],
    verify: Callable[[], str],
    *,
    new_state: str = "new",
) -> str:
    """Run one copy and check its destination; count the outcome in ``t``.

    ``verify`` returns the destination's state (``"new"``, ``"old"``, ``"absent"``, ...) or
    raises :class:`Corrupt`. Returns ``"completed"``, ``"failed"``, ``"corrupt"`` or
    ``"escaped"``.
    """
    t.attempted += 1
    start = time.monotonic()
    claimed = False
    outcome = ""
    try:
        copy()
        claimed = True
    except ImageError as e:
        t.errors[_error_name(e)] += 1
    except Exception as e:  # counted and reported: the test asserts there are none
        t.escaped += 1
        t.problems.append(f"escaped {type(e).__name__}: {e}")
        outcome = "escaped"
    finally:
        t.seconds += time.monotonic() - start
    try:
        state = verify()
    except Corrupt as e:
        t.corrupt += 1
        t.problems.append(f"corrupt: {e}")
        return "corrupt"
    if claimed and state != new_state:
        t.corrupt += 1
        t.problems.append(f"the copy claimed success but the destination holds {state!r}")
        return "corrupt"
    if outcome:
        return outcome
    if claimed:
        t.completed += 1
        return "completed"
    t.failed_clean += 1
    return "failed"


# -- oracles -----------------------------------------------------------------------------------
def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _children(manifest: bytes, where: str) -> Iterator[tuple[str, int, bool]]:
    """(digest, size, is_manifest) of what a manifest refers to."""
    try:
        obj = json.loads(manifest)
    except ValueError as e:
        raise Corrupt(f"{where}: a manifest that is not JSON") from e
    if not isinstance(obj, dict):
        raise Corrupt(f"{where}: a manifest that is not an object")
    if isinstance(obj.get("manifests"), list):
        for m in obj["manifests"]:
            yield m["digest"], m["size"], True
        return
    if not isinstance(obj.get("config"), dict) or not isinstance(obj.get("layers"), list):
        raise Corrupt(f"{where}: a manifest without config and layers")
    for d in [obj["config"], *obj["layers"]]:
        if not d.get("urls"):
            yield d["digest"], d["size"], False


def _check_tree(
    read: Callable[[str, bool], bytes | None], digest: str, size: int, where: str
) -> None:
    data = read(digest, True)
    if data is None:
        raise Corrupt(f"{where}: {digest} is missing")
    if len(data) != size or _sha256(data) != digest:
        raise Corrupt(f"{where}: {digest} has {len(data)} bytes hashing to {_sha256(data)}")
    for child, child_size, is_manifest in _children(data, where):
        if is_manifest:
            _check_tree(read, child, child_size, where)
        else:
            blob = read(child, False)
            if blob is None:
                raise Corrupt(f"{where}: blob {child} is missing")
            if len(blob) != child_size or _sha256(blob) != child:
                raise Corrupt(f"{where}: blob {child} is partial or corrupt ({len(blob)} bytes)")


def check_layout(path: Path) -> dict[str, str]:
    """Check an OCI layout completely; return ``{tag: manifest digest}``.

    Every blob file must hash to its name (no partial file visible under ``blobs/``), and every
    image in ``index.json`` must be complete.
    """
    if not path.exists():
        return {}
    where = f"layout {path.name}"
    if not (path / "oci-layout").is_file():
        raise Corrupt(f"{where}: no oci-layout file")
    try:
        index = json.loads((path / "index.json").read_bytes())
    except (OSError, ValueError) as e:
        raise Corrupt(f"{where}: index.json unreadable: {e}") from e
    blobs = path / "blobs" / "sha256"
    if blobs.is_dir():
        for blob in blobs.iterdir():
            if hashlib.sha256(blob.read_bytes()).hexdigest() != blob.name:
                raise Corrupt(f"{where}: blobs/sha256/{blob.name} does not match its name")

    def read(digest: str, is_manifest: bool) -> bytes | None:
        p = path / "blobs" / digest.replace(":", "/")
        return p.read_bytes() if p.is_file() else None

    tags: dict[str, str] = {}
    for entry in index.get("manifests", []):
        name = (entry.get("annotations") or {}).get("org.opencontainers.image.ref.name", "")
        _check_tree(read, entry["digest"], entry["size"], f"{where}:{name}")
        if name in tags:
            raise Corrupt(f"{where}: tag {name!r} listed twice")
        tags[name] = entry["digest"]
    return tags


def check_registry_tag(host: str, repository: str, tag: str) -> str | None:
    """The digest of ``repository:tag`` on a plain-http registry (None if there is no such
    tag), after reading everything it refers to and checking every digest."""
    base = f"http://{host}/v2/{repository}"
    with httpx.Client(timeout=30) as client:
        r = client.get(f"{base}/manifests/{tag}", headers={"Accept": _MANIFEST_ACCEPT})
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise Corrupt(f"{repository}:{tag}: HTTP {r.status_code} reading the manifest")
        top = _sha256(r.content)

        def read(digest: str, is_manifest: bool) -> bytes | None:
            kind = "manifests" if is_manifest else "blobs"
            resp = client.get(f"{base}/{kind}/{digest}", headers={"Accept": _MANIFEST_ACCEPT})
            return resp.content if resp.status_code == 200 else None

        _check_tree(read, top, len(r.content), f"{repository}:{tag}")
        return top


# -- subprocesses ------------------------------------------------------------------------------
def subprocess_env() -> dict[str, str]:
    """The environment for a child Python that imports imagetypes and the test helpers."""
    here = Path(__file__).resolve().parent
    paths = [str(REPO_ROOT), str(REPO_ROOT / "tests"), str(REPO_ROOT / "tests/integration")]
    paths.append(str(here))
    old = os.environ.get("PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONPATH"] = os.pathsep.join([*paths, *([old] if old else [])])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def python() -> str:
    return sys.executable
