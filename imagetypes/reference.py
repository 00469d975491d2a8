"""Image names: ``registry/repository:tag@digest``, parsed and normalized as Docker does.

The grammar is the one of the CNCF distribution ``reference`` package (used by Docker, skopeo
and containers/image)::

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [ domain "/" ] component ( "/" component )*
    domain     := host [ ":" port ]
    host       := label ( "." label )* | "[" ipv6 "]"
    component  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag        := [\\w][\\w.-]{0,127}

Parsing normalizes the way ``docker pull`` does: a name without a registry host lives on
``docker.io``, and a single-component name there is an official image under ``library/``.
"""

from __future__ import annotations

import re

import attrs

from .digest import Digest
from .errors import InvalidDigestError, InvalidReferenceError

__all__ = ["DEFAULT_DOMAIN", "DEFAULT_TAG", "NAME_TOTAL_LENGTH_MAX", "Reference"]

#: The registry a name without a host refers to.
DEFAULT_DOMAIN = "docker.io"
#: The tag :meth:`Reference.with_default_tag` adds.
DEFAULT_TAG = "latest"
#: The longest a name (domain and path, without tag or digest) may be.
NAME_TOTAL_LENGTH_MAX = 255

_LEGACY_DEFAULT_DOMAIN = "index.docker.io"
_OFFICIAL_REPO_NAMESPACE = "library"
# Longest possible reference: name, ":" tag (128), "@sha512:" and 128 hex digits. Anything
# longer is refused before any regex runs, so hostile input costs nothing.
_MAX_REFERENCE_LENGTH = NAME_TOTAL_LENGTH_MAX + 1 + 128 + 1 + len("sha512:") + 128

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[a-fA-F0-9:]+\])"

_PATH_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_DOMAIN_RE = re.compile(rf"{_HOST}(?::[0-9]+)?")
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")


def _split_docker_domain(name: str) -> tuple[str, str]:
    """Split ``name`` (without tag or digest handling) into (domain, remainder), normalized.

    The first component is a registry host only if it contains ``.`` or ``:`` or is
    ``localhost``; otherwise the name lives on Docker Hub.
    """
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        domain, remainder = first, rest
    else:
        domain, remainder = DEFAULT_DOMAIN, name
    if domain == _LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = f"{_OFFICIAL_REPO_NAMESPACE}/{remainder}"
    return domain, remainder


def _check_tag(tag: str) -> str:
    if not isinstance(tag, str):
        raise InvalidReferenceError(f"a tag must be a string, not {type(tag).__name__}")
    if not _TAG_RE.fullmatch(tag):
        raise InvalidReferenceError(
            f"invalid tag {_shown(tag)}: a tag is 1 to 128 letters, digits, '_', '.' or '-', "
            "not starting with '.' or '-'"
        )
    return tag


def _to_digest(value: Digest | str | None) -> Digest | None:
    if value is None or isinstance(value, Digest):
        return value
    try:
        return Digest.parse(value)
    except InvalidDigestError as e:
        raise InvalidReferenceError(str(e)) from e


def _shown(text: str) -> str:
    """``text`` quoted for an error message, shortened when it is long."""
    return repr(text) if len(text) <= 80 else f"{text[:77]!r}..."


def _validate_domain(instance: Reference, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str):
        raise InvalidReferenceError(f"a registry host must be a string, not {type(value).__name__}")
    if not _DOMAIN_RE.fullmatch(value):
        raise InvalidReferenceError(
            f"invalid registry host {_shown(value)}: expected a host name or [IPv6 address], "
            "optionally with :port"
        )


def _validate_path(instance: Reference, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str):
        raise InvalidReferenceError(
            f"a repository name must be a string, not {type(value).__name__}"
        )
    if not value:
        raise InvalidReferenceError("repository name must have at least one component")
    if value != value.lower():
        raise InvalidReferenceError(
            f"invalid repository name {_shown(value)}: it must be lowercase"
        )
    if not _PATH_RE.fullmatch(value):
        raise InvalidReferenceError(
            f"invalid repository name {_shown(value)}: each '/'-separated component must be "
            "lowercase letters and digits, separated by one '.', '_' or '__' or by dashes"
        )


def _validate_tag(
    instance: Reference, attribute: attrs.Attribute[str | None], value: str | None
) -> None:
    if value is not None:
        _check_tag(value)


