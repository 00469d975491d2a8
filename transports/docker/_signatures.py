"""Signatures of registry images, stored as containers/image stores them.

- Lookaside storage (containers-registries.d(5)): simple signatures live at
  ``<lookaside>/<repository>@<algorithm>=<hex>/signature-<N>`` (N from 1), read from ``file://``
  and ``http(s)://`` URLs until the first one that is missing, written to ``file://`` URLs only
  (``lookaside-staging``, else ``lookaside``).
- Sigstore attachments (``use-sigstore-attachments: true``): cosign-style signatures are the
  layers of an OCI manifest tagged ``<algorithm>-<hex>.sig`` in the image's repository; each
  layer's bytes are the payload, its annotations carry the signature.

What sources return and destinations take are stored blobs (``signature-N`` file contents):
an OpenPGP message for a simple signature, ``\\0sigstore-json\\n{...}`` for a sigstore one
(:meth:`imagetypes.trust.SigstoreSignature.to_blob`).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import httpx

from imagetypes import mediatypes as mt
from imagetypes.blobfiles import read_limited
from imagetypes.descriptor import Descriptor
from imagetypes.digest import Digest, verify_stream
from imagetypes.errors import ImageError, ManifestError, NotFoundError, UnsupportedError
from imagetypes.manifest import OCIManifest, parse_manifest
from imagetypes.reference import Reference
from imagetypes.trust import (
    RegistriesD,
    SigstoreSignature,
    lookaside_signature_url,
    parse_signature_blob,
)
from imagetypes.types import TransportOptions

from ._client import RegistryClient, read_bounded
from ._errors import RegistryConnectionError, RegistryError
from ._pool import run_configuration
from ._tls import make_ssl_context

__all__ = [
    "MAX_SIGNATURES",
    "REGISTRIES_D_OPTION",
    "SignatureStorage",
    "check_writable",
    "is_sigstore_blob",
    "load_registries_d",
    "read_lookaside",
    "read_sigstore_attachments",
    "sigstore_attachment_tag",
    "write_lookaside",
    "write_signatures",
    "write_sigstore_attachments",
]

#: ``TransportOptions.extra`` key: the registries.d directory (a path) or a
#: :class:`~imagetypes.trust.RegistriesD` (default: the user's, else the system's directory).
REGISTRIES_D_OPTION = "docker.registries_d"
#: Bound on one stored signature (as containers/image's ``MaxSignatureBodySize``).
MAX_SIGNATURE_SIZE = 4 * 1024 * 1024
#: Bound on how many signatures one image may have in lookaside storage or attachments.
MAX_SIGNATURES = 1024

_SIGSTORE_PREFIX = b"\x00sigstore-json\n"
# containers/image's built-in read location when registries.d configures none.
_ROOT_DEFAULT_LOOKASIDE = "/var/lib/containers/sigstore"
_USER_DEFAULT_LOOKASIDE = ".local/share/containers/sigstore"


def load_registries_d(options: TransportOptions) -> RegistriesD:
    """The registries.d configuration ``options`` asks for (see :data:`REGISTRIES_D_OPTION`)."""
    return run_configuration(options, REGISTRIES_D_OPTION, RegistriesD, RegistriesD.load)


def _builtin_lookaside(reference: Reference) -> str:
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        base = Path(_ROOT_DEFAULT_LOOKASIDE)
    else:
        base = Path.home() / _USER_DEFAULT_LOOKASIDE
    return (base / reference.path).as_uri()


@attrs.frozen
class SignatureStorage:
    """Where the signatures of one repository are read from or written to."""

    #: The lookaside URL of the repository (``<base>/<repository path>``), or None.
    lookaside: str | None
    #: Sigstore signatures are registry attachments.
    use_sigstore_attachments: bool

    @classmethod
    def for_reading(cls, reference: Reference, registries_d: RegistriesD) -> SignatureStorage:
        """What a source reads: the configured lookaside, else containers/image's built-in
        default directory (``/var/lib/containers/sigstore`` for root,
        ``~/.local/share/containers/sigstore`` for others)."""
        lookaside = registries_d.lookaside_for(reference) or _builtin_lookaside(reference)
        return cls(lookaside, registries_d.use_sigstore_attachments(reference))

    @classmethod
    def for_writing(cls, reference: Reference, registries_d: RegistriesD) -> SignatureStorage:
        """What a destination writes: only what registries.d configures (``lookaside-staging``,
        else ``lookaside``). Unlike containers/image, nothing is written to the built-in
        default directory unasked."""
        lookaside = registries_d.lookaside_for(reference, write=True)
        return cls(lookaside, registries_d.use_sigstore_attachments(reference))

    @property
    def can_write_lookaside(self) -> bool:
        """Simple signatures can be written (the lookaside is a ``file://`` URL)."""
        return self.lookaside is not None and _scheme(self.lookaside) == "file"

    @property
    def can_write(self) -> bool:
        """Some kind of signature can be written."""
        return self.can_write_lookaside or self.use_sigstore_attachments


def _scheme(url: str) -> str:
    return urllib.parse.urlsplit(url).scheme.lower()


def _file_path(url: str) -> Path:
    # Go's url.Parse decodes percent escapes into Path; so do we.
    return Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))


