"""Registry credentials from auth files and credential helpers, as containers-auth.json(5) says.

Lookup (:func:`find_credentials`): explicit ``TransportOptions.credentials`` win and
``no_creds`` disables everything; otherwise these files are read in turn until one has an
answer for the registry:

1. ``options.authfile``, else ``$REGISTRY_AUTH_FILE``, else the primary file
   ``$XDG_RUNTIME_DIR/containers/auth.json`` (``/run/containers/$UID/auth.json`` without it);
2. ``$XDG_CONFIG_HOME/containers/auth.json`` (``~/.config/containers/auth.json``);
3. ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``;
4. ``~/.dockercfg`` (docker's legacy format: the ``auths`` map alone).

Within a file, a ``credHelpers`` entry for the registry wins (``docker-credential-<name> get``),
then docker's default store ``credsStore``; then the ``auths`` keys from the most specific
(``host/ns/repo``, ``host/ns``, ``host``), then keys written as URLs
(``https://index.docker.io/v1/`` for docker.io). An entry holds ``auth`` (base64
``user:password``) and may hold an OAuth2 ``identitytoken``; an identity token is returned as
:class:`~imagetypes.Credentials` with the user name ``<token>``, which the auth flow exchanges
with the token server (docker's convention, shared by credential helpers).

Writing (login and logout) goes to one file, skopeo's default: ``--authfile``, else
``$REGISTRY_AUTH_FILE``, else ``$DOCKER_CONFIG/config.json``, else the primary file. Writes are
atomic (a temporary file renamed into place), mode 0600, and keep every other entry and key.

Secrets never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from imagetypes.blobfiles import read_limited
from imagetypes.errors import ImageError
from imagetypes.types import Credentials, TransportOptions

from ._errors import AuthenticationError, RegistryConnectionError, RegistryError
from ._tls import make_ssl_context

__all__ = [
    "AUTH_FILE_ENV",
    "AuthEntry",
    "AuthFileError",
    "AuthFilePath",
    "CredentialHelperError",
    "auth_file_paths",
    "check_credentials",
    "default_authfile",
    "find_credentials",
    "lookup_credentials",
    "remove_all",
    "remove_credentials",
    "write_credentials",
]

log = logging.getLogger(__name__)

#: The environment variable that names the auth file to use instead of the default one.
AUTH_FILE_ENV = "REGISTRY_AUTH_FILE"
#: The user name that marks the password as an OAuth2 identity (refresh) token, as docker does.
IDENTITY_TOKEN_USER = "<token>"
_HELPER_PREFIX = "docker-credential-"
_HELPER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HELPER_NOT_FOUND = "credentials not found in native keychain"
_HELPER_TIMEOUT = 60.0
_DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
#: Bound on an auth file or a helper's answer.
_MAX_FILE = 4 * 1024 * 1024


class AuthFileError(ImageError):
    """An auth file cannot be read, parsed or written, or a key is not a valid one."""


class CredentialHelperError(ImageError):
    """A credential helper (``docker-credential-<name>``) is missing or failed."""


@attrs.frozen
class AuthFilePath:
    """One file of the search path; ``legacy`` for ``~/.dockercfg``'s format."""

    path: Path
    legacy: bool = False


@attrs.frozen
class AuthEntry:
    """What an auth file (or helper) holds for a registry, and where it was found.

    ``username`` is the real user name even when an identity token is used instead of the
    password (``skopeo login --get-login`` prints it).
    """

    username: str
    password: str = attrs.field(repr=False)
    identity_token: str = attrs.field(default="", repr=False)
    #: Where the entry came from: a file path, or ``credential helper <name>``.
    source: str = ""

    def to_credentials(self) -> Credentials:
        """Credentials for the auth flow: the identity token (as ``<token>``) if there is one."""
        if self.identity_token:
            return Credentials(IDENTITY_TOKEN_USER, self.identity_token)
        return Credentials(self.username, self.password)


# -- where the files are -------------------------------------------------------------------------
def _home() -> Path:
    return Path(os.path.expanduser("~"))


