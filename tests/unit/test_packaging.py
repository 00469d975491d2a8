"""pyproject.toml lists every package folder and points entry points at modules that exist.

The package list is written by hand (``transports/`` installs as ``imagetypes_transports``),
so a new subpackage that is not added would be missing from wheels while editable installs
and these tests' checkout still import it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: tomli when installed, else skip
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
GROUP = "imagetypes.transports"


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        data: dict[str, Any] = tomllib.load(f)
    return data


@pytest.fixture(scope="module")
def package_dirs(pyproject: dict[str, Any]) -> dict[str, str]:
    """Import package name -> folder, from [tool.setuptools.package-dir]."""
    mapping: dict[str, str] = pyproject["tool"]["setuptools"].get("package-dir", {})
    return mapping


def _folder_packages(package_dirs: dict[str, str]) -> set[str]:
    """The import names of every folder with an __init__.py under the mapped roots."""
    found = set()
    for import_root, folder in package_dirs.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            relative = init.parent.relative_to(base)
            if any(part.startswith((".", "__")) or part == "build" for part in relative.parts):
                continue
            found.add(".".join((import_root, *relative.parts)))
    return found


def _module_file(module: str, package_dirs: dict[str, str]) -> Path | None:
    """The file a dotted module name resolves to in this checkout, or None."""
    # The longest mapped prefix wins, as in setuptools.
    for import_root in sorted(package_dirs, key=len, reverse=True):
        if module != import_root and not module.startswith(import_root + "."):
            continue
        parts = module.split(".")[len(import_root.split(".")) :]
        base = ROOT.joinpath(package_dirs[import_root], *parts)
        if (base / "__init__.py").is_file():
            return base / "__init__.py"
        if parts and base.with_suffix(".py").is_file():
            return base.with_suffix(".py")
        return None
    return None


def test_both_roots_are_mapped(package_dirs: dict[str, str]) -> None:
    assert package_dirs.get("imagetypes") == "imagetypes"
    assert package_dirs.get("imagetypes_transports") == "transports"


def test_every_package_folder_is_listed(
    pyproject: dict[str, Any], package_dirs: dict[str, str]
) -> None:
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    folders = _folder_packages(package_dirs)
    assert {"imagetypes", "imagetypes_transports"} <= folders  # the walk found something
    missing = sorted(folders - listed)
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"


def test_every_listed_package_has_a_folder(
    pyproject: dict[str, Any], package_dirs: dict[str, str]
) -> None:
    for package in pyproject["tool"]["setuptools"]["packages"]:
        found = _module_file(package, package_dirs)
        assert found is not None, f"{package} is listed but has no folder"
        assert found.name == "__init__.py", f"{package} is listed but has no __init__.py"


def test_entry_points_name_existing_modules(
    pyproject: dict[str, Any], package_dirs: dict[str, str]
) -> None:
    entry_points: dict[str, str] = pyproject["project"]["entry-points"][GROUP]
    assert entry_points, f"no entry points in {GROUP}"
    for name, value in entry_points.items():
        module, sep, attr = value.partition(":")
        assert sep, f"{name} = {value!r}: expected module:attribute"
        assert attr.strip(), f"{name} = {value!r}: expected module:attribute"
        path = _module_file(module.strip(), package_dirs)
        assert path is not None, f"entry point {name} = {value!r}: no module file for {module}"


def test_builtin_transports_are_registered(pyproject: dict[str, Any]) -> None:
    entry_points: dict[str, str] = pyproject["project"]["entry-points"][GROUP]
    assert entry_points.get("oci") == "imagetypes_transports.oci:transport"
    assert entry_points.get("dir") == "imagetypes_transports.dir:transport"


def test_typed_marker_is_shipped(pyproject: dict[str, Any]) -> None:
    assert (ROOT / "imagetypes" / "py.typed").is_file()
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["imagetypes"]
