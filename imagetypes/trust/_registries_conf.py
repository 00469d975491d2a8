"""``registries.conf`` (version 2) and its ``registries.conf.d`` drop-ins.

containers-registries.conf(5): per-registry settings matched by the longest prefix of an
image name (``*.example.com`` matches every subdomain), mirrors tried before the registry
itself, blocked registries, the registries searched for short names, and short-name aliases.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from ..errors import InvalidReferenceError
from ..reference import Reference
from ._errors import BlockedRegistryError, RegistriesConfError
from ._identity import DOMAIN_RE
from ._parsed import ParsedCache

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = [
    "Endpoint",
    "PullSource",
    "RegistriesConf",
    "Registry",
]

SYSTEM_REGISTRIES_CONF = Path("/etc/containers/registries.conf")
SYSTEM_REGISTRIES_CONF_D = Path("/etc/containers/registries.conf.d")
_USER_CONF = Path(".config/containers/registries.conf")
_USER_CONF_D = Path(".config/containers/registries.conf.d")
_ENV = "CONTAINERS_REGISTRIES_CONF"
_MAX_SIZE = 4 * 1024 * 1024

PullFromMirror = Literal["all", "digest-only", "tag-only"]
_PULL_FROM_MIRROR = ("all", "digest-only", "tag-only")
_SHORT_NAME_MODES = ("disabled", "enforcing", "permissive")


@attrs.frozen
class Endpoint:
    """A place to pull from: a registry host with an optional namespace (``mirror.io/ns``)."""

    location: str
    insecure: bool = False
    #: For mirrors: use it for ``"all"`` pulls (default), only ``"digest-only"`` or
    #: ``"tag-only"`` ones.
    pull_from_mirror: PullFromMirror | None = None


@attrs.frozen
class PullSource:
    """One place to try, in order: the endpoint and the image's name there."""

    endpoint: Endpoint
    reference: Reference


def _matching_prefix_length(ref: str, prefix: str) -> int:
    """How much of ``ref`` the prefix covers, or -1 when it does not match."""
    if prefix.startswith("*."):
        # *.example.com matches any subdomain of example.com in the host part.
        suffix = prefix[1:]
        index = ref.find(suffix)
        if index == -1 or "/" in ref[:index]:
            return -1
        index += len(suffix)
        if index == len(ref) or ref[index] in ":/@":
            return index
        return -1
    if ref == prefix:
        return len(prefix)
    if len(ref) > len(prefix) and ref.startswith(prefix) and ref[len(prefix)] in ":/@":
        return len(prefix)
    return -1


@attrs.frozen
class Registry:
    """A ``[[registry]]`` entry: which names it covers and where to pull them from."""

    prefix: str
    location: str
    insecure: bool = False
    blocked: bool = False
    mirrors: tuple[Endpoint, ...] = ()
    mirror_by_digest_only: bool = False

    @property
    def endpoint(self) -> Endpoint:
        """The registry itself, as an endpoint."""
        return Endpoint(self.location, self.insecure)

    def pull_sources(self, reference: Reference) -> list[PullSource]:
        """Mirrors that apply to ``reference`` in order, then the registry itself.

        Blocking is not checked here; :meth:`RegistriesConf.pull_sources` does.
        """
        by_digest = reference.digest is not None
        endpoints: list[Endpoint] = []
        for mirror in self.mirrors:
            mode = "digest-only" if self.mirror_by_digest_only else mirror.pull_from_mirror
            if (mode == "digest-only" and not by_digest) or (mode == "tag-only" and by_digest):
                continue
            endpoints.append(mirror)
        endpoints.append(self.endpoint)
        return [PullSource(e, self._rewrite(reference, e)) for e in endpoints]

    def _rewrite(self, reference: Reference, endpoint: Endpoint) -> Reference:
        text = str(reference)
        length = _matching_prefix_length(text, self.prefix)
        if length == -1:
            raise RegistriesConfError(f"prefix {self.prefix!r} does not match {text!r}")
        if not endpoint.location:
            return reference  # a wildcard prefix without location: the name stays as it is
        rewritten = endpoint.location + text[length:]
        try:
            parsed = Reference.parse(rewritten)
        except InvalidReferenceError as e:
            raise RegistriesConfError(
                f"rewriting {text!r} for location {endpoint.location!r}: {e}"
            ) from e
        if str(parsed) != rewritten:
            raise RegistriesConfError(
                f"rewriting {text!r} for location {endpoint.location!r} gives {rewritten!r}, "
                "which is not a fully qualified name"
            )
        return parsed


