"""Bounded, strict JSON reading and Go-compatible compact JSON writing."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NoReturn

from ..errors import ManifestError, ManifestTooLargeError

__all__ = ["MAX_MANIFEST_SIZE", "check_size", "dumps", "json_type", "load_object", "to_bytes"]

#: The largest manifest or image config imagetypes accepts (as containers/image does).
MAX_MANIFEST_SIZE = 4 * 1024 * 1024

# Go's json.Marshal escapes these inside strings (HTML safety, JavaScript line separators).
# None of them can appear outside a string in JSON text, so replacing them in the output
# text only ever touches string contents.
_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_GO_ESCAPE_TABLE = str.maketrans(_GO_ESCAPES)


def to_bytes(value: object) -> bytes:
    """Accept bytes-like values only (``bytes(5)`` would silently make five zero bytes)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"expected bytes, not {type(value).__name__}")


def check_size(data: bytes, what: str) -> None:
    """Raise :class:`ManifestTooLargeError` when ``data`` is over the size bound."""
    if len(data) > MAX_MANIFEST_SIZE:
        raise ManifestTooLargeError(
            f"{what} is {len(data)} bytes, more than the {MAX_MANIFEST_SIZE} bytes accepted"
        )


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def load_object(data: bytes, what: str) -> dict[str, Any]:
    """Parse ``data`` as a UTF-8 JSON object; raise :class:`ManifestError` otherwise."""
    check_size(data, what)
    try:
        text = data.decode("utf-8")
        obj = json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError as e:
        raise ManifestError(f"{what} is not valid UTF-8: {e}") from e
    except ValueError as e:
        raise ManifestError(f"{what} is not valid JSON: {e}") from e
    except RecursionError as e:
        raise ManifestError(f"{what} is nested too deeply") from e
    if not isinstance(obj, dict):
        raise ManifestError(f"{what} must be a JSON object, not {json_type(obj)}")
    return obj


def json_type(value: object) -> str:
    """How a JSON value's type is named in error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def dumps(obj: Mapping[str, Any]) -> bytes:
    """Serialise compactly, byte for byte as Go's ``json.Marshal`` does for the same values.

    Field order is the caller's (Go writes struct fields in declaration order); map-valued
    fields such as annotations must already be sorted by the caller, as Go sorts map keys.
    """
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        return text.translate(_GO_ESCAPE_TABLE).encode("utf-8")
    except UnicodeEncodeError as e:
        raise ManifestError(f"cannot serialise a string holding a lone surrogate: {e}") from e