def _primary_path() -> Path | None:
    """``$XDG_RUNTIME_DIR/containers/auth.json`` (or the per-UID file under /run).

    ``None`` when ``$XDG_RUNTIME_DIR`` names a folder that does not exist: containers/image
    then skips the primary file (with a warning) rather than failing every anonymous pull.
    """
    if sys.platform in ("win32", "darwin"):
        return _home() / ".config" / "containers" / "auth.json"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        if not os.path.isdir(runtime):
            log.warning(
                "%r set by $XDG_RUNTIME_DIR does not exist; skipping the auth file in it", runtime
            )
            return None
        return Path(runtime) / "containers" / "auth.json"
    return Path(f"/run/containers/{os.getuid()}/auth.json")


def auth_file_paths(authfile: str | os.PathLike[str] | None = None) -> list[AuthFilePath]:
    """The files searched for credentials, in order (some may not exist)."""
    paths: list[AuthFilePath] = []
    explicit = authfile or os.environ.get(AUTH_FILE_ENV)
    primary = Path(explicit) if explicit else _primary_path()
    if primary is not None:
        paths.append(AuthFilePath(primary))
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(_home() / ".config")
    paths.append(AuthFilePath(Path(config_home) / "containers" / "auth.json"))
    docker_config = os.environ.get("DOCKER_CONFIG")
    if docker_config:
        paths.append(AuthFilePath(Path(docker_config) / "config.json"))
    else:
        paths.append(AuthFilePath(_home() / ".docker" / "config.json"))
    paths.append(AuthFilePath(_home() / ".dockercfg", legacy=True))
    return paths


def default_authfile(authfile: str | os.PathLike[str] | None = None) -> Path:
    """The file login and logout write: skopeo's default (see the module docs)."""
    if authfile:
        return Path(authfile)
    explicit = os.environ.get(AUTH_FILE_ENV)
    if explicit:
        return Path(explicit)
    docker_config = os.environ.get("DOCKER_CONFIG")
    if docker_config:
        return Path(docker_config) / "config.json"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and sys.platform not in ("win32", "darwin") and not os.path.isdir(runtime):
        raise AuthFileError(
            f"{runtime!r} directory set by $XDG_RUNTIME_DIR does not exist. Either create the "
            "directory or unset $XDG_RUNTIME_DIR."
        )
    primary = _primary_path()
    assert primary is not None
    return primary


# -- reading -------------------------------------------------------------------------------------
@attrs.define
class _AuthFile:
    """A parsed auth file: the whole JSON object (unknown keys kept) and its two maps."""

    path: Path
    data: dict[str, Any]
    legacy: bool = False

    @property
    def auths(self) -> dict[str, Any]:
        if self.legacy:
            return self.data
        auths = self.data.setdefault("auths", {})
        assert isinstance(auths, dict)
        return auths

    @property
    def cred_helpers(self) -> Mapping[str, str]:
        if self.legacy:
            return {}
        helpers = self.data.get("credHelpers")
        return helpers if isinstance(helpers, dict) else {}

    @property
    def creds_store(self) -> str:
        store = None if self.legacy else self.data.get("credsStore")
        return store if isinstance(store, str) else ""


