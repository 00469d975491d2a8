"""The curated public API: ``imagetypes.__all__`` is complete and every name in it exists."""

from __future__ import annotations

import importlib
import inspect

import pytest

import imagetypes
from imagetypes import errors
from imagetypes.errors import ImageError

# Modules whose public classes and functions are re-exported from the package root.
PUBLIC_MODULES = [
    "imagetypes.errors",
    "imagetypes.digest",
    "imagetypes.descriptor",
    "imagetypes.platform",
    "imagetypes.types",
    "imagetypes.plugins",
    "imagetypes.reference",
    "imagetypes.retry",
]


def _public_definitions() -> list[tuple[str, str]]:
    """(module, name) for each class or function a public module defines and lists in __all__."""
    found = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue  # constants stay in their module (imagetypes.digest.CHUNK_SIZE)
            if obj.__module__ == module_name and not name.startswith("_"):
                found.append((module_name, name))
    return found


@pytest.mark.parametrize("name", imagetypes.__all__)
def test_every_name_in_all_exists(name: str) -> None:
    assert hasattr(imagetypes, name), f"imagetypes.__all__ lists {name!r}, which is missing"


def test_all_has_no_duplicates() -> None:
    assert len(imagetypes.__all__) == len(set(imagetypes.__all__))


def test_public_modules_list_only_existing_names() -> None:
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        assert hasattr(module, "__all__"), f"{module_name} has no __all__"
        for name in module.__all__:
            assert hasattr(module, name), f"{module_name}.__all__ lists missing {name!r}"


def test_public_definitions_were_found() -> None:
    # Guards the test below against silently checking nothing.
    names = {name for _, name in _public_definitions()}
    assert {"Digest", "Descriptor", "Platform", "Transport", "ImageError"} <= names


@pytest.mark.parametrize(("module_name", "name"), _public_definitions())
def test_public_definitions_are_reexported(module_name: str, name: str) -> None:
    module = importlib.import_module(module_name)
    assert name in imagetypes.__all__, f"{module_name}.{name} is not in imagetypes.__all__"
    assert getattr(imagetypes, name) is getattr(module, name)


def _exception_classes() -> list[type[BaseException]]:
    return [
        obj
        for _, obj in inspect.getmembers(errors, inspect.isclass)
        if issubclass(obj, BaseException) and obj.__module__ == errors.__name__
    ]


def test_errors_module_defines_exceptions() -> None:
    assert len(_exception_classes()) >= 10


@pytest.mark.parametrize("cls", _exception_classes(), ids=lambda c: c.__name__)
def test_every_error_is_an_image_error(cls: type[BaseException]) -> None:
    assert issubclass(cls, ImageError)
    assert cls.__name__ in errors.__all__
    assert cls.__doc__, f"{cls.__name__} has no docstring"


def test_version() -> None:
    assert isinstance(imagetypes.__version__, str)
    assert imagetypes.__version__
