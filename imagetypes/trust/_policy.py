"""The signature verification policy of containers-policy.json(5).

A policy maps a transport and a scope within it (a registry, repository, directory, ...) to
a list of requirements; every requirement must accept the image. Parsing is strict, as in
containers/image: unknown fields, duplicate keys and unknown requirement types are errors,
because a typo in a security policy must not silently weaken it.
"""

from __future__ import annotations

import base64
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from ..errors import ImageError, InvalidReferenceError
from ..reference import Reference
from ._errors import InvalidPolicyError, InvalidSignatureError, PolicyRejectedError
from ._identity import MatchRepoDigestOrExact, SignedIdentity, parse_signed_identity
from ._json import decode_base64, json_type, load_json, object_fields, string_field

# The signature code (GPG, and sigstore's cryptography) is imported by the requirements that
# verify signatures, when they do: a policy that accepts anything never loads it.

if TYPE_CHECKING:
    from ..types import ImageReference

__all__ = [
    "InsecureAcceptAnything",
    "Policy",
    "PolicyRequirement",
    "Reject",
    "SignedBaseLayer",
    "SignedBy",
    "SigstoreSigned",
    "default_policy_path",
    "image_reference_scope",
    "policy_scope_namespaces",
]

#: Where the system-wide policy lives.
SYSTEM_POLICY_PATH = Path("/etc/containers/policy.json")
_USER_POLICY = Path(".config/containers/policy.json")
_MAX_POLICY_SIZE = 4 * 1024 * 1024
# Transports whose scopes are absolute, clean directory or file paths.
_PATH_TRANSPORTS = frozenset({"dir", "oci", "oci-archive"})


@attrs.frozen
class _Image:
    """What requirements look at: the image's name, manifest and stored signatures."""

    transport: str
    docker_reference: Reference | None
    manifest: bytes
    signatures: tuple[bytes, ...]
    name: str


class _Rejected(Exception):
    """A requirement refused the image; the message says why, ``reasons`` per signature."""

    def __init__(self, message: str, reasons: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.reasons = tuple(reasons) or (message,)


class PolicyRequirement(ABC):
    """One requirement of a policy; all requirements of the applicable scope must accept."""

    #: The ``type`` value in policy.json.
    type: ClassVar[str]

    @abstractmethod
    def _check(self, image: _Image) -> None:
        """Raise :class:`_Rejected` if the image is not acceptable."""

    def to_dict(self) -> dict[str, Any]:
        """The requirement as a policy.json object."""
        return {"type": self.type}


@attrs.frozen
class InsecureAcceptAnything(PolicyRequirement):
    """Accept any image, signed or not."""

    type: ClassVar[str] = "insecureAcceptAnything"

    def _check(self, image: _Image) -> None:
        return None


@attrs.frozen
class Reject(PolicyRequirement):
    """Reject every image."""

    type: ClassVar[str] = "reject"

    def _check(self, image: _Image) -> None:
        raise _Rejected(f"running image {image.name} is rejected by policy")


def _summary(rejections: list[str], other: str = "") -> str:
    if not rejections:
        return f"a signature was required, but no signature exists{other}"
    if len(rejections) == 1:
        return rejections[0]
    return "none of the signatures were accepted, reasons: " + "; ".join(rejections)


_GPG_KEY_TYPES = ("GPGKeys", "signedByGPGKeys", "X509Certificates", "signedByX509CAs")


def _check_key_type(instance: object, attribute: object, value: str) -> None:
    if value not in _GPG_KEY_TYPES:
        raise InvalidPolicyError(f"unrecognized keyType value {value!r}")


@attrs.frozen
class SignedBy(PolicyRequirement):
    """Require a simple-signing (GPG) signature by one of the given keys.

    Exactly one of ``key_path`` (a keyring file), ``key_paths`` and ``key_data`` (keyring
    bytes) is given.
    """

    type: ClassVar[str] = "signedBy"
    key_path: str | None = None
    key_paths: tuple[str, ...] | None = attrs.field(
        default=None, converter=attrs.converters.optional(tuple)
    )
    key_data: bytes | None = None
    signed_identity: SignedIdentity = attrs.field(factory=MatchRepoDigestOrExact)
    key_type: str = attrs.field(default="GPGKeys", validator=_check_key_type)

    def __attrs_post_init__(self) -> None:
        # An empty keyPath names no key source, as in containers/image.
        given = [
            bool(self.key_path),
            self.key_paths is not None,
            self.key_data is not None,
        ]
        if sum(given) != 1:
            raise InvalidPolicyError(
                "signedBy: exactly one of keyPath, keyPaths and keyData must be specified"
            )

    def _keyrings(self) -> list[bytes]:
        if self.key_data is not None:
            return [self.key_data]
        paths = [self.key_path] if self.key_path is not None else list(self.key_paths or ())
        keyrings = []
        for path in paths:
            try:
                keyrings.append(Path(path).read_bytes())
            except OSError as e:
                raise _Rejected(f"cannot read the GPG keyring {path}: {e.strerror}") from e
        return keyrings

    def _check(self, image: _Image) -> None:
        if self.key_type != "GPGKeys":
            raise _Rejected(f"unimplemented keyType {self.key_type!r}")
        simple = [s for s in image.signatures if not _is_sigstore(s)]
        if not simple:
            raise _Rejected(_summary([]))
        from ._simple import verify_simple

        keyrings = self._keyrings()
        rejections = []
        for blob in simple:
            try:
                verify_simple(
                    blob,
                    image.manifest,
                    keyrings,
                    identity=self.signed_identity,
                    image_reference=image.docker_reference,
                )
                return
            except InvalidSignatureError as e:
                rejections.append(str(e))
        raise _Rejected(_summary(rejections), rejections)

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"type": self.type, "keyType": self.key_type}
        if self.key_path is not None:
            result["keyPath"] = self.key_path
        if self.key_paths is not None:
            result["keyPaths"] = list(self.key_paths)
        if self.key_data is not None:
            result["keyData"] = base64.b64encode(self.key_data).decode("ascii")
        result["signedIdentity"] = self.signed_identity.to_dict()
        return result


