"""An in-memory container registry speaking the OCI distribution API, for tests.

:class:`InMemoryRegistry` is a WSGI application built on the standard library alone. Run it
in-process with no socket through :meth:`InMemoryRegistry.transport` (an
``httpx.WSGITransport``), or on a loopback port with :meth:`InMemoryRegistry.serve`, where real
clients such as skopeo can push to it and pull from it::

    registry = InMemoryRegistry()
    with registry.serve() as served:
        copy_image("oci:layout:1.0", f"docker://{served}/library/app:1.0")

It implements the parts of the distribution specification clients use: the ``/v2/`` ping;
manifests by tag and digest (stored byte for byte as pushed); blobs with ranged reads; chunked,
monolithic and cross-repository (mount) uploads; tag and catalog listings with pagination; the
referrers API; the distribution error bodies; and no, basic or bearer-token authentication
(the registry serves its own token endpoint). :attr:`InMemoryRegistry.counters` records what
clients did (uploads, mounts, ...) so tests can assert on it.

Run ``python -m imagetypes.testing.registry --port 5000`` to serve one from a shell.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import io
import json
import logging
import re
import secrets
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from socketserver import ThreadingMixIn
from typing import IO, TYPE_CHECKING, Any, cast
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

import attrs

from .. import mediatypes as mt
from ..digest import Digest
from ..errors import InvalidDigestError

if TYPE_CHECKING:
    import httpx
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = [
    "BasicAuth",
    "BearerAuth",
    "InMemoryRegistry",
    "RegistryCounters",
    "ServedRegistry",
    "main",
]

log = logging.getLogger(__name__)

#: Manifests larger than this are refused, as by the distribution registry.
MAX_MANIFEST_SIZE = 4 * 1024 * 1024

_NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")

_ROUTES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"/v2/?"), "ping"),
    (re.compile(r"/v2/_catalog"), "catalog"),
    (re.compile(r"/v2/(?P<name>.+)/tags/list"), "tags"),
    (re.compile(r"/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)"), "manifest"),
    (re.compile(r"/v2/(?P<name>.+)/blobs/uploads/?"), "upload_start"),
    (re.compile(r"/v2/(?P<name>.+)/blobs/uploads/(?P<uuid>[^/]+)"), "upload"),
    (re.compile(r"/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)"), "blob"),
    (re.compile(r"/v2/(?P<name>.+)/referrers/(?P<digest>[^/]+)"), "referrers"),
]

_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    206: "Partial Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    416: "Range Not Satisfiable",
    500: "Internal Server Error",
}


# -- configuration -------------------------------------------------------------------------------
@attrs.frozen
class BasicAuth:
    """HTTP basic authentication with one user: every request must carry these credentials."""

    username: str
    password: str = attrs.field(repr=False)


@attrs.frozen
class BearerAuth:
    """Token authentication, as Docker Hub does it.

    The registry answers unauthenticated requests with a ``WWW-Authenticate: Bearer`` challenge
    naming its own token endpoint (``/token``). The endpoint checks the user's credentials (sent
    with basic authentication) and issues an opaque token carrying the scopes it granted; every
    registry request then needs a token whose scopes cover it. Without credentials, a token
    grants ``pull`` when ``anonymous_pull`` is set and nothing otherwise.
    """

    username: str
    password: str = attrs.field(repr=False)
    #: The ``service`` parameter of the challenge.
    service: str = "imagetypes-testing"
    #: Seconds a token stays valid.
    expires_in: int = 300
    #: Anonymous clients may pull.
    anonymous_pull: bool = False


@attrs.define
class RegistryCounters:
    """What clients did to the registry, for tests to assert on."""

    #: Every request handled (token requests included).
    requests: int = 0
    #: Upload sessions started with ``POST .../blobs/uploads/`` (no digest, no mount).
    upload_sessions: int = 0
    #: ``PATCH`` chunks received.
    chunks: int = 0
    #: Blobs stored by an upload (monolithic or a finished session).
    uploads: int = 0
    #: Monolithic uploads (``POST ...?digest=``).
    monolithic_uploads: int = 0
    #: Successful cross-repository mounts.
    mounts: int = 0
    #: Mount requests that fell back to an upload session (blob absent or not allowed).
    mount_misses: int = 0
    #: ``GET`` of blobs (not ``HEAD``).
    blob_gets: int = 0
    #: ``HEAD`` of blobs.
    blob_heads: int = 0
    #: Manifests stored.
    manifest_puts: int = 0
    #: ``GET`` of manifests (not ``HEAD``).
    manifest_gets: int = 0
    #: Tokens issued by the token endpoint.
    tokens_issued: int = 0
    #: Requests refused for missing or insufficient authentication.
    unauthorized: int = 0


@attrs.frozen
class ServedRegistry:
    """Where :meth:`InMemoryRegistry.serve` listens. ``str()`` gives ``host:port``."""

    host: str
    port: int
    #: The registry being served.
    registry: InMemoryRegistry | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def address(self) -> str:
        """``host:port``, the registry part of a ``docker://`` reference."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.address}"

    def __str__(self) -> str:
        return self.address


