"""sync(): copy many images - a repository, a registry, a folder of images, a YAML list - as
``skopeo sync`` does, concurrently, skipping those the destination already holds."""

from __future__ import annotations

import os
import posixpath
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import attrs

from ..errors import ImageError, InvalidReferenceError, UnsupportedError
from ..plugins import open_registry, parse_reference
from ..reference import Reference
from ..types import Credentials, SharedState, TransportOptions
from ._engine import copy_image, open_cache
from ._options import CopyOptions, CopyResult
from ._progress import ProgressEvent
from ._trust import check_gpg_key, read_sigstore_key

__all__ = [
    "SyncError",
    "SyncImage",
    "SyncOptions",
    "SyncReport",
    "SyncSource",
    "list_sync_images",
    "sync",
]

SourceKind = Literal["docker", "dir", "yaml"]
DestinationKind = Literal["docker", "dir"]
SyncStatus = Literal["copied", "unchanged", "failed", "planned", "cancelled"]


class SyncError(ImageError):
    """A sync stopped at a failed image (without ``keep_going``), or found nothing to copy.

    :attr:`report` tells what was done before it stopped (None when nothing was listed).
    """

    def __init__(self, message: str, report: SyncReport | None = None) -> None:
        super().__init__(message)
        self.report = report


@attrs.frozen(kw_only=True)
class SyncOptions:
    """How :func:`sync` copies. Every field has a default."""

    #: Copy every image of an index, and the index (skopeo sync ``--all``); else the one for
    #: this machine (or ``copy_options.source_options.platform``).
    all: bool = False
    #: Name destination images after the full source reference (registry host and path,
    #: skopeo's ``--scoped``); else after the last path component (``busybox:1.36``).
    scoped: bool = False
    #: Appended to every destination reference (skopeo's ``--append-suffix``): a tag suffix for
    #: a registry, a folder-name suffix for ``dir``.
    append_suffix: str = ""
    #: List the copies that would be made (status ``"planned"``) without copying anything.
    dry_run: bool = False
    #: Go on past failed images (their status is ``"failed"``); without it the first failure
    #: stops the sync with :class:`SyncError`.
    keep_going: bool = False
    #: Images copied at the same time.
    concurrency: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    #: How each image is copied (``instances`` is set from :attr:`all`). Its progress callback
    #: receives the events of every copy, one call at a time. With ``sign_by`` or
    #: ``sign_by_sigstore_private_key``, every image synced is signed (and therefore copied
    #: even when the destination already holds it, as skopeo does), as its own destination
    #: reference unless ``sign_identity`` names one identity for all; a sync to ``dir``
    #: needs ``sign_identity`` (a folder has no Docker reference).
    copy_options: CopyOptions = attrs.field(factory=CopyOptions)


@attrs.frozen
class SyncSource:
    """One image to copy: its reference, the name it gets at the destination, and how to read
    it (per-registry settings from a YAML file)."""

    reference: str
    #: The path the destination name is made of (``registry.example/app:1.0``, or a folder
    #: path relative to the source folder).
    suffix: str
    options: TransportOptions | None = None


@attrs.frozen(kw_only=True)
class SyncImage:
    """What happened to one image."""

    source: str
    destination: str
    status: SyncStatus
    #: The digest of the manifest written (or already there).
    digest: str | None = None
    #: Why it failed.
    error: str | None = None
    result: CopyResult | None = attrs.field(default=None, repr=False, eq=False)
    exception: BaseException | None = attrs.field(default=None, repr=False, eq=False)


@attrs.frozen
class SyncReport:
    """The images of a sync, in the order they were listed."""

    images: tuple[SyncImage, ...]

    def _with(self, status: str) -> tuple[SyncImage, ...]:
        return tuple(i for i in self.images if i.status == status)

    @property
    def copied(self) -> tuple[SyncImage, ...]:
        """Images written."""
        return self._with("copied")

    @property
    def unchanged(self) -> tuple[SyncImage, ...]:
        """Images the destination already held (nothing written)."""
        return self._with("unchanged")

    @property
    def failed(self) -> tuple[SyncImage, ...]:
        """Images that could not be copied."""
        return self._with("failed")

    @property
    def ok(self) -> bool:
        """True when no image failed or was cancelled."""
        return not any(i.status in ("failed", "cancelled") for i in self.images)


# -- listing the source -------------------------------------------------------------------------