# -- parsing ---------------------------------------------------------------------------------


def _location(value: str, what: str) -> str:
    trimmed = value.rstrip("/")
    if trimmed.startswith(("http://", "https://")):
        raise RegistriesConfError(f"invalid {what} {value!r}: URI schemes are not supported")
    return trimmed


def _get(table: Mapping[str, Any], key: str, kind: type, what: str) -> Any:
    value = table.get(key)
    if value is not None and not isinstance(value, kind):
        raise RegistriesConfError(f"{key!r} in {what} must be a {kind.__name__}")
    return value


def _string_list(table: Mapping[str, Any], key: str, what: str) -> tuple[str, ...] | None:
    value = _get(table, key, list, what)
    if value is None:
        return None
    if not all(isinstance(v, str) for v in value):
        raise RegistriesConfError(f"{key!r} in {what} must be an array of strings")
    return tuple(value)


def _valid_domain(text: str) -> bool:
    return DOMAIN_RE.fullmatch(text) is not None


def _check_short_name(name: str) -> None:
    if "@" in name:
        raise RegistriesConfError(f"invalid short name {name!r}: must not contain a digest")
    first, sep, _ = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        raise RegistriesConfError(f"invalid short name {name!r}: must not contain a registry")
    if ":" in name:
        raise RegistriesConfError(f"invalid short name {name!r}: must not contain a tag")
    try:
        Reference.parse(name)
    except InvalidReferenceError as e:
        raise RegistriesConfError(f"invalid short name {name!r}: {e}") from e


def _alias_value(name: str, value: str) -> Reference:
    first, sep, _ = value.partition("/")
    if not (sep and ("." in first or ":" in first or first == "localhost")):
        raise RegistriesConfError(
            f"invalid alias {value!r} for {name!r}: must contain registry and repository"
        )
    try:
        ref = Reference.parse(value)
    except InvalidReferenceError as e:
        raise RegistriesConfError(f"invalid alias {value!r} for {name!r}: {e}") from e
    if ref.digest is not None:
        raise RegistriesConfError(f"invalid alias {value!r}: must not contain a digest")
    if ref.tag is not None:
        raise RegistriesConfError(f"invalid alias {value!r}: must not contain a tag")
    return ref


@attrs.frozen
class _File:
    """One parsed file, before merging."""

    registries: tuple[Registry, ...]
    unqualified_search_registries: tuple[str, ...] | None
    credential_helpers: tuple[str, ...] | None
    short_name_mode: str | None
    aliases: Mapping[str, Reference | None]


