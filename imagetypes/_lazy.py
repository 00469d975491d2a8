"""Public names loaded on first use (PEP 562), for the packages whose imports are costly.

Each package lists its names by module in an ``_EXPORTS`` table, mirrors the table in
``if TYPE_CHECKING:`` imports (so type checkers and IDEs see every name; a test keeps the two
equal) and installs the two functions :func:`lazy_exports` returns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from importlib import import_module
from typing import Any


def lazy_exports(
    package: str, namespace: MutableMapping[str, Any], exports: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package`` (its ``namespace`` is its
    ``globals()``), importing each name of ``exports`` (relative module -> names) on first use."""
    module_of = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> object:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module, package), name)
        namespace[name] = value  # later look-ups find it without calling this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(namespace.get("__all__", ())))

    return __getattr__, __dir__
