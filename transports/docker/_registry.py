"""A registry as a collection of repositories: catalog, tags, search.

registries.conf applies as it does to pulls: a blocked registry (or repository) raises
:class:`~imagetypes.trust.BlockedRegistryError`, an ``insecure`` entry turns off TLS
verification unless ``tls_verify`` is set, and a ``location`` that rewrites a name is where
the catalog, the tags and search are asked for. Mirrors are not used for browsing: a mirror may
hold only some of the images, and a tag list taken from it would not be the registry's.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from imagetypes.errors import InvalidReferenceError
from imagetypes.reference import Reference
from imagetypes.trust import BlockedRegistryError, RegistriesConf
from imagetypes.types import Registry, Repository, TransportOptions

from ._client import RegistryClient
from ._mirrors import load_registries_conf
from ._pool import client_pool, registry_client
from ._reference import DockerReference

__all__ = ["PAGE_SIZE_OPTION", "DockerRegistry", "DockerRepository", "parse_registry_location"]

#: ``TransportOptions.extra`` key: how many tags or repositories to ask for per page.
PAGE_SIZE_OPTION = "docker.page_size"


def parse_registry_location(location: str) -> str:
    """``docker://HOST[:PORT]`` or ``HOST[:PORT]`` -> ``HOST[:PORT]``."""
    host = location
    if host.startswith("docker://"):
        host = host[len("docker://") :]
    host = host.rstrip("/")
    if not host or "/" in host or "@" in host or any(c.isspace() for c in host):
        raise InvalidReferenceError(
            f"invalid registry location {location!r}: expected docker://HOST[:PORT]"
        )
    return host


def _blocked(prefix: str, location: str, what: str) -> BlockedRegistryError:
    return BlockedRegistryError(
        f"registry {location or prefix!r} is blocked in registries.conf (prefix {prefix!r}); "
        f"cannot list {what}"
    )


def _endpoint_options(
    options: TransportOptions, logical_host: str, physical_host: str, insecure: bool
) -> TransportOptions:
    if physical_host != logical_host:
        # Credentials given for the registry are not meant for another host.
        options = attrs.evolve(options, credentials=None, registry_token=None)
    if insecure and options.tls_verify is None:
        # An explicit tls_verify wins over registries.conf, as skopeo's --tls-verify does.
        options = attrs.evolve(options, tls_verify=False)
    return options