def _parse_registry(table: object, index: int) -> Registry:
    what = f"[[registry]] #{index + 1}"
    if not isinstance(table, dict):
        raise RegistriesConfError(f"{what} must be a table")
    location = _location(_get(table, "location", str, what) or "", "location")
    prefix = _get(table, "prefix", str, what) or ""
    if not prefix:
        if not location:
            raise RegistriesConfError(f"{what}: both location and prefix are unset")
        prefix = location
    else:
        prefix = _location(prefix, "prefix")
        if not prefix.startswith("*.") and not location:
            raise RegistriesConfError(
                f"{what}: location is unset and prefix {prefix!r} is not of the form *.example.com"
            )
    if prefix.startswith("*.") and any(c in prefix for c in "/@:"):
        raise RegistriesConfError(f"wildcard prefix {prefix!r} must be of the form *.example.com")
    if table.get("pull-from-mirror"):
        raise RegistriesConfError(
            f"pull-from-mirror must not be set for the non-mirror registry {prefix!r}"
        )
    by_digest = bool(_get(table, "mirror-by-digest-only", bool, what))
    mirrors = []
    raw_mirrors = _get(table, "mirror", list, what) or []
    for m_index, raw in enumerate(raw_mirrors):
        m_what = f"mirror #{m_index + 1} of {what}"
        if not isinstance(raw, dict):
            raise RegistriesConfError(f"{m_what} must be a table")
        m_location = _location(_get(raw, "location", str, m_what) or "", "mirror location")
        if not m_location:
            raise RegistriesConfError(f"{m_what}: the mirror location is unset")
        pull = _get(raw, "pull-from-mirror", str, m_what) or None
        if pull is not None:
            if by_digest:
                raise RegistriesConfError(
                    f"cannot set mirror-by-digest-only for registry {prefix!r} and "
                    f"pull-from-mirror for mirror {m_location!r} at the same time"
                )
            if pull not in _PULL_FROM_MIRROR:
                raise RegistriesConfError(
                    f"unsupported pull-from-mirror value {pull!r} for mirror {m_location!r}"
                )
        mirrors.append(Endpoint(m_location, bool(_get(raw, "insecure", bool, m_what)), pull))
    return Registry(
        prefix=prefix,
        location=location,
        insecure=bool(_get(table, "insecure", bool, what)),
        blocked=bool(_get(table, "blocked", bool, what)),
        mirrors=tuple(mirrors),
        mirror_by_digest_only=by_digest,
    )


def _convert_v1(v1: Mapping[str, Any]) -> list[Registry]:
    order: list[str] = []
    flags: dict[str, dict[str, bool]] = {}
    for kind in ("block", "insecure"):
        section = v1.get(kind) or {}
        for location in _string_list(section, "registries", f"[registries.{kind}]") or ():
            location = _location(location, "registry")
            if location not in flags:
                order.append(location)
                flags[location] = {"block": False, "insecure": False}
            flags[location][kind] = True
    return [
        Registry(loc, loc, insecure=flags[loc]["insecure"], blocked=flags[loc]["block"])
        for loc in order
    ]


def _parse_file(text: str, origin: str, *, drop_in: bool) -> _File:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RegistriesConfError(f"{origin}: invalid TOML: {e}") from e
    what = origin
    v1 = data.get("registries")
    v1_nonempty = isinstance(v1, dict) and any(
        (v1.get(k) or {}).get("registries") for k in ("search", "insecure", "block")
    )
    registries_raw = _get(data, "registry", list, what) or []
    search = _string_list(data, "unqualified-search-registries", what)
    helpers = _string_list(data, "credential-helpers", what)
    mode = _get(data, "short-name-mode", str, what) or None
    aliases_raw = _get(data, "aliases", dict, what) or {}
    if v1_nonempty:
        assert isinstance(v1, dict)
        if drop_in:
            raise RegistriesConfError(f"{origin}: a drop-in must use the v2 format, not v1")
        if registries_raw or search or helpers or mode or aliases_raw:
            raise RegistriesConfError(f"{origin}: mixing v1 and v2 formats is not supported")
        registries = _convert_v1(v1)
        search = _string_list(v1.get("search") or {}, "registries", "[registries.search]")
    else:
        registries = [_parse_registry(t, i) for i, t in enumerate(registries_raw)]
    # One location must not be both secure and insecure, or both blocked and not.
    by_location: dict[str, Registry] = {}
    for reg in registries:
        key = reg.location or reg.prefix
        other = by_location.setdefault(key, reg)
        if other.insecure != reg.insecure:
            raise RegistriesConfError(
                f"{origin}: registry {key!r} is defined multiple times with conflicting "
                "'insecure' settings"
            )
        if other.blocked != reg.blocked:
            raise RegistriesConfError(
                f"{origin}: registry {key!r} is defined multiple times with conflicting "
                "'blocked' settings"
            )
    if search is not None:
        checked = []
        for entry in search:
            host = _location(entry, "unqualified-search-registries entry")
            if not _valid_domain(host):
                raise RegistriesConfError(
                    f"{origin}: invalid unqualified-search-registries entry {entry!r}"
                )
            checked.append(host)
        search = tuple(checked)
    if mode is not None and mode not in _SHORT_NAME_MODES:
        raise RegistriesConfError(f"{origin}: invalid short-name-mode {mode!r}")
    aliases: dict[str, Reference | None] = {}
    for name, value in aliases_raw.items():
        if not isinstance(value, str):
            raise RegistriesConfError(f"{origin}: alias {name!r} must be a string")
        _check_short_name(name)
        aliases[name] = _alias_value(name, value) if value else None
    # Within one file the first entry for a prefix wins.
    unique: dict[str, Registry] = {}
    for reg in registries:
        unique.setdefault(reg.prefix, reg)
    return _File(tuple(unique[p] for p in sorted(unique)), search, helpers, mode, aliases)


