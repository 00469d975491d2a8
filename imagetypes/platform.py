"""Platforms (``linux/arm64/v8``) and matching them against the instances of an index."""

from __future__ import annotations

import platform as _pyplatform
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from .errors import InvalidPlatformError

__all__ = ["Platform"]

_COMPONENT = re.compile(r"[A-Za-z0-9_.+-]+")

# Architecture aliases, as Go's GOARCH and the containerd platforms package spell them.
_ARCH_ALIASES = {
    "x86_64": ("amd64", None),
    "x86-64": ("amd64", None),
    "aarch64": ("arm64", None),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
    "i386": ("386", None),
    "i686": ("386", None),
}
_OS_ALIASES = {"macos": "darwin"}
# The variant a platform has when it names none.
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7"}


def _component(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not _COMPONENT.fullmatch(value):
        raise InvalidPlatformError(f"invalid platform component {value!r}")
    return value


def _os(value: str) -> str:
    if not value or not _COMPONENT.fullmatch(value):
        raise InvalidPlatformError(f"invalid operating system {value!r}")
    return value


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


@attrs.frozen
class Platform:
    """An operating system and CPU architecture (with variant) an image runs on.

    ``Platform.parse("linux/arm64/v8")`` parses the usual spelling; ``Platform.current()`` is
    this machine. Equality is exact; :meth:`matches` knows that ``linux/arm64`` and
    ``linux/arm64/v8`` are the same platform.
    """

    os: str = attrs.field(validator=lambda _i, _a, v: _os(v))
    architecture: str = attrs.field(validator=lambda _i, _a, v: _os(v))
    variant: str | None = attrs.field(default=None, converter=_component)
    os_version: str | None = attrs.field(default=None, kw_only=True)
    os_features: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple, kw_only=True)

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``os/architecture[/variant]``; aliases such as ``x86_64`` are normalized."""
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidPlatformError(
                f"invalid platform {text!r}: expected os/architecture[/variant]"
            )
        os_name = _OS_ALIASES.get(parts[0].lower(), parts[0].lower())
        arch, implied_variant = _ARCH_ALIASES.get(parts[1].lower(), (parts[1].lower(), None))
        variant = parts[2] if len(parts) == 3 else implied_variant
        return cls(os_name, arch, variant)

    @classmethod
    def current(cls) -> Platform:
        """The platform of the machine Python runs on."""
        os_name = {"win32": "windows", "darwin": "darwin"}.get(sys.platform, "linux")
        machine = _pyplatform.machine().lower() or "amd64"
        arch, variant = _ARCH_ALIASES.get(machine, (machine, None))
        if machine.startswith("armv"):
            arch, variant = "arm", "v" + machine[4]
        return cls(os_name, arch, variant)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Platform:
        """Build from the JSON form used in indexes (``os``, ``architecture``, ...)."""
        try:
            return cls(
                str(data["os"]),
                str(data["architecture"]),
                data.get("variant") or None,
                os_version=data.get("os.version") or None,
                os_features=tuple(data.get("os.features") or ()),
            )
        except KeyError as e:
            raise InvalidPlatformError(f"platform lacks the field {e.args[0]!r}") from None
        except TypeError as e:
            raise InvalidPlatformError(f"invalid platform object: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used in indexes."""
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        return out

    def normalized(self) -> Platform:
        """The same platform with the default variant filled in (``linux/arm64/v8``)."""
        if self.variant is None and self.architecture in _DEFAULT_VARIANT:
            return attrs.evolve(self, variant=_DEFAULT_VARIANT[self.architecture])
        return self

    def matches(self, wanted: Platform) -> bool:
        """True if an image for this platform serves a request for ``wanted``.

        OS and architecture must be equal; variants are compared after filling in defaults,
        and a request with no variant accepts any variant. OS version is compared only when
        both name one.
        """
        if self.os != wanted.os or self.architecture != wanted.architecture:
            return False
        if wanted.os_version and self.os_version and wanted.os_version != self.os_version:
            return False
        if wanted.variant is None:
            return True
        return self.normalized().variant == wanted.normalized().variant

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base


def best_match(candidates: Iterable[tuple[Platform | None, Any]], wanted: Platform) -> Any | None:
    """The first candidate value whose platform matches ``wanted`` (None if none does).

    An exact variant match is preferred over an implied one.
    """
    fallback = None
    for plat, value in candidates:
        if plat is None or not plat.matches(wanted):
            continue
        if plat.normalized().variant == wanted.normalized().variant:
            return value
        if fallback is None:
            fallback = value
    return fallback