# -- storage -------------------------------------------------------------------------------------
@attrs.define
class _Manifest:
    data: bytes
    media_type: str
    subject: str | None
    artifact_type: str | None
    annotations: dict[str, str]


@attrs.define
class _Repo:
    manifests: dict[str, _Manifest] = attrs.field(factory=dict)
    tags: dict[str, str] = attrs.field(factory=dict)
    blobs: set[str] = attrs.field(factory=set)


@attrs.define
class _Upload:
    name: str
    data: bytearray = attrs.field(factory=bytearray)


@attrs.define
class _Token:
    access: frozenset[tuple[str, str, str]]
    expires: float


class _Error(Exception):
    """A distribution API error: HTTP status, error code, message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        detail: Any = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail
        self.headers = list(headers)


@attrs.frozen
class _Request:
    environ: Mapping[str, Any]
    method: str
    path: str
    query: Mapping[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        value = self.environ.get(key)
        return value if isinstance(value, str) and value else None

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    @property
    def base_url(self) -> str:
        scheme = self.environ.get("wsgi.url_scheme", "http")
        host = self.header("Host")
        if host is None:
            host = f"{self.environ.get('SERVER_NAME', 'localhost')}:"
            host += str(self.environ.get("SERVER_PORT", "80"))
        return f"{scheme}://{host}"


_Response = tuple[int, list[tuple[str, str]], bytes]


def _read_body(environ: Mapping[str, Any]) -> bytes:
    stream: IO[bytes] = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH") or ""
    if length.strip():
        try:
            count = int(length)
        except ValueError:
            raise _Error(400, "SIZE_INVALID", f"invalid Content-Length {length!r}") from None
        parts = []
        while count > 0:
            chunk = stream.read(min(count, 1024 * 1024))
            if not chunk:
                raise _Error(400, "SIZE_INVALID", "the request body ended early")
            parts.append(chunk)
            count -= len(chunk)
        return b"".join(parts)
    if str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower() == "chunked":
        # Already de-chunked (by httpx's WSGI transport, or by our request handler).
        return stream.read()
    return b""


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _parse_digest(text: str) -> Digest:
    try:
        return Digest.parse(text)
    except InvalidDigestError as e:
        raise _Error(400, "DIGEST_INVALID", str(e)) from None


def _parse_n(request: _Request) -> int | None:
    text = request.param("n")
    if text is None:
        return None
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise _Error(400, "PAGINATION_NUMBER_INVALID", f"invalid page size n={text!r}")
    return n


def _page(
    items: list[str], request: _Request, path: str
) -> tuple[list[str], list[tuple[str, str]]]:
    """The page of sorted ``items`` after ``last``, and a Link header when more remain."""
    last = request.param("last")
    if last is not None:
        items = [i for i in items if i > last]
    n = _parse_n(request)
    if n is None or len(items) <= n:
        return items, []
    page = items[:n]
    if not page:
        return page, []
    query = urllib.parse.urlencode({"last": page[-1], "n": n})
    return page, [("Link", f'<{path}?{query}>; rel="next"')]


# -- the application -----------------------------------------------------------------------------
class InMemoryRegistry:
    """A container registry held in memory: a WSGI application (:attr:`app`).

    Thread-safe: one lock guards the storage, so a threaded server may serve it. Blobs are
    stored once and linked into each repository that has them, as in the distribution
    registry, so a mount is only a new link.
    """

    def __init__(self, auth: BasicAuth | BearerAuth | None = None) -> None:
        self.auth = auth
        self.counters = RegistryCounters()
        self._lock = threading.RLock()
        self._blobs: dict[str, bytes] = {}
        self._repos: dict[str, _Repo] = {}
        self._uploads: dict[str, _Upload] = {}
        self._tokens: dict[str, _Token] = {}

    # -- running it --------------------------------------------------------------------------
    def transport(self) -> httpx.WSGITransport:
        """An httpx transport that calls the registry in-process, without a socket."""
        import httpx

        return httpx.WSGITransport(app=self.app)

    @contextlib.contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[ServedRegistry]:
        """Serve the registry over plain HTTP on ``host:port`` (port 0: any free one).

        A context manager yielding the address it is bound to; the server stops on exit.
        """
        server = _ThreadingWSGIServer((host, port), _RequestHandler)
        server.set_app(self.app)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"imagetypes-registry-{server.server_port}",
            daemon=True,
        )
        thread.start()
        try:
            yield ServedRegistry(host, int(server.server_port), self)
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)

    # -- inspecting it from tests ------------------------------------------------------------
    def repositories(self) -> list[str]:
        """The names of the repositories holding anything, sorted."""
        with self._lock:
            return sorted(n for n, r in self._repos.items() if r.manifests or r.blobs)

    def tags(self, name: str) -> dict[str, Digest]:
        """A repository's tags and the manifest digest each points at."""
        with self._lock:
            repo = self._repos.get(name)
            return {t: Digest.parse(d) for t, d in repo.tags.items()} if repo else {}

    def manifest(self, name: str, reference: str) -> tuple[bytes, str] | None:
        """A stored manifest (bytes, media type) by tag or digest, or ``None``."""
        with self._lock:
            repo = self._repos.get(name)
            if repo is None:
                return None
            digest = repo.tags.get(reference, reference)
            m = repo.manifests.get(digest)
            return (m.data, m.media_type) if m else None

    def blob(self, name: str, digest: Digest | str) -> bytes | None:
        """A blob linked into a repository, or ``None``."""
        with self._lock:
            repo = self._repos.get(name)
            if repo is None or str(digest) not in repo.blobs:
                return None
            return self._blobs[str(digest)]

    def upload_sessions_open(self) -> int:
        """Upload sessions started and neither finished nor cancelled."""
        with self._lock:
            return len(self._uploads)

    # -- WSGI --------------------------------------------------------------------------------
    def app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI entry point."""
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        path = str(environ.get("PATH_INFO", "")) or "/"
        query = urllib.parse.parse_qs(str(environ.get("QUERY_STRING", "")), keep_blank_values=True)
        with self._lock:
            self.counters.requests += 1
        try:
            request = _Request(environ, method, path, query, _read_body(environ))
            status, headers, body = self._dispatch(request)
        except _Error as e:
            status = e.status
            payload: dict[str, Any] = {"code": e.code, "message": e.message}
            if e.detail is not None:
                payload["detail"] = e.detail
            body = _json({"errors": [payload]})
            headers = [("Content-Type", "application/json"), *e.headers]
            if status == 401:
                with self._lock:
                    self.counters.unauthorized += 1
        except Exception as e:  # pragma: no cover - a bug here must reach the client as a 500
            log.exception("in-memory registry: %s %s failed", method, path)
            status = 500
            body = _json({"errors": [{"code": "UNKNOWN", "message": repr(e)}]})
            headers = [("Content-Type", "application/json")]
        names = {k.lower() for k, _ in headers}
        headers.append(("Docker-Distribution-API-Version", "registry/2.0"))
        if "content-length" not in names:
            headers.append(("Content-Length", str(len(body))))
        start_response(f"{status} {_STATUS_TEXT.get(status, 'Unknown')}", headers)
        if method == "HEAD":
            return [b""]
        return [body]

    def _dispatch(self, request: _Request) -> _Response:
        if request.path == "/token":
            if not isinstance(self.auth, BearerAuth):
                raise _Error(404, "NOT_FOUND", "this registry serves no tokens")
            return self._token(request)
        for pattern, route in _ROUTES:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            params = match.groupdict()
            name = params.pop("name", None)
            if name is not None and not _NAME.fullmatch(name):
                raise _Error(400, "NAME_INVALID", f"invalid repository name {name!r}")
            handler: Callable[..., _Response] = getattr(self, f"_route_{route}")
            return handler(request, name, **params) if name is not None else handler(request)
        raise _Error(404, "NOT_FOUND", f"no such endpoint: {request.path}")

    # -- authentication ----------------------------------------------------------------------
    def _authorize(self, request: _Request, scopes: Iterable[tuple[str, str, str]]) -> None:
        """Raise 401 unless the request may do everything in ``scopes``."""
        auth = self.auth
        if auth is None:
            return
        scopes = list(scopes)
        header = request.header("Authorization") or ""
        if isinstance(auth, BasicAuth):
            if _basic_credentials(header) == (auth.username, auth.password):
                return
            raise _Error(
                401,
                "UNAUTHORIZED",
                "authentication required",
                headers=[("WWW-Authenticate", 'Basic realm="imagetypes-testing"')],
            )
        kind, _, token = header.partition(" ")
        token = token.strip()
        valid = False
        granted: frozenset[tuple[str, str, str]] = frozenset()
        if kind.lower() == "bearer" and token:
            with self._lock:
                found = self._tokens.get(token)
            if found is not None and found.expires > time.monotonic():
                valid, granted = True, found.access
        missing = [s for s in scopes if s not in granted]
        if valid and not missing:
            return
        scope_text = _scope_text(scopes)
        challenge = f'Bearer realm="{request.base_url}/token",service="{auth.service}"'
        if scope_text:
            challenge += f',scope="{scope_text}"'
            if valid:
                challenge += ',error="insufficient_scope"'
        raise _Error(
            401,
            "UNAUTHORIZED",
            "insufficient scope" if valid else "authentication required",
            detail=[{"Type": t, "Name": n, "Action": a} for t, n, a in missing],
            headers=[("WWW-Authenticate", challenge)],
        )

    def _token(self, request: _Request) -> _Response:
        auth = self.auth
        assert isinstance(auth, BearerAuth)
        credentials = _basic_credentials(request.header("Authorization") or "")
        if credentials is not None and credentials != (auth.username, auth.password):
            raise _Error(401, "UNAUTHORIZED", "invalid user name or password")
        authenticated = credentials is not None
        access: set[tuple[str, str, str]] = set()
        for scope in request.query.get("scope", []):
            for item in scope.split(" "):
                parts = item.split(":")
                if len(parts) < 3:
                    raise _Error(400, "UNSUPPORTED", f"invalid scope {item!r}")
                kind, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1]
                for action in actions.split(","):
                    if authenticated or (auth.anonymous_pull and action == "pull"):
                        if action == "*":
                            access.update((kind, name, a) for a in ("pull", "push", "delete", "*"))
                        else:
                            access.add((kind, name, action))
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = _Token(frozenset(access), time.monotonic() + auth.expires_in)
            self.counters.tokens_issued += 1
        body = {
            "token": token,
            "access_token": token,
            "expires_in": auth.expires_in,
            "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        return 200, [("Content-Type", "application/json")], _json(body)

    # -- helpers -----------------------------------------------------------------------------
    def _repo(self, name: str, *, create: bool = False) -> _Repo:
        repo = self._repos.get(name)
        if repo is None:
            if not create:
                raise _Error(404, "NAME_UNKNOWN", f"repository {name} is not known")
            repo = self._repos[name] = _Repo()
        return repo

    def _resolve(self, repo: _Repo, name: str, reference: str) -> tuple[str, _Manifest]:
        digest = reference if ":" in reference else repo.tags.get(reference)
        manifest = repo.manifests.get(digest) if digest else None
        if digest is None or manifest is None:
            raise _Error(404, "MANIFEST_UNKNOWN", f"manifest {reference} is not known in {name}")
        return digest, manifest

    def _count(self, counter: str) -> None:
        with self._lock:
            setattr(self.counters, counter, getattr(self.counters, counter) + 1)

    # -- routes: base, catalog, tags ---------------------------------------------------------
    def _route_ping(self, request: _Request) -> _Response:
        self._authorize(request, [])
        return 200, [("Content-Type", "application/json")], b"{}"

    def _route_catalog(self, request: _Request) -> _Response:
        if request.method != "GET":
            raise _Error(405, "UNSUPPORTED", f"{request.method} is not allowed here")
        self._authorize(request, [("registry", "catalog", "*")])
        names, link = _page(self.repositories(), request, "/v2/_catalog")
        body = _json({"repositories": names})
        return 200, [("Content-Type", "application/json"), *link], body

    def _route_tags(self, request: _Request, name: str) -> _Response:
        if request.method != "GET":
            raise _Error(405, "UNSUPPORTED", f"{request.method} is not allowed here")
        self._authorize(request, [("repository", name, "pull")])
        with self._lock:
            tags = sorted(self._repo(name).tags)
        page, link = _page(tags, request, f"/v2/{name}/tags/list")
        body = _json({"name": name, "tags": page})
        return 200, [("Content-Type", "application/json"), *link], body

    # -- routes: manifests -------------------------------------------------------------------
    def _route_manifest(self, request: _Request, name: str, ref: str) -> _Response:
        if ":" in ref:
            _parse_digest(ref)
        elif not _TAG.fullmatch(ref):
            raise _Error(400, "TAG_INVALID", f"invalid tag {ref!r}")
        method = request.method
        if method in ("GET", "HEAD"):
            self._authorize(request, [("repository", name, "pull")])
            with self._lock:
                digest, manifest = self._resolve(self._repo(name), name, ref)
                if method == "GET":
                    self.counters.manifest_gets += 1
            headers = [
                ("Content-Type", manifest.media_type),
                ("Docker-Content-Digest", digest),
                ("Content-Length", str(len(manifest.data))),
                ("ETag", f'"{digest}"'),
            ]
            return 200, headers, manifest.data
        if method == "PUT":
            self._authorize(request, [("repository", name, "pull"), ("repository", name, "push")])
            return self._put_manifest(request, name, ref)
        if method == "DELETE":
            self._authorize(request, [("repository", name, "delete")])
            with self._lock:
                repo = self._repo(name)
                digest, _ = self._resolve(repo, name, ref)
                if ":" in ref:
                    del repo.manifests[digest]
                    for tag in [t for t, d in repo.tags.items() if d == digest]:
                        del repo.tags[tag]
                else:
                    del repo.tags[ref]
            return 202, [], b""
        raise _Error(405, "UNSUPPORTED", f"{method} is not allowed on manifests")

    def _put_manifest(self, request: _Request, name: str, ref: str) -> _Response:
        data = request.body
        if len(data) > MAX_MANIFEST_SIZE:
            raise _Error(413, "SIZE_INVALID", f"manifest over {MAX_MANIFEST_SIZE} bytes")
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise _Error(400, "MANIFEST_INVALID", f"manifest is not JSON: {e}") from None
        if not isinstance(obj, dict):
            raise _Error(400, "MANIFEST_INVALID", "manifest is not a JSON object")
        media_type = mt.normalize(request.header("Content-Type") or "")
        if media_type not in mt.MANIFEST_TYPES:
            detected = mt.detect_manifest_media_type(data)
            if not detected:
                raise _Error(400, "MANIFEST_INVALID", f"unknown manifest type {media_type!r}")
            media_type = detected
        declared = obj.get("mediaType")
        if isinstance(declared, str) and declared and declared != media_type:
            raise _Error(
                400,
                "MANIFEST_INVALID",
                f"manifest mediaType {declared} does not match Content-Type {media_type}",
            )
        digest = Digest.from_bytes(data)
        if ":" in ref:
            expected = _parse_digest(ref)
            actual = Digest.from_bytes(data, expected.algorithm)
            if actual != expected:
                raise _Error(400, "DIGEST_INVALID", f"manifest has digest {actual}, not {expected}")
            digest = actual
        subject = obj.get("subject")
        subject_digest = subject.get("digest") if isinstance(subject, dict) else None
        artifact_type = obj.get("artifactType")
        if not isinstance(artifact_type, str) and mt.normalize(media_type) == mt.OCI_MANIFEST:
            config = obj.get("config")
            artifact_type = config.get("mediaType") if isinstance(config, dict) else None
        annotations = obj.get("annotations")
        stored = _Manifest(
            data,
            media_type,
            subject_digest if isinstance(subject_digest, str) else None,
            artifact_type if isinstance(artifact_type, str) else None,
            dict(annotations) if isinstance(annotations, dict) else {},
        )
        with self._lock:
            repo = self._repo(name, create=True)
            missing = self._missing_references(repo, obj, media_type)
            if missing:
                code, what = missing
                raise _Error(400, code, f"manifest refers to unknown {what}", detail=what)
            repo.manifests[str(digest)] = stored
            if ":" not in ref:
                repo.tags[ref] = str(digest)
            self.counters.manifest_puts += 1
        headers = [
            ("Location", f"{request.base_url}/v2/{name}/manifests/{digest}"),
            ("Docker-Content-Digest", str(digest)),
        ]
        if stored.subject:
            headers.append(("OCI-Subject", stored.subject))
        return 201, headers, b""

    def _missing_references(
        self, repo: _Repo, obj: Mapping[str, Any], media_type: str
    ) -> tuple[str, str] | None:
        try:
            if mt.is_index(media_type):
                for entry in obj.get("manifests") or []:
                    if str(entry["digest"]) not in repo.manifests:
                        return "MANIFEST_BLOB_UNKNOWN", f"manifest {entry['digest']}"
            elif media_type in (mt.OCI_MANIFEST, mt.DOCKER_MANIFEST):
                descriptors = [obj["config"], *(obj.get("layers") or [])]
                for d in descriptors:
                    if d.get("urls"):
                        continue  # foreign layers live elsewhere
                    if str(d["digest"]) not in repo.blobs:
                        return "MANIFEST_BLOB_UNKNOWN", f"blob {d['digest']}"
        except (KeyError, TypeError, AttributeError) as e:
            raise _Error(400, "MANIFEST_INVALID", f"malformed manifest: {e!r}") from None
        return None

    # -- routes: blobs -----------------------------------------------------------------------
    def _route_blob(self, request: _Request, name: str, digest: str) -> _Response:
        _parse_digest(digest)
        method = request.method
        if method in ("GET", "HEAD"):
            self._authorize(request, [("repository", name, "pull")])
            with self._lock:
                repo = self._repo(name)
                if digest not in repo.blobs:
                    raise _Error(404, "BLOB_UNKNOWN", f"blob {digest} is not known in {name}")
                data = self._blobs[digest]
            headers = [
                ("Content-Type", "application/octet-stream"),
                ("Docker-Content-Digest", digest),
                ("Accept-Ranges", "bytes"),
                ("ETag", f'"{digest}"'),
            ]
            range_header = request.header("Range")
            if range_header is not None and method == "GET":
                start, end = _parse_range(range_header, len(data))
                self._count("blob_gets")
                part = data[start : end + 1]
                headers.append(("Content-Range", f"bytes {start}-{end}/{len(data)}"))
                headers.append(("Content-Length", str(len(part))))
                return 206, headers, part
            headers.append(("Content-Length", str(len(data))))
            self._count("blob_gets" if method == "GET" else "blob_heads")
            return 200, headers, data
        if method == "DELETE":
            self._authorize(request, [("repository", name, "delete")])
            with self._lock:
                repo = self._repo(name)
                if digest not in repo.blobs:
                    raise _Error(404, "BLOB_UNKNOWN", f"blob {digest} is not known in {name}")
                repo.blobs.discard(digest)
            return 202, [("Docker-Content-Digest", digest)], b""
        raise _Error(405, "UNSUPPORTED", f"{method} is not allowed on blobs")

    # -- routes: referrers -------------------------------------------------------------------
    def _route_referrers(self, request: _Request, name: str, digest: str) -> _Response:
        if request.method != "GET":
            raise _Error(405, "UNSUPPORTED", f"{request.method} is not allowed here")
        _parse_digest(digest)
        self._authorize(request, [("repository", name, "pull")])
        wanted = request.param("artifactType")
        entries: list[dict[str, Any]] = []
        with self._lock:
            repo = self._repos.get(name)
            stored = sorted(repo.manifests.items()) if repo else []
        for manifest_digest, manifest in stored:
            if manifest.subject != digest:
                continue
            if wanted is not None and manifest.artifact_type != wanted:
                continue
            entry: dict[str, Any] = {
                "mediaType": manifest.media_type,
                "digest": manifest_digest,
                "size": len(manifest.data),
            }
            if manifest.artifact_type:
                entry["artifactType"] = manifest.artifact_type
            if manifest.annotations:
                entry["annotations"] = manifest.annotations
            entries.append(entry)
        body = _json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries})
        headers = [("Content-Type", mt.OCI_INDEX)]
        if wanted is not None:
            headers.append(("OCI-Filters-Applied", "artifactType"))
        return 200, headers, body

    def _link_blob(self, name: str, data: bytes, digest: Digest) -> None:
        with self._lock:
            self._blobs.setdefault(str(digest), data)
            self._repo(name, create=True).blobs.add(str(digest))
            self.counters.uploads += 1

    def _blob_created(self, request: _Request, name: str, digest: Digest) -> _Response:
        headers = [
            ("Location", f"{request.base_url}/v2/{name}/blobs/{digest}"),
            ("Docker-Content-Digest", str(digest)),
        ]
        return 201, headers, b""

    def _upload_headers(self, request: _Request, name: str, uuid: str) -> list[tuple[str, str]]:
        with self._lock:
            size = len(self._uploads[uuid].data)
        return [
            ("Location", f"{request.base_url}/v2/{name}/blobs/uploads/{uuid}"),
            ("Range", f"0-{max(size - 1, 0)}"),
            ("Docker-Upload-UUID", uuid),
        ]

    def _route_upload_start(self, request: _Request, name: str) -> _Response:
        if request.method != "POST":
            raise _Error(405, "UNSUPPORTED", f"{request.method} is not allowed here")
        self._authorize(request, [("repository", name, "pull"), ("repository", name, "push")])
        mount, source = request.param("mount"), request.param("from")
        if mount is not None:
            digest = _parse_digest(mount)
            if source is not None and self._may_mount(request, source, str(digest)):
                with self._lock:
                    self._repo(name, create=True).blobs.add(str(digest))
                    self.counters.mounts += 1
                return self._blob_created(request, name, digest)
            with self._lock:
                self.counters.mount_misses += 1
        elif request.param("digest") is not None:
            digest = _parse_digest(request.param("digest") or "")
            _verify(request.body, digest)
            self._link_blob(name, request.body, digest)
            with self._lock:
                self.counters.monolithic_uploads += 1
            return self._blob_created(request, name, digest)
        uuid = secrets.token_hex(16)
        with self._lock:
            self._uploads[uuid] = _Upload(name)
            self.counters.upload_sessions += 1
        return 202, self._upload_headers(request, name, uuid), b""

    def _may_mount(self, request: _Request, source: str, digest: str) -> bool:
        if not _NAME.fullmatch(source):
            return False
        try:
            self._authorize(request, [("repository", source, "pull")])
        except _Error:
            return False  # as the distribution registry: fall back to an upload
        with self._lock:
            repo = self._repos.get(source)
            return repo is not None and digest in repo.blobs

    def _route_upload(self, request: _Request, name: str, uuid: str) -> _Response:
        self._authorize(request, [("repository", name, "pull"), ("repository", name, "push")])
        with self._lock:
            upload = self._uploads.get(uuid)
            if upload is None or upload.name != name:
                raise _Error(404, "BLOB_UPLOAD_UNKNOWN", f"upload {uuid} is not known")
        method = request.method
        if method == "GET":
            return 204, self._upload_headers(request, name, uuid), b""
        if method == "DELETE":
            with self._lock:
                self._uploads.pop(uuid, None)
            return 204, [], b""
        if method == "PATCH":
            self._append(request, upload, uuid)
            with self._lock:
                self.counters.chunks += 1
            return 202, self._upload_headers(request, name, uuid), b""
        if method == "PUT":
            text = request.param("digest")
            if text is None:
                raise _Error(400, "DIGEST_INVALID", "finishing an upload needs ?digest=")
            digest = _parse_digest(text)
            if request.body:
                self._append(request, upload, uuid)
            with self._lock:
                data = bytes(upload.data)
                # A failed upload cannot be resumed (as in the distribution registry).
                self._uploads.pop(uuid, None)
            _verify(data, digest)
            self._link_blob(name, data, digest)
            return self._blob_created(request, name, digest)
        raise _Error(405, "UNSUPPORTED", f"{method} is not allowed on uploads")

    def _append(self, request: _Request, upload: _Upload, uuid: str) -> None:
        content_range = request.header("Content-Range")
        with self._lock:
            if content_range is not None:
                match = re.fullmatch(r"(?:bytes[ =])?(\d+)-(\d+)", content_range.strip())
                if match is None:
                    raise _Error(416, "BLOB_UPLOAD_INVALID", f"bad Content-Range {content_range}")
                start, end = int(match.group(1)), int(match.group(2))
                if start != len(upload.data) or end - start + 1 != len(request.body):
                    raise _Error(
                        416,
                        "BLOB_UPLOAD_INVALID",
                        f"Content-Range {content_range} does not continue the "
                        f"{len(upload.data)} bytes received",
                        headers=[("Range", f"0-{max(len(upload.data) - 1, 0)}")],
                    )
            upload.data += request.body


def _verify(data: bytes, digest: Digest) -> None:
    actual = hashlib.new(digest.algorithm, data).hexdigest()
    if actual != digest.hex:
        raise _Error(
            400,
            "DIGEST_INVALID",
            f"content has digest {digest.algorithm}:{actual}, not {digest}",
        )


def _parse_range(header: str, size: int) -> tuple[int, int]:
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if match is None or (not match.group(1) and not match.group(2)):
        raise _Error(416, "RANGE_INVALID", f"unsupported Range {header!r}")
    first, last = match.group(1), match.group(2)
    if not first:  # a suffix: the last N bytes
        count = int(last)
        start, end = max(size - count, 0), size - 1
    else:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise _Error(416, "RANGE_INVALID", f"Range {header!r} outside a {size} byte blob")
    return start, end


def _basic_credentials(header: str) -> tuple[str, str] | None:
    kind, _, encoded = header.partition(" ")
    if kind.lower() != "basic":
        return None
    try:
        user, sep, password = (
            base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        )
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def _scope_text(scopes: Iterable[tuple[str, str, str]]) -> str:
    grouped: dict[tuple[str, str], list[str]] = {}
    for kind, name, action in scopes:
        grouped.setdefault((kind, name), []).append(action)
    return " ".join(f"{k}:{n}:{','.join(a)}" for (k, n), a in grouped.items())


# -- serving over a socket -----------------------------------------------------------------------
class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default listen backlog is 5: a burst of clients connecting at once (a
    # parallel copy, a test's 16 threads) overflowed it and the kernel reset connections.
    request_queue_size = 128


class _Dechunked(io.RawIOBase):
    """The body of a ``Transfer-Encoding: chunked`` request, without the chunk framing."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._left = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._eof:
            return 0
        if self._left == 0:
            line = self._raw.readline(1024)
            size_text = line.split(b";", 1)[0].strip()
            try:
                self._left = int(size_text, 16)
            except ValueError:
                raise OSError(f"bad chunk size line {line!r}") from None
            if self._left == 0:
                while self._raw.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self._eof = True
                return 0
        data = self._raw.read(min(len(buffer), self._left))
        if not data:
            raise OSError("the chunked request body ended early")
        buffer[: len(data)] = data
        self._left -= len(data)
        if self._left == 0:
            self._raw.readline(1024)  # the CRLF after each chunk
        return len(data)


