"""Random but reproducible images and indexes, for tests.

:func:`random_image` builds a valid image (gzipped tar layers of random content, a config whose
``diff_ids`` match them, and a manifest) from a seed: the same arguments always give the same
bytes, hence the same digests. :func:`random_index` builds a multi-platform index over such
images. Both can be written to any destination (:meth:`RandomImage.write_to`, through the
destination API) or read through an in-memory source (:meth:`RandomImage.as_source`)::

    image = random_image(seed=1, layers=3)
    image.write_to("oci:./layout:latest")
    with image.as_source() as source:
        manifest, media_type = source.get_manifest()
"""

from __future__ import annotations

import gzip
import io
import json
import random
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import attrs

from .. import mediatypes as mt
from ..descriptor import BlobInfo, Descriptor
from ..digest import Digest
from ..manifest import DockerManifest, DockerManifestList, OCIIndex, OCIManifest
from ..platform import Platform
from ..plugins import parse_reference
from ..types import (
    ImageDestination,
    ImageReference,
    ImageSource,
    PutBlobOptions,
    TransportOptions,
)
from .memory import MemoryReference, MemoryStore, MemoryTransport

__all__ = ["ImageFormat", "RandomImage", "RandomIndex", "random_image", "random_index"]

#: ``"oci"`` (OCI manifest / index) or ``"v2s2"`` (Docker schema 2 manifest / list).
ImageFormat = Literal["oci", "v2s2"]

# A fixed timestamp keeps the configs (and so the digests) reproducible.
_CREATED = "2024-01-01T00:00:00Z"
_MTIME = 1704067200


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _platform(value: Platform | str) -> Platform:
    return value if isinstance(value, Platform) else Platform.parse(value)


def _check_format(media_type: str) -> None:
    if media_type not in ("oci", "v2s2"):
        raise ValueError(f"media_type must be 'oci' or 'v2s2', not {media_type!r}")


def _resolve(reference: ImageReference | str) -> ImageReference:
    return parse_reference(reference) if isinstance(reference, str) else reference


def random_layer(rng: random.Random, size: int) -> tuple[bytes, Digest]:
    """A gzipped tar holding random files of ``size`` bytes in all; returns (blob, diff_id)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        directory = tarfile.TarInfo(f"d{rng.randrange(1 << 32):08x}")
        directory.type = tarfile.DIRTYPE
        directory.mode = 0o755
        directory.mtime = _MTIME
        tar.addfile(directory)
        left, index = size, 0
        while left > 0 or index == 0:
            chunk = min(left, max(1, size // 3 + 1))
            payload = rng.randbytes(chunk)
            info = tarfile.TarInfo(f"{directory.name}/file{index}")
            info.size = len(payload)
            info.mode = 0o644
            info.mtime = _MTIME
            tar.addfile(info, io.BytesIO(payload))
            left -= chunk
            index += 1
    tar_bytes = buf.getvalue()
    return gzip.compress(tar_bytes, mtime=0), Digest.from_bytes(tar_bytes)


@attrs.frozen
class RandomImage:
    """One image held in memory: manifest bytes, config and layer blobs."""

    #: The manifest, as written and read (its digest is the image's digest).
    manifest: bytes = attrs.field(repr=False)
    #: The manifest's media type.
    media_type: str
    #: The config blob.
    config: bytes = attrs.field(repr=False)
    #: The layer blobs, in manifest order.
    layers: tuple[bytes, ...] = attrs.field(repr=False)
    #: The platform the config declares.
    platform: Platform

    @property
    def digest(self) -> Digest:
        """The manifest's digest."""
        return Digest.from_bytes(self.manifest)

    @property
    def config_digest(self) -> Digest:
        return Digest.from_bytes(self.config)

    @property
    def blobs(self) -> dict[Digest, bytes]:
        """Every blob the manifest refers to (config and layers) by digest."""
        out = {Digest.from_bytes(layer): layer for layer in self.layers}
        out[self.config_digest] = self.config
        return out

    @property
    def parsed(self) -> OCIManifest | DockerManifest:
        """The manifest, parsed."""
        if self.media_type == mt.OCI_MANIFEST:
            return OCIManifest(self.manifest)
        return DockerManifest(self.manifest)

    def descriptor(self) -> Descriptor:
        """A descriptor of the manifest, with its platform (as an index lists it)."""
        return Descriptor(self.media_type, self.digest, len(self.manifest), platform=self.platform)

    def write_into(self, destination: ImageDestination, *, instance: bool = False) -> None:
        """Put the blobs and the manifest into an open destination, without committing.

        With ``instance``, the manifest is written as an instance of an index.
        """
        parsed = self.parsed
        data = self.blobs
        config = parsed.config
        _put(destination, data[config.digest], config, PutBlobOptions(is_config=True))
        for i, layer in enumerate(parsed.layers):
            _put(destination, data[layer.digest], layer, PutBlobOptions(layer_index=i))
        destination.put_manifest(self.manifest, self.media_type, self.digest if instance else None)

    def write_to(
        self, reference: ImageReference | str, options: TransportOptions | None = None
    ) -> Digest:
        """Write the image to ``reference`` (any transport) and commit; return its digest."""
        with _resolve(reference).open_destination(options) as destination:
            self.write_into(destination)
            destination.commit()
        return self.digest

    def reference(self, name: str = "image") -> MemoryReference:
        """A ``memory:`` reference to this image, in a store of its own."""
        return _memory_reference(self, name)

    def as_source(self) -> ImageSource:
        """An open source reading this image (from a ``memory:`` store of its own)."""
        return self.reference().open_source()