def _looks_like_registry(text: str) -> bool:
    host = text.removeprefix("docker://").rstrip("/")
    if "/" in host or "@" in host:
        return False
    return text.endswith("/") or "." in host or ":" in host or host == "localhost"


def _tags(repo: Reference, options: TransportOptions | None) -> list[str]:
    with open_registry(f"docker://{repo.domain}", options=options) as registry:
        return list(registry.repository(repo.path).tags())


def _docker_sources(source: str, options: TransportOptions | None) -> list[SyncSource]:
    text = source.removeprefix("docker://")
    if _looks_like_registry(source):
        host = text.rstrip("/")
        with open_registry(f"docker://{host}", options=options) as registry:
            names = list(registry.repositories())
        out: list[SyncSource] = []
        for name in names:
            out += _repository_sources(Reference.parse(f"{host}/{name}"), options)
        return out
    named = Reference.parse(text)
    if not named.is_name_only:
        return [SyncSource(f"docker://{named}", str(named), options)]
    return _repository_sources(named, options)


def _repository_sources(repo: Reference, options: TransportOptions | None) -> list[SyncSource]:
    out = []
    for tag in _tags(repo, options):
        ref = repo.with_tag(tag)
        out.append(SyncSource(f"docker://{ref}", str(ref), options))
    return out


def _dir_sources(source: str) -> list[SyncSource]:
    base = Path(source)
    if not base.is_dir():
        raise SyncError(f"invalid source directory {source!r}: not a directory")
    out: list[SyncSource] = []
    for root, dirs, files in os.walk(base):
        dirs.sort()
        if "manifest.json" in files:
            dirs[:] = []  # an image directory: do not look inside it
            relative = Path(root).relative_to(base).as_posix()
            suffix = relative if relative != "." else base.resolve().name
            out.append(SyncSource(f"dir:{root}", suffix))
    return out


def _yaml_sources(path: str, options: TransportOptions | None) -> list[SyncSource]:
    config = _load_yaml(path)
    out: list[SyncSource] = []
    for registry_name, settings in config.items():
        if not isinstance(registry_name, str) or not isinstance(settings, Mapping):
            raise SyncError(f"{path}: every top-level entry must map a registry to its settings")
        reg_options = _registry_options(registry_name, settings, options, path)
        images = settings.get("images") or {}
        by_regex = settings.get("images-by-tag-regex") or {}
        by_semver = settings.get("images-by-semver") or {}
        for key, value in (("images", images), ("images-by-tag-regex", by_regex)):
            if not isinstance(value, Mapping):
                raise SyncError(f"{path}: {registry_name}.{key} must map repositories to tags")
        if not isinstance(by_semver, Mapping):
            raise SyncError(f"{path}: {registry_name}.images-by-semver must map repositories")
        for repo_name, refs in images.items():
            repo = _repository(registry_name, repo_name, path)
            if refs:
                if not isinstance(refs, list):
                    raise SyncError(f"{path}: {registry_name}.images.{repo_name} must be a list")
                for ref in refs:
                    text = str(ref)
                    sep = "@" if ":" in text else ":"
                    named = Reference.parse(f"{repo.name}{sep}{text}")
                    out.append(SyncSource(f"docker://{named}", str(named), reg_options))
            else:
                out += _repository_sources(repo, reg_options)
        for repo_name, pattern in by_regex.items():
            repo = _repository(registry_name, repo_name, path)
            try:
                regex = re.compile(str(pattern))
            except re.error as e:
                raise SyncError(f"{path}: invalid tag regex {pattern!r}: {e}") from e
            out += [
                s for s in _repository_sources(repo, reg_options) if regex.search(_tag_of(s.suffix))
            ]
        for repo_name, constraint in by_semver.items():
            repo = _repository(registry_name, repo_name, path)
            check = semver_constraint(str(constraint))
            out += [s for s in _repository_sources(repo, reg_options) if check(_tag_of(s.suffix))]
    return out


def _tag_of(suffix: str) -> str:
    return Reference.parse(suffix).tag or ""


def _repository(registry: str, name: object, path: str) -> Reference:
    try:
        repo = Reference.parse(f"{registry}/{name}")
    except InvalidReferenceError as e:
        raise SyncError(f"{path}: invalid repository {registry}/{name}: {e}") from e
    if not repo.is_name_only:
        raise SyncError(f"{path}: {registry}/{name} names an image, not a repository")
    return repo


