"""Reading an image from a registry."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from imagetypes.descriptor import Descriptor
from imagetypes.digest import Digest, Readable
from imagetypes.types import ImageSource, SourceCapabilities, TransportOptions

from ._client import RegistryClient

if TYPE_CHECKING:
    from ._reference import DockerReference

__all__ = ["DockerImageSource"]


class DockerImageSource(ImageSource):
    """An image (or index) in a registry repository, read over the distribution API.

    Blob downloads that break resume with a Range request; several blobs may be read at once.
    """

    def __init__(self, reference: DockerReference, options: TransportOptions | None = None) -> None:
        self._reference = reference
        self._client = RegistryClient(
            reference.registry_host, options, repository=reference.repository
        )
        self._top: tuple[bytes, str] | None = None
        self._lock = threading.Lock()

    @property
    def reference(self) -> DockerReference:
        return self._reference

    @property
    def client(self) -> RegistryClient:
        """The registry client this source reads through."""
        return self._client

    @property
    def capabilities(self) -> SourceCapabilities:
        return SourceCapabilities(concurrent_blob_reads=True, ranged_reads=True)

    def get_manifest(self, instance: Digest | None = None) -> tuple[bytes, str]:
        repo = self._reference.repository
        if instance is not None:
            data, media_type, _ = self._client.get_manifest(repo, str(instance))
            return data, media_type
        with self._lock:
            if self._top is None:
                data, media_type, _ = self._client.get_manifest(repo, self._reference.tag_or_digest)
                self._top = (data, media_type)
            return self._top

    def get_blob_stream(self, descriptor: Descriptor, offset: int = 0) -> Readable:
        return self._client.blob_reader(
            self._reference.repository, descriptor.digest, descriptor.size, offset
        )

    def referrers(
        self, digest: Digest | None = None, artifact_type: str | None = None
    ) -> list[Descriptor]:
        """Manifests that refer to ``digest`` (default: the top manifest) as their subject."""
        if digest is None:
            data, _ = self.get_manifest()
            digest = Digest.from_bytes(data)
        return self._client.referrers(self._reference.repository, digest, artifact_type)

    def close(self) -> None:
        self._client.close()
