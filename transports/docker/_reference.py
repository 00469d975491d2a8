"""``docker://NAME[:TAG|@DIGEST]`` references and the ``docker`` transport."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imagetypes.digest import Digest
from imagetypes.errors import InvalidReferenceError
from imagetypes.reference import Reference
from imagetypes.types import ImageReference, Transport, TransportOptions

if TYPE_CHECKING:
    from ._destination import DockerImageDestination
    from ._registry import DockerRegistry
    from ._source import DockerImageSource

__all__ = ["DockerReference", "DockerTransport", "transport"]


class DockerTransport(Transport):
    """The ``docker:`` transport: images in a registry (``docker://busybox:latest``)."""

    name = "docker"

    def parse_reference(self, text: str) -> DockerReference:
        """Parse ``//NAME[:TAG|@DIGEST]``; a name without tag or digest means ``:latest``."""
        if not text.startswith("//"):
            raise InvalidReferenceError(
                f"invalid docker: reference {text!r}: expected docker://NAME[:TAG|@DIGEST]"
            )
        return DockerReference.parse(text[2:])

    def open_registry(
        self, location: str, options: TransportOptions | None = None
    ) -> DockerRegistry:
        """Open ``docker://HOST[:PORT]`` (or ``HOST[:PORT]``) as a :class:`~imagetypes.Registry`."""
        from ._registry import DockerRegistry

        return DockerRegistry.open(location, options)


#: The transport instance registered under the entry point ``docker``.
transport = DockerTransport()


class DockerReference(ImageReference):
    """An image in a registry: a named reference with a tag or a digest (not both)."""

    def __init__(self, reference: Reference) -> None:
        if reference.tag is not None and reference.digest is not None:
            raise InvalidReferenceError(
                f"invalid docker: reference {reference}: a tag and a digest together are "
                "not supported; use one of them"
            )
        if reference.tag is None and reference.digest is None:
            reference = reference.with_default_tag()
        self._ref = reference

    @classmethod
    def parse(cls, text: str) -> DockerReference:
        """Parse ``NAME[:TAG|@DIGEST]`` (``busybox`` -> ``docker.io/library/busybox:latest``)."""
        return cls(Reference.parse(text))

    @property
    def transport(self) -> DockerTransport:
        return transport

    def string_within_transport(self) -> str:
        return f"//{self._ref}"

    @property
    def docker_reference(self) -> Reference:
        return self._ref

    @property
    def registry_host(self) -> str:
        """The registry as it appears in the name (``docker.io``, ``localhost:5000``)."""
        return self._ref.domain

    @property
    def repository(self) -> str:
        """The repository path (``library/busybox``)."""
        return self._ref.path

    @property
    def tag(self) -> str | None:
        """The tag, when the reference is by tag."""
        return self._ref.tag

    @property
    def digest(self) -> Digest | None:
        """The digest, when the reference is by digest."""
        return self._ref.digest

    @property
    def tag_or_digest(self) -> str:
        """What follows the repository in API paths: the tag, or the digest."""
        digest = self.digest
        if digest is not None:
            return str(digest)
        assert self._ref.tag is not None
        return self._ref.tag

    def open_source(self, options: TransportOptions | None = None) -> DockerImageSource:
        from ._source import DockerImageSource

        return DockerImageSource(self, options)

    def open_destination(self, options: TransportOptions | None = None) -> DockerImageDestination:
        from ._destination import DockerImageDestination

        return DockerImageDestination(self, options)

    def delete(self, options: TransportOptions | None = None) -> None:
        """Delete the manifest (by digest: a tag is resolved first, and every tag of it goes)."""
        from ._mirrors import destination_options
        from ._pool import registry_client

        options = destination_options(self, options or TransportOptions())
        client = registry_client(self.registry_host, options, repository=self.repository)
        with client:
            digest = self.digest
            if digest is None:
                digest = client.head_manifest(self.repository, self.tag_or_digest).digest
            client.delete_manifest(self.repository, digest)
