"""``registries.d``: where signatures of registry images are stored (containers-registries.d(5)).

Each ``*.yaml`` file in the directory may set ``default-docker`` and per-namespace ``docker``
entries; the most specific namespace of an image (as for policy scopes) that sets a value
wins. ``lookaside`` is the base URL signatures are read from (and written to, unless
``lookaside-staging`` is set); ``use-sigstore-attachments`` says whether sigstore signatures
are stored as OCI attachments in the registry.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from ..digest import Digest
from ..reference import Reference
from ._errors import RegistriesConfError
from ._parsed import ParsedCache
from ._policy import policy_scope_namespaces
from ._registries_conf import read_config_text
from ._yaml import YAMLSubsetError, parse_yaml_mapping

__all__ = ["LookasideConfig", "RegistriesD", "lookaside_signature_url"]

SYSTEM_REGISTRIES_D = Path("/etc/containers/registries.d")
_USER_REGISTRIES_D = Path(".config/containers/registries.d")
_MAX_SIZE = 1024 * 1024


@attrs.frozen
class LookasideConfig:
    """One ``default-docker`` or ``docker`` namespace entry."""

    lookaside: str | None = None
    lookaside_staging: str | None = None
    #: Deprecated spellings of the two above, still honoured after them.
    sigstore: str | None = None
    sigstore_staging: str | None = None
    use_sigstore_attachments: bool | None = None

    def top_level(self, write: bool) -> str | None:
        """The base URL for reading (or writing, with ``write``), if this entry sets one."""
        if write and (self.lookaside_staging or self.sigstore_staging):
            return self.lookaside_staging or self.sigstore_staging
        return self.lookaside or self.sigstore or None


_FIELDS = {
    "lookaside": "lookaside",
    "lookaside-staging": "lookaside_staging",
    "sigstore": "sigstore",
    "sigstore-staging": "sigstore_staging",
}


def _namespace(value: object, what: str) -> LookasideConfig:
    if value is None:
        return LookasideConfig()
    if not isinstance(value, dict):
        raise RegistriesConfError(f"{what} must be a mapping")
    fields: dict[str, Any] = {}
    # Unknown keys are ignored, as containers/image's decoder does.
    for key, attr in _FIELDS.items():
        if key in value and value[key] is not None:
            if not isinstance(value[key], str):
                raise RegistriesConfError(f"{key!r} in {what} must be a string")
            fields[attr] = value[key]
    attachments = value.get("use-sigstore-attachments")
    if attachments is not None and not isinstance(attachments, bool):
        raise RegistriesConfError(f"'use-sigstore-attachments' in {what} must be a boolean")
    return LookasideConfig(**fields, use_sigstore_attachments=attachments)


def lookaside_signature_url(base: str, manifest_digest: Digest, index: int) -> str:
    """The URL of signature number ``index`` (from 0) under a repository's lookaside base."""
    return f"{base}@{manifest_digest.algorithm}={manifest_digest.hex}/signature-{index + 1}"


# Every image a sync copies reads registries.d: parsed once per process for the same files.
_parsed: ParsedCache[RegistriesD] = ParsedCache()


@attrs.frozen
class RegistriesD:
    """The merged lookaside configuration of a registries.d directory."""

    default_docker: LookasideConfig | None = None
    docker: Mapping[str, LookasideConfig] = attrs.field(factory=dict)

    @classmethod
    def parse(cls, text: str, origin: str = "registries.d") -> RegistriesD:
        """Parse one registries.d YAML file."""
        try:
            data = parse_yaml_mapping(text)
        except YAMLSubsetError as e:
            raise RegistriesConfError(f"{origin}: {e}") from e
        default = (
            _namespace(data["default-docker"], f"{origin}: default-docker")
            if "default-docker" in data
            else None
        )
        raw_docker = data.get("docker") or {}
        if not isinstance(raw_docker, dict):
            raise RegistriesConfError(f"{origin}: 'docker' must be a mapping")
        docker = {
            name: _namespace(value, f"{origin}: docker namespace {name!r}")
            for name, value in raw_docker.items()
        }
        return cls(default, docker)

    @classmethod
    def load(cls, directory: str | os.PathLike[str] | None = None) -> RegistriesD:
        """Read every ``*.yaml`` file of ``directory`` (default: the user's
        ``~/.config/containers/registries.d`` if it exists, else
        ``/etc/containers/registries.d``). One namespace defined in two files is an error."""
        if directory is not None:
            path = Path(directory)
        else:
            user = Path.home() / _USER_REGISTRIES_D
            path = user if user.exists() else SYSTEM_REGISTRIES_D
        try:
            files = sorted(p for p in path.iterdir() if p.name.endswith(".yaml"))
        except FileNotFoundError:
            return cls()
        except OSError as e:
            raise RegistriesConfError(f"reading {path}: {e.strerror}") from e
        texts: list[tuple[Path, str]] = []
        for file in files:
            try:
                texts.append((file, read_config_text(file, _MAX_SIZE)))
            except OSError as e:
                raise RegistriesConfError(f"cannot read {file}: {e}") from e
        key = tuple((str(file), text) for file, text in texts)
        cached = _parsed.get(key)
        if cached is None:
            cached = cls._merge(texts)
            _parsed.put(key, cached)
        return cached

    @classmethod
    def _merge(cls, texts: list[tuple[Path, str]]) -> RegistriesD:
        default: LookasideConfig | None = None
        default_from: Path | None = None
        docker: dict[str, LookasideConfig] = {}
        docker_from: dict[str, Path] = {}
        for file, text in texts:
            parsed = cls.parse(text, str(file))
            if parsed.default_docker is not None:
                if default is not None:
                    raise RegistriesConfError(
                        f"'default-docker' is defined both in {default_from} and {file}"
                    )
                default, default_from = parsed.default_docker, file
            for name, namespace in parsed.docker.items():
                if name in docker:
                    raise RegistriesConfError(
                        f"docker namespace {name!r} is defined both in {docker_from[name]} "
                        f"and {file}"
                    )
                docker[name] = namespace
                docker_from[name] = file
        return cls(default, docker)

    def _entries(self, reference: Reference) -> list[LookasideConfig]:
        """Entries that apply to ``reference``, most specific first."""
        ref = reference.with_default_tag() if reference.digest is None else reference
        identity = f"{ref.name}@{ref.digest}" if ref.digest is not None else str(ref)
        entries = [
            self.docker[scope]
            for scope in (identity, *policy_scope_namespaces("docker", identity))
            if scope in self.docker
        ]
        if self.default_docker is not None:
            entries.append(self.default_docker)
        return entries

    def lookaside_for(self, reference: Reference, *, write: bool = False) -> str | None:
        """The lookaside URL of the image's repository (``<base>/<repository path>``), or
        None when nothing is configured for it."""
        for entry in self._entries(reference):
            top = entry.top_level(write)
            if top:
                parts = urllib.parse.urlsplit(top)
                if not parts.scheme:
                    raise RegistriesConfError(
                        f"invalid signature storage URL {top!r}: it needs a scheme "
                        "(file://, https://)"
                    )
                path = f"{parts.path}/{reference.path}"
                return urllib.parse.urlunsplit(parts._replace(path=path))
        return None

    def use_sigstore_attachments(self, reference: Reference) -> bool:
        """Whether sigstore signatures of the image live in the registry as attachments."""
        for entry in self._entries(reference):
            if entry.use_sigstore_attachments is not None:
                return entry.use_sigstore_attachments
        return False
