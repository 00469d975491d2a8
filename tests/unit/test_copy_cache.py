"""The blob-info cache: the SQLite file itself, and what the copy engine does with it."""

from __future__ import annotations

import json
import logging
import multiprocessing
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from imagebuilder import BuiltImage, make_image, make_layer  # noqa: E402

from imagetypes import mediatypes as mt  # noqa: E402
from imagetypes import register_transport  # noqa: E402
from imagetypes.copy import (  # noqa: E402
    BlobInfoCache,
    BlobLocation,
    CopyOptions,
    copy_image,
    default_cache_path,
)
from imagetypes.copy._cache import KEPT_LOCATIONS, MAX_LOCATIONS  # noqa: E402
from imagetypes.digest import Digest  # noqa: E402
from imagetypes.plugins import reset_transports  # noqa: E402
from imagetypes.testing.memory import MemoryStore, MemoryTransport  # noqa: E402

D1 = Digest.from_bytes(b"one")
D2 = Digest.from_bytes(b"two")


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    store = MemoryStore()
    register_transport(MemoryTransport(store), replace=True)
    yield store
    reset_transports()


def test_default_path_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_path() == tmp_path / "xdg" / "imagetypes" / "blobinfo.sqlite"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_path() == tmp_path / "home" / ".cache" / "imagetypes" / "blobinfo.sqlite"
    cache = BlobInfoCache()
    assert cache.path == default_cache_path()


