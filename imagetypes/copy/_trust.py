"""Trust in the copy engine: the source's manifests and signatures read once, the signature
policy checked before the destination is opened, and signing what is written."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from ..blobfiles import read_limited
from ..digest import Digest
from ..errors import DigestMismatchError, PlatformMismatchError, UnsupportedError
from ..manifest import IndexManifest, Manifest, parse_manifest
from ..platform import Platform
from ..reference import Reference
from ..types import ImageReference, ImageSource
from ._options import CopyOptions
from ._progress import ProgressEvent, SigningManifest, StoringSignatures

if TYPE_CHECKING:
    from ..descriptor import Descriptor
    from ..trust import Policy

__all__ = [
    "Signer",
    "SourceReads",
    "check_gpg_key",
    "check_policy",
    "read_sigstore_key",
    "select_positions",
    "select_system",
    "signatures_to_store",
]

_Progress = Callable[[ProgressEvent], None]

#: Bound on a sigstore private key file (they are a few hundred bytes).
_MAX_KEY_SIZE = 1024 * 1024
_GPG_TIMEOUT = 60.0


class SourceReads:
    """The source's manifests and signatures, each read once (for the policy and the copy)."""

    def __init__(self, source: ImageSource) -> None:
        self.source = source
        self._manifests: dict[Digest | None, tuple[bytes, str]] = {}
        self._signatures: dict[Digest | None, list[bytes]] = {}

    def manifest(self, instance: Digest | None = None) -> tuple[bytes, str]:
        """The manifest bytes and media type; an instance's bytes are checked against its digest."""
        if instance not in self._manifests:
            raw, media_type = self.source.get_manifest(instance)
            if instance is not None:
                actual = Digest.from_bytes(raw, instance.algorithm)
                if actual != instance:
                    raise DigestMismatchError(
                        f"{self.source.reference}: manifest {instance} has digest {actual}",
                        expected=instance,
                        actual=actual,
                    )
            self._manifests[instance] = (raw, media_type)
        return self._manifests[instance]

    def signatures(self, instance: Digest | None = None) -> list[bytes]:
        """The signatures stored with the image (or instance), as the source returns them."""
        if instance not in self._signatures:
            self._signatures[instance] = list(self.source.get_signatures(instance))
        return list(self._signatures[instance])


# -- choosing instances (shared by the policy check and the copy) ------------------------------


def _mismatch(
    index: IndexManifest, wanted: Sequence[Platform], source: ImageReference
) -> PlatformMismatchError:
    available = ", ".join(str(d.platform) for d in index.manifests if d.platform) or "none"
    asked = ", ".join(str(p) for p in wanted)
    return PlatformMismatchError(
        f"{source} has no image for {asked} (available platforms: {available})"
    )


def select_system(index: IndexManifest, options: CopyOptions, source: ImageReference) -> Descriptor:
    """The entry of ``index`` for the platform asked for (default: this machine's)."""
    src_opts = options.source_options
    wanted = src_opts.platform if src_opts and src_opts.platform else Platform.current()
    desc = index.instance_for(wanted)
    if desc is None:
        raise _mismatch(index, [wanted], source)
    return desc


def select_positions(
    index: IndexManifest, options: CopyOptions, source: ImageReference
) -> list[int]:
    """Positions in the index of the instances to copy (``"all"`` or platforms), in order."""
    if options.instances == "all":
        return list(range(len(index.manifests)))
    assert not isinstance(options.instances, str)
    chosen: set[int] = set()
    missing: list[Platform] = []
    for wanted in options.instances:
        desc = index.instance_for(wanted)
        if desc is None:
            missing.append(wanted)
        else:
            chosen.add(index.manifests.index(desc))
    if missing:
        raise _mismatch(index, missing, source)
    return sorted(chosen)


# -- the policy --------------------------------------------------------------------------------


def check_policy(
    policy: Policy, reference: ImageReference, reads: SourceReads, options: CopyOptions
) -> None:
    """Raise :class:`~imagetypes.trust.PolicyRejectedError` unless ``policy`` accepts every
    image the copy would read.

    As containers/image, the images checked are those copied: a single image, the instance
    chosen from an index, or each instance copied out of it; an index copied alone
    (``"index-only"``) is checked itself. Each is judged with its own signatures.
    """
    raw, media_type = reads.manifest(None)
    top: Manifest = parse_manifest(raw, media_type or None)
    instances: list[Digest | None]
    if not isinstance(top, IndexManifest) or options.instances == "index-only":
        instances = [None]
    elif options.instances == "system":
        instances = [select_system(top, options, reference).digest]
    else:
        positions = select_positions(top, options, reference)
        instances = [top.manifests[pos].digest for pos in positions]
    for instance in instances:
        manifest = raw if instance is None else reads.manifest(instance)[0]
        policy.evaluate_reference(reference, manifest, reads.signatures(instance))


# -- signing -----------------------------------------------------------------------------------


def read_sigstore_key(value: bytes | str | os.PathLike[str]) -> bytes:
    """A sigstore private key given as bytes or a path (bounded in size)."""
    if isinstance(value, bytes):
        return value
    path = Path(value)
    try:
        data = read_limited(path, _MAX_KEY_SIZE)
    except OSError as e:
        raise UnsupportedError(f"cannot read the sigstore private key {path}: {e.strerror}") from e
    if data is None:
        raise UnsupportedError(f"{path} is too large to be a sigstore private key")
    return data