@attrs.frozen
class RandomIndex:
    """An index (or Docker manifest list) over several :class:`RandomImage` s."""

    manifest: bytes = attrs.field(repr=False)
    media_type: str
    images: tuple[RandomImage, ...]

    @property
    def digest(self) -> Digest:
        return Digest.from_bytes(self.manifest)

    @property
    def blobs(self) -> dict[Digest, bytes]:
        """Every blob of every image, by digest."""
        out: dict[Digest, bytes] = {}
        for image in self.images:
            out.update(image.blobs)
        return out

    @property
    def manifests(self) -> dict[Digest, bytes]:
        """Every manifest (the instances and the index itself) by digest."""
        out = {image.digest: image.manifest for image in self.images}
        out[self.digest] = self.manifest
        return out

    @property
    def parsed(self) -> OCIIndex | DockerManifestList:
        """The index, parsed."""
        if self.media_type == mt.OCI_INDEX:
            return OCIIndex(self.manifest)
        return DockerManifestList(self.manifest)

    def image(self, platform: Platform | str) -> RandomImage:
        """The instance for exactly ``platform``."""
        wanted = _platform(platform)
        for image in self.images:
            if image.platform == wanted:
                return image
        raise LookupError(f"no instance for {wanted} in this index")

    def write_into(self, destination: ImageDestination) -> None:
        """Put every blob, instance manifest and the index into a destination, no commit."""
        for image in self.images:
            image.write_into(destination, instance=True)
        destination.put_manifest(self.manifest, self.media_type)

    def write_to(
        self, reference: ImageReference | str, options: TransportOptions | None = None
    ) -> Digest:
        """Write the index with all its images to ``reference`` and commit; return its digest."""
        with _resolve(reference).open_destination(options) as destination:
            self.write_into(destination)
            destination.commit()
        return self.digest

    def reference(self, name: str = "index") -> MemoryReference:
        """A ``memory:`` reference to this index, in a store of its own."""
        return _memory_reference(self, name)

    def as_source(self) -> ImageSource:
        """An open source reading this index (from a ``memory:`` store of its own)."""
        return self.reference().open_source()


def _put(
    destination: ImageDestination, data: bytes, descriptor: Descriptor, options: PutBlobOptions
) -> None:
    info = BlobInfo.from_descriptor(descriptor)
    if destination.try_reusing_blob(info) is not None:
        return
    destination.put_blob(io.BytesIO(data), info, options)


