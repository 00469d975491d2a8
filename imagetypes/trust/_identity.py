"""``signedIdentity``: how the identity a signature claims must relate to the image's name.

These are the reference-match rules of containers-policy.json(5). Each rule answers whether a
signature claiming ``signed_reference`` is acceptable for an image known as
``image_reference`` (the Docker reference the image is being pulled or copied as).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import attrs

from ..errors import InvalidReferenceError
from ..reference import Reference
from ._errors import InvalidPolicyError
from ._json import object_fields, string_field

__all__ = [
    "ExactReference",
    "ExactRepository",
    "MatchExact",
    "MatchRepoDigestOrExact",
    "MatchRepository",
    "RemapIdentity",
    "SignedIdentity",
    "parse_signed_identity",
]

# The domain and name grammar of the distribution reference package, for remapIdentity
# prefixes (which are names without tag or digest, or bare hosts).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
DOMAIN_RE = re.compile(_DOMAIN)
_DOMAIN_PREFIX_RE = re.compile(rf"{_DOMAIN}/")
_NAME_RE = re.compile(rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*")


def _parse(text: str) -> Reference | None:
    try:
        return Reference.parse(text)
    except InvalidReferenceError:
        return None


def _repo_digest_or_exact(intended: Reference, signed: Reference) -> bool:
    if signed.is_name_only:
        return False
    if intended.tag is not None:  # also when it has both a tag and a digest
        return str(signed) == str(intended)
    if intended.digest is not None:
        return signed.name == intended.name
    return False


class SignedIdentity(ABC):
    """A ``signedIdentity`` rule of a ``signedBy`` or ``sigstoreSigned`` requirement."""

    #: The ``type`` value in policy.json.
    type: ClassVar[str]

    @abstractmethod
    def matches(self, image_reference: Reference | None, signed_reference: str) -> bool:
        """Whether a signature claiming ``signed_reference`` is acceptable for the image."""

    def to_dict(self) -> dict[str, Any]:
        """The rule as a policy.json object."""
        return {"type": self.type}


@attrs.frozen
class MatchExact(SignedIdentity):
    """The signed identity must be exactly the image's reference (tag or digest included)."""

    type: ClassVar[str] = "matchExact"

    def matches(self, image_reference: Reference | None, signed_reference: str) -> bool:
        signed = _parse(signed_reference)
        if image_reference is None or signed is None:
            return False
        if image_reference.is_name_only or signed.is_name_only:
            return False
        return str(signed) == str(image_reference)


@attrs.frozen
class MatchRepoDigestOrExact(SignedIdentity):
    """Exact match for a tagged image; same repository for an image pulled by digest.

    The default when a requirement has no ``signedIdentity``.
    """

    type: ClassVar[str] = "matchRepoDigestOrExact"

    def matches(self, image_reference: Reference | None, signed_reference: str) -> bool:
        signed = _parse(signed_reference)
        if image_reference is None or signed is None:
            return False
        return _repo_digest_or_exact(image_reference, signed)


@attrs.frozen
class MatchRepository(SignedIdentity):
    """The signed identity must be in the image's repository (any tag)."""

    type: ClassVar[str] = "matchRepository"

    def matches(self, image_reference: Reference | None, signed_reference: str) -> bool:
        signed = _parse(signed_reference)
        if image_reference is None or signed is None:
            return False
        return signed.name == image_reference.name


def _validate_exact_reference(instance: object, attribute: object, value: str) -> None:
    ref = _parse(value) if isinstance(value, str) else None
    if ref is None:
        raise InvalidPolicyError(f"invalid dockerReference {value!r} in exactReference")
    if ref.is_name_only:
        raise InvalidPolicyError(
            f"dockerReference {value!r} in exactReference has neither a tag nor a digest"
        )


@attrs.frozen
class ExactReference(SignedIdentity):
    """The signed identity must be exactly ``docker_reference`` (whatever the image's name)."""

    type: ClassVar[str] = "exactReference"
    docker_reference: str = attrs.field(validator=_validate_exact_reference)

    def matches(self, image_reference: Reference | None, signed_reference: str) -> bool:
        intended, signed = _parse(self.docker_reference), _parse(signed_reference)
        if intended is None or signed is None or signed.is_name_only:
            return False
        return str(signed) == str(intended)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "dockerReference": self.docker_reference}


