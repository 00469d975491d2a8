"""A pytest plugin with fixtures for testing code that moves images.

Installed with imagetypes (entry point ``pytest11``), or enabled in a test module or
``conftest.py`` with ``pytest_plugins = ["imagetypes.testing.pytest_plugin"]``.

Fixtures:

- ``inmemory_registry``: an :class:`~imagetypes.testing.registry.InMemoryRegistry` served on a
  loopback port for the test; yields a :class:`~imagetypes.testing.registry.ServedRegistry`
  (``str()`` is ``127.0.0.1:PORT``; ``.registry`` is the registry, with its counters).
- ``oci_layout``: an :class:`OCILayoutFactory` for an OCI layout in the test's temporary
  directory; ``oci_layout("tag")`` is the reference string ``oci:PATH:tag``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from .registry import InMemoryRegistry, ServedRegistry

__all__ = ["OCILayoutFactory", "inmemory_registry", "oci_layout"]


@attrs.frozen
class OCILayoutFactory:
    """An OCI layout directory (not created until written to) and references into it."""

    #: The layout directory.
    path: Path

    def reference(self, ref_name: str | None = None) -> str:
        """``oci:PATH[:ref_name]``."""
        return f"oci:{self.path}" + (f":{ref_name}" if ref_name else "")

    def __call__(self, ref_name: str | None = None) -> str:
        return self.reference(ref_name)

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __str__(self) -> str:
        return os.fspath(self.path)


@pytest.fixture
def inmemory_registry() -> Iterator[ServedRegistry]:
    """An empty in-memory registry served over HTTP on 127.0.0.1 for the test."""
    with InMemoryRegistry().serve() as served:
        yield served


@pytest.fixture
def oci_layout(tmp_path: Path) -> OCILayoutFactory:
    """An OCI layout path in the test's temporary directory, and a reference factory."""
    return OCILayoutFactory(tmp_path / "oci-layout")
