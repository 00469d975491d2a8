"""Finding transports: entry-point discovery, lookup by name, and ``transport:details`` parsing."""

from __future__ import annotations

import logging
import threading
from importlib.metadata import EntryPoint, entry_points

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


# Reentrant: loading a plugin may import code that looks a transport up.
_lock = threading.RLock()
_entry_points: dict[str, list[EntryPoint]] | None = None
_loaded: dict[str, list[TransportInfo]] = {}
_runtime: dict[str, TransportInfo] = {}


def _load(ep: EntryPoint) -> Transport:
    obj = ep.load()
    if isinstance(obj, type) and issubclass(obj, Transport):
        obj = obj()
    if not isinstance(obj, Transport):
        raise TypeError(f"{ep.value} is {type(obj).__name__}, not an imagetypes Transport")
    if obj.name != ep.name:
        raise TypeError(f"{ep.value} is named {obj.name!r}, registered as {ep.name!r}")
    return obj


def _origin(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    where = f" ({dist.name} {dist.version})" if dist is not None else ""
    return f"entry point {ep.value}{where}"


def _entry_points_by_name() -> dict[str, list[EntryPoint]]:
    """Every entry point of the group, by name; nothing is imported yet."""
    global _entry_points
    with _lock:
        if _entry_points is None:
            found: dict[str, list[EntryPoint]] = {}
            seen: set[tuple[str, str]] = set()
            for ep in entry_points(group=ENTRY_POINT_GROUP):
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