def _validate_exact_repository(instance: object, attribute: object, value: str) -> None:
    if not isinstance(value, str) or _parse(value) is None:
        raise InvalidPolicyError(f"invalid dockerRepository {value!r} in exactRepository")


@attrs.frozen
class ExactRepository(SignedIdentity):
    """The signed identity must be in repository ``docker_repository`` (any tag)."""

    type: ClassVar[str] = "exactRepository"
    docker_repository: str = attrs.field(validator=_validate_exact_repository)

    def matches(self, image_reference: Reference | None, signed_reference: str) -> bool:
        intended, signed = _parse(self.docker_repository), _parse(signed_reference)
        if intended is None or signed is None:
            return False
        return signed.name == intended.name

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "dockerRepository": self.docker_repository}


def _validate_prefix(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if isinstance(value, str) and (
        DOMAIN_RE.fullmatch(value) or (_NAME_RE.fullmatch(value) and _DOMAIN_PREFIX_RE.match(value))
    ):
        return
    raise InvalidPolicyError(f"remapIdentity {attribute.name} {value!r} is not valid")


@attrs.frozen
class RemapIdentity(SignedIdentity):
    """Like :class:`MatchRepoDigestOrExact`, after replacing ``prefix`` in the image's name by
    ``signed_prefix`` (for mirrors of signed images)."""

    type: ClassVar[str] = "remapIdentity"
    prefix: str = attrs.field(validator=_validate_prefix)
    signed_prefix: str = attrs.field(validator=_validate_prefix)

    def remap(self, reference: Reference) -> Reference | None:
        """``reference`` with the prefix replaced, itself if it does not match, None if the
        result is not a valid reference."""
        name = reference.name
        if not (
            name == self.prefix or (name.startswith(self.prefix) and name[len(self.prefix)] == "/")
        ):
            return reference
        rewritten = str(reference).replace(self.prefix, self.signed_prefix, 1)
        parsed = _parse(rewritten)
        # The rewritten text must already be in normalized form (Go's reference.ParseNamed).
        if parsed is None or str(parsed) != rewritten:
            return None
        return parsed

    def matches(self, image_reference: Reference | None, signed_reference: str) -> bool:
        signed = _parse(signed_reference)
        if image_reference is None or signed is None:
            return False
        intended = self.remap(image_reference)
        if intended is None:
            return False
        return _repo_digest_or_exact(intended, signed)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "prefix": self.prefix, "signedPrefix": self.signed_prefix}


def parse_signed_identity(value: object) -> SignedIdentity:
    """A :class:`SignedIdentity` from its policy.json object."""
    what = "signedIdentity"
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise InvalidPolicyError(f"{what} must be a JSON object with a string 'type'")
    kind = value["type"]
    what = f"signedIdentity of type {kind!r}"
    err = InvalidPolicyError
    if kind in (MatchExact.type, MatchRepoDigestOrExact.type, MatchRepository.type):
        object_fields(value, err, what, required=("type",))
        if kind == MatchExact.type:
            return MatchExact()
        if kind == MatchRepository.type:
            return MatchRepository()
        return MatchRepoDigestOrExact()
    if kind == ExactReference.type:
        obj = object_fields(value, err, what, required=("type", "dockerReference"))
        return ExactReference(string_field(obj, "dockerReference", err, what))
    if kind == ExactRepository.type:
        obj = object_fields(value, err, what, required=("type", "dockerRepository"))
        return ExactRepository(string_field(obj, "dockerRepository", err, what))
    if kind == RemapIdentity.type:
        obj = object_fields(value, err, what, required=("type", "prefix", "signedPrefix"))
        return RemapIdentity(
            string_field(obj, "prefix", err, what), string_field(obj, "signedPrefix", err, what)
        )
    raise InvalidPolicyError(f"unknown signedIdentity type {kind!r}")