class _RequestHandler(WSGIRequestHandler):
    """wsgiref's handler, plus chunked request bodies (Go clients send them) and quiet logs."""

    def handle(self) -> None:
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.send_error(414)
            return
        if not self.parse_request():
            return
        environ = self.get_environ()
        stdin: Any = self.rfile
        if str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower() == "chunked":
            stdin = io.BufferedReader(_Dechunked(self.rfile))
            environ.pop("CONTENT_LENGTH", None)
        handler = ServerHandler(
            stdin, cast("IO[bytes]", self.wfile), self.get_stderr(), environ, multithread=True
        )
        handler.request_handler = self  # type: ignore[attr-defined]  # wsgiref's back pointer
        handler.run(self.server.get_app())  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("in-memory registry %s: " + format, self.address_string(), *args)


# -- command line --------------------------------------------------------------------------------
def _credentials(text: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not user or not sep:
        raise argparse.ArgumentTypeError("expected USER:PASSWORD")
    return user, password


def main(argv: list[str] | None = None) -> int:
    """``python -m imagetypes.testing.registry``: serve an in-memory registry until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m imagetypes.testing.registry",
        description="Serve an in-memory OCI distribution registry over plain HTTP.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="port (0: any free port)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--basic", type=_credentials, metavar="USER:PASSWORD", help="basic auth")
    group.add_argument("--bearer", type=_credentials, metavar="USER:PASSWORD", help="token auth")
    args = parser.parse_args(argv)
    auth: BasicAuth | BearerAuth | None = None
    if args.basic:
        auth = BasicAuth(*args.basic)
    elif args.bearer:
        auth = BearerAuth(*args.bearer)
    registry = InMemoryRegistry(auth=auth)
    stop = threading.Event()
    with registry.serve(args.host, args.port) as served:
        print(f"serving an in-memory registry on {served.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