def _redacted(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:xxxxx@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def is_sigstore_blob(blob: bytes) -> bool:
    """Whether a stored signature is a sigstore one (else it belongs in lookaside storage)."""
    return blob.startswith(_SIGSTORE_PREFIX)


# -- lookaside -------------------------------------------------------------------------------


def read_lookaside(base: str, digest: Digest, options: TransportOptions) -> list[bytes]:
    """The signatures of the manifest ``digest`` under the lookaside URL ``base``."""
    scheme = _scheme(base)
    if scheme == "file":
        return _read_lookaside_files(base, digest)
    if scheme in ("http", "https"):
        return _read_lookaside_http(base, digest, options)
    raise UnsupportedError(
        f"unsupported scheme {scheme!r} when reading signatures from {_redacted(base)}"
    )


def _read_lookaside_files(base: str, digest: Digest) -> list[bytes]:
    found: list[bytes] = []
    for index in range(MAX_SIGNATURES + 1):
        path = _file_path(lookaside_signature_url(base, digest, index))
        try:
            blob = read_limited(path, MAX_SIGNATURE_SIZE)
        except FileNotFoundError:
            return found
        except OSError as e:
            raise ImageError(f"cannot read signature {path}: {e.strerror}") from e
        found.append(_checked(blob, str(path)))
    raise ImageError(f"over {MAX_SIGNATURES} signatures for {digest} in {_redacted(base)}")


def _read_lookaside_http(base: str, digest: Digest, options: TransportOptions) -> list[bytes]:
    host = urllib.parse.urlsplit(base).netloc.rpartition("@")[2]
    timeout = float(options.extra.get("docker.timeout", 60.0))
    found: list[bytes] = []
    with httpx.Client(
        verify=make_ssl_context(host, options),
        follow_redirects=True,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 30.0)),
        headers={"User-Agent": "imagetypes"},
    ) as http:
        for index in range(MAX_SIGNATURES + 1):
            url = lookaside_signature_url(base, digest, index)
            shown = _redacted(url)
            try:
                with http.stream("GET", url) as response:
                    if response.status_code == 404:
                        return found
                    if response.status_code != 200:
                        raise RegistryError(
                            f"reading signature from {shown}: HTTP {response.status_code} "
                            f"{response.reason_phrase}".rstrip(),
                            status=response.status_code,
                        )
                    try:
                        blob = read_bounded(response, MAX_SIGNATURE_SIZE)
                    except RegistryError as e:
                        raise ImageError(
                            f"signature {shown}: over {MAX_SIGNATURE_SIZE} bytes"
                        ) from e
            except httpx.TransportError as e:
                raise RegistryConnectionError(f"reading signature from {shown}: {e}") from e
            found.append(_checked(blob, shown))
    raise ImageError(f"over {MAX_SIGNATURES} signatures for {digest} in {_redacted(base)}")


def _checked(blob: bytes | None, where: str) -> bytes:
    """``blob`` if it is a signature's size (None: a file past the bound)."""
    if blob is None or len(blob) > MAX_SIGNATURE_SIZE:
        raise ImageError(f"signature {where}: over {MAX_SIGNATURE_SIZE} bytes")
    if not blob:
        raise ImageError(f"signature {where} is empty")
    return blob