def _memory_reference(built: RandomImage | RandomIndex, name: str) -> MemoryReference:
    store = MemoryStore()
    store.add_built(name, built)
    return MemoryTransport(store).parse_reference(name)


def random_image(
    seed: int = 0,
    layers: int = 2,
    layer_size: int = 1024,
    platform: Platform | str = "linux/amd64",
    media_type: ImageFormat = "oci",
    *,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> RandomImage:
    """A valid image with ``layers`` gzipped layers of about ``layer_size`` random bytes each.

    The same arguments give the same bytes. ``media_type`` picks an OCI manifest (``"oci"``) or
    a Docker schema 2 one (``"v2s2"``); ``annotations`` only apply to OCI manifests.
    """
    _check_format(media_type)
    if layers < 0 or layer_size < 0:
        raise ValueError("layers and layer_size must not be negative")
    plat = _platform(platform)
    rng = random.Random(f"imagetypes.testing:{seed}:{plat}")
    docker = media_type == "v2s2"
    layer_type = mt.DOCKER_LAYER if docker else mt.OCI_LAYER_GZIP
    blobs: list[bytes] = []
    diff_ids: list[str] = []
    for _ in range(layers):
        blob, diff_id = random_layer(rng, layer_size)
        blobs.append(blob)
        diff_ids.append(str(diff_id))
    config_obj: dict[str, object] = {
        "created": _CREATED,
        "architecture": plat.architecture,
        "os": plat.os,
    }
    if plat.variant:
        config_obj["variant"] = plat.variant
    config_obj["config"] = {
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["/bin/sh"],
        "Labels": dict(labels if labels is not None else {"org.example.seed": str(seed)}),
    }
    config_obj["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    config_obj["history"] = [
        {"created": _CREATED, "created_by": f"imagetypes.testing layer {i}"} for i in range(layers)
    ]
    config = _dumps(config_obj)
    config_desc = Descriptor(
        mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG, Digest.from_bytes(config), len(config)
    )
    layer_descs = [Descriptor(layer_type, Digest.from_bytes(b), len(b)) for b in blobs]
    manifest: OCIManifest | DockerManifest
    if docker:
        manifest = DockerManifest.build(config_desc, layer_descs)
    else:
        manifest = OCIManifest.build(config_desc, layer_descs, annotations=annotations)
    return RandomImage(manifest.raw, manifest.media_type, config, tuple(blobs), plat)


#: The platforms :func:`random_index` uses by default.
DEFAULT_PLATFORMS: tuple[str, ...] = ("linux/amd64", "linux/arm64/v8", "linux/arm/v7")


def random_index(
    seed: int = 0,
    platforms: Sequence[Platform | str] = DEFAULT_PLATFORMS,
    *,
    layers: int = 2,
    layer_size: int = 512,
    media_type: ImageFormat = "oci",
    annotations: Mapping[str, str] | None = None,
) -> RandomIndex:
    """An index (``"oci"``) or Docker manifest list (``"v2s2"``) with one image per platform.

    Each image is :func:`random_image` with the same seed and its own platform, so images
    differ between platforms and the whole is reproducible.
    """
    _check_format(media_type)
    plats = _unique(_platform(p) for p in platforms)
    if not plats:
        raise ValueError("an index needs at least one platform")
    images = tuple(random_image(seed, layers, layer_size, p, media_type=media_type) for p in plats)
    descriptors = [image.descriptor() for image in images]
    index: OCIIndex | DockerManifestList
    if media_type == "v2s2":
        index = DockerManifestList.build(descriptors)
    else:
        index = OCIIndex.build(descriptors, annotations=annotations)
    return RandomIndex(index.raw, index.media_type, images)


def _unique(platforms: Iterable[Platform]) -> list[Platform]:
    out: list[Platform] = []
    for p in platforms:
        if p not in out:
            out.append(p)
    return out
