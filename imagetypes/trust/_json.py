"""Strict JSON reading and Go-compatible JSON writing for trust documents.

Security documents are parsed paranoidly, as containers/image does: duplicate keys, unknown
fields and wrong types are errors, never silently ignored.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection, Mapping
from typing import Any, NoReturn

__all__ = ["JSONObject", "decode_base64", "fail", "go_json", "load_json", "object_fields"]

JSONObject = dict[str, Any]


def fail(error: type[Exception], message: str) -> NoReturn:
    raise error(message)


def _no_duplicates(error: type[Exception]) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> JSONObject:
        result: JSONObject = {}
        for key, value in pairs:
            if key in result:
                fail(error, f"duplicate key {key!r}")
            result[key] = value
        return result

    return hook


def _no_constant(value: str) -> NoReturn:
    raise ValueError(f"{value} is not valid JSON")


def load_json(data: bytes | str, error: type[Exception], what: str) -> Any:
    """Parse ``data``; duplicate keys, NaN/Infinity and invalid UTF-8 raise ``error``."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(
            text, object_pairs_hook=_no_duplicates(error), parse_constant=_no_constant
        )
    except UnicodeDecodeError as e:
        raise error(f"{what} is not valid UTF-8: {e}") from e
    except json.JSONDecodeError as e:
        raise error(f"{what} is not valid JSON: {e}") from e
    except error as e:
        raise error(f"{what}: {e}") from e
    except ValueError as e:  # NaN / Infinity
        raise error(f"{what} is not valid JSON: {e}") from e


def object_fields(
    value: object,
    error: type[Exception],
    what: str,
    *,
    required: Collection[str] = (),
    optional: Collection[str] = (),
) -> JSONObject:
    """``value`` as a JSON object with exactly the ``required`` keys and some ``optional`` ones."""
    if not isinstance(value, dict):
        fail(error, f"{what} must be a JSON object, not {_json_type(value)}")
    allowed = set(required) | set(optional)
    for key in value:
        if key not in allowed:
            fail(error, f"unknown key {key!r} in {what}")
    for key in required:
        if key not in value:
            fail(error, f"key {key!r} missing in {what}")
    return value


def string_field(obj: Mapping[str, Any], key: str, error: type[Exception], what: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        fail(error, f"{key!r} in {what} must be a string, not {_json_type(value)}")
    return value


def decode_base64(value: object, error: type[Exception], what: str) -> bytes:
    """Decode standard, padded base64 (how Go's encoding/json writes ``[]byte``)."""
    if not isinstance(value, str):
        fail(error, f"{what} must be a base64 string, not {_json_type(value)}")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise error(f"{what} is not valid base64: {e}") from e


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def json_type(value: object) -> str:
    """How ``value`` is called in JSON, for error messages."""
    return _json_type(value)


def go_json(value: object) -> bytes:
    """Serialise as Go's ``encoding/json`` does for maps: sorted keys, compact, HTML-escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    text = (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )
    return text.encode("utf-8")
