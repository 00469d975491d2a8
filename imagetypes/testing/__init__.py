"""The public test kit: an in-memory registry, random images, an in-memory transport and a
conformance suite for transports.

Submodules (each importable on its own; the names below are also available here, loaded on
first use so that ``python -m imagetypes.testing.registry`` stays clean):

- :mod:`imagetypes.testing.registry`: :class:`InMemoryRegistry`, the OCI distribution API as a
  WSGI application, served in-process (httpx) or on a loopback port.
- :mod:`imagetypes.testing.random`: :func:`random_image` and :func:`random_index`.
- :mod:`imagetypes.testing.memory`: the ``memory:`` transport (:class:`MemoryTransport`).
- :mod:`imagetypes.testing.conformance`: :func:`check_transport` and :class:`ConformanceSuite`.
- :mod:`imagetypes.testing.pytest_plugin`: the ``inmemory_registry`` and ``oci_layout``
  fixtures.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .conformance import (
        CHECK_NAMES,
        ConformanceError,
        ConformanceReport,
        ConformanceSuite,
        check_transport,
    )
    from .memory import MemoryStore, MemoryTransport
    from .random import RandomImage, RandomIndex, random_image, random_index
    from .registry import BasicAuth, BearerAuth, InMemoryRegistry, ServedRegistry

_EXPORTS = {
    "CHECK_NAMES": "conformance",
    "ConformanceError": "conformance",
    "ConformanceReport": "conformance",
    "ConformanceSuite": "conformance",
    "check_transport": "conformance",
    "MemoryStore": "memory",
    "MemoryTransport": "memory",
    "RandomImage": "random",
    "RandomIndex": "random",
    "random_image": "random",
    "random_index": "random",
    "BasicAuth": "registry",
    "BearerAuth": "registry",
    "InMemoryRegistry": "registry",
    "ServedRegistry": "registry",
}

__all__ = [
    "CHECK_NAMES",
    "BasicAuth",
    "BearerAuth",
    "ConformanceError",
    "ConformanceReport",
    "ConformanceSuite",
    "InMemoryRegistry",
    "MemoryStore",
    "MemoryTransport",
    "RandomImage",
    "RandomIndex",
    "ServedRegistry",
    "check_transport",
    "random_image",
    "random_index",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
