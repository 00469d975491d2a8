"""registries.conf for the ``docker:`` transport: blocking, insecure registries, location
rewriting and pull mirrors (containers-registries.conf(5)).

Pulls go to the mirrors that apply to the reference, in order, and to the (possibly
rewritten) registry last; the first endpoint that has the manifest serves the whole pull.
Pushes and deletions never use mirrors or rewriting (as containers/image: "redirection and
mirrors are processed only when reading images"), but blocking and ``insecure`` apply.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import attrs

from imagetypes.errors import ImageError
from imagetypes.trust import BlockedRegistryError, PullSource, RegistriesConf
from imagetypes.types import TransportOptions

from ._client import RegistryClient
from ._pool import registry_client, run_configuration

if TYPE_CHECKING:
    from ._reference import DockerReference

__all__ = [
    "REGISTRIES_CONF_OPTION",
    "PullEndpoint",
    "destination_options",
    "load_registries_conf",
    "open_pull_endpoint",
]

log = logging.getLogger(__name__)

#: ``TransportOptions.extra`` key: the registries.conf to use, a path or a
#: :class:`~imagetypes.trust.RegistriesConf` (default: ``$CONTAINERS_REGISTRIES_CONF``, else the
#: user's or the system's file, with drop-ins).
REGISTRIES_CONF_OPTION = "docker.registries_conf"


def load_registries_conf(options: TransportOptions) -> RegistriesConf:
    """The registries configuration ``options`` asks for (see :data:`REGISTRIES_CONF_OPTION`)."""
    return run_configuration(options, REGISTRIES_CONF_OPTION, RegistriesConf, RegistriesConf.load)


def _with_insecure(options: TransportOptions, insecure: bool) -> TransportOptions:
    # An explicit tls_verify wins over registries.conf, as skopeo's --tls-verify does.
    if insecure and options.tls_verify is None:
        return attrs.evolve(options, tls_verify=False)
    return options


def destination_options(reference: DockerReference, options: TransportOptions) -> TransportOptions:
    """The options to write to (or delete from) ``reference`` with.

    Raises :class:`~imagetypes.trust.BlockedRegistryError` when registries.conf blocks the
    registry; an ``insecure`` entry turns off TLS verification unless ``tls_verify`` is set.
    """
    conf = load_registries_conf(options)
    ref = reference.docker_reference
    entry = conf.find_registry(ref.name)
    if entry is None:
        return options
    if entry.blocked:
        raise BlockedRegistryError(
            f"registry {entry.location or entry.prefix!r} is blocked in registries.conf "
            f"(prefix {entry.prefix!r}); cannot write {ref}"
        )
    return _with_insecure(options, entry.insecure)


@attrs.frozen
class PullEndpoint:
    """Where a pull goes: the endpoint chosen, the image's name there and a client for it."""

    source: PullSource
    #: The image's name at the endpoint (the mirror's, or the rewritten location's).
    physical: DockerReference
    client: RegistryClient
    #: The top manifest (bytes, media type) when it was already read to choose the endpoint.
    top: tuple[bytes, str] | None = None


def _endpoint_options(
    logical: DockerReference, source: PullSource, options: TransportOptions
) -> TransportOptions:
    if source.reference.domain != logical.docker_reference.domain:
        # Credentials given for the registry are not meant for another host.
        options = attrs.evolve(options, credentials=None, registry_token=None)
    return _with_insecure(options, source.endpoint.insecure)


def open_pull_endpoint(reference: DockerReference, options: TransportOptions) -> PullEndpoint:
    """Choose the endpoint a pull of ``reference`` uses, per registries.conf.

    With one candidate (no mirror applies) nothing is contacted yet. With several, each is
    asked for the top manifest in turn; the first that has it is chosen. When all fail, the
    error of the registry itself (the last candidate) is raised, its message naming what
    went wrong with each mirror.
    """
    from ._reference import DockerReference

    conf = load_registries_conf(options)
    sources = conf.pull_sources(reference.docker_reference)
    if len(sources) == 1:
        source = sources[0]
        physical = DockerReference(source.reference)
        client = registry_client(
            physical.registry_host,
            _endpoint_options(reference, source, options),
            repository=physical.repository,
        )
        return PullEndpoint(source, physical, client)
    failures: list[tuple[PullSource, ImageError]] = []
    for source in sources:
        physical = DockerReference(source.reference)
        log.debug("trying to pull %s from %s", reference, physical)
        client = registry_client(
            physical.registry_host,
            _endpoint_options(reference, source, options),
            repository=physical.repository,
        )
        try:
            data, media_type, _ = client.get_manifest(physical.repository, physical.tag_or_digest)
        except ImageError as e:
            client.close()
            log.debug("pulling %s from %s failed: %s", reference, physical, e)
            failures.append((source, e))
            continue
        return PullEndpoint(source, physical, client, (data, media_type))
    _, primary = failures[-1]
    others = "; ".join(f"[{s.reference}: {e}]" for s, e in failures[:-1])
    # Keep the registry's typed error (callers catch NotFoundError etc.), with the mirrors'
    # failures in its message.
    primary.args = (f"{primary} (mirrors also failed: {others})", *primary.args[1:])
    raise primary
