"""Configuration files parsed once per process for the same contents.

Every image a sync copies asks for registries.conf and registries.d: the files are small and
read each time (so a change is always seen, whatever its mtime), but parsed again only when
what was read differs.
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
