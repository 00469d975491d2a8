"""A strict parser for the small YAML subset registries.d files use.

registries.d files are nested block mappings of scalars::

    default-docker:
      lookaside: file:///var/lib/containers/sigstore
    docker:
      registry.example.com:
        lookaside: https://sigs.example.com
        use-sigstore-attachments: true

Supported: block mappings (any depth), plain, single- and double-quoted scalars, comments,
``{}``, null (``~``, ``null``, empty) and YAML 1.1 booleans (as go-yaml reads them). Anything
else (sequences, flow collections with content, anchors, tags, block or multi-line scalars,
tabs in indentation) is refused with the line number, rather than guessed at.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["YAMLSubsetError", "parse_yaml_mapping"]

_MAX_SIZE = 1024 * 1024
_BOOLEANS = {
    **dict.fromkeys(("true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"), True),
    **dict.fromkeys(("false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"), False),
}
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_ESCAPES = {
    "0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f",
    "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85",
    "_": "\xa0", "L": "\u2028", "P": "\u2029",
}  # fmt: skip
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
# Characters that start a construct this parser does not support.
_UNSUPPORTED_START = set("[{&*!|>%@`")


class YAMLSubsetError(ValueError):
    """The text is not valid YAML, or uses YAML this parser does not support."""


def _error(lineno: int, message: str) -> YAMLSubsetError:
    return YAMLSubsetError(f"line {lineno}: {message}")


def _double_quoted(text: str, lineno: int) -> tuple[str, str]:
    """Parse a double-quoted scalar at the start of ``text``; (value, rest)."""
    out: list[str] = []
    i = 1
    while i < len(text):
        c = text[i]
        if c == '"':
            return "".join(out), text[i + 1 :]
        if c == "\\":
            i += 1
            if i >= len(text):
                break
            e = text[i]
            if e in _ESCAPES:
                out.append(_ESCAPES[e])
            elif e in _HEX_ESCAPES:
                digits = text[i + 1 : i + 1 + _HEX_ESCAPES[e]]
                if len(digits) != _HEX_ESCAPES[e] or not re.fullmatch(r"[0-9a-fA-F]+", digits):
                    raise _error(lineno, f"invalid \\{e} escape in a double-quoted string")
                out.append(chr(int(digits, 16)))
                i += len(digits)
            else:
                raise _error(lineno, f"invalid escape \\{e} in a double-quoted string")
        else:
            out.append(c)
        i += 1
    raise _error(lineno, "unterminated double-quoted string (multi-line strings are not supported)")


def _single_quoted(text: str, lineno: int) -> tuple[str, str]:
    out: list[str] = []
    i = 1
    while i < len(text):
        if text[i] == "'":
            if text[i + 1 : i + 2] == "'":
                out.append("'")
                i += 2
                continue
            return "".join(out), text[i + 1 :]
        out.append(text[i])
        i += 1
    raise _error(lineno, "unterminated single-quoted string (multi-line strings are not supported)")


def _after_scalar(rest: str, lineno: int) -> None:
    stripped = rest.strip()
    if stripped and not stripped.startswith("#"):
        raise _error(lineno, f"unexpected text {stripped!r} after a quoted string")


def _strip_comment(text: str) -> str:
    match = re.search(r"(^|\s)#", text)
    return (text[: match.start()] if match else text).rstrip()


def _value(text: str, lineno: int) -> Any:
    text = text.strip()
    if text.startswith('"'):
        value, rest = _double_quoted(text, lineno)
        _after_scalar(rest, lineno)
        return value
    if text.startswith("'"):
        value, rest = _single_quoted(text, lineno)
        _after_scalar(rest, lineno)
        return value
    plain = _strip_comment(text)
    if plain == "{}":
        return {}
    if plain[:1] in _UNSUPPORTED_START or plain.startswith(("- ", "? ")) or plain == "-":
        raise _error(lineno, f"unsupported YAML construct {plain!r}")
    if re.search(r":(\s|$)", plain):
        raise _error(lineno, f"unexpected ': ' in the value {plain!r} (quote it)")
    if plain in _NULLS:
        return None
    if plain in _BOOLEANS:
        return _BOOLEANS[plain]
    return plain


def _key(text: str, lineno: int) -> tuple[str, str]:
    """Split ``key: rest``; the key may be quoted."""
    if text.startswith('"'):
        key, rest = _double_quoted(text, lineno)
    elif text.startswith("'"):
        key, rest = _single_quoted(text, lineno)
    else:
        if text[:1] in _UNSUPPORTED_START or text.startswith(("- ", "? ")) or text == "-":
            raise _error(lineno, f"unsupported YAML construct {text!r}")
        match = re.search(r":(\s|$)", text)
        if match is None:
            raise _error(lineno, f"expected 'key: value', got {text!r}")
        key, rest = text[: match.start()].rstrip(), text[match.start() :]
        if not key:
            raise _error(lineno, "empty key")
        return key, rest[1:]
    if not rest.startswith(":") or not (len(rest) == 1 or rest[1] in " \t"):
        raise _error(lineno, "expected ':' after a quoted key")
    return key, rest[1:]


def parse_yaml_mapping(text: str) -> dict[str, Any]:
    """Parse a document that is a block mapping (or empty) into nested dicts."""
    if len(text) > _MAX_SIZE:
        raise YAMLSubsetError("the document is too large")
    root: dict[str, Any] = {}
    # Each open mapping with the indentation of its keys (None until its first key).
    stack: list[tuple[int | None, dict[str, Any]]] = [(None, root)]
    pending: tuple[str, dict[str, Any], int, int] | None = None
    seen_document_start = False
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("\t") or "\t" in line[: len(line) - len(stripped)]:
            raise _error(lineno, "tabs are not allowed in indentation")
        indent = len(line) - len(stripped)
        if indent == 0 and (stripped in ("---", "...") or stripped.startswith("--- ")):
            if stripped != "---" or seen_document_start or root or pending:
                raise _error(lineno, "multiple documents are not supported")
            seen_document_start = True
            continue
        if stripped.startswith("%"):
            raise _error(lineno, "YAML directives are not supported")
        if pending is not None:
            key, parent, parent_indent, _ = pending
            if indent > parent_indent:
                child: dict[str, Any] = {}
                parent[key] = child
                stack.append((None, child))
            else:
                parent[key] = None
            pending = None
        while len(stack) > 1:
            top_indent = stack[-1][0]
            if top_indent is None or indent >= top_indent:
                break
            stack.pop()
        current_indent, mapping = stack[-1]
        if current_indent is None:
            stack[-1] = (indent, mapping)
        elif indent != current_indent:
            raise _error(lineno, "inconsistent indentation")
        key, rest = _key(stripped, lineno)
        if key in mapping:
            raise _error(lineno, f"duplicate key {key!r}")
        value_text = _strip_comment(rest) if not rest.strip().startswith(("'", '"')) else rest
        if not value_text.strip():
            mapping[key] = None  # replaced by a nested mapping if indented lines follow
            pending = (key, mapping, indent, lineno)
        else:
            mapping[key] = _value(rest, lineno)
    return root
