"""Finding transports: entry-point discovery, lookup by name, and ``transport:details`` parsing."""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
import threading
from collections.abc import Callable
from importlib.machinery import PathFinder

import attrs

from .errors import (
    DuplicateTransportError,
    InvalidReferenceError,
    TransportError,
    UnknownTransportError,
)
from .types import Credentials, ImageReference, Registry, Transport, TransportOptions

__all__ = [
    "ENTRY_POINT_GROUP",
    "TransportInfo",
    "get_transport",
    "list_transports",
    "open_registry",
    "parse_reference",
    "register_transport",
    "reset_transports",
]

#: The entry point group built-in and third-party transports register under.
ENTRY_POINT_GROUP = "imagetypes.transports"

log = logging.getLogger(__name__)


@attrs.frozen
class TransportInfo:
    """A transport and where it came from."""

    name: str
    #: ``entry point <value> (<distribution> <version>)``, or ``registered at runtime``.
    origin: str
    transport: Transport = attrs.field(eq=False, repr=False)


@attrs.frozen
class _EntryPoint:
    """``name = value`` in the group, and a way to name the distribution that declares it."""

    name: str
    value: str
    #: `` (distribution version)``, or ``""`` when unknown; read only when asked for.
    dist_label: Callable[[], str] = attrs.field(eq=False, repr=False)

    def load(self) -> object:
        """Import the object ``module[:attr.attr]`` names (as ``EntryPoint.load`` does)."""
        match = _VALUE.match(self.value)
        if match is None:
            raise ValueError(f"invalid entry point value {self.value!r}")
        obj: object = importlib.import_module(match["module"])
        for attr in filter(None, (match["attr"] or "").split(".")):
            obj = getattr(obj, attr)
        return obj


# The value grammar of importlib.metadata.EntryPoint: module, optional :attr, optional [extras].
_VALUE = re.compile(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$")

# Reentrant: loading a plugin may import code that looks a transport up.
_lock = threading.RLock()
_entry_points: dict[str, list[_EntryPoint]] | None = None
_loaded: dict[str, list[TransportInfo]] = {}
_runtime: dict[str, TransportInfo] = {}


def _start_afresh_after_fork() -> None:
    """In a forked child: a parent's thread that held the lock (importing a plugin, say) does
    not exist here, and would never release it; the tables it guards are whole either way."""
    global _lock
    _lock = threading.RLock()


os.register_at_fork(after_in_child=_start_afresh_after_fork)


def _load(ep: _EntryPoint) -> Transport:
    obj = ep.load()
    if isinstance(obj, type) and issubclass(obj, Transport):
        obj = obj()
    if not isinstance(obj, Transport):
        raise TypeError(f"{ep.value} is {type(obj).__name__}, not an imagetypes Transport")
    if obj.name != ep.name:
        raise TypeError(f"{ep.value} is named {obj.name!r}, registered as {ep.name!r}")
    return obj


def _origin(ep: _EntryPoint) -> str:
    return f"entry point {ep.value}{ep.dist_label()}"


# -- discovery ------------------------------------------------------------------------------------
# Every command looks a transport up, so discovery is part of every command's start-up time.
# importlib.metadata costs tens of milliseconds (its own imports, then a parsed metadata object
# per installed distribution); the common case, distributions in folders on sys.path, is read
# here directly in a few milliseconds: the entry_points.txt of each *.dist-info / *.egg-info
# folder, in sys.path order, the first distribution of a name winning, as importlib.metadata
# does. Anything else that can hold distributions (a zip file or egg on sys.path, an import hook
# that finds distributions) is left to importlib.metadata itself.


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _metadata_label(folder: str) -> str:
    """`` (Name Version)`` from a distribution folder's METADATA (or PKG-INFO) headers."""
    for filename in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(folder, filename), encoding="utf-8", errors="replace") as f:
                headers: dict[str, str] = {}
                for line in f:
                    if not line.strip():
                        break  # the body starts
                    key, sep, value = line.partition(":")
                    if sep:
                        headers.setdefault(key.strip().lower(), value.strip())
        except OSError:
            continue
        if "name" in headers:
            return f" ({headers['name']} {headers.get('version')})"
    return ""


