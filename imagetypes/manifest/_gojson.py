"""JSON pieces written exactly as Go's ``encoding/json`` writes them.

Docker schema 1 manifests embed JSON documents as strings and copy members of the image config
as raw JSON, so converting to and from schema 1 byte for byte as containers/image does needs
Go's escaping of strings, its compaction of raw values and its formatting of times.
"""

from __future__ import annotations

import json
import re

from ..errors import ManifestError

__all__ = ["compact_raw", "go_time", "quote", "raw_members"]

_TIME = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})")
_ZERO_TIME = "0001-01-01T00:00:00Z"
_SHORT = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_HTML = frozenset({"<", ">", "&", "\u2028", "\u2029"})


def quote(text: str) -> str:
    """A JSON string literal escaped as Go writes it.

    Unlike :func:`json.dumps`: ``<``, ``>``, ``&``, U+2028 and U+2029 are escaped as
    ``\\u003c`` and so on; control characters other than ``\\n``, ``\\r`` and ``\\t`` are
    written as ``\\u00XX`` (Go has no ``\\b`` or ``\\f``); other non-ASCII characters are
    written as they are; lone surrogates become U+FFFD.
    """
    out = ['"']
    for ch in text:
        short = _SHORT.get(ch)
        if short is not None:
            out.append(short)
        elif ch < " " or ch in _HTML:
            out.append(f"\\u{ord(ch):04x}")
        elif "\ud800" <= ch <= "\udfff":
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def compact_raw(raw: str) -> str:
    """A raw JSON value without insignificant whitespace, HTML characters escaped (as Go's
    ``json.Marshal`` writes a ``json.RawMessage``)."""
    out: list[str] = []
    in_string = escaped = False
    for ch in raw:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            elif ch in _HTML:
                out.append(f"\\u{ord(ch):04x}")
                continue
            out.append(ch)
        elif ch not in " \t\r\n":
            in_string = ch == '"'
            out.append(ch)
    return "".join(out)


def raw_members(text: str, what: str = "the image config") -> dict[str, str]:
    """The members of a JSON object as raw text (a later duplicate key wins, as in Go)."""
    decoder = json.JSONDecoder()
    out: dict[str, str] = {}

    def skip(pos: int) -> int:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        return pos

    try:
        pos = skip(0)
        if text[pos] != "{":
            raise ValueError("not an object")
        pos = skip(pos + 1)
        if text[pos] == "}":
            return out
        while True:
            key, pos = decoder.raw_decode(text, pos)
            if not isinstance(key, str):
                raise ValueError("an object key must be a string")
            pos = skip(pos)
            if text[pos] != ":":
                raise ValueError("expected ':'")
            pos = skip(pos + 1)
            _, end = decoder.raw_decode(text, pos)
            out[key] = text[pos:end]
            pos = skip(end)
            if text[pos] == "}":
                return out
            if text[pos] != ",":
                raise ValueError("expected ',' or '}'")
            pos = skip(pos + 1)
    except (ValueError, IndexError) as e:
        raise ManifestError(f"{what} is not a JSON object: {e}") from e


def go_time(value: object, where: str) -> str:
    """An RFC 3339 time as Go re-writes it (fraction without trailing zeros, ``Z`` for UTC);
    ``None`` (absent or ``null``) is Go's zero time."""
    if value is None:
        return _ZERO_TIME
    match = _TIME.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ManifestError(f"{where} is not an RFC 3339 time: {value!r}")
    base, fraction, zone = match.groups()
    fraction = (fraction or "")[:9].rstrip("0")
    if zone in ("Z", "z") or zone[1:] == "00:00":
        zone = "Z"
    return base + (f".{fraction}" if fraction else "") + zone