@attrs.frozen
class SignedBaseLayer(PolicyRequirement):
    """Parsed for compatibility; like containers/image, evaluating it always rejects."""

    type: ClassVar[str] = "signedBaseLayer"
    base_layer_identity: SignedIdentity

    def _check(self, image: _Image) -> None:
        raise _Rejected("signedBaseLayer is not implemented")

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "baseLayerIdentity": self.base_layer_identity.to_dict()}


@attrs.frozen
class SigstoreSigned(PolicyRequirement):
    """Require a sigstore signature verified by a public key (``key_path`` or ``key_data``)."""

    type: ClassVar[str] = "sigstoreSigned"
    key_path: str | None = None
    key_data: bytes | None = None
    signed_identity: SignedIdentity = attrs.field(factory=MatchRepoDigestOrExact)

    def __attrs_post_init__(self) -> None:
        if (self.key_path is None) == (self.key_data is None):
            raise InvalidPolicyError(
                "sigstoreSigned: exactly one of keyPath and keyData must be specified"
            )

    def _check(self, image: _Image) -> None:
        if self.key_data is not None:
            key = self.key_data
        else:
            assert self.key_path is not None
            try:
                key = Path(self.key_path).read_bytes()
            except OSError as e:
                raise _Rejected(f"cannot read the public key {self.key_path}: {e.strerror}") from e
        from ._signature import SigstoreSignature, parse_signature_blob
        from ._sigstore import verify_sigstore

        rejections = []
        others = 0
        for blob in image.signatures:
            try:
                parsed = parse_signature_blob(blob)
            except InvalidSignatureError as e:
                rejections.append(str(e))
                continue
            if not isinstance(parsed, SigstoreSignature):
                others += 1
                continue
            try:
                verify_sigstore(
                    parsed,
                    image.manifest,
                    key,
                    identity=self.signed_identity,
                    image_reference=image.docker_reference,
                )
                return
            except InvalidSignatureError as e:
                rejections.append(str(e))
        other = f" ({others} non-sigstore signatures)" if others else ""
        raise _Rejected(_summary(rejections, other), rejections)

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"type": self.type}
        if self.key_path is not None:
            result["keyPath"] = self.key_path
        if self.key_data is not None:
            result["keyData"] = base64.b64encode(self.key_data).decode("ascii")
        result["signedIdentity"] = self.signed_identity.to_dict()
        return result