def _registry_options(
    name: str, settings: Mapping[str, Any], base: TransportOptions | None, path: str
) -> TransportOptions:
    opts = base or TransportOptions()
    changes: dict[str, Any] = {}
    creds = settings.get("credentials")
    if creds:
        if not isinstance(creds, Mapping) or not creds.get("username"):
            raise SyncError(f"{path}: {name}.credentials needs a username (and password)")
        changes["credentials"] = Credentials(str(creds["username"]), str(creds.get("password", "")))
    if "tls-verify" in settings:
        if not isinstance(settings["tls-verify"], bool):
            raise SyncError(f"{path}: {name}.tls-verify must be true or false")
        changes["tls_verify"] = settings["tls-verify"]
    if settings.get("cert-dir"):
        changes["cert_dir"] = str(settings["cert-dir"])
    return attrs.evolve(opts, **changes)


def _load_yaml(path: str) -> Mapping[str, Any]:
    try:
        import yaml  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        raise UnsupportedError(
            "reading a sync YAML file needs PyYAML (pip install imagetypes[sync])"
        ) from None
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise SyncError(f"cannot read {path}: {e}") from e
    except yaml.YAMLError as e:
        raise SyncError(f"{path} is not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise SyncError(f"{path}: expected a mapping of registries")
    return data


def list_sync_images(
    source: str, kind: SourceKind, options: TransportOptions | None = None
) -> list[SyncSource]:
    """The images a sync from ``source`` would copy, in order.

    ``kind`` is ``"docker"`` (``source`` is ``registry/repository`` for every tag,
    ``registry/repository:tag`` for one image, or ``registry`` alone for every repository of
    its catalog), ``"dir"`` (a folder searched for image directories, i.e. folders holding a
    ``manifest.json``) or ``"yaml"`` (a skopeo-sync YAML file: per registry, ``images`` (tags
    or digests; none means every tag), ``images-by-tag-regex``, ``images-by-semver``,
    ``credentials``, ``tls-verify``, ``cert-dir``).
    """
    if kind == "docker":
        return _docker_sources(source, options)
    if kind == "dir":
        return _dir_sources(source)
    if kind == "yaml":
        return _yaml_sources(source, options)
    raise SyncError(f"{kind!r} is not a valid sync source (docker, dir or yaml)")


def _destination(
    item: SyncSource, destination: str, kind: DestinationKind, options: SyncOptions
) -> str:
    suffix = item.suffix if options.scoped else posixpath.basename(item.suffix)
    target = posixpath.join(destination.removeprefix("docker://"), suffix) + options.append_suffix
    if kind == "docker":
        return f"docker://{target}"
    if kind == "dir":
        return f"dir:{target}"
    raise SyncError(f"{kind!r} is not a valid sync destination (docker or dir)")


# -- syncing --------------------------------------------------------------------------------------


def sync(
    source: str,
    destination: str,
    *,
    source_kind: SourceKind,
    destination_kind: DestinationKind,
    options: SyncOptions | None = None,
) -> SyncReport:
    """Copy every image of ``source`` to ``destination``, as ``skopeo sync`` does.

    ``source`` is listed by :func:`list_sync_images`. ``destination`` is a registry location
    with an optional namespace (``registry.example/mirror``) when ``destination_kind`` is
    ``"docker"``, a folder when ``"dir"``; each image is written there under the last path
    component of its source name (``mirror/busybox:1.36``), or the full name with
    ``options.scoped`` (``mirror/docker.io/library/busybox:1.36``), plus
    ``options.append_suffix``. ``dir`` to ``dir`` is refused, as skopeo refuses it.

    Images are copied ``options.concurrency`` at a time; one the destination already holds
    identically is not copied again (a HEAD-like check per image: status ``"unchanged"``).
    Returns a :class:`SyncReport`. Without ``keep_going`` the first failure stops the sync
    (images not started are ``"cancelled"``) and raises :class:`SyncError`, whose ``report``
    says what was done; with it, failures are reported and the sync goes on.
    """
    options = options if options is not None else SyncOptions()
    if source_kind == "dir" and destination_kind == "dir":
        raise SyncError("sync from 'dir' to 'dir' is not supported; copy the folder instead")
    if destination_kind not in ("docker", "dir"):
        raise SyncError(f"{destination_kind!r} is not a valid sync destination (docker or dir)")
    base = options.copy_options if options.dry_run else _check_signing(options, destination_kind)
    with SharedState() as state:
        # Every image of the sync (and the listing) shares what the transports keep there:
        # one registry client per registry and repository, its ping and its tokens.
        base = attrs.evolve(
            base,
            source_options=state.attach(base.source_options),
            destination_options=state.attach(base.destination_options),
        )
        items = list_sync_images(source, source_kind, base.source_options)
        if not items:
            raise SyncError(f"no images to sync found in {source!r}")
        targets = [_destination(item, destination, destination_kind, options) for item in items]
        if options.dry_run:
            return SyncReport(
                tuple(
                    SyncImage(source=i.reference, destination=t, status="planned")
                    for i, t in zip(items, targets, strict=True)
                )
            )
        copy_options = attrs.evolve(
            base,
            instances="all" if options.all else "system",
            skip_identical=True,
            progress=_serialised(base.progress),
            # One cache object for every image: its file is set up once, not per image.
            blob_info_cache=open_cache(base.blob_info_cache) or False,
        )
        report = _Runner(items, targets, copy_options, options).run()
    if not options.keep_going and not report.ok:
        first = report.failed[0] if report.failed else None
        message = (
            f"sync stopped: copying {first.source} to {first.destination} failed: {first.error}"
            if first is not None
            else "sync stopped"
        )
        error = SyncError(message, report)
        if first is not None and first.exception is not None:
            raise error from first.exception
        raise error
    return report


def _check_signing(options: SyncOptions, destination_kind: DestinationKind) -> CopyOptions:
    """The copy options, with a sigstore key file read once; fails before anything is listed
    when signing cannot work (no identity for ``dir``, a wrong passphrase, no GPG key)."""
    base = options.copy_options
    if base.sign_by is None and base.sign_by_sigstore_private_key is None:
        return base
    if destination_kind == "dir" and base.sign_identity is None:
        raise SyncError(
            "cannot sign images synced to a folder: a dir destination has no Docker reference "
            "to sign as; give one identity for every image (CopyOptions.sign_identity) or "
            "sync to a registry"
        )
    if base.sign_by_sigstore_private_key is not None:
        from ..trust import sigstore_public_key

        key = read_sigstore_key(base.sign_by_sigstore_private_key)
        sigstore_public_key(key, base.sign_passphrase)  # the key and passphrase, checked once
        base = attrs.evolve(base, sign_by_sigstore_private_key=key)
    if base.sign_by is not None:
        check_gpg_key(base.sign_by, base.gpg_home)
    return base


def _serialised(
    callback: Callable[[ProgressEvent], None] | None,
) -> Callable[[ProgressEvent], None] | None:
    """The progress callback, called one at a time by all the concurrent copies."""
    if callback is None:
        return None
    lock = threading.Lock()

    def call(event: ProgressEvent) -> None:
        with lock:
            callback(event)

    return call


class _Runner:
    def __init__(
        self,
        items: Sequence[SyncSource],
        targets: Sequence[str],
        copy_options: CopyOptions,
        options: SyncOptions,
    ) -> None:
        self.items = items
        self.targets = targets
        self.copy_options = copy_options
        self.options = options
        self.stop = threading.Event()
        self.results: list[SyncImage | None] = [None] * len(items)

    def run(self) -> SyncReport:
        workers = min(self.options.concurrency, len(self.items))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="imagetypes-sync") as pool:
            list(pool.map(self._one, range(len(self.items))))
        return SyncReport(tuple(r for r in self._final()))

    def _final(self) -> Iterator[SyncImage]:
        for i, result in enumerate(self.results):
            if result is None:
                result = SyncImage(
                    source=self.items[i].reference, destination=self.targets[i], status="cancelled"
                )
            yield result

    def _one(self, i: int) -> None:
        item, target = self.items[i], self.targets[i]
        if self.stop.is_set():
            return
        options = self.copy_options
        if item.options is not None:
            options = attrs.evolve(options, source_options=item.options)
        try:
            if target.startswith("dir:"):
                Path(target[4:]).parent.mkdir(parents=True, exist_ok=True)
            result = copy_image(parse_reference(item.reference), target, options)
        except Exception as e:  # reported per image; the sync decides whether to go on
            self.results[i] = SyncImage(
                source=item.reference,
                destination=target,
                status="failed",
                error=" ".join(str(e).split()) or type(e).__name__,
                exception=e,
            )
            if not self.options.keep_going:
                self.stop.set()
            return
        self.results[i] = SyncImage(
            source=item.reference,
            destination=target,
            status="unchanged" if result.unchanged else "copied",
            digest=str(result.manifest_digest),
            result=result,
        )


