"""Writing an image to a registry."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from imagetypes import mediatypes as mt
from imagetypes.descriptor import BlobInfo, Descriptor
from imagetypes.digest import Digest, Readable, verify_stream
from imagetypes.errors import DigestMismatchError, ImageError, NotFoundError
from imagetypes.image import manifest_digest
from imagetypes.types import (
    DestinationCapabilities,
    ImageDestination,
    ImageReference,
    PutBlobOptions,
    TransportOptions,
)

from ._client import MAX_MANIFEST_SIZE, RegistryClient, referrers_tag
from ._errors import (
    AccessDeniedError,
    AuthenticationError,
    RegistryError,
    RegistryUnsupportedError,
)
from ._mirrors import destination_options
from ._pool import registry_client
from ._signatures import SignatureStorage, check_writable, load_registries_d, write_signatures

if TYPE_CHECKING:
    from imagetypes.reference import Reference

    from ._reference import DockerReference

__all__ = ["MOUNT_FROM_OPTION", "DockerImageDestination"]

log = logging.getLogger(__name__)

#: ``TransportOptions.extra`` key: repositories (names, or references on the same registry) to
#: try mounting blobs from before uploading them.
MOUNT_FROM_OPTION = "docker.mount_from"

# Signed schema 1 last: written only when asked for (format v2s1), since most registries refuse
# it (distribution 2.8 unless its config has compatibility: schema1: enabled: true).
_MANIFEST_TYPES = (
    mt.OCI_MANIFEST,
    mt.DOCKER_MANIFEST,
    mt.OCI_INDEX,
    mt.DOCKER_MANIFEST_LIST,
    mt.DOCKER_SCHEMA1_SIGNED_MANIFEST,
)


class DockerImageDestination(ImageDestination):
    """Writes an image to a registry repository.

    Blobs are uploaded as they come (a registry keeps them invisible until a manifest refers to
    them); instance manifests are stored by digest; the top manifest is held back and stored
    under the tag (or digest) only by :meth:`commit`, so closing without commit leaves the tag
    as it was.

    Before uploading a blob, :meth:`try_reusing_blob` checks whether the repository has it and
    tries to mount it from the repositories given by :meth:`add_mount_source` or the
    ``docker.mount_from`` option (from the copy's own source repository, when it is on this
    registry, first of all: see :meth:`try_reusing_blob`).
    """

    def __init__(self, reference: DockerReference, options: TransportOptions | None = None) -> None:
        self._reference = reference
        # registries.conf: a blocked registry is refused, an insecure one needs no TLS check.
        self._options = destination_options(reference, options or TransportOptions())
        self._signature_storage = SignatureStorage.for_writing(
            reference.docker_reference, load_registries_d(self._options)
        )
        # Signatures staged per manifest (None: the top one); a later call replaces them.
        self._signatures: dict[Digest | None, list[bytes]] = {}
        self._client = registry_client(
            reference.registry_host, self._options, repository=reference.repository
        )
        self._lock = threading.Lock()
        self._mount_sources: list[str] = []
        # The copy's source, when it is another repository of this registry (note_source).
        self._source_repository: str | None = None
        # Whether to mount from it before asking for the blob; off once the registry did not.
        self._mount_first = True
        # Sources the registry refused our credentials for: not tried again.
        self._refused: set[str] = set()
        self._top: tuple[bytes, str] | None = None
        self._committed = False
        for source in _as_list(self._options.extra.get(MOUNT_FROM_OPTION) or ()):
            self.add_mount_source(source)

    @property
    def reference(self) -> DockerReference:
        return self._reference

    @property
    def client(self) -> RegistryClient:
        """The registry client this destination writes through."""
        return self._client

    @property
    def capabilities(self) -> DestinationCapabilities:
        return DestinationCapabilities(
            manifest_types=_MANIFEST_TYPES,
            concurrent_blob_writes=True,
            accepts_foreign_layers=True,
            supports_signatures=self._signature_storage.can_write,
        )

    @property
    def signature_storage(self) -> SignatureStorage:
        """Where :meth:`put_signatures` writes (lookaside URL, sigstore attachments)."""
        return self._signature_storage

    @property
    def mount_sources(self) -> tuple[str, ...]:
        """The repositories of this registry blobs are mounted from, in the order tried."""
        with self._lock:
            return tuple(self._mount_sources)

    def note_source(self, reference: ImageReference) -> None:
        """Mount blobs from the source repository when it is on this registry."""
        if self.add_mount_source(reference) and reference.docker_reference is not None:
            self._source_repository = reference.docker_reference.path

    def add_mount_source(self, source: str | Reference | ImageReference) -> bool:
        """Try mounting blobs from ``source`` before uploading them.

        ``source`` is a repository name on this registry, or a reference (``Reference`` or a
        ``docker://`` image reference). Returns ``False`` (and ignores it) when the source is
        on another registry, where a mount cannot work.
        """
        if isinstance(source, ImageReference):
            named = source.docker_reference
            if named is None or source.transport.name != "docker":
                return False
            source = named
        if isinstance(source, str):
            repository = source
        else:
            if source.domain != self._reference.docker_reference.domain:
                return False
            repository = source.path
        if repository == self._reference.repository:
            return False
        with self._lock:
            if repository not in self._mount_sources:
                self._mount_sources.append(repository)
        return True

    def note_blob_locations(self, digest: Digest, references: Iterable[ImageReference]) -> None:
        """Learn where a blob was seen (the copy engine's blob-info cache): mount from there."""
        for reference in references:
            self.add_mount_source(reference)

    def has_manifest(self, digest: Digest) -> bool:
        """Whether the reference already points at the manifest ``digest`` (one HEAD, none
        for a tag a run's first look found absent)."""
        ref = self._reference
        if ref.digest is None and ref.tag is not None:
            if self._client.surely_untagged(ref.repository, ref.tag):
                return False
        elif self._client.surely_new_repository(ref.repository):
            return False  # by digest, into a repository that did not exist
        try:
            info = self._client.head_manifest(
                self._reference.repository, self._reference.tag_or_digest
            )
        except (NotFoundError, AccessDeniedError):
            return False  # no such tag or repository (or no right to look): write it
        return info.digest == digest

    def try_reusing_blob(self, info: BlobInfo) -> Descriptor | None:
        """The blob's descriptor here if it is here, or once mounted here; else ``None``.

        A blob this run put or found here is known without a request. When the copy's source
        is another repository of this registry, which holds the blob, a mount from it comes
        first: one request that leaves the blob here whether or not it was here already,
        where asking first (the ``HEAD`` containers/image sends) makes that two. After a
        registry did not mount from there, blobs are asked for first again. Then the blob is
        asked for (not in a repository the run found new), then mounted from the other
        sources. A mount the registry refuses our credentials for (they may write here and not
        read there) is not an error: the blob is uploaded instead, as skopeo does, and that
        source is not tried again.
        """
        digest = info.digest
        if digest is None:
            return None
        repo = self._reference.repository
        known = self._client.known_blob_size(repo, digest)
        if known is not None:
            return _descriptor(info, digest, known)
        first = self._source_repository if self._mount_first else None
        if first is not None:
            if self._mount(repo, digest, first, info.size):
                return self._mounted(info, digest)
            self._mount_first = False
        if not self._client.surely_absent_blob(repo, digest):
            size = self._client.blob_size(repo, digest)
            if size is not None:
                return _descriptor(info, digest, size)
        for source in self.mount_sources:
            if source != first and self._mount(repo, digest, source, info.size):
                return self._mounted(info, digest)
        return None

    def _mount(self, repository: str, digest: Digest, source: str, size: int | None) -> bool:
        with self._lock:
            if source in self._refused:
                return False
        try:
            return self._client.mount_blob(repository, digest, source, size)
        except (AuthenticationError, AccessDeniedError) as e:
            log.debug("not mounting from %s (%s): uploading instead", source, e)
            with self._lock:
                self._refused.add(source)
            return False

    def _mounted(self, info: BlobInfo, digest: Digest) -> Descriptor:
        if info.size is not None:
            return _descriptor(info, digest, info.size)
        return _descriptor(info, digest, self._client.blob_size(self._reference.repository, digest))

    def put_blob(
        self, stream: Readable, info: BlobInfo, options: PutBlobOptions | None = None
    ) -> Descriptor:
        reader = verify_stream(stream, info.digest, info.size)
        size = info.size if info.size is not None and info.size >= 0 else None
        digest, written = self._client.upload_blob(self._reference.repository, reader, size)
        return Descriptor(info.media_type, digest, written)

    def put_manifest(
        self, manifest: bytes, media_type: str, instance: Digest | None = None
    ) -> None:
        if len(manifest) > MAX_MANIFEST_SIZE:
            from imagetypes.errors import ManifestTooLargeError

            raise ManifestTooLargeError(
                f"a manifest of {len(manifest)} bytes is over the {MAX_MANIFEST_SIZE} byte limit"
            )
        if instance is not None:
            instance.verify(manifest)
            self._put(str(instance), manifest, media_type)
            return
        wanted = self._reference.digest
        if wanted is not None:
            actual = Digest.from_bytes(manifest, wanted.algorithm)
            if actual != wanted:
                raise DigestMismatchError(
                    f"{self._reference}: the manifest written has digest {actual}",
                    expected=wanted,
                    actual=actual,
                )
        with self._lock:
            self._top = (bytes(manifest), media_type)

    def put_signatures(self, signatures: Sequence[bytes], instance: Digest | None = None) -> None:
        """Stage signatures; :meth:`commit` stores them after the manifest.

        Sigstore signatures become sigstore attachments, others go to lookaside storage, as
        registries.d configures them; what cannot be stored is refused here, before commit.
        """
        blobs = [bytes(s) for s in signatures]
        if not blobs:
            return
        check_writable(self._signature_storage, blobs, str(self._reference))
        with self._lock:
            if instance is None and self._top is None:
                raise ImageError(
                    f"{self._reference}: put_signatures before put_manifest: the manifest "
                    "digest the signatures belong to is not known"
                )
            self._signatures[instance] = blobs

    def commit(self) -> None:
        with self._lock:
            top = self._top
        if top is None:
            raise ImageError(f"{self._reference}: commit without a manifest")
        self._put(self._reference.tag_or_digest, top[0], top[1])
        self._committed = True
        for instance, blobs in self._signatures.items():
            digest = instance if instance is not None else manifest_digest(top[0])
            write_signatures(
                self._signature_storage, self._client, self._reference.repository, digest, blobs
            )

    def _put(self, reference: str, manifest: bytes, media_type: str) -> None:
        repo = self._reference.repository
        try:
            digest, headers = self._client.put_manifest(repo, reference, manifest, media_type)
        except RegistryError as e:
            if media_type == mt.DOCKER_SCHEMA1_SIGNED_MANIFEST and _refuses_schema1(e):
                raise RegistryUnsupportedError(
                    f"{self._reference}: the registry refused the Docker schema 1 manifest "
                    f"({e}); most registries no longer accept schema 1 (the distribution "
                    "registry only with 'compatibility: schema1: enabled: true' in its "
                    "config): write schema 2 or OCI instead (format v2s2 or oci)",
                    status=e.status,
                    errors=e.errors,
                ) from e
            raise
        subject = _subject(manifest)
        if subject is not None and "oci-subject" not in headers:
            # No referrers API: keep the OCI 1.1 fallback tag's index up to date.
            self._add_fallback_referrer(subject, manifest, media_type, digest)

    def _add_fallback_referrer(
        self, subject: Digest, manifest: bytes, media_type: str, digest: Digest
    ) -> None:
        repo = self._reference.repository
        entry: dict[str, Any] = {
            "mediaType": media_type,
            "digest": str(digest),
            "size": len(manifest),
        }
        obj = json.loads(manifest)
        artifact_type = obj.get("artifactType") or (obj.get("config") or {}).get("mediaType")
        if isinstance(artifact_type, str) and artifact_type:
            entry["artifactType"] = artifact_type
        if isinstance(obj.get("annotations"), dict) and obj["annotations"]:
            entry["annotations"] = obj["annotations"]
        tag = referrers_tag(subject)
        try:
            data, _, _ = self._client.get_manifest(repo, tag, accept=[mt.OCI_INDEX])
            index = json.loads(data)
        except NotFoundError:
            index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
        manifests = [m for m in index.get("manifests", []) if m.get("digest") != str(digest)]
        manifests.append(entry)
        index["manifests"] = manifests
        body = json.dumps(index, separators=(",", ":")).encode()
        self._client.put_manifest(repo, tag, body, mt.OCI_INDEX)

    def close(self) -> None:
        self._client.close()


def _descriptor(info: BlobInfo, digest: Digest, size: int | None) -> Descriptor:
    if size is None or size < 0:
        size = info.size if info.size is not None and info.size >= 0 else 0
    return Descriptor(info.media_type, digest, size)


def _refuses_schema1(error: RegistryError) -> bool:
    """Whether a failed schema 1 PUT reads as "schema 1 is not accepted here" (distribution
    2.8 answers 500 UNKNOWN; others MANIFEST_INVALID or UNSUPPORTED)."""
    return error.status == 500 or bool(
        {"MANIFEST_INVALID", "UNSUPPORTED", "UNKNOWN"} & set(error.codes)
    )


def _subject(manifest: bytes) -> Digest | None:
    try:
        obj = json.loads(manifest)
    except ValueError:
        return None
    subject = obj.get("subject") if isinstance(obj, dict) else None
    if not isinstance(subject, dict) or not isinstance(subject.get("digest"), str):
        return None
    try:
        return Digest.parse(subject["digest"])
    except ImageError:
        return None


def _as_list(value: Iterable[str] | str) -> list[str]:
    return [value] if isinstance(value, str) else list(value)
