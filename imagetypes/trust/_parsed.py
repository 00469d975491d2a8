"""Configuration files parsed once per process for the same contents.

A sync reads registries.conf and registries.d once per run (the docker transport's
``run_memo``); without a run, every image opened reads them again (the source and the
destination of a plain copy, each copy of a library caller's loop), so that a long-lived
program sees a change whatever its mtime. What was read is parsed again only when it differs.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Generic, TypeVar

_V = TypeVar("_V")


class ParsedCache(Generic[_V]):
    """A small thread-safe map from what was read to what it parsed into (bounded: emptied
    when full, as files change rarely)."""

    def __init__(self, size: int = 16) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._items: dict[Hashable, _V] = {}

    def get(self, key: Hashable) -> _V | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: Hashable, value: _V) -> None:
        with self._lock:
            if len(self._items) >= self._size:
                self._items.clear()
            self._items[key] = value
