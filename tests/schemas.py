"""Validate JSON documents against the OCI image-spec JSON schemas.

The schemas come from the Debian package golang-github-opencontainers-image-spec-dev; tests
that need them skip when it is not installed (:func:`require_schemas`). The schema files use
draft-04 ``id``s and relative ``$ref``s whose base URIs are not consistent between files, so
references are resolved by file name, locally, never over the network.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

PACKAGE = "golang-github-opencontainers-image-spec-dev"

#: Schema file for each kind of document.
SCHEMA_FILES = {
    "manifest": "image-manifest-schema.json",
    "index": "image-index-schema.json",
    "config": "config-schema.json",
    "descriptor": "content-descriptor.json",
    "layout": "image-layout-schema.json",
}


@functools.cache
def schema_dir() -> Path | None:
    """The folder holding the OCI schema files, or None when the package is absent."""
    if shutil.which("dpkg") is None:
        return None
    result = subprocess.run(["dpkg", "-L", PACKAGE], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return None
    for line in result.stdout.splitlines():
        path = Path(line)
        if path.name == SCHEMA_FILES["manifest"] and path.is_file():
            return path.parent
    return None


def require_schemas() -> Path:
    """The schema folder; skip the calling test when the schemas or jsonschema are missing."""
    pytest.importorskip("jsonschema")
    pytest.importorskip("referencing")
    folder = schema_dir()
    if folder is None:
        pytest.skip(f"the OCI JSON schemas are not installed (Debian package {PACKAGE})")
    return folder


@functools.cache
def _validator(kind: str) -> Any:
    import jsonschema
    import referencing
    import referencing.jsonschema

    folder = require_schemas()

    def retrieve(uri: str) -> referencing.Resource[Any]:
        # "https://opencontainers.org/schema/image/defs-descriptor.json" and the like: the
        # last path component names the file.
        name = uri.rstrip("/").rsplit("/", 1)[-1].split("#", 1)[0]
        path = folder / name
        if not path.is_file():
            raise referencing.exceptions.NoSuchResource(ref=uri)
        return referencing.Resource.from_contents(
            json.loads(path.read_text()), default_specification=referencing.jsonschema.DRAFT4
        )

    registry: referencing.Registry[Any] = referencing.Registry(retrieve=retrieve)
    schema = json.loads((folder / SCHEMA_FILES[kind]).read_text())
    validator_class = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft4Validator
    )
    return validator_class(schema, registry=registry, format_checker=validator_class.FORMAT_CHECKER)


def validate(document: bytes | dict[str, Any], kind: str) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``document`` is a valid OCI ``kind``.

    ``kind`` is one of ``manifest``, ``index``, ``config``, ``descriptor``, ``layout``.
    """
    obj = json.loads(document) if isinstance(document, bytes) else document
    _validator(kind).validate(obj)


def errors(document: bytes | dict[str, Any], kind: str) -> list[str]:
    """Every schema violation in ``document``, as messages (empty when valid)."""
    obj = json.loads(document) if isinstance(document, bytes) else document
    return [e.message for e in _validator(kind).iter_errors(obj)]