def _group_entries(text: str, group: str) -> list[tuple[str, str]]:
    """``(name, value)`` pairs of ``[group]`` in an entry_points.txt (an ini-like file)."""
    pairs: list[tuple[str, str]] = []
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line.strip("[]").strip()
        elif section == group:
            name, _, value = line.partition("=")
            pairs.append((name.strip(), value.strip()))
    return pairs


def _scan_folders() -> list[_EntryPoint] | None:
    """The group's entry points of the distributions in folders on sys.path, or ``None`` when
    something there needs importlib.metadata (see above)."""
    hooks = [f for f in sys.meta_path if hasattr(f, "find_distributions")]
    if hooks != [PathFinder]:
        return None
    found: list[_EntryPoint] = []
    seen: set[str] = set()
    for entry in sys.path:
        if not isinstance(entry, str):
            return None
        root = entry or "."
        if root.lower().endswith(".egg") or os.path.isfile(root):
            return None  # an egg or a zip file: read by importlib.metadata only
        try:
            children = os.listdir(root)
        except OSError:
            continue  # not there (importlib.metadata skips it too)
        for child in children:
            stem, ext = os.path.splitext(child)
            if ext.lower() not in (".dist-info", ".egg-info"):
                continue
            key = _normalized(stem.partition("-")[0])
            if key in seen:
                continue  # an earlier sys.path entry has this distribution
            seen.add(key)
            folder = os.path.join(root, child)
            try:
                with open(os.path.join(folder, "entry_points.txt"), encoding="utf-8") as f:
                    text = f.read()
            except OSError:
                continue  # no entry points (or an egg-info file)
            if ENTRY_POINT_GROUP not in text:
                continue
            label = _label_reader(folder)
            found += [_EntryPoint(n, v, label) for n, v in _group_entries(text, ENTRY_POINT_GROUP)]
    return found


def _label_reader(folder: str) -> Callable[[], str]:
    return lambda: _metadata_label(folder)


def _scan_metadata() -> list[_EntryPoint]:
    """The group's entry points as importlib.metadata finds them (anywhere it can look)."""
    from importlib.metadata import EntryPoint, entry_points

    def label(ep: EntryPoint) -> Callable[[], str]:
        def read() -> str:
            dist = getattr(ep, "dist", None)
            if dist is None or dist.name is None:  # a folder without METADATA has no name
                return ""
            return f" ({dist.name} {dist.version})"

        return read

    return [
        _EntryPoint(ep.name, ep.value, label(ep)) for ep in entry_points(group=ENTRY_POINT_GROUP)
    ]


def _entry_points_by_name() -> dict[str, list[_EntryPoint]]:
    """Every entry point of the group, by name; nothing is imported yet."""
    global _entry_points
    with _lock:
        if _entry_points is None:
            found: dict[str, list[_EntryPoint]] = {}
            seen: set[tuple[str, str]] = set()
            scanned = _scan_folders()
            for ep in scanned if scanned is not None else _scan_metadata():
                if (ep.name, ep.value) in seen:  # the same distribution seen twice on sys.path
                    continue
                seen.add((ep.name, ep.value))
                found.setdefault(ep.name, []).append(ep)
            _entry_points = found
        return _entry_points


def _infos(name: str) -> list[TransportInfo]:
    """The transports registered under ``name``, imported on first use.

    Plugins are imported only when their name is asked for (as fsspec does), so a copy
    between two layouts does not pay for importing the registry client.
    """
    eps = _entry_points_by_name().get(name, [])
    with _lock:
        if name not in _loaded:
            infos: list[TransportInfo] = []
            for ep in eps:
                try:
                    infos.append(TransportInfo(name, _origin(ep), _load(ep)))
                except Exception as e:
                    # A broken plugin must not take every other transport down with it.
                    log.warning("skipping transport plugin %s = %s: %s", ep.name, ep.value, e)
            _loaded[name] = infos
        return _loaded[name]