def check_gpg_key(key_id: str, home: str | os.PathLike[str] | None) -> None:
    """Fail early, before any blob moves, when gpg or the secret key is missing."""
    import subprocess  # here: only signing runs a program

    from ..trust import GPGError

    gpg = shutil.which("gpg")
    if gpg is None:
        raise GPGError("signing with sign_by needs the gpg program (GnuPG); it is not installed")
    command = [gpg]
    if home is not None:
        command += ["--homedir", os.fspath(home)]
    command += ["--batch", "--no-tty", "--list-secret-keys", "--with-colons", "--", key_id]
    try:
        proc = subprocess.run(command, capture_output=True, timeout=_GPG_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as e:
        raise GPGError(f"gpg did not answer within {_GPG_TIMEOUT:.0f} seconds") from e
    if proc.returncode != 0 or b"\nsec:" not in b"\n" + proc.stdout:
        where = os.fspath(home) if home is not None else "the default GnuPG home"
        raise GPGError(f"signing key {key_id!r} not found: no such secret key in {where}")


def _describe(manifest: bytes) -> tuple[Digest, bool]:
    """The digest ``manifest`` is addressed by (a signed schema 1 manifest: its payload's),
    and whether it is an index."""
    from ..errors import ManifestError, UnsupportedManifestTypeError
    from ._schema1 import written_digest

    try:
        parsed = parse_manifest(manifest)
    except (ManifestError, UnsupportedManifestTypeError):
        # Not a manifest we parse: signed over its bytes all the same.
        return Digest.from_bytes(manifest), False
    return written_digest(parsed), isinstance(parsed, IndexManifest)


@attrs.frozen
class Signer:
    """Makes the signatures :class:`CopyOptions` asks for, over manifests as written."""

    identity: Reference
    gpg_key: str | None
    gpg_home: str | os.PathLike[str] | None
    passphrase: str | None = attrs.field(repr=False)
    sigstore_key: bytes | None = attrs.field(repr=False)
    #: Receives :class:`~imagetypes.copy.SigningManifest` and
    #: :class:`~imagetypes.copy.StoringSignatures` from :meth:`sign` (the copy's callback).
    progress: _Progress | None = attrs.field(default=None, eq=False, repr=False)

    @classmethod
    def from_options(cls, options: CopyOptions, destination: ImageReference) -> Signer | None:
        """The signer for a copy to ``destination`` (None when no signature is asked for).

        Everything that can be checked before a blob moves is: the identity, the sigstore
        key and its passphrase, the GPG secret key.
        """
        if options.sign_by is None and options.sign_by_sigstore_private_key is None:
            return None
        identity = options.sign_identity or destination.docker_reference
        if identity is None:
            raise UnsupportedError(
                f"cannot determine the Docker reference to sign {destination} as: the "
                "destination has none; give the identity to sign as (sign_identity, "
                "--sign-identity)"
            )
        if identity.is_name_only:
            raise UnsupportedError(
                f"cannot sign as {identity}: the identity needs a tag or a digest"
            )
        sigstore_key: bytes | None = None
        if options.sign_by_sigstore_private_key is not None:
            from ..trust import sigstore_public_key

            sigstore_key = read_sigstore_key(options.sign_by_sigstore_private_key)
            # Decrypting now checks the key and the passphrase before anything is copied.
            sigstore_public_key(sigstore_key, options.sign_passphrase)
        if options.sign_by is not None:
            check_gpg_key(options.sign_by, options.gpg_home)
        return cls(
            identity=identity,
            gpg_key=options.sign_by,
            gpg_home=options.gpg_home,
            passphrase=options.sign_passphrase,
            sigstore_key=sigstore_key,
            progress=options.progress,
        )

    def sign(self, manifest: bytes, copied: int = 0) -> list[bytes]:
        """New signatures of ``manifest`` (simple signing first, then sigstore), as stored.

        Reports a :class:`~imagetypes.copy.SigningManifest` per signature, then
        :class:`~imagetypes.copy.StoringSignatures` (``copied`` signatures from the source
        plus the new ones), as the caller stores them next.
        """
        digest, index = _describe(manifest)
        new = self.make(manifest, digest, self.progress)
        if self.progress is not None:
            self.progress(StoringSignatures(digest, copied + len(new), len(new), index))
        return new

    def make(self, manifest: bytes, digest: Digest, emit: _Progress | None) -> list[bytes]:
        """The new signatures of ``manifest`` (whose digest is ``digest``), each announced to
        ``emit`` with a :class:`~imagetypes.copy.SigningManifest` before it is made."""
        from ..trust import SigstoreSignature, sign_sigstore, sign_simple

        signatures: list[bytes] = []
        if self.gpg_key is not None:
            if emit is not None:
                emit(SigningManifest(digest, "simple", str(self.identity)))
            signatures.append(
                sign_simple(
                    manifest,
                    self.identity,
                    self.gpg_key,
                    gpg_home=self.gpg_home,
                    passphrase=self.passphrase,
                )
            )
        if self.sigstore_key is not None:
            if emit is not None:
                emit(SigningManifest(digest, "sigstore", str(self.identity)))
            payload, annotations = sign_sigstore(
                manifest, self.identity, self.sigstore_key, self.passphrase
            )
            signatures.append(SigstoreSignature(payload, annotations).to_blob())
        return signatures


def signatures_to_store(
    signer: Signer | None,
    copied: Sequence[bytes],
    manifest: Manifest,
    emit: _Progress | None,
) -> list[bytes]:
    """The signatures to store with ``manifest``: those ``copied``, then the new ones
    ``signer`` makes; reports signing and, when there is any signature, storing to ``emit``
    (as skopeo prints "Signing manifest ..." and "Storing signatures")."""
    from ._schema1 import written_digest

    digest = written_digest(manifest)
    new = signer.make(manifest.raw, digest, emit) if signer is not None else []
    stored = [*copied, *new]
    if stored and emit is not None:
        index = isinstance(manifest, IndexManifest)
        emit(StoringSignatures(digest, len(stored), len(new), index))
    return stored