def _read_file(path: Path, legacy: bool = False) -> _AuthFile:
    """Parse an auth file; a missing file reads as an empty one."""
    try:
        raw = read_limited(path, _MAX_FILE)
    except FileNotFoundError:
        return _AuthFile(path, {}, legacy)
    except OSError as e:
        raise AuthFileError(f"cannot read auth file {path}: {e.strerror or e}") from e
    if raw is None:
        raise AuthFileError(f"auth file {path} is larger than {_MAX_FILE} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        # The decoder's message names a position, never the text around it.
        raise AuthFileError(f"cannot parse auth file {path}: {e}") from None
    if not isinstance(data, dict):
        raise AuthFileError(f"auth file {path} does not hold a JSON object")
    if not legacy:
        for key in ("auths", "credHelpers"):
            if key in data and data[key] is not None and not isinstance(data[key], dict):
                raise AuthFileError(f"auth file {path}: {key!r} is not a JSON object")
            if key in data and data[key] is None:
                data[key] = {}
        helpers = data.get("credHelpers") or {}
        if not all(isinstance(v, str) for v in helpers.values()):
            raise AuthFileError(f"auth file {path}: credHelpers values must be strings")
    auths = data if legacy else data.get("auths") or {}
    if not all(isinstance(v, dict) for v in auths.values()):
        raise AuthFileError(f"auth file {path}: every entry of 'auths' must be a JSON object")
    return _AuthFile(path, data, legacy)


def _keys_for(key: str) -> Iterator[str]:
    """``host/ns/repo``, ``host/ns``, ``host``: the most specific first."""
    while True:
        yield key
        cut = key.rfind("/")
        if cut == -1:
            return
        key = key[:cut]


def _normalize_registry(registry: str) -> str:
    return "index.docker.io" if registry in ("registry-1.docker.io", "docker.io") else registry


def _normalize_file_key(key: str, legacy: bool) -> str:
    """A file key (perhaps a URL such as ``https://index.docker.io/v1/``) as a host name."""
    stripped = key.removeprefix("http://").removeprefix("https://")
    if legacy or stripped != key:
        stripped = stripped.split("/", 1)[0]
    return _normalize_registry(stripped)


def _decode_entry(path: Path, key: str, entry: Mapping[str, Any]) -> AuthEntry | None:
    auth = entry.get("auth") or ""
    token = entry.get("identitytoken") or ""
    if not isinstance(auth, str) or not isinstance(token, str):
        raise AuthFileError(f"auth file {path}: entry {key!r} has a non-string auth field")
    try:
        decoded = base64.b64decode(auth, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise AuthFileError(
            f"auth file {path}: the auth field of {key!r} is not valid base64"
        ) from None
    user, sep, password = decoded.partition(":")
    if not sep:
        if token:
            # An identity token alone is enough (containers/image would skip such an entry).
            return AuthEntry("", "", token, str(path))
        if decoded:
            log.warning("the auth field of %r in %s has no ':'; ignoring it", key, path)
        return None
    return AuthEntry(user, password.strip("\x00"), token, str(path))


def _find_in_file(key: str, registry: str, af: _AuthFile) -> AuthEntry | None:
    helper = af.cred_helpers.get(registry)
    if helper is not None:
        log.debug("looking up %s with credential helper %s (from %s)", key, helper, af.path)
        return _helper_get(helper, registry)
    if af.creds_store:
        server = _DOCKER_HUB_AUTH_KEY if registry in ("docker.io", "index.docker.io") else registry
        try:
            found = _helper_get(af.creds_store, server)
        except _HelperMissing:
            # Docker configs often name a store of another machine (desktop.exe): skip it.
            log.debug("credsStore %s in %s is not installed; skipping it", af.creds_store, af.path)
            found = None
        if found is not None:
            return found
    auths = af.auths
    candidates = [registry] if af.legacy else list(_keys_for(key))
    for candidate in candidates:
        if candidate in auths:
            return _decode_entry(af.path, candidate, auths[candidate])
    # Keys written as URLs (docker login did, and docker.io's key still is one).
    normalized = _normalize_registry(registry)
    for file_key, entry in auths.items():
        if _normalize_file_key(file_key, af.legacy) == normalized:
            return _decode_entry(af.path, file_key, entry)
    return None


def _split_key(host: str, repository: str | None) -> tuple[str, str]:
    if not host or "/" in host or "@" in host:
        raise AuthFileError(f"invalid registry {host!r}: expected HOST[:PORT]")
    key = f"{host}/{repository}" if repository else host
    return key, host


def lookup_credentials(
    host: str, repository: str | None = None, authfile: str | os.PathLike[str] | None = None
) -> AuthEntry | None:
    """The first auth entry for ``repository`` on ``host`` along the search path, if any.

    Ignores explicit credentials: use :func:`find_credentials` for what a client should send.
    """
    key, registry = _split_key(host, repository)
    for candidate in auth_file_paths(authfile):
        found = _find_in_file(key, registry, _read_file(candidate.path, candidate.legacy))
        if found is not None:
            log.debug("found credentials for %s in %s", key, found.source)
            return found
    log.debug("no credentials for %s found", key)
    return None


def find_credentials(
    host: str, repository: str | None, options: TransportOptions | None = None
) -> Credentials | None:
    """The credentials to send to ``host`` (``HOST[:PORT]``) for ``repository``.

    ``options.no_creds`` means none; ``options.credentials`` win; otherwise the auth files
    (``options.authfile`` first) and credential helpers are searched. ``None`` when nothing is
    found (the client goes anonymous).
    """
    opts = options or TransportOptions()
    if opts.no_creds:
        return None
    if opts.credentials is not None:
        return opts.credentials
    entry = lookup_credentials(host, repository, opts.authfile)
    return entry.to_credentials() if entry is not None else None


# -- credential helpers --------------------------------------------------------------------------
class _HelperMissing(CredentialHelperError):
    """The helper program is not installed."""


def _run_helper(name: str, action: str, stdin: bytes, secret: str = "") -> bytes:
    import subprocess  # here: only a configured credential helper runs a program

    if not _HELPER_NAME.match(name):
        raise CredentialHelperError(f"invalid credential helper name {name!r}")
    program = _HELPER_PREFIX + name
    try:
        done = subprocess.run(
            [program, action],
            input=stdin,
            capture_output=True,
            timeout=_HELPER_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise _HelperMissing(f"credential helper {program} is not on PATH") from None
    except subprocess.TimeoutExpired:
        raise CredentialHelperError(
            f"credential helper {program} {action} did not finish in {_HELPER_TIMEOUT:.0f}s"
        ) from None
    except OSError as e:
        raise CredentialHelperError(f"cannot run credential helper {program}: {e}") from None
    if done.returncode != 0:
        said = (done.stdout or done.stderr)[:500].decode("utf-8", "replace").strip()
        if secret:
            said = said.replace(secret, "***")
        if _HELPER_NOT_FOUND in said:
            raise _NotFound(said)
        raise CredentialHelperError(
            f"credential helper {program} {action} failed (exit {done.returncode}): {said}"
        )
    if len(done.stdout) > _MAX_FILE:
        raise CredentialHelperError(f"credential helper {program} answered with too much data")
    return done.stdout


class _NotFound(Exception):
    """A helper has no credentials for the server (internal signal)."""


def _helper_get(name: str, server: str) -> AuthEntry | None:
    try:
        out = _run_helper(name, "get", server.encode())
    except _NotFound:
        log.debug("not logged in to %s with credential helper %s", server, name)
        return None
    try:
        obj = json.loads(out)
    except (ValueError, UnicodeDecodeError):
        raise CredentialHelperError(
            f"credential helper {_HELPER_PREFIX}{name} answered with invalid JSON"
        ) from None
    if not isinstance(obj, dict):
        raise CredentialHelperError(f"credential helper {_HELPER_PREFIX}{name} sent no object")
    user = obj.get("Username")
    secret = obj.get("Secret")
    if not isinstance(user, str) or not isinstance(secret, str):
        raise CredentialHelperError(
            f"credential helper {_HELPER_PREFIX}{name} sent no Username and Secret"
        )
    source = f"credential helper {name}"
    if user == IDENTITY_TOKEN_USER:
        return AuthEntry("", "", secret, source)
    return AuthEntry(user, secret, "", source)


def _helper_store(name: str, server: str, creds: Credentials) -> None:
    payload = json.dumps(
        {"ServerURL": server, "Username": creds.username, "Secret": creds.password}
    ).encode()
    try:
        _run_helper(name, "store", payload, secret=creds.password)
    except _NotFound as e:  # pragma: no cover - a store never says "not found"
        raise CredentialHelperError(str(e)) from None


def _helper_erase(name: str, server: str) -> bool:
    """Erase the server's credentials; False if the helper had none."""
    try:
        _run_helper(name, "erase", server.encode())
    except _NotFound:
        return False
    return True


# -- writing -------------------------------------------------------------------------------------
def _validate_key(key: str) -> bool:
    """Check a login key (``host[:port][/ns...]``); return whether it has a namespace."""
    if key.startswith(("http://", "https://")):
        raise AuthFileError(f"key {key} contains http[s]:// prefix")
    if "@" in key:
        raise AuthFileError(f"key {key} contains a '@' character")
    host, slash, rest = key.partition("/")
    if not host:
        raise AuthFileError(f"invalid key {key!r}: no registry")
    if slash and ":" in rest:
        raise AuthFileError(f"key {key} contains a ':' character after host[:port]")
    return bool(slash)


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as skopeo does (tab-indented JSON) through a temporary file + rename."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = json.dumps(data, indent="\t", ensure_ascii=False)
    fd, tmp = tempfile.mkstemp(prefix=".auth-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _modify(authfile: str | os.PathLike[str] | None, edit: Callable[[_AuthFile], bool]) -> Path:
    path = default_authfile(authfile)
    af = _read_file(path)
    if edit(af):
        try:
            _write_atomic(path, af.data)
        except OSError as e:
            raise AuthFileError(f"cannot write auth file {path}: {e.strerror or e}") from e
    return path


def write_credentials(
    host: str, credentials: Credentials, authfile: str | os.PathLike[str] | None = None
) -> str:
    """Store credentials for ``host`` (or ``host/namespace``), as ``skopeo login`` does.

    A ``credHelpers`` entry for the key sends them to that helper (``store``); otherwise the
    auth file gets ``{"auth": base64(user:password)}`` (an identity token, user ``<token>``,
    is stored as ``identitytoken``). Returns where they went, for people to read.
    """
    namespaced = _validate_key(host)
    where: list[str] = []

    def edit(af: _AuthFile) -> bool:
        helper = af.cred_helpers.get(host)
        if helper is not None:
            if namespaced:
                raise AuthFileError(
                    f"namespaced key is not supported for credential helper {helper}"
                )
            _helper_store(helper, host, credentials)
            where.append(f"credential helper: {helper}")
            return False
        if credentials.username == IDENTITY_TOKEN_USER:
            raw = f"{IDENTITY_TOKEN_USER}:"
            entry = {
                "auth": base64.b64encode(raw.encode()).decode(),
                "identitytoken": credentials.password,
            }
        else:
            raw = f"{credentials.username}:{credentials.password}"
            entry = {"auth": base64.b64encode(raw.encode()).decode()}
        af.auths[host] = entry
        return True

    path = _modify(authfile, edit)
    return where[0] if where else str(path)


def remove_credentials(host: str, authfile: str | os.PathLike[str] | None = None) -> bool:
    """Remove the credentials stored for ``host`` (or ``host/namespace``), as skopeo logout.

    Erases them from the key's credential helper too, when one is configured. Returns False if
    there were none (skopeo's "not logged into").
    """
    namespaced = _validate_key(host)
    removed = [False]

    def edit(af: _AuthFile) -> bool:
        helper = af.cred_helpers.get(host)
        if helper is not None and not namespaced and _helper_erase(helper, host):
            removed[0] = True
        if host in af.auths:
            del af.auths[host]
            removed[0] = True
            return True
        return False

    _modify(authfile, edit)
    return removed[0]


def remove_all(authfile: str | os.PathLike[str] | None = None) -> None:
    """Remove every stored credential (skopeo logout --all): every entry and helper entry."""

    def edit(af: _AuthFile) -> bool:
        for registry, helper in af.cred_helpers.items():
            _helper_erase(helper, registry)
        af.data.pop("credHelpers", None)
        af.data["auths"] = {}
        return True

    _modify(authfile, edit)


# -- checking credentials against a registry ------------------------------------------------------
def check_credentials(
    host: str, credentials: Credentials | None, options: TransportOptions | None = None
) -> None:
    """Check that the registry at ``host`` accepts ``credentials`` (what login does first).

    GET ``/v2/``; on a basic challenge the request is sent again with the credentials, on a
    bearer challenge a token is fetched with them (no scope) and sent. Raises
    :class:`AuthenticationError` if they are refused, :class:`RegistryConnectionError` if the
    registry cannot be reached.
    """
    import httpx

    from ._client import endpoint_host

    opts = options or TransportOptions()
    endpoint = endpoint_host(host)
    schemes = ["https", "http"] if opts.tls_verify is False else ["https"]
    with httpx.Client(
        verify=make_ssl_context(endpoint, opts),
        timeout=httpx.Timeout(60.0, connect=30.0),
        follow_redirects=True,
        headers={"User-Agent": "imagetypes"},
    ) as client:
        failures: list[str] = []
        response: _Answer | None = None
        base = ""
        for scheme in schemes:
            base = f"{scheme}://{endpoint}"
            try:
                response = _send(client, "GET", f"{base}/v2/")
                break
            except httpx.TransportError as e:
                failures.append(f"{scheme}: {e}")
        if response is None:
            raise RegistryConnectionError(
                f"cannot reach registry {host}: " + "; ".join(failures), status=None
            )
        try:
            _check_answer(client, host, base, response, credentials)
        except httpx.TransportError as e:
            raise RegistryConnectionError(f"logging into {host}: {e}") from e


def _check_answer(
    client: Any, host: str, base: str, response: _Answer, credentials: Credentials | None
) -> None:
    from ._auth import parse_challenges

    refused = AuthenticationError(f'logging into "{host}": invalid username/password', status=401)
    if response.status_code == 200:
        return
    if response.status_code != 401:
        raise RegistryError(
            f'logging into "{host}": GET {base}/v2/ answered HTTP {response.status_code}',
            status=response.status_code,
        )
    if credentials is None:
        raise refused
    challenges = parse_challenges(response.headers.get_list("www-authenticate"))
    bearer = next((c for c in challenges if c.scheme == "bearer"), None)
    basic_raw = f"{credentials.username}:{credentials.password}".encode()
    basic = "Basic " + base64.b64encode(basic_raw).decode("ascii")
    if bearer is None:
        header = basic
    else:
        header = "Bearer " + _fetch_token(client, host, bearer.params, credentials, basic)
    response = _send(client, "GET", f"{base}/v2/", headers={"Authorization": header})
    if response.status_code == 401:
        raise refused
    if response.status_code != 200:
        raise RegistryError(
            f'logging into "{host}": GET {base}/v2/ answered HTTP {response.status_code}',
            status=response.status_code,
        )


@attrs.frozen
class _Answer:
    status_code: int
    headers: Any
    body: bytes = attrs.field(repr=False)


def _send(client: Any, method: str, url: str, **kwargs: Any) -> _Answer:
    """Send a request and read its body with a bound (a registry is not trusted to be small)."""
    with client.stream(method, url, **kwargs) as response:
        total = 0
        parts: list[bytes] = []
        for chunk in response.iter_bytes():
            total += len(chunk)
            if total > _MAX_FILE:
                raise RegistryError(f"{method} {url} answered with more than {_MAX_FILE} bytes")
            parts.append(chunk)
        return _Answer(response.status_code, response.headers, b"".join(parts))


def _fetch_token(
    client: Any, host: str, params: Mapping[str, str], credentials: Credentials, basic: str
) -> str:
    realm = params.get("realm")
    if not realm:
        raise AuthenticationError(f"{host} asked for a bearer token but named no realm")
    service = params.get("service")
    if credentials.username == IDENTITY_TOKEN_USER:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": credentials.password,
            "client_id": "imagetypes",
        }
        if service:
            form["service"] = service
        response = _send(client, "POST", realm, data=form)
    else:
        query = {"account": credentials.username}
        if service:
            query["service"] = service
        response = _send(client, "GET", realm, params=query, headers={"Authorization": basic})
    if response.status_code in (400, 401, 403):
        raise AuthenticationError(
            f'logging into "{host}": invalid username/password', status=response.status_code
        )
    if response.status_code != 200:
        raise RegistryError(
            f'logging into "{host}": the token server answered HTTP {response.status_code}',
            status=response.status_code,
        )
    try:
        obj = json.loads(response.body)
    except ValueError:
        raise AuthenticationError(f"the token server for {host} sent invalid JSON") from None
    token = obj.get("token") or obj.get("access_token") if isinstance(obj, dict) else None
    if not isinstance(token, str) or not token:
        raise AuthenticationError(f"the token server for {host} sent no token")
    return token