def _is_sigstore(blob: bytes) -> bool:
    from ._signature import SigstoreSignature, parse_signature_blob

    try:
        return isinstance(parse_signature_blob(blob), SigstoreSignature)
    except InvalidSignatureError:
        return False


# -- parsing ---------------------------------------------------------------------------------


def _parse_requirement(value: object) -> PolicyRequirement:
    err = InvalidPolicyError
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise err("a policy requirement must be a JSON object with a string 'type'")
    kind = value["type"]
    what = f"requirement {kind!r}"
    if kind == InsecureAcceptAnything.type:
        object_fields(value, err, what, required=("type",))
        return InsecureAcceptAnything()
    if kind == Reject.type:
        object_fields(value, err, what, required=("type",))
        return Reject()
    if kind == SignedBy.type:
        obj = object_fields(
            value,
            err,
            what,
            required=("type", "keyType"),
            optional=("keyPath", "keyPaths", "keyData", "signedIdentity"),
        )
        if sum(k in obj for k in ("keyPath", "keyPaths", "keyData")) > 1:
            raise err(
                "signedBy: exactly one of keyPath, keyPaths and keyData must be specified, "
                "more than one present"
            )
        key_paths = obj.get("keyPaths")
        if key_paths is not None and (
            not isinstance(key_paths, list) or not all(isinstance(p, str) for p in key_paths)
        ):
            raise err("keyPaths in signedBy must be an array of strings")
        return SignedBy(
            key_path=string_field(obj, "keyPath", err, what) if "keyPath" in obj else None,
            key_paths=key_paths,
            key_data=decode_base64(obj["keyData"], err, "keyData") if "keyData" in obj else None,
            signed_identity=_identity(obj),
            key_type=string_field(obj, "keyType", err, what),
        )
    if kind == SignedBaseLayer.type:
        obj = object_fields(value, err, what, required=("type", "baseLayerIdentity"))
        return SignedBaseLayer(parse_signed_identity(obj["baseLayerIdentity"]))
    if kind == SigstoreSigned.type:
        obj = object_fields(
            value, err, what, required=("type",), optional=("keyPath", "keyData", "signedIdentity")
        )
        return SigstoreSigned(
            key_path=string_field(obj, "keyPath", err, what) if "keyPath" in obj else None,
            key_data=decode_base64(obj["keyData"], err, "keyData") if "keyData" in obj else None,
            signed_identity=_identity(obj),
        )
    raise err(f"unknown policy requirement type {kind!r}")


def _identity(obj: Mapping[str, Any]) -> SignedIdentity:
    if "signedIdentity" not in obj:
        return MatchRepoDigestOrExact()
    return parse_signed_identity(obj["signedIdentity"])


def _parse_requirements(value: object, where: str) -> tuple[PolicyRequirement, ...]:
    if not isinstance(value, list):
        raise InvalidPolicyError(
            f"{where} must be an array of requirements, not {json_type(value)}"
        )
    if not value:
        raise InvalidPolicyError(f"{where}: the list of policy requirements must not be empty")
    try:
        return tuple(_parse_requirement(item) for item in value)
    except InvalidPolicyError as e:
        raise InvalidPolicyError(f"{where}: {e}") from e