class DockerRegistry(Registry):
    """A registry server: its catalog, its repositories, and search where it has one.

    registries.conf (``TransportOptions.extra["docker.registries_conf"]``, else the user's or
    the system's) is honoured as for pulls; see the module's documentation.
    """

    def __init__(self, host: str, options: TransportOptions | None = None) -> None:
        self.host = host
        self.options = options or TransportOptions()
        self._conf: RegistriesConf = load_registries_conf(self.options)
        #: Where the catalog is asked for: ``host`` or the location registries.conf gives it,
        #: and the namespace (path) under which that location keeps ``host``'s repositories.
        self.location, self._namespace, self._client_options = self._registry_endpoint()
        # Made on first use: listing one repository's tags from a run's pool never needs it.
        self._catalog_client: RegistryClient | None = None
        self._clients: dict[tuple[str, str], RegistryClient] = {}
        self._lock = threading.Lock()
        page = self.options.extra.get(PAGE_SIZE_OPTION)
        self.page_size: int | None = int(page) if page else None

    def _registry_endpoint(self) -> tuple[str, str, TransportOptions]:
        entry = self._conf.find_registry(self.host)
        if entry is None:
            return self.host, "", self.options
        if entry.blocked:
            raise _blocked(entry.prefix, entry.location, f"the repositories of {self.host}")
        location = self.host
        if entry.location and entry.prefix == self.host:
            # The whole registry is rewritten, perhaps into a namespace of another one.
            location = entry.location
        physical, _, namespace = location.partition("/")
        options = _endpoint_options(self.options, self.host, physical, entry.insecure)
        return physical, namespace, options

    @classmethod
    def open(cls, location: str, options: TransportOptions | None = None) -> DockerRegistry:
        """Open ``docker://HOST[:PORT]`` or ``HOST[:PORT]``."""
        return cls(parse_registry_location(location), options)

    @property
    def client(self) -> RegistryClient:
        """The registry client used for the catalog and search (at the rewritten location)."""
        return self._client

    @property
    def _client(self) -> RegistryClient:
        with self._lock:
            if self._catalog_client is None:
                self._catalog_client = registry_client(self.location, self._client_options)
            return self._catalog_client

    def __repr__(self) -> str:
        if self.location != self.host:
            return f"<DockerRegistry {self.host} at {self.location}>"
        return f"<DockerRegistry {self.host}>"

    def repositories(self) -> Iterator[str]:
        names = self._client.catalog(self.page_size)
        if not self._namespace:
            return names
        prefix = self._namespace + "/"
        # Only the repositories under the namespace belong to this registry, named without it.
        return (name[len(prefix) :] for name in names if name.startswith(prefix))

    def repository(self, name: str) -> DockerRepository:
        # Parse through the name grammar, so "busybox" on docker.io becomes "library/busybox".
        ref = Reference.parse(f"{self.host}/{name}")
        if ref.tag is not None or ref.digest is not None:
            raise InvalidReferenceError(f"invalid repository name {name!r}: it has a tag or digest")
        return DockerRepository(self, ref)

    def _physical(self, logical: Reference) -> tuple[RegistryClient, str]:
        """The client and repository path that serve ``logical``'s tags, per registries.conf."""
        entry = self._conf.find_registry(logical.name)
        if entry is None:
            if client_pool(self.options) is not None:
                # The client the run's sources of this repository will use: one ping for both.
                client = registry_client(logical.domain, self.options, repository=logical.path)
                return self._keep(logical.domain, logical.path, client), logical.path
            return self._client, logical.path
        if entry.blocked:
            raise _blocked(entry.prefix, entry.location, f"the tags of {logical.name}")
        # The registry itself (the last pull source), never a mirror.
        physical = self._conf.pull_sources(logical)[-1].reference
        if physical.domain == self.location and entry.insecure == self._insecure_here():
            return self._client, physical.path
        with self._lock:
            kept = self._clients.get((physical.domain, physical.path))
        if kept is not None:
            return kept, physical.path
        options = _endpoint_options(self.options, logical.domain, physical.domain, entry.insecure)
        client = registry_client(physical.domain, options, repository=physical.path)
        return self._keep(physical.domain, physical.path, client), physical.path

    def _keep(self, domain: str, path: str, client: RegistryClient) -> RegistryClient:
        """Keep ``client`` for ``domain/path`` (closed with the registry); the one already
        kept, if another thread was first."""
        with self._lock:
            kept = self._clients.setdefault((domain, path), client)
        if kept is not client:
            client.close()
        return kept

    def _insecure_here(self) -> bool:
        entry = self._conf.find_registry(self.host)
        return entry is not None and entry.insecure

    def search(self, term: str) -> Iterator[Mapping[str, Any]]:
        return self._client.search(term)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
            if self._catalog_client is not None:
                clients.append(self._catalog_client)
                self._catalog_client = None
        for client in clients:
            client.close()


class DockerRepository(Repository):
    """One repository of a :class:`DockerRegistry`."""

    def __init__(self, registry: DockerRegistry, name: Reference) -> None:
        self._registry = registry
        self._name = name

    @property
    def name(self) -> str:
        return self._name.path

    def __repr__(self) -> str:
        return f"<DockerRepository {self._name.domain}/{self._name.path}>"

    def tags(self) -> Iterator[str]:
        client, path = self._registry._physical(self._name)
        return client.tags(path, self._registry.page_size)

    def reference(self, tag_or_digest: str) -> DockerReference:
        sep = "@" if ":" in tag_or_digest else ":"
        return DockerReference.parse(f"{self._name.domain}/{self._name.path}{sep}{tag_or_digest}")