# -- semver constraints (Masterminds/semver, as skopeo uses) -----------------------------------

_VERSION = re.compile(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?")
_TERM = re.compile(r"\s*(!=|>=|<=|=>|=<|>|<|=|~>|~|\^)?\s*(v?[0-9xX*][0-9A-Za-z.+*-]*)\s*")

_Version = tuple[int, int, int, tuple[Any, ...]]


def _parse_version(text: str) -> tuple[_Version, bool] | None:
    match = _VERSION.fullmatch(text.strip())
    if match is None:
        return None
    major, minor, patch, pre = match.groups()
    pre_key: tuple[Any, ...] = ()
    if pre:
        pre_key = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (int(major), int(minor or 0), int(patch or 0), pre_key), bool(pre)


def _key(version: _Version) -> tuple[Any, ...]:
    # A pre-release sorts before its release.
    return (version[0], version[1], version[2], 0 if version[3] else 1, version[3])


def semver_constraint(text: str) -> Callable[[str], bool]:
    """A predicate on tags for a semver constraint such as ``">=1.2, <2"``, ``"~1.4"``,
    ``"^3"`` or ``"1.x || >=2.1"`` (Masterminds/semver syntax, which skopeo uses).

    Tags that are not versions never match; pre-releases match only constraints that name a
    pre-release, as in Masterminds/semver.
    """
    alternatives = []
    for alternative in text.split("||"):
        terms = [t for t in re.split(r"\s*,\s*|\s+(?=[<>=!~^])", alternative.strip()) if t]
        if not terms:
            raise SyncError(f"invalid semver constraint {text!r}")
        alternatives.append([_term(t, text) for t in terms])

    def check(tag: str) -> bool:
        parsed = _parse_version(tag)
        if parsed is None:
            return False
        version, is_pre = parsed
        return any(all(term(version, is_pre) for term in terms) for terms in alternatives)

    return check


def _term(text: str, whole: str) -> Callable[[_Version, bool], bool]:
    match = _TERM.fullmatch(text)
    if match is None:
        raise SyncError(f"invalid semver constraint {whole!r}: cannot read {text!r}")
    op, version_text = match.group(1) or "=", match.group(2)
    op = {"=>": ">=", "=<": "<=", "~>": "~"}.get(op, op)
    parts = version_text.lstrip("v").split("-")[0].split(".")
    wild = [p in ("x", "X", "*") for p in parts] + [True] * (3 - len(parts))
    specified = next((i for i, w in enumerate(wild) if w), 3)
    nums = [int(p) if p.isdigit() else 0 for p in parts[:3]] + [0] * (3 - len(parts))
    pre_allowed = "-" in version_text
    base = _parse_version(
        ".".join(str(n) for n in nums)
        + ("-" + version_text.split("-", 1)[1] if pre_allowed else "")
    )
    if base is None:
        raise SyncError(f"invalid semver constraint {whole!r}: bad version {version_text!r}")
    low = _key(base[0])

    def upper(level: int) -> tuple[Any, ...]:
        n = list(nums)
        if level == 0:
            n = [n[0] + 1, 0, 0]
        elif level == 1:
            n = [n[0], n[1] + 1, 0]
        else:
            n = [n[0], n[1], n[2] + 1]
        return (n[0], n[1], n[2], 0, ())  # below every pre-release of the next version

    def test(version: _Version, is_pre: bool) -> bool:
        if is_pre and not pre_allowed:
            return False
        key = _key(version)
        if op == "=" and specified < 3:
            return low <= key < upper(specified - 1) if specified else True
        if op == "=":
            return key == low
        if op == "!=":
            return key != low
        if op == ">":
            return key >= upper(specified - 1) if 0 < specified < 3 else key > low
        if op == ">=":
            return key >= low
        if op == "<":
            return key < low
        if op == "<=":
            return key < upper(specified - 1) if 0 < specified < 3 else key <= low
        if op == "~":
            return low <= key < upper(1 if specified >= 2 else 0)
        # "^": the leftmost non-zero component may not change.
        if nums[0] > 0 or specified == 1:
            return low <= key < upper(0)
        if nums[1] > 0 or specified == 2:
            return low <= key < upper(1)
        return low <= key < upper(2)

    return test