def read_config_text(path: Path, limit: int = _MAX_SIZE) -> str:
    """A configuration file's text: at most ``limit`` bytes of UTF-8 (OSError when unreadable)."""
    from ..blobfiles import read_limited

    data = read_limited(path, limit)
    if data is None:
        raise RegistriesConfError(f"{path}: the file is too large")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RegistriesConfError(f"{path}: not valid UTF-8") from e


_parsed: ParsedCache[RegistriesConf] = ParsedCache()


def _drop_ins(directory: Path) -> list[Path]:
    try:
        entries = sorted(directory.iterdir())
    except FileNotFoundError:
        return []
    except OSError as e:
        raise RegistriesConfError(f"reading {directory}: {e.strerror}") from e
    return [p for p in entries if p.name.endswith(".conf") and not p.is_dir()]


@attrs.frozen
class RegistriesConf:
    """The merged registries configuration."""

    #: Registry entries, sorted by prefix.
    registries: tuple[Registry, ...] = ()
    #: Registries to try, in order, for a name without a registry host.
    unqualified_search_registries: tuple[str, ...] = ()
    #: Short name -> fully qualified name (None: an alias removed by a later file).
    aliases: Mapping[str, Reference | None] = attrs.field(factory=dict)
    #: ``"enforcing"``, ``"permissive"`` or ``"disabled"`` (None: not set, permissive).
    short_name_mode: str | None = None
    credential_helpers: tuple[str, ...] = ("containers-auth.json",)
    #: The files that were read, in order.
    sources: tuple[Path, ...] = ()

    @classmethod
    def parse(cls, text: str, origin: str = "registries.conf") -> RegistriesConf:
        """Parse one registries.conf text (no drop-ins)."""
        return cls._merge([(_parse_file(text, origin, drop_in=False), None)])

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        drop_in_dirs: Sequence[str | os.PathLike[str]] | None = None,
    ) -> RegistriesConf:
        """Read registries.conf and its drop-ins as containers/image does.

        The main file is ``path``, else ``$CONTAINERS_REGISTRIES_CONF``, else
        ``~/.config/containers/registries.conf`` if it exists, else
        ``/etc/containers/registries.conf`` (a missing default file is empty). Drop-ins
        (``*.conf``, in lexical order, later ones overriding) come from ``drop_in_dirs``,
        else ``~/.config/containers/registries.conf.d`` when the user's file is used,
        else ``/etc/containers/registries.conf.d`` and then the user's directory.
        """
        home = Path.home()
        explicit = path is not None or os.environ.get(_ENV)
        user_file = home / _USER_CONF
        if path is not None:
            main = Path(path)
        elif os.environ.get(_ENV):
            main = Path(os.environ[_ENV])
        elif user_file.exists():
            main = user_file
        else:
            main = SYSTEM_REGISTRIES_CONF
        if drop_in_dirs is not None:
            dirs = [Path(d) for d in drop_in_dirs]
        elif not explicit and main == user_file:
            dirs = [home / _USER_CONF_D]
        else:
            dirs = [SYSTEM_REGISTRIES_CONF_D, home / _USER_CONF_D]
        texts: list[tuple[Path, str, bool]] = []  # path, text, is a drop-in
        try:
            texts.append((main, read_config_text(main), False))
        except FileNotFoundError as e:
            if explicit:
                raise RegistriesConfError(f"cannot read {main}: {e.strerror}") from e
        except OSError as e:
            raise RegistriesConfError(f"cannot read {main}: {e.strerror}") from e
        for directory in dirs:
            for drop_in in _drop_ins(directory):
                try:
                    texts.append((drop_in, read_config_text(drop_in), True))
                except OSError as e:
                    raise RegistriesConfError(f"cannot read {drop_in}: {e.strerror}") from e
        key = tuple((str(path), text, drop_in) for path, text, drop_in in texts)
        cached = _parsed.get(key)
        if cached is not None:
            return cached
        files = [(_parse_file(text, str(path), drop_in=d), path) for path, text, d in texts]
        conf = cls._merge(files)
        _parsed.put(key, conf)
        return conf

    @classmethod
    def _merge(cls, files: Sequence[tuple[_File, Path | None]]) -> RegistriesConf:
        registries: dict[str, Registry] = {}
        search: tuple[str, ...] = ()
        helpers: tuple[str, ...] | None = None
        mode: str | None = None
        aliases: dict[str, Reference | None] = {}
        for file, _ in files:
            # A later file replaces whole entries with the same prefix, and lists it sets.
            registries.update({r.prefix: r for r in file.registries})
            if file.unqualified_search_registries is not None:
                search = file.unqualified_search_registries
            if file.credential_helpers is not None:
                helpers = file.credential_helpers
            if file.short_name_mode is not None:
                mode = file.short_name_mode
            aliases.update(file.aliases)
        return cls(
            registries=tuple(registries[p] for p in sorted(registries)),
            unqualified_search_registries=search,
            aliases=aliases,
            short_name_mode=mode,
            credential_helpers=helpers or ("containers-auth.json",),
            sources=tuple(p for _, p in files if p is not None),
        )

    def find_registry(self, image_name: str | Reference) -> Registry | None:
        """The entry with the longest prefix matching ``image_name``, if any."""
        text = image_name.name if isinstance(image_name, Reference) else image_name
        best: Registry | None = None
        for registry in self.registries:
            if _matching_prefix_length(text, registry.prefix) != -1 and (
                best is None or len(registry.prefix) > len(best.prefix)
            ):
                best = registry
        return best

    def pull_sources(self, reference: str | Reference) -> list[PullSource]:
        """Where to pull ``reference`` from: mirrors in order, the registry itself last.

        Raises :class:`BlockedRegistryError` when the matching entry is blocked.
        """
        ref = reference if isinstance(reference, Reference) else Reference.parse(reference)
        registry = self.find_registry(ref.name)
        if registry is None:
            return [PullSource(Endpoint(ref.domain), ref)]
        if registry.blocked:
            raise BlockedRegistryError(
                f"registry {registry.location or registry.prefix!r} is blocked in "
                f"registries.conf (prefix {registry.prefix!r}); cannot pull {ref}"
            )
        return registry.pull_sources(ref)

    def is_insecure(self, host: str) -> bool:
        """Whether the entry for ``host`` allows plain HTTP and unverified TLS."""
        registry = self.find_registry(host)
        return registry is not None and registry.insecure

    def resolve_alias(self, short_name: str) -> Reference | None:
        """The fully qualified name configured for a short name, if any."""
        return self.aliases.get(short_name)
