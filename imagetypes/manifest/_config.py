"""The image configuration blob (OCI image config, which Docker's is a superset of)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs

from .. import mediatypes as mt
from ..descriptor import Descriptor
from ..digest import Digest
from ..errors import ImageError, ManifestError
from ..platform import Platform
from ._base import read_annotations, read_str
from ._json import json_type, load_object, to_bytes

if TYPE_CHECKING:
    from .. import _display

__all__ = ["ImageConfig"]


def _read_object(data: Mapping[str, Any], key: str, where: str = "") -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ManifestError(f"{where}{key} must be an object, not {json_type(value)}")
    return value


def _read_strings(data: Mapping[str, Any], key: str, where: str = "") -> tuple[str, ...]:
    value = data.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ManifestError(f"{where}{key} must be an array of strings")
    return tuple(value)


def _read_diff_ids(rootfs: Mapping[str, Any]) -> tuple[Digest, ...]:
    out = []
    for i, text in enumerate(_read_strings(rootfs, "diff_ids", "rootfs.")):
        try:
            out.append(Digest.parse(text))
        except ImageError as e:
            raise ManifestError(f"rootfs.diff_ids[{i}]: {e}") from e
    return tuple(out)


def _read_history(data: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    value = data.get("history")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ManifestError(f"history must be an array, not {json_type(value)}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ManifestError(f"history[{i}] must be an object, not {json_type(item)}")
        out.append(MappingProxyType(copy.deepcopy(item)))
    return tuple(out)


def _required_str(data: Mapping[str, Any], key: str) -> str:
    value = read_str(data, key)
    if not value:
        raise ManifestError(f"the image config lacks {key!r}")
    return value


@attrs.frozen(repr=False)
class ImageConfig:
    """A parsed image configuration: platform, environment, labels, layer diff IDs, history.

    ``ImageConfig.parse(raw)`` (or ``ImageConfig(raw)``) validates the bytes, which are kept
    unchanged in :attr:`raw`; :meth:`to_dict` gives every field, unknown ones included.
    """

    #: The exact bytes of the config.
    raw: bytes = attrs.field(converter=to_bytes)
    #: The digest of :attr:`raw`.
    digest: Digest = attrs.field(init=False, eq=False)
    architecture: str = attrs.field(init=False, eq=False)
    os: str = attrs.field(init=False, eq=False)
    variant: str | None = attrs.field(init=False, eq=False)
    os_version: str | None = attrs.field(init=False, eq=False)
    os_features: tuple[str, ...] = attrs.field(init=False, eq=False)
    #: When the image was created (RFC 3339 text, as written).
    created: str | None = attrs.field(init=False, eq=False)
    author: str | None = attrs.field(init=False, eq=False)
    docker_version: str | None = attrs.field(init=False, eq=False)
    #: ``config.Env``: ``NAME=value`` strings.
    env: tuple[str, ...] = attrs.field(init=False, eq=False)
    #: ``config.Labels``.
    labels: Mapping[str, str] = attrs.field(init=False, eq=False)
    #: ``rootfs.diff_ids``: the digests of the uncompressed layers, base layer first.
    diff_ids: tuple[Digest, ...] = attrs.field(init=False, eq=False)
    #: ``history`` entries (``created``, ``created_by``, ``empty_layer``, ...).
    history: tuple[Mapping[str, Any], ...] = attrs.field(init=False, eq=False)
    _data: dict[str, Any] = attrs.field(init=False, eq=False)

    def __attrs_post_init__(self) -> None:
        data = load_object(self.raw, "image config")
        container = _read_object(data, "config")
        rootfs = _read_object(data, "rootfs")
        values: dict[str, object] = {
            "digest": Digest.from_bytes(self.raw),
            "architecture": _required_str(data, "architecture"),
            "os": _required_str(data, "os"),
            "variant": read_str(data, "variant") or None,
            "os_version": read_str(data, "os.version") or None,
            "os_features": _read_strings(data, "os.features"),
            "created": read_str(data, "created"),
            "author": read_str(data, "author"),
            "docker_version": read_str(data, "docker_version"),
            "env": _read_strings(container, "Env", "config."),
            "labels": read_annotations(container.get("Labels"), "config.Labels"),
            "diff_ids": _read_diff_ids(rootfs),
            "history": _read_history(data),
            "_data": data,
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)
        try:
            self.platform  # noqa: B018 - validate the platform's components now
        except ImageError as e:
            raise ManifestError(f"the image config names an invalid platform: {e}") from e

    @classmethod
    def parse(cls, data: bytes) -> ImageConfig:
        """Parse and validate a config blob (at most 4 MiB)."""
        return cls(data)

    @property
    def platform(self) -> Platform:
        """The platform the image runs on."""
        # As a dict: mypy's attrs plugin mistypes the converter=tuple field os_features.
        optional: dict[str, Any] = {"os_version": self.os_version, "os_features": self.os_features}
        return Platform(self.os, self.architecture, self.variant, **optional)

    @property
    def size(self) -> int:
        """The length of :attr:`raw`."""
        return len(self.raw)

    def descriptor(self, media_type: str = mt.OCI_CONFIG) -> Descriptor:
        """A descriptor for this config blob (use ``DOCKER_CONFIG`` in a Docker manifest)."""
        return Descriptor(media_type, self.digest, self.size)

    def to_dict(self) -> dict[str, Any]:
        """A fresh copy of the parsed JSON, unknown fields included."""
        return copy.deepcopy(self._data)

    def __repr__(self) -> str:
        return f"ImageConfig(platform={self.platform}, digest={self.digest})"

    # Rich display in IPython and Jupyter: platform, creation, environment, labels, history.
    def _repr_html_(self) -> str:
        from .. import _display

        return _display.render_html(_display.config_card(self))

    def _repr_pretty_(self, p: _display.PrettyPrinter, cycle: bool) -> None:
        from .. import _display

        _display.render_pretty(_display.config_card(self), p, cycle, repr(self))