def _validate_scope(transport: str, scope: str) -> None:
    if scope == "":
        return
    problem = None
    if transport in _PATH_TRANSPORTS:
        if not scope.startswith("/"):
            problem = "must be an absolute path"
        elif scope == "/":
            problem = 'use the transport default scope "" instead of "/"'
        elif os.path.normpath(scope) != scope or scope.startswith("//"):
            problem = f"uses non-canonical format, perhaps try {os.path.normpath(scope)}"
    elif transport == "docker-archive":
        problem = 'docker-archive supports no scopes except the default ""'
    if problem is not None:
        raise InvalidPolicyError(f"invalid {transport} scope {scope!r}: {problem}")


# -- scope lookup ----------------------------------------------------------------------------


def policy_scope_namespaces(transport_name: str, identity: str) -> list[str]:
    """The scopes to try, in order, when ``identity`` itself has no entry (before ``""``).

    ``docker``: the repository, its parent namespaces, the registry host, then wildcard
    domains (``*.example.com``, ``*.com``). Path transports: the parent directories.
    """
    if transport_name == "docker":
        try:
            name = Reference.parse(identity).name
        except InvalidReferenceError:
            name = identity.partition("@")[0]
        result = []
        while True:
            result.append(name)
            slash = name.rfind("/")
            if slash == -1:
                break
            name = name[:slash]
        host = name.partition(":")[0]
        while "." in host:
            host = host.partition(".")[2]
            result.append(f"*.{host}")
        return result
    if transport_name in _PATH_TRANSPORTS:
        # oci: and oci-archive: list the identity itself first; harmless for dir:.
        result = [identity] if transport_name != "dir" else []
        path = identity
        while True:
            slash = path.rfind("/")
            if slash <= 0:
                break
            path = path[:slash]
            result.append(path)
        return result
    return []


def _docker_identity(reference: Reference) -> str:
    if reference.digest is not None:
        return f"{reference.name}@{reference.digest}"
    return str(reference.with_default_tag())


def image_reference_scope(reference: ImageReference) -> str:
    """The policy identity (most specific scope) of an image reference.

    A reference may provide it as a ``policy_configuration_identity()`` method; otherwise it
    is derived for the built-in transports: the full Docker reference for ``docker``, the
    resolved absolute path for ``dir``, ``oci`` and ``oci-archive``.
    """
    method = getattr(reference, "policy_configuration_identity", None)
    if callable(method):
        return str(method())
    transport = reference.transport.name
    within = reference.string_within_transport()
    if transport == "docker":
        docker_reference = reference.docker_reference
        if docker_reference is None:
            return within.removeprefix("//")
        return _docker_identity(docker_reference)
    if transport == "dir":
        return os.path.realpath(within)
    if transport in ("oci", "oci-archive"):
        return os.path.realpath(within.partition(":")[0])
    if transport == "docker-archive":
        return ""
    return within


def default_policy_path() -> Path:
    """The user's ``~/.config/containers/policy.json`` if it exists, else the system's
    ``/etc/containers/policy.json``."""
    user = Path.home() / _USER_POLICY
    return user if user.exists() else SYSTEM_POLICY_PATH


