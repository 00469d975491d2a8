"""A registry as a collection of repositories: catalog, tags, search."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from imagetypes.errors import InvalidReferenceError
from imagetypes.reference import Reference
from imagetypes.types import Registry, Repository, TransportOptions

from ._client import RegistryClient
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


class DockerRegistry(Registry):
    """A registry server: its catalog, its repositories, and search where it has one."""

    def __init__(self, host: str, options: TransportOptions | None = None) -> None:
        self.host = host
        self.options = options or TransportOptions()
        self._client = RegistryClient(host, self.options)
        page = self.options.extra.get(PAGE_SIZE_OPTION)
        self.page_size: int | None = int(page) if page else None

    @classmethod
    def open(cls, location: str, options: TransportOptions | None = None) -> DockerRegistry:
        """Open ``docker://HOST[:PORT]`` or ``HOST[:PORT]``."""
        return cls(parse_registry_location(location), options)

    @property
    def client(self) -> RegistryClient:
        """The registry client used for the catalog, tags and search."""
        return self._client

    def __repr__(self) -> str:
        return f"<DockerRegistry {self.host}>"

    def repositories(self) -> Iterator[str]:
        return self._client.catalog(self.page_size)

    def repository(self, name: str) -> DockerRepository:
        # Parse through the name grammar, so "busybox" on docker.io becomes "library/busybox".
        ref = Reference.parse(f"{self.host}/{name}")
        if ref.tag is not None or ref.digest is not None:
            raise InvalidReferenceError(f"invalid repository name {name!r}: it has a tag or digest")
        return DockerRepository(self, ref)

    def search(self, term: str) -> Iterator[Mapping[str, Any]]:
        return self._client.search(term)

    def close(self) -> None:
        self._client.close()


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
        return self._registry.client.tags(self._name.path, self._registry.page_size)

    def reference(self, tag_or_digest: str) -> DockerReference:
        sep = "@" if ":" in tag_or_digest else ":"
        return DockerReference.parse(f"{self._name.domain}/{self._name.path}{sep}{tag_or_digest}")