def _discover() -> dict[str, list[TransportInfo]]:
    """Every loadable transport, by name (imports them all)."""
    found: dict[str, list[TransportInfo]] = {}
    for name in _entry_points_by_name():
        infos = _infos(name)
        if infos:
            found[name] = infos
    return found


def reset_transports() -> None:
    """Forget discovered and runtime-registered transports (discovery runs again on next use)."""
    global _entry_points
    with _lock:
        _entry_points = None
        _loaded.clear()
        _runtime.clear()


def register_transport(transport: Transport, *, replace: bool = False) -> None:
    """Register a transport from code (tests, notebooks) rather than by entry point.

    Raises :class:`DuplicateTransportError` if the name is taken, unless ``replace``.
    """
    if not isinstance(transport, Transport):
        raise TransportError(f"{transport!r} is not an imagetypes Transport")
    if not replace and transport.name in _available_names():
        raise DuplicateTransportError(f"a transport named {transport.name!r} is already installed")
    with _lock:
        _runtime[transport.name] = TransportInfo(transport.name, "registered at runtime", transport)


def _available_names() -> set[str]:
    return set(_discover()) | set(_runtime)


def list_transports() -> list[TransportInfo]:
    """Every installed transport, sorted by name. A name claimed twice appears twice."""
    found = _discover()
    out: list[TransportInfo] = []
    for name in sorted(set(found) | set(_runtime)):
        if name in _runtime:
            out.append(_runtime[name])
        else:
            out.extend(found[name])
    return out


def get_transport(name: str) -> Transport:
    """The transport with that name.

    Raises :class:`UnknownTransportError` (naming the known ones) if none is installed, and
    :class:`DuplicateTransportError` if two plugins claim the name.
    """
    if name in _runtime:
        return _runtime[name].transport
    infos = _infos(name)
    if not infos:
        known = ", ".join(sorted(set(_entry_points_by_name()) | set(_runtime))) or "none"
        raise UnknownTransportError(f"unknown transport {name!r} (known transports: {known})")
    if len(infos) > 1:
        origins = "; ".join(i.origin for i in infos)
        raise DuplicateTransportError(f"transport {name!r} is registered twice: {origins}")
    return infos[0].transport


def parse_reference(text: str) -> ImageReference:
    """Parse ``transport:details`` (``oci:./layout:1.0``, ``docker://busybox``)."""
    if not isinstance(text, str):
        raise InvalidReferenceError(f"a reference must be a string, not {type(text).__name__}")
    name, sep, details = text.partition(":")
    if not sep or not name:
        raise InvalidReferenceError(
            f"invalid reference {text!r}: expected transport:details, e.g. oci:./layout:tag"
        )
    return get_transport(name).parse_reference(details)


def open_registry(
    location: str,
    *,
    tls_verify: bool | None = None,
    cert_dir: str | None = None,
    credentials: Credentials | None = None,
    authfile: str | None = None,
    options: TransportOptions | None = None,
) -> Registry:
    """Open a collection of repositories: ``docker://HOST[:PORT]`` or ``transport:location``.

    A bare ``HOST[:PORT]`` means the docker transport. The keyword arguments override the
    matching fields of ``options`` (``None`` keeps the options' value; TLS is verified by
    default). The transport is given the location without its ``transport:`` (or
    ``transport://``) prefix.
    """
    if not isinstance(location, str) or not location:
        raise InvalidReferenceError(f"invalid registry location {location!r}")
    name, sep, details = location.partition(":")
    if not sep or (details.isdigit() and name not in _available_names()):
        name, details = "docker", location  # HOST or HOST:PORT
    details = details.removeprefix("//")
    opts = options or TransportOptions()
    opts = attrs.evolve(
        opts,
        tls_verify=opts.tls_verify if tls_verify is None else tls_verify,
        cert_dir=cert_dir if cert_dir is not None else opts.cert_dir,
        credentials=credentials if credentials is not None else opts.credentials,
        authfile=authfile if authfile is not None else opts.authfile,
    )
    return get_transport(name).open_registry(details, opts)