@attrs.frozen
class Reference:
    """A normalized image name, optionally with a tag and/or a digest.

    ``Reference.parse("busybox")`` is ``docker.io/library/busybox``; ``str()`` gives the full
    form and :meth:`familiar` the short one Docker prints. Built directly, the fields must
    already be in normalized form (what :meth:`parse` produces), so that ``parse(str(ref))``
    always gives ``ref`` back.
    """

    #: The registry host, with port if any (``docker.io``, ``localhost:5000``).
    domain: str = attrs.field(validator=_validate_domain)
    #: The repository path within the registry (``library/busybox``).
    path: str = attrs.field(validator=_validate_path)
    tag: str | None = attrs.field(default=None, validator=_validate_tag)
    digest: Digest | None = attrs.field(default=None, converter=_to_digest)

    def __attrs_post_init__(self) -> None:
        if len(self.name) > NAME_TOTAL_LENGTH_MAX:
            raise InvalidReferenceError(
                f"repository name {_shown(self.name)} is {len(self.name)} characters long; "
                f"the maximum is {NAME_TOTAL_LENGTH_MAX}"
            )
        # Reject forms that parse() would read differently, so a value always round-trips.
        if self.domain == _LEGACY_DEFAULT_DOMAIN:
            raise InvalidReferenceError(
                f"registry host {_LEGACY_DEFAULT_DOMAIN!r} must be written {DEFAULT_DOMAIN!r}"
            )
        if not ("." in self.domain or ":" in self.domain or self.domain == "localhost"):
            raise InvalidReferenceError(
                f"{self.domain!r} would be read as a Docker Hub namespace, not a registry host: "
                "a host needs a '.', a ':port', or to be 'localhost'"
            )
        if self.domain == DEFAULT_DOMAIN and "/" not in self.path:
            raise InvalidReferenceError(
                f"a Docker Hub repository needs a namespace: "
                f"{_OFFICIAL_REPO_NAMESPACE}/{self.path}, not {self.path}"
            )

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse and normalize an image name such as ``busybox``, ``quay.io/a/b:1@sha256:...``.

        Raises :class:`~imagetypes.InvalidReferenceError` saying what is wrong.
        """
        if not isinstance(text, str):
            raise InvalidReferenceError(
                f"an image reference must be a string, not {type(text).__name__}"
            )
        if not text:
            raise InvalidReferenceError("invalid reference: the repository name is empty")
        if len(text) > _MAX_REFERENCE_LENGTH:
            raise InvalidReferenceError(
                f"invalid reference {_shown(text)}: {len(text)} characters is too long"
            )
        if _IDENTIFIER_RE.fullmatch(text):
            raise InvalidReferenceError(
                f"invalid repository name {text!r}: a 64-character hexadecimal string is "
                "ambiguous with an image ID"
            )
        # Name and tag cannot contain '@', so the first '@' starts the digest.
        name_and_tag, at, digest_text = text.partition("@")
        if at and not digest_text:
            raise InvalidReferenceError(f"invalid reference {_shown(text)}: empty digest after '@'")
        if not name_and_tag or name_and_tag.startswith(":"):
            raise InvalidReferenceError(
                f"invalid reference {_shown(text)}: the repository name is empty"
            )
        domain, remainder = _split_docker_domain(name_and_tag)
        # After the domain is split off no ':' is left in the path, so the first one starts
        # the tag.
        path, colon, tag = remainder.partition(":")
        if colon and not tag:
            raise InvalidReferenceError(f"invalid reference {_shown(text)}: empty tag after ':'")
        try:
            return cls(domain, path, tag if colon else None, digest_text if at else None)
        except InvalidReferenceError as e:
            raise InvalidReferenceError(f"invalid reference {_shown(text)}: {e}") from e

    # -- views -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The full repository name, ``domain/path`` (``docker.io/library/busybox``)."""
        return f"{self.domain}/{self.path}"

    @property
    def is_name_only(self) -> bool:
        """True when the reference has neither a tag nor a digest."""
        return self.tag is None and self.digest is None

    @property
    def familiar_name(self) -> str:
        """The name as Docker shows it: ``busybox``, ``user/app``, ``quay.io/a/b``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        namespace, _, rest = self.path.partition("/")
        if namespace == _OFFICIAL_REPO_NAMESPACE and "/" not in rest:
            # A bare 64-hex-digit name would be refused as an image ID.
            return self.path if _IDENTIFIER_RE.fullmatch(rest) else rest
        if "." in namespace or namespace == "localhost":
            # Unlike Docker, keep the host where the short form would be read as another
            # registry (``docker.io/foo.bar/baz`` is not ``foo.bar/baz``).
            return self.name
        return self.path

    def familiar(self) -> str:
        """The short form Docker prints: ``busybox:latest``, ``user/app@sha256:...``."""
        return self._with_suffix(self.familiar_name)

    def __str__(self) -> str:
        return self._with_suffix(self.name)

    def _with_suffix(self, name: str) -> str:
        if self.tag is not None:
            name = f"{name}:{self.tag}"
        if self.digest is not None:
            name = f"{name}@{self.digest}"
        return name

    # -- derived references ------------------------------------------------------------------
    def with_tag(self, tag: str) -> Reference:
        """The same reference with ``tag`` (a digest, if any, is kept)."""
        return attrs.evolve(self, tag=_check_tag(tag))

    def with_digest(self, digest: Digest | str) -> Reference:
        """The same reference with ``digest`` (a tag, if any, is kept)."""
        return attrs.evolve(self, digest=_to_digest(digest))

    def with_default_tag(self) -> Reference:
        """The reference with tag ``latest`` if it has neither tag nor digest, else itself."""
        return self.with_tag(DEFAULT_TAG) if self.is_name_only else self

    def name_only(self) -> Reference:
        """The repository alone, without tag or digest."""
        return attrs.evolve(self, tag=None, digest=None)
