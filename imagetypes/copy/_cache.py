"""The blob-info cache: where blobs were seen, and which compressed and uncompressed blobs pair up.

A small SQLite file shared by copies and by processes (WAL journal, a busy timeout), like
containers/image's ``blob-info-cache-v1.sqlite``. It only ever saves work: a wrong or lost
entry makes a copy transfer a blob it could have mounted or reused, never write a wrong one,
because destinations verify what they are told they have.

Nothing here touches SQLite (or imports :mod:`sqlite3`) until a look-up or a record needs the
file, and the copy engine asks only when the answer can save work (:func:`takes_location_hints`,
:func:`worth_recording`): a copy between two local layouts never opens the cache.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ..digest import Digest
from ..errors import ImageError
from ..types import ImageDestination, ImageReference

if TYPE_CHECKING:
    import sqlite3

__all__ = [
    "BlobInfoCache",
    "BlobLocation",
    "default_cache_path",
    "location_of",
    "takes_location_hints",
    "worth_recording",
]

log = logging.getLogger(__name__)

#: Seconds a writer waits for another process's transaction before giving up.
BUSY_TIMEOUT = 10.0
#: Locations returned per blob, most recently seen first.
MAX_LOCATIONS = 10
#: Locations kept per blob (the newest): more than are returned, for look-ups of one transport.
KEPT_LOCATIONS = 32

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS locations (
        digest TEXT NOT NULL,
        transport TEXT NOT NULL,
        scope TEXT NOT NULL,
        reference TEXT NOT NULL,
        last_seen REAL NOT NULL,
        PRIMARY KEY (digest, transport, scope)
    )""",
    """CREATE TABLE IF NOT EXISTS uncompressed (
        compressed TEXT NOT NULL PRIMARY KEY,
        uncompressed TEXT NOT NULL,
        compression TEXT NOT NULL,
        last_seen REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS uncompressed_by_content ON uncompressed (uncompressed)",
    # The newest locations of a blob without sorting all of them.
    "CREATE INDEX IF NOT EXISTS locations_by_age ON locations (digest, last_seen)",
)


def default_cache_path() -> Path:
    """``$XDG_CACHE_HOME/imagetypes/blobinfo.sqlite`` (``~/.cache`` when the variable is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "imagetypes" / "blobinfo.sqlite"


@attrs.frozen
class BlobLocation:
    """A place a blob was seen: a transport, a scope within it, and a reference to it there.

    The scope identifies the repository (``registry.example/team/app`` for a registry): two
    images of one repository share a scope. ``reference`` parses back (with
    :func:`~imagetypes.parse_reference`) to an image reference in that repository.
    """

    transport: str
    scope: str
    reference: str


def location_of(reference: ImageReference) -> BlobLocation:
    """The location a reference stands for: its repository when it has a registry name."""
    named = reference.docker_reference
    scope = named.name if named is not None else reference.string_within_transport()
    return BlobLocation(reference.transport.name, scope, str(reference))


def takes_location_hints(destination: ImageDestination) -> bool:
    """Whether ``destination`` acts on where else a blob was seen (a registry mounts from there).

    One that keeps the default :meth:`~imagetypes.ImageDestination.note_blob_locations`, which
    ignores them, gains nothing from a look-up.
    """
    hook = type(destination).note_blob_locations
    return hook is not ImageDestination.note_blob_locations


def worth_recording(source: ImageReference, destination: ImageDestination) -> bool:
    """Whether the places a copy saw its blobs can save a later copy work.

    They can when either end is a named repository (a later push to its registry mounts from
    there) or when the destination acts on location hints. The locations of two local layouts
    would never be used: recording them would only cost opening the cache.
    """
    return (
        takes_location_hints(destination)
        or source.docker_reference is not None
        or destination.reference.docker_reference is not None
    )


_getpid = os.getpid  # bound now: __del__ may run while the interpreter shuts down


def _file_id(path: Path) -> tuple[int, int] | None:
    """Which file ``path`` is now: its device and inode.

    Enough to tell a file removed or replaced from the one a kept connection has open: while
    the connection holds it open, its inode cannot be given to another file.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class _Shared:
    """The process's open connection to one file, used by its threads one at a time.

    Closed when the file is replaced, after a failure and at exit (Python 3.13 warns about
    connections left to the garbage collector), but never in a forked child: a connection
    must not cross a fork, so a child opens its own and leaves the parent's alone.
    """

    def __init__(self, conn: sqlite3.Connection, ident: tuple[int, int]) -> None:
        self.conn = conn
        self.ident = ident
        self.pid = _getpid()
        #: Held for each operation: one statement or transaction at a time on a connection.
        self.lock = threading.Lock()
        self.closed = False

    def ours(self) -> bool:
        """Whether this process opened it (not a parent this one was forked from)."""
        return self.pid == _getpid()

    def close(self) -> None:
        """Close it (the caller holds :attr:`lock`, or nobody else can)."""
        self.closed = True
        if self.ours():
            self.conn.close()

    __del__ = close


_shared: dict[str, _Shared] = {}
_shared_lock = threading.Lock()
# In a forked child: the parent's connections, held (not used, not closed) so that the garbage
# collector does not close them under the parent.
_inherited: list[_Shared] = []


def _forget_after_fork() -> None:
    """In a forked child: the parent's connections and locks are not this process's."""
    global _shared_lock
    _shared_lock = threading.Lock()
    _inherited.extend(_shared.values())
    _shared.clear()


def _close_all() -> None:
    """At exit: close the connections (the last one out checkpoints the WAL into the file)."""
    with _shared_lock:
        entries = list(_shared.values())
        _shared.clear()
    for entry in entries:
        if entry.lock.acquire(timeout=1.0):  # a daemon thread mid-operation keeps its own
            entry.close()
            entry.lock.release()


os.register_at_fork(after_in_child=_forget_after_fork)
atexit.register(_close_all)


def _open(path: Path) -> _Shared:
    """A new connection to ``path``, the file made and set up when needed."""
    # sqlite3 is imported by the first operation, so a program that never uses it skips it.
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        # A cache may lose its last writes in a power cut (never consistency): no fsync per
        # commit, only at checkpoints.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA journal_mode = WAL")
        for statement in _SCHEMA:
            conn.execute(statement)
        ident = _file_id(path)
        if ident is None:
            raise OSError(f"{path} disappeared while it was being opened")
    except BaseException:
        conn.close()
        raise
    return _Shared(conn, ident)


def _entry(path: Path) -> _Shared:
    """The process's connection to ``path``: opened once, again when the file was replaced."""
    key = str(path)
    stale: _Shared | None = None
    try:
        with _shared_lock:
            entry = _shared.get(key)
            # Looked at under the lock: a thread that saw no file yet must not retire the
            # connection another thread has just made it with.
            if entry is not None and entry.ident == _file_id(path) and not entry.closed:
                return entry
            stale = _shared.pop(key, None)
            # Opened under the lock: the threads of a pool that arrive together open it once.
            entry = _shared[key] = _open(path)
            return entry
    finally:
        if stale is not None:  # outside the lock: a thread using it holds its lock
            _retire(stale)


def _retire(entry: _Shared) -> None:
    with entry.lock:
        entry.close()


def _drop(path: Path, entry: _Shared) -> None:
    """Forget a connection after a failure (the caller holds its lock); the next one starts
    afresh."""
    with _shared_lock:
        if _shared.get(str(path)) is entry:
            del _shared[str(path)]
    entry.close()


class BlobInfoCache:
    """A blob-info cache in the SQLite file at ``path`` (created on first use).

    Safe to share between threads and processes. Failures to read or write the file are
    logged as warnings and otherwise ignored: the cache is an optimisation.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()

    def __repr__(self) -> str:
        return f"BlobInfoCache({str(self.path)!r})"

    # -- connections -------------------------------------------------------------------------
    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """The process's connection to the file, for this thread's turn.

        One connection serves every thread of the process (one operation at a time), kept
        for the process's life as long as the file is still the one it opened: connecting
        and setting up cost more than most look-ups, and a connection per thread made a sync
        (a thread pool per image) open and checkpoint the file over and over. A connection
        that failed is dropped.
        """
        while True:
            entry = _entry(self.path)
            entry.lock.acquire()
            if not entry.closed:
                break
            entry.lock.release()  # retired between the look-up and our turn: look again
        try:
            yield entry.conn
        except BaseException:
            _drop(self.path, entry)
            raise
        finally:
            entry.lock.release()

    def _warn(self, what: str, error: BaseException) -> None:
        log.warning("blob-info cache %s: %s failed: %s", self.path, what, error)

    def _write(self, what: str, *steps: tuple[str, Sequence[tuple[object, ...]]]) -> None:
        """Run each step's statement for every one of its rows, all in one write transaction; a
        failure only warns."""
        if not any(rows for _, rows in steps):
            return
        import sqlite3

        try:
            with self._connect() as conn:
                conn.execute("BEGIN IMMEDIATE")
                for statement, rows in steps:
                    conn.executemany(statement, rows)
                conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as e:
            self._warn(what, e)

    def _rows(self, what: str, query: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
        """The rows ``query`` gives; none (after a warning) when the file cannot be read."""
        return self._rows_each(what, query, [params])[0]

    def _rows_each(
        self, what: str, query: str, param_sets: Sequence[Sequence[object]]
    ) -> list[list[tuple[Any, ...]]]:
        """The rows ``query`` gives for each set of parameters, in one turn on the connection;
        none for any (after a warning) when the file cannot be read."""
        import sqlite3

        try:
            with self._connect() as conn:
                return [conn.execute(query, params).fetchall() for params in param_sets]
        except (sqlite3.Error, OSError) as e:
            self._warn(what, e)
            return [[] for _ in param_sets]

    # -- locations ---------------------------------------------------------------------------
    def record_locations(self, entries: Iterable[tuple[Digest, BlobLocation]]) -> None:
        """Remember that each blob was seen at its location (now)."""
        rows = [
            (str(d), loc.transport, loc.scope, loc.reference, time.time()) for d, loc in entries
        ]
        digests = sorted({row[0] for row in rows})
        self._write(
            "recording blob locations",
            (
                "INSERT INTO locations (digest, transport, scope, reference, last_seen) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (digest, transport, scope) DO UPDATE "
                "SET reference = excluded.reference, last_seen = excluded.last_seen",
                rows,
            ),
            # Only a blob's newest locations are ever read: the file stays bounded however
            # many repositories and registries a layer is pushed to.
            (
                "DELETE FROM locations WHERE digest = ? AND rowid NOT IN (SELECT rowid FROM "
                f"locations WHERE digest = ? ORDER BY last_seen DESC LIMIT {KEPT_LOCATIONS})",
                [(d, d) for d in digests],
            ),
        )

    def locations(self, digest: Digest, transport: str | None = None) -> list[BlobLocation]:
        """Where the blob was seen, most recently first (at most :data:`MAX_LOCATIONS`)."""
        return self._newest([digest], transport)[digest]

    def locations_of(self, digests: Iterable[Digest]) -> dict[Digest, list[BlobLocation]]:
        """:meth:`locations` of many blobs in one turn on the connection (every digest asked
        is a key)."""
        return self._newest(digests, None)

    def _newest(
        self, digests: Iterable[Digest], transport: str | None
    ) -> dict[Digest, list[BlobLocation]]:
        wanted = sorted(set(digests), key=str)
        # One statement per blob: with the index on (digest, last_seen) each reads its newest
        # rows and stops, where one query for all would sort every location of every blob (a
        # cache holds up to KEPT_LOCATIONS for a base layer) to keep MAX_LOCATIONS of each.
        query = "SELECT transport, scope, reference FROM locations WHERE digest = ?"
        if transport is not None:
            query += " AND transport = ?"
        query += f" ORDER BY last_seen DESC LIMIT {MAX_LOCATIONS}"
        extra = () if transport is None else (transport,)
        per_blob = self._rows_each(
            "reading blob locations", query, [(str(d), *extra) for d in wanted]
        )
        return {
            d: [BlobLocation(str(t), str(s), str(r)) for t, s, r in rows]
            for d, rows in zip(wanted, per_blob, strict=True)
        }

    # -- compressed <-> uncompressed ---------------------------------------------------------
    def record_uncompressed(self, pairs: Iterable[tuple[Digest, Digest, str]]) -> None:
        """Remember ``(compressed digest, uncompressed digest, compression)`` triples.

        ``compression`` is ``"gzip"``, ``"zstd"`` or ``"none"`` (a blob that is its own
        uncompressed form).
        """
        now = time.time()
        self._write(
            "recording digest pairs",
            (
                "INSERT INTO uncompressed (compressed, uncompressed, compression, last_seen) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (compressed) DO UPDATE "
                "SET uncompressed = excluded.uncompressed, "
                "compression = excluded.compression, last_seen = excluded.last_seen",
                [(str(c), str(u), comp, now) for c, u, comp in pairs],
            ),
        )

    def uncompressed_digest(self, digest: Digest) -> Digest | None:
        """The digest of the uncompressed form of the blob ``digest``, if known."""
        rows = self._rows(
            "reading digest pairs",
            "SELECT uncompressed FROM uncompressed WHERE compressed = ? LIMIT 1",
            (str(digest),),
        )
        return _digest(rows[0][0]) if rows else None

    def compressed_digests(self, uncompressed: Digest, compression: str) -> list[Digest]:
        """Known blobs that are ``uncompressed`` compressed with ``compression``, newest first."""
        rows = self._rows(
            "reading digest pairs",
            "SELECT compressed FROM uncompressed WHERE uncompressed = ? "
            "AND compression = ? ORDER BY last_seen DESC LIMIT ?",
            (str(uncompressed), compression, MAX_LOCATIONS),
        )
        return [d for d in (_digest(r[0]) for r in rows) if d is not None]


def _digest(text: object) -> Digest | None:
    try:
        return Digest.parse(str(text))
    except ImageError:
        return None