@attrs.frozen
class Policy:
    """A parsed ``policy.json``."""

    default: tuple[PolicyRequirement, ...]
    transports: Mapping[str, Mapping[str, tuple[PolicyRequirement, ...]]] = attrs.field(
        factory=dict
    )

    @classmethod
    def parse(cls, data: bytes | str) -> Policy:
        """Parse policy.json content; :class:`InvalidPolicyError` says what is wrong."""
        if len(data) > _MAX_POLICY_SIZE:
            raise InvalidPolicyError(f"policy of {len(data)} bytes is too large")
        obj = object_fields(
            load_json(data, InvalidPolicyError, "policy"),
            InvalidPolicyError,
            "the policy",
            required=("default",),
            optional=("transports",),
        )
        default = _parse_requirements(obj["default"], "default")
        transports: dict[str, dict[str, tuple[PolicyRequirement, ...]]] = {}
        raw_transports = obj.get("transports", {})
        if raw_transports is None:
            raw_transports = {}
        if not isinstance(raw_transports, dict):
            raise InvalidPolicyError("'transports' must be a JSON object")
        for transport, scopes in raw_transports.items():
            if not isinstance(scopes, dict):
                raise InvalidPolicyError(f"transports.{transport} must be a JSON object")
            parsed: dict[str, tuple[PolicyRequirement, ...]] = {}
            for scope, requirements in scopes.items():
                _validate_scope(transport, scope)
                parsed[scope] = _parse_requirements(
                    requirements, f"transports.{transport}[{scope!r}]"
                )
            transports[transport] = parsed
        return cls(default, transports)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> Policy:
        """Read a policy file; by default the user's, else the system's (see
        :func:`default_policy_path`)."""
        from ..blobfiles import read_limited

        file = Path(path) if path is not None else default_policy_path()
        try:
            data = read_limited(file, _MAX_POLICY_SIZE)
        except OSError as e:
            raise InvalidPolicyError(f"cannot read the policy {file}: {e.strerror}") from e
        if data is None:
            raise InvalidPolicyError(
                f"invalid policy in {file}: larger than {_MAX_POLICY_SIZE} bytes"
            )
        try:
            return cls.parse(data)
        except InvalidPolicyError as e:
            raise InvalidPolicyError(f"invalid policy in {file}: {e}") from e

    @classmethod
    def insecure_accept_anything(cls) -> Policy:
        """The policy that accepts every image (``--insecure-policy``)."""
        return cls((InsecureAcceptAnything(),))

    def to_dict(self) -> dict[str, Any]:
        """The policy as policy.json data."""
        result: dict[str, Any] = {"default": [r.to_dict() for r in self.default]}
        if self.transports:
            result["transports"] = {
                transport: {scope: [r.to_dict() for r in reqs] for scope, reqs in scopes.items()}
                for transport, scopes in self.transports.items()
            }
        return result

    def requirements_for(
        self, transport_name: str, identity: str
    ) -> tuple[str | None, tuple[PolicyRequirement, ...]]:
        """The scope that applies to ``identity`` (None: the global default) and its
        requirements."""
        scopes = self.transports.get(transport_name)
        if scopes is not None:
            for scope in (identity, *policy_scope_namespaces(transport_name, identity), ""):
                if scope in scopes:
                    return scope, scopes[scope]
        return None, self.default

    def evaluate(
        self,
        image_reference_scope: str,
        transport_name: str,
        docker_reference: Reference | None,
        manifest: bytes,
        signatures: Sequence[bytes],
    ) -> None:
        """Raise :class:`PolicyRejectedError` unless the policy accepts the image.

        ``image_reference_scope`` is the image's policy identity (see
        :func:`image_reference_scope`), ``docker_reference`` its Docker name if it has one
        (what ``signedIdentity`` rules compare against), ``manifest`` the top-level manifest
        and ``signatures`` the stored signatures (simple and sigstore blobs).
        """
        scope, requirements = self.requirements_for(transport_name, image_reference_scope)
        shown = f"{transport_name}:{image_reference_scope}"
        image = _Image(transport_name, docker_reference, manifest, tuple(signatures), shown)
        where = "default" if scope is None else f"transports.{transport_name}[{scope!r}]"
        for index, requirement in enumerate(requirements, 1):
            try:
                requirement._check(image)
            except (_Rejected, ImageError) as e:
                # A failure to check (gpg missing, sigstore extra absent) rejects too: the
                # policy must fail closed. The cause stays chained.
                raise PolicyRejectedError(
                    f"image {shown} rejected by the signature policy ({where}, requirement "
                    f"{index} of {len(requirements)}, {requirement.type}): {e}",
                    requirement=requirement.type,
                    transport=transport_name,
                    scope=scope,
                    reasons=e.reasons if isinstance(e, _Rejected) else (str(e),),
                ) from (e if isinstance(e, ImageError) else None)

    def evaluate_reference(
        self, reference: ImageReference, manifest: bytes, signatures: Sequence[bytes]
    ) -> None:
        """:meth:`evaluate` for an :class:`~imagetypes.ImageReference`."""
        self.evaluate(
            image_reference_scope(reference),
            reference.transport.name,
            reference.docker_reference,
            manifest,
            signatures,
        )
