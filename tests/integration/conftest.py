"""Shared fixtures for integration tests: real registries (see registry_fixtures.py)."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for _path in (str(_HERE), str(_HERE.parent)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from registry_fixtures import proxy, registry  # noqa: E402

__all__ = ["proxy", "registry"]