def write_lookaside(base: str, digest: Digest, signatures: Sequence[bytes]) -> None:
    """Store ``signatures`` as the signatures of ``digest`` under the ``file://`` URL ``base``.

    Signatures beyond the new ones that were stored before are removed (up to the first
    missing one, which is where readers stop anyway).
    """
    if not signatures:
        return
    scheme = _scheme(base)
    if scheme in ("http", "https"):
        raise UnsupportedError(
            f"writing directly to a {scheme} lookaside {_redacted(base)} is not supported; "
            "configure a lookaside-staging: location (a file:// URL) in registries.d"
        )
    if scheme != "file":
        raise UnsupportedError(
            f"unsupported scheme {scheme!r} when writing signatures to {_redacted(base)}"
        )
    for index, blob in enumerate(signatures):
        _write_file(_file_path(lookaside_signature_url(base, digest, index)), blob)
    for index in range(len(signatures), len(signatures) + MAX_SIGNATURES):
        path = _file_path(lookaside_signature_url(base, digest, index))
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as e:
            raise ImageError(f"cannot remove old signature {path}: {e.strerror}") from e


def _write_file(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        # Write beside and rename, so a reader never sees half a signature.
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        raise ImageError(f"cannot write signature {path}: {e.strerror or e}") from e


# -- sigstore attachments --------------------------------------------------------------------


def sigstore_attachment_tag(digest: Digest) -> str:
    """The tag of the sigstore attachments of ``digest`` (``sha256-<hex>.sig``)."""
    return f"{digest.algorithm}-{digest.hex}.sig"


def _attachment_manifest(
    client: RegistryClient, repository: str, digest: Digest
) -> OCIManifest | None:
    tag = sigstore_attachment_tag(digest)
    what = f"sigstore attachment manifest {client.host}/{repository}:{tag}"
    try:
        data, media_type, _ = client.get_manifest(repository, tag, accept=[mt.OCI_MANIFEST])
    except NotFoundError:
        return None
    if media_type != mt.OCI_MANIFEST:
        raise ManifestError(f"unexpected media type {media_type!r} for the {what}")
    manifest = parse_manifest(data, mt.OCI_MANIFEST)
    if not isinstance(manifest, OCIManifest):  # pragma: no cover - parse_manifest guarantees it
        raise ManifestError(f"the {what} is not an OCI image manifest")
    return manifest


def _read_blob(client: RegistryClient, repository: str, digest: Digest, size: int) -> bytes:
    if size > MAX_SIGNATURE_SIZE:
        raise ImageError(
            f"sigstore attachment {digest} in {client.host}/{repository} is {size} bytes, "
            f"over {MAX_SIGNATURE_SIZE}"
        )
    with verify_stream(client.blob_reader(repository, digest, size), digest, size) as reader:
        return reader.read()


def read_sigstore_attachments(
    client: RegistryClient, repository: str, digest: Digest
) -> list[bytes]:
    """The sigstore attachments of the manifest ``digest``, as stored signature blobs.

    Every layer counts, whatever its media type (attestations too): deciding what is a
    signature is the consumer's business, as in containers/image.
    """
    manifest = _attachment_manifest(client, repository, digest)
    if manifest is None:
        return []
    if len(manifest.layers) > MAX_SIGNATURES:
        raise ImageError(
            f"over {MAX_SIGNATURES} sigstore attachments for {digest} in {client.host}/{repository}"
        )
    return [
        SigstoreSignature(
            _read_blob(client, repository, layer.digest, layer.size),
            dict(layer.annotations),
            layer.media_type,
        ).to_blob()
        for layer in manifest.layers
    ]


def _put_bytes(client: RegistryClient, repository: str, data: bytes) -> Digest:
    digest = Digest.from_bytes(data)
    if client.blob_size(repository, digest) is None:
        client.upload_blob(
            repository, verify_stream(io.BytesIO(data), digest, len(data)), len(data)
        )
    return digest


def _same_layer(layer: Descriptor, signature: SigstoreSignature) -> bool:
    return (
        layer.media_type == signature.mime_type
        and layer.size == len(signature.payload)
        and layer.digest == Digest.from_bytes(signature.payload)
        and dict(layer.annotations) == dict(signature.annotations)
    )


def write_sigstore_attachments(
    client: RegistryClient, repository: str, digest: Digest, signatures: Sequence[bytes]
) -> None:
    """Add sigstore signatures (stored blobs) to the attachments of the manifest ``digest``.

    As containers/image: the ``<algorithm>-<hex>.sig`` OCI manifest is created or extended,
    each new signature a layer (its payload, its annotations), the config an OCI image config
    whose ``rootfs.diff_ids`` lists the layers. Signatures already attached are not added
    twice; when nothing is new, nothing is written.
    """
    parsed: list[SigstoreSignature] = []
    for blob in signatures:
        sig = parse_signature_blob(blob)
        if not isinstance(sig, SigstoreSignature):
            raise ImageError("a simple signature cannot be stored as a sigstore attachment")
        parsed.append(sig)
    if not parsed:
        return
    existing = _attachment_manifest(client, repository, digest)
    layers = list(existing.layers) if existing is not None else []
    config: dict[str, Any]
    if existing is None:
        # The fields Go's encoding/json writes for containers/image's empty imgspecv1.Image.
        config = {"architecture": "", "os": "", "config": {}, "rootfs": {"type": "layers"}}
        diff_ids: list[str] = []
    else:
        config = _read_config(client, repository, existing)
        rootfs = config.get("rootfs")
        if not isinstance(rootfs, dict):
            rootfs = {"type": "layers"}
        ids = rootfs.get("diff_ids") or []
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ManifestError(
                f"the sigstore attachment config of {digest} in {client.host}/{repository} "
                "has invalid rootfs.diff_ids"
            )
        diff_ids = list(ids)
        config["rootfs"] = rootfs
    added = False
    for sig in parsed:
        if any(_same_layer(layer, sig) for layer in layers):
            continue
        payload_digest = _put_bytes(client, repository, sig.payload)
        layers.append(
            Descriptor(
                sig.mime_type,
                payload_digest,
                len(sig.payload),
                annotations=dict(sig.annotations),
            )
        )
        diff_ids.append(str(payload_digest))
        added = True
    if not added:
        return
    config["rootfs"]["diff_ids"] = diff_ids
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    config_digest = _put_bytes(client, repository, config_bytes)
    manifest = OCIManifest.build(
        Descriptor(mt.OCI_CONFIG, config_digest, len(config_bytes)),
        layers,
        annotations=dict(existing.annotations) if existing is not None else None,
        artifact_type=existing.artifact_type if existing is not None else None,
        subject=existing.subject if existing is not None else None,
    )
    client.put_manifest(repository, sigstore_attachment_tag(digest), manifest.raw, mt.OCI_MANIFEST)


def _read_config(client: RegistryClient, repository: str, manifest: OCIManifest) -> dict[str, Any]:
    desc = manifest.config
    data = _read_blob(client, repository, desc.digest, desc.size)
    try:
        obj = json.loads(data)
    except ValueError as e:
        raise ManifestError(
            f"parsing sigstore attachment config {desc.digest} in {client.host}/{repository}: {e}"
        ) from e
    if not isinstance(obj, dict):
        raise ManifestError(
            f"sigstore attachment config {desc.digest} in {client.host}/{repository} is not "
            "a JSON object"
        )
    return obj


# -- both ------------------------------------------------------------------------------------


def check_writable(storage: SignatureStorage, signatures: Sequence[bytes], where: str) -> None:
    """Refuse, before anything is written, signatures ``storage`` cannot hold.

    Raises :class:`~imagetypes.UnsupportedError` naming the registries.d setting to add.
    """
    sigstore = [b for b in signatures if is_sigstore_blob(b)]
    others = len(signatures) - len(sigstore)
    for blob in sigstore:
        parse_signature_blob(blob)  # malformed ones fail now, not after the manifest is pushed
    if sigstore and not storage.use_sigstore_attachments:
        raise UnsupportedError(
            f"{where}: cannot store sigstore signatures: writing sigstore attachments is "
            "disabled by configuration (set use-sigstore-attachments: true in registries.d)"
        )
    if others:
        if storage.lookaside is None:
            raise UnsupportedError(
                f"{where}: cannot store signatures: no lookaside storage is configured for it "
                "in registries.d (set lookaside-staging or lookaside to a file:// URL)"
            )
        scheme = _scheme(storage.lookaside)
        if scheme != "file":
            raise UnsupportedError(
                f"{where}: writing directly to a {scheme} lookaside "
                f"{_redacted(storage.lookaside)} is not supported; configure a "
                "lookaside-staging: location (a file:// URL) in registries.d"
            )


def write_signatures(
    storage: SignatureStorage,
    client: RegistryClient,
    repository: str,
    digest: Digest,
    signatures: Sequence[bytes],
) -> None:
    """Store the signatures of the manifest ``digest``: sigstore ones as attachments, the
    others in lookaside storage (replacing what was there)."""
    check_writable(storage, signatures, f"{client.host}/{repository}@{digest}")
    sigstore = [b for b in signatures if is_sigstore_blob(b)]
    others = [b for b in signatures if not is_sigstore_blob(b)]
    if others:
        assert storage.lookaside is not None  # check_writable made sure
        write_lookaside(storage.lookaside, digest, others)
    if sigstore:
        write_sigstore_attachments(client, repository, digest, sigstore)