def test_locations_newest_first_one_per_scope(tmp_path: Path) -> None:
    cache = BlobInfoCache(tmp_path / "c.sqlite")
    a = BlobLocation("docker", "r.example/a", "docker://r.example/a:1")
    a2 = BlobLocation("docker", "r.example/a", "docker://r.example/a:2")
    b = BlobLocation("docker", "r.example/b", "docker://r.example/b:1")
    cache.record_locations([(D1, a)])
    cache.record_locations([(D1, b), (D2, b)])
    cache.record_locations([(D1, a2)])
    assert cache.locations(D1) == [a2, b]
    assert cache.locations(D2) == [b]
    assert cache.locations(D2, transport="oci") == []
    assert cache.locations(Digest.from_bytes(b"none")) == []
    # WAL mode, so readers and writers of several processes do not block each other.
    with sqlite3.connect(cache.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_locations_of_many_blobs_in_one_query(tmp_path: Path) -> None:
    cache = BlobInfoCache(tmp_path / "c.sqlite")
    digests = [Digest.from_bytes(f"blob {i}".encode()) for i in range(1200)]  # > one batch
    cache.record_locations(
        (d, BlobLocation("docker", f"r/{i % 3}", f"docker://r/{i % 3}:x"))
        for i, d in enumerate(digests)
    )
    many = [(D1, BlobLocation("docker", f"r/{n}", f"docker://r/{n}:x")) for n in range(15)]
    for entry in many:  # one by one: each newer than the last
        time.sleep(0.002)
        cache.record_locations([entry])
    unknown = Digest.from_bytes(b"never seen")
    found = cache.locations_of([*digests, D1, unknown, D1])
    assert set(found) == {*digests, D1, unknown}
    assert all(found[d] == cache.locations(d) for d in digests)
    assert [loc.scope for loc in found[digests[4]]] == ["r/1"]
    # At most MAX_LOCATIONS per blob, newest first, as locations() gives them.
    assert found[D1] == cache.locations(D1)
    assert [loc.scope for loc in found[D1]] == [f"r/{n}" for n in range(14, 4, -1)]
    assert found[unknown] == []
    assert cache.locations_of([]) == {}


def test_locations_of_reads_only_the_newest_rows_of_each_blob(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A base layer seen in hundreds of places: SQLite picks the newest, Python sees no more.

    And through the index: the plan has no sort of a blob's locations."""
    cache = BlobInfoCache(tmp_path / "c.sqlite")
    cache.record_locations(
        (d, BlobLocation("docker", f"r{n}/x", f"docker://r{n}/x:1"))
        for n in range(300)
        for d in (D1, D2)
    )
    cache.record_locations([(D2, BlobLocation("docker", "newest/x", "docker://newest/x:1"))])
    fetched: list[list[list[tuple[object, ...]]]] = []
    each = cache._rows_each
    monkeypatch.setattr(cache, "_rows_each", lambda *a: fetched.append(each(*a)) or fetched[-1])
    found = cache.locations_of([D1, D2])
    assert [[len(rows) for rows in turn] for turn in fetched] == [[MAX_LOCATIONS] * 2]
    assert len(found[D1]) == len(found[D2]) == MAX_LOCATIONS
    assert found[D2][0].scope == "newest/x"
    with sqlite3.connect(cache.path) as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT transport, scope, reference FROM locations "
            f"WHERE digest = ? ORDER BY last_seen DESC LIMIT {MAX_LOCATIONS}",
            (str(D1),),
        ).fetchall()
    assert "locations_by_age" in str(plan)
    assert "TEMP B-TREE" not in str(plan)


def test_only_the_newest_locations_of_a_blob_are_kept(tmp_path: Path) -> None:
    """A layer pushed to ever more repositories: the file keeps its KEPT_LOCATIONS newest
    locations (only the newest are read), and other blobs keep theirs."""
    cache = BlobInfoCache(tmp_path / "c.sqlite")
    cache.record_locations([(D2, BlobLocation("docker", "other/x", "docker://other/x:1"))])
    for n in range(KEPT_LOCATIONS + 8):  # one by one: each newer than the last
        cache.record_locations([(D1, BlobLocation("docker", f"r{n}/x", f"docker://r{n}/x:1"))])
    with sqlite3.connect(cache.path) as conn:
        kept = conn.execute(
            "SELECT scope FROM locations WHERE digest = ? ORDER BY last_seen", (str(D1),)
        ).fetchall()
    assert [scope for (scope,) in kept] == [f"r{n}/x" for n in range(8, KEPT_LOCATIONS + 8)]
    assert [loc.scope for loc in cache.locations(D2)] == ["other/x"]
    assert cache.locations(D1)[0].scope == f"r{KEPT_LOCATIONS + 7}/x"


def test_digest_pairs(tmp_path: Path) -> None:
    cache = BlobInfoCache(tmp_path / "c.sqlite")
    cache.record_uncompressed([(D1, D2, "gzip")])
    assert cache.uncompressed_digest(D1) == D2
    assert cache.uncompressed_digest(D2) is None
    assert cache.compressed_digests(D2, "gzip") == [D1]
    assert cache.compressed_digests(D2, "zstd") == []


def _writer(path: str, worker: int) -> None:
    cache = BlobInfoCache(path)
    for i in range(50):
        loc = BlobLocation("docker", f"r/{worker}", f"docker://r/{worker}:{i}")
        cache.record_locations([(Digest.from_bytes(f"{worker}-{i}".encode()), loc)])


def test_several_processes_write_one_file(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    cache = BlobInfoCache(path)
    for w in range(3):
        for i in range(50):
            (loc,) = cache.locations(Digest.from_bytes(f"{w}-{i}".encode()))
            assert loc.scope == f"r/{w}"


def test_a_broken_cache_file_only_warns(
    tmp_path: Path, store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(b"this is not a database" * 100)
    # Layers to compress: the copy consults the cache (a plain local copy would not open it).
    store.add_built("src", _plain(1))
    options = CopyOptions(dest_compress=True, blob_info_cache=str(broken))
    with caplog.at_level(logging.WARNING, logger="imagetypes.copy"):
        result = copy_image("memory:src", "memory:dst", options)
    assert result.blobs_copied == 3
    assert result.layers_recompressed == 2
    assert any("blob-info cache" in r.getMessage() for r in caplog.records)


def _remove_cache_file(path: Path) -> None:
    """What clearing the cache directory does: the file and its WAL companions go."""
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        name.unlink(missing_ok=True)


def test_a_cache_file_removed_or_replaced_is_opened_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A connection is kept between operations; it must follow the file on disk.
    path = tmp_path / "sub" / "c.sqlite"
    cache = BlobInfoCache(path)
    loc = BlobLocation("docker", "r.example/a", "docker://r.example/a:1")
    cache.record_locations([(D1, loc)])
    assert cache.locations(D1) == [loc]
    _remove_cache_file(path)
    assert cache.locations(D1) == []  # a new, empty file: not the deleted one still open
    cache.record_locations([(D2, loc)])
    assert BlobInfoCache(path).locations(D2) == [loc]

    _remove_cache_file(path)
    path.write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.WARNING, logger="imagetypes.copy"):
        assert cache.locations(D2) == []
    assert any("blob-info cache" in r.getMessage() for r in caplog.records)
    _remove_cache_file(path)
    cache.record_locations([(D1, loc)])  # the failed connection was dropped: a new file works
    assert cache.locations(D1) == [loc]


def test_cache_commits_without_fsync_in_wal_mode(tmp_path: Path) -> None:
    cache = BlobInfoCache(tmp_path / "c.sqlite")
    cache.record_uncompressed([(D1, D2, "gzip")])
    with sqlite3.connect(tmp_path / "c.sqlite") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert cache.uncompressed_digest(D1) == D2
    with cache._connect() as mine:  # the process's kept connection: NORMAL (1), not FULL (2)
        assert mine.execute("PRAGMA synchronous").fetchone() == (1,)


def test_threads_share_a_cache(tmp_path: Path) -> None:
    import threading

    cache = BlobInfoCache(tmp_path / "c.sqlite")

    def work(w: int) -> None:
        for i in range(30):
            d = Digest.from_bytes(f"{w}-{i}".encode())
            cache.record_locations([(d, BlobLocation("docker", f"r/{w}", f"docker://r/{w}:x"))])
            assert [loc.scope for loc in cache.locations(d)] == [f"r/{w}"]

    threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    total = sum(
        len(cache.locations(Digest.from_bytes(f"{w}-{i}".encode())))
        for w in range(6)
        for i in range(30)
    )
    assert total == 180


def _plain(seed: int) -> BuiltImage:
    img = make_image(seed, (4000, 60_000))
    manifest = json.loads(img.manifest)
    blobs = {img.config_digest: img.config}
    for i, layer in enumerate(manifest["layers"]):
        tar, diff_id = make_layer(seed * 1000 + i, (4000, 60_000)[i], compress=False)
        blobs[diff_id] = tar
        layer.update(mediaType=mt.OCI_LAYER, digest=str(diff_id), size=len(tar))
    return BuiltImage(json.dumps(manifest).encode(), mt.OCI_MANIFEST, img.config, blobs)


def test_cache_spares_compressing_a_layer_again(tmp_path: Path, store: MemoryStore) -> None:
    cache = tmp_path / "c.sqlite"
    img = _plain(2)
    store.add_built("src", img)
    first = copy_image(
        "memory:src", "memory:gz", CopyOptions(dest_compress=True, blob_info_cache=cache)
    )
    assert first.layers_recompressed == 2
    puts = store.stats("gz").puts
    # Another copy of the same content: the cache knows the compressed layers, the destination
    # has them, so nothing is compressed or written again.
    store.add_built("src2", img)
    again = copy_image(
        "memory:src2",
        "memory:gz",
        CopyOptions(dest_compress=True, blob_info_cache=cache, skip_identical=False),
    )
    assert again.layers_recompressed == 0
    assert again.blobs_reused == 3
    assert store.stats("gz").puts == puts
    assert again.manifest_digest == first.manifest_digest
    # Without the cache the layers are compressed again (same bytes: same digests).
    third = copy_image(
        "memory:src2", "memory:gz", CopyOptions(dest_compress=True, skip_identical=False)
    )
    assert third.layers_recompressed == 2


def test_bad_cache_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="blob_info_cache"):
        CopyOptions(blob_info_cache=42)  # type: ignore[arg-type]


def _forked_writer(path: str) -> None:
    cache = BlobInfoCache(path)
    cache.record_locations([(D2, BlobLocation("docker", "r/child", "docker://r/child:1"))])
    assert [loc.scope for loc in cache.locations(D2)] == ["r/child"]


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    # The parent keeps a connection; a forked child must not use it (SQLite
    # connections must not cross a fork) nor close it for the parent.
    path = tmp_path / "c.sqlite"
    cache = BlobInfoCache(path)
    cache.record_locations([(D1, BlobLocation("docker", "r/parent", "docker://r/parent:1"))])
    child = multiprocessing.get_context("fork").Process(target=_forked_writer, args=(str(path),))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert [loc.scope for loc in cache.locations(D2)] == ["r/child"]  # parent's still works
    cache.record_locations([(D2, BlobLocation("docker", "r/parent", "docker://r/parent:2"))])
    assert {loc.scope for loc in cache.locations(D2)} == {"r/child", "r/parent"}


def test_the_threads_of_a_process_share_one_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A connection per thread made a sync (a thread pool per image) connect, set up and
    # checkpoint the file again for every pool's threads; one is opened per process and file.
    import threading

    opened: list[str] = []
    real_connect = sqlite3.connect

    def counting_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened.append(str(args[0]))
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", counting_connect)
    path = tmp_path / "c.sqlite"
    cache = BlobInfoCache(path)
    for _ in range(3):  # three pools of six threads, one after the other
        pool = [
            threading.Thread(target=cache.record_uncompressed, args=([(D1, D2, "gzip")],))
            for _ in range(6)
        ]
        for t in pool:
            t.start()
        for t in pool:
            t.join(60)
    assert cache.uncompressed_digest(D1) == D2
    assert BlobInfoCache(path).locations(D1) == []  # another cache object, the same file
    assert opened == [str(path)]


def test_the_connection_is_closed_at_exit(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    program = (
        "import sys, threading\n"
        "from imagetypes.copy import BlobInfoCache\n"
        "from imagetypes.digest import Digest\n"
        "cache = BlobInfoCache(sys.argv[1])\n"
        "pairs = [(Digest.from_bytes(b'one'), Digest.from_bytes(b'two'), 'gzip')]\n"
        "t = threading.Thread(target=cache.record_uncompressed, args=(pairs,))\n"
        "t.start(); t.join()\n"
        "import os; assert os.path.exists(sys.argv[1] + '-wal')  # open: WAL in use\n"
    )
    subprocess.run([sys.executable, "-c", program, str(path)], check=True, timeout=60)
    # The process's only connection was closed at exit: that checkpointed the WAL into the
    # file and removed it (a connection left open would have kept "-wal" there).
    assert not Path(f"{path}-wal").exists()
    assert BlobInfoCache(path).uncompressed_digest(D1) == D2
