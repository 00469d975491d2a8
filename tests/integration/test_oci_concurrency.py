"""Several processes writing into one OCI layout at the same time lose no image."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from imagetypes import mediatypes as mt
from imagetypes.descriptor import Descriptor
from imagetypes.digest import Digest
from imagetypes_transports.oci import REF_NAME_ANNOTATION, transport
from tests.childpython import checkout_environ
from tests.imagebuilder import make_image, make_multiarch, write_oci_layout

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]

# Each writer stages its whole image, reports ready, then waits for the go signal so that
# all commits happen at once. Even seeds write single images sharing their layers (same seed
# for the layers, different labels), odd seeds multi-arch indexes.
WRITER = r"""
import io, pathlib, sys, time
from imagetypes.descriptor import BlobInfo
from imagetypes_transports.oci import transport
from tests.imagebuilder import BuiltIndex, make_image, make_multiarch

ref, tag, seed, signals = sys.argv[1], sys.argv[2], int(sys.argv[3]), pathlib.Path(sys.argv[4])
if seed % 2:
    item = make_multiarch(seed)
else:
    item = make_image(1000, (4096, 300000), labels={"tag": tag})
with transport.parse_reference(ref).open_destination() as dest:
    images = item.images if isinstance(item, BuiltIndex) else [item]
    for img in images:
        for digest, blob in img.blobs.items():
            dest.put_blob(io.BytesIO(blob), BlobInfo("", digest, len(blob)))
        if isinstance(item, BuiltIndex):
            dest.put_manifest(img.manifest, img.media_type, img.digest)
    dest.put_manifest(item.manifest, item.media_type)
    (signals / f"ready-{tag}").touch()
    deadline = time.monotonic() + 120
    while not (signals / "go").exists():
        if time.monotonic() > deadline:
            sys.exit("no go signal")
        time.sleep(0.002)
    dest.commit()
"""


def expected_item(tag: str, seed: int) -> Any:
    if seed % 2:
        return make_multiarch(seed)
    return make_image(1000, (4096, 300000), labels={"tag": tag})


def run_writers(path: Path, tags: dict[str, int], signals: Path) -> None:
    signals.mkdir()
    env = checkout_environ()
    procs = {
        tag: subprocess.Popen(
            [sys.executable, "-c", WRITER, f"{path}:{tag}", tag, str(seed), str(signals)],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for tag, seed in tags.items()
    }
    try:
        deadline = time.monotonic() + 120
        while len(list(signals.glob("ready-*"))) < len(tags):
            finished = {t: p for t, p in procs.items() if p.poll() is not None}
            assert not finished, {t: p.communicate()[1].decode() for t, p in finished.items()}
            assert time.monotonic() < deadline, "writers did not get ready in time"
            time.sleep(0.01)
        (signals / "go").touch()
        for tag, proc in procs.items():
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, f"writer {tag} failed:\n{err.decode()}"
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def check_layout(path: Path, tags: dict[str, int], others: dict[str, Digest]) -> None:
    index = json.loads((path / "index.json").read_bytes())
    names = [str((m.get("annotations") or {}).get(REF_NAME_ANNOTATION)) for m in index["manifests"]]
    assert sorted(names) == sorted([*tags, *others])  # every tag, none twice
    # Every blob file is intact: its content hashes to its name.
    for blob in (path / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    # Every image is complete and byte-identical to what its writer built.
    for tag, seed in tags.items():
        item = expected_item(tag, seed)
        with transport.parse_reference(f"{path}:{tag}").open_source() as src:
            assert src.get_manifest() == (item.manifest, item.media_type)
            images = item.images if mt.is_index(item.media_type) else [item]
            for img in images:
                assert src.get_manifest(img.digest)[0] == img.manifest
                for digest, data in img.blobs.items():
                    with src.get_blob(Descriptor("", digest, len(data))) as reader:
                        assert reader.read() == data
    for tag, digest in others.items():
        with transport.parse_reference(f"{path}:{tag}").open_source() as src:
            assert Digest.from_bytes(src.get_manifest()[0]) == digest
    leftovers = [n for n in os.listdir(path) if n.startswith(".") or ".tmp-" in n]
    assert leftovers == []
    assert [n for n in os.listdir(path.parent) if n.startswith(f".{path.name}.")] == []


def test_eight_writers_into_one_existing_layout(tmp_path: Path) -> None:
    existing = make_image(1)
    path = write_oci_layout(tmp_path / "layout", {"existing": existing})
    tags = {f"tag{i}": i for i in range(8)}
    run_writers(path, tags, tmp_path / "signals")
    check_layout(path, tags, {"existing": existing.digest})


def test_writers_racing_to_create_a_layout(tmp_path: Path) -> None:
    path = tmp_path / "fresh"
    tags = {f"new{i}": i for i in range(4)}
    run_writers(path, tags, tmp_path / "signals")
    check_layout(path, tags, {})
    assert (path / "oci-layout").read_bytes() == b'{"imageLayoutVersion":"1.0.0"}'
