"""Reading an image from a registry."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from imagetypes.descriptor import Descriptor
from imagetypes.digest import Digest, Readable
from imagetypes.image import manifest_digest
from imagetypes.types import ImageSource, SourceCapabilities, TransportOptions

from ._client import RegistryClient
from ._mirrors import open_pull_endpoint
from ._signatures import (
    SignatureStorage,
    load_registries_d,
    read_lookaside,
    read_sigstore_attachments,
)

if TYPE_CHECKING:
    from ._reference import DockerReference

__all__ = ["DockerImageSource"]


class DockerImageSource(ImageSource):
    """An image (or index) in a registry repository, read over the distribution API.

    Blob downloads that break resume with a Range request; several blobs may be read at once.
    """

    def __init__(self, reference: DockerReference, options: TransportOptions | None = None) -> None:
        self._reference = reference
        self._options = options or TransportOptions()
        # registries.conf: blocking, rewriting and mirrors choose where the pull goes.
        endpoint = open_pull_endpoint(reference, self._options)
        self._physical = endpoint.physical
        self._client = endpoint.client
        self._top: tuple[bytes, str] | None = endpoint.top
        self._lock = threading.Lock()
        try:
            registries_d = load_registries_d(self._options)
        except BaseException:
            self._client.close()
            raise
        self._signature_storage = SignatureStorage.for_reading(
            self._physical.docker_reference, registries_d
        )

    @property
    def reference(self) -> DockerReference:
        return self._reference

    @property
    def client(self) -> RegistryClient:
        """The registry client this source reads through."""
        return self._client

    @property
    def physical_reference(self) -> DockerReference:
        """Where the image is read from: a mirror, the rewritten location, or the reference."""
        return self._physical

    @property
    def signature_storage(self) -> SignatureStorage:
        """Where :meth:`get_signatures` looks (lookaside URL, sigstore attachments)."""
        return self._signature_storage

    @property
    def capabilities(self) -> SourceCapabilities:
        return SourceCapabilities(concurrent_blob_reads=True, ranged_reads=True)

    def get_manifest(self, instance: Digest | None = None) -> tuple[bytes, str]:
        repo = self._physical.repository
        if instance is not None:
            data, media_type, _ = self._client.get_manifest(repo, str(instance))
            return data, media_type
        with self._lock:
            if self._top is None:
                data, media_type, _ = self._client.get_manifest(repo, self._physical.tag_or_digest)
                self._top = (data, media_type)
            return self._top

    def get_blob_stream(self, descriptor: Descriptor, offset: int = 0) -> Readable:
        return self._client.blob_reader(
            self._physical.repository, descriptor.digest, descriptor.size, offset
        )

    def get_signatures(self, instance: Digest | None = None) -> list[bytes]:
        """Signatures from lookaside storage, then sigstore attachments (when enabled).

        Per registries.d for the place the image is read from; with no lookaside configured,
        containers/image's default directory is read.
        """
        digest = self._signed_digest(instance)
        storage = self._signature_storage
        found: list[bytes] = []
        if storage.lookaside is not None:
            found += read_lookaside(storage.lookaside, digest, self._client.options)
        if storage.use_sigstore_attachments:
            found += read_sigstore_attachments(self._client, self._physical.repository, digest)
        return found

    def _signed_digest(self, instance: Digest | None) -> Digest:
        if instance is not None:
            return instance
        digest = self._physical.digest
        if digest is not None and digest.algorithm == "sha256":
            return digest
        data, _ = self.get_manifest()
        return manifest_digest(data)

    def referrers(
        self, digest: Digest | None = None, artifact_type: str | None = None
    ) -> list[Descriptor]:
        """Manifests that refer to ``digest`` (default: the top manifest) as their subject."""
        if digest is None:
            data, _ = self.get_manifest()
            digest = Digest.from_bytes(data)
        return self._client.referrers(self._physical.repository, digest, artifact_type)

    def close(self) -> None:
        self._client.close()
