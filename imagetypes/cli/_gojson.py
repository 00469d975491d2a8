"""JSON text as Go's ``encoding/json`` writes it, so our output matches skopeo's byte for byte.

Differences from :func:`json.dumps` that matter: ``<``, ``>``, ``&``, U+2028 and U+2029 are
escaped as ``\\u003c`` and so on; control characters other than ``\\n``, ``\\r`` and ``\\t`` are
written as ``\\u00XX`` (Go has no ``\\b`` or ``\\f``); other non-ASCII characters are written
as they are; lone surrogates become U+FFFD. Objects keep their insertion order: callers sort
the keys of what Go holds as maps.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["dumps", "quote"]

_SHORT = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_HTML = {"<", ">", "&", "\u2028", "\u2029"}


def quote(text: str) -> str:
    """A JSON string literal for ``text``, escaped as Go does."""
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


def dumps(obj: Any, indent: str = "    ") -> str:
    """``obj`` as JSON, formatted like Go's ``json.MarshalIndent(obj, "", indent)``."""
    parts: list[str] = []
    _write(obj, parts, indent, 0)
    return "".join(parts)


def _write(obj: Any, out: list[str], indent: str, level: int) -> None:
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, str):
        out.append(quote(obj))
    elif isinstance(obj, int):
        out.append(str(obj))
    elif isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"JSON cannot represent {obj!r}")
        out.append(str(int(obj)) if obj.is_integer() and abs(obj) < 1e21 else repr(obj))
    elif isinstance(obj, dict):
        if not obj:
            out.append("{}")
            return
        inner = "\n" + indent * (level + 1)
        out.append("{")
        for i, (key, value) in enumerate(obj.items()):
            out.append(("," if i else "") + inner + quote(str(key)) + ": ")
            _write(value, out, indent, level + 1)
        out.append("\n" + indent * level + "}")
    elif isinstance(obj, list | tuple):
        if not obj:
            out.append("[]")
            return
        inner = "\n" + indent * (level + 1)
        out.append("[")
        for i, value in enumerate(obj):
            out.append(("," if i else "") + inner)
            _write(value, out, indent, level + 1)
        out.append("\n" + indent * level + "]")
    else:
        raise TypeError(f"cannot write {type(obj).__name__} as JSON")
