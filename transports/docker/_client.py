"""A client for the distribution (OCI registry) HTTP API, on httpx.

One :class:`RegistryClient` talks to one registry host for one purpose (a source, a
destination, a catalog listing); it owns an ``httpx.Client`` with the host's TLS settings and a
:class:`~._auth.RegistryAuth`. Every response is checked: bodies are read with a bound,
manifests are verified against the digest asked for and the digest the registry claims, and
error answers become typed errors carrying what the registry said.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import httpx

from imagetypes import mediatypes as mt
from imagetypes.descriptor import Descriptor
from imagetypes.digest import Digest, VerifyingReader, read_all
from imagetypes.errors import (
    DigestMismatchError,
    ImageError,
    InvalidDigestError,
    ManifestError,
    ManifestTooLargeError,
    NotFoundError,
)
from imagetypes.retry import RetryAttempt, RetryPolicy
from imagetypes.types import TransportOptions

from ._auth import RegistryAuth, Scope
from ._credentials import resolve_credentials
from ._errors import (
    AccessDeniedError,
    AuthenticationError,
    BlobUnknownError,
    ManifestUnknownError,
    RegistryConnectionError,
    RegistryError,
    RegistryTLSError,
    RegistryUnsupportedError,
    RepositoryNotFoundError,
    TooManyRequestsError,
    parse_error_details,
)
from ._tls import make_ssl_context

__all__ = [
    "DIRECT_READ_MIN",
    "DOCKER_HUB_DOMAIN",
    "DOCKER_HUB_ENDPOINT",
    "MAX_ERROR_BODY",
    "MAX_MANIFEST_SIZE",
    "MONOLITHIC_UPLOAD_LIMIT",
    "UPLOAD_CHUNK_SIZE",
    "UPLOAD_PIECE_SIZE",
    "UPLOAD_REPLAY_WINDOW",
    "BlobReader",
    "ManifestInfo",
    "RegistryClient",
    "endpoint_host",
]

log = logging.getLogger(__name__)


class _Unknown:
    """What a failed first look at a repository learnt: nothing."""

    def __repr__(self) -> str:
        return "_UNKNOWN"


_UNKNOWN = _Unknown()

DOCKER_HUB_DOMAIN = "docker.io"
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
_DOCKER_HUB_INDEX = "index.docker.io"

#: Bound on a manifest's size.
MAX_MANIFEST_SIZE = 4 * 1024 * 1024
#: Bound on an error body (and other small answers: tag lists pages, catalogs, referrers).
MAX_ERROR_BODY = 1024 * 1024
#: The largest answer to the ``/v2/`` ping that is read, to reuse its connection.
MAX_PING_BODY = 64 * 1024
#: Bound on a page of tags, catalog or referrers.
MAX_LIST_BODY = 4 * 1024 * 1024
#: Blobs of known size below this are uploaded in one PUT; others in a streamed PATCH. A PUT's
#: body is held in memory, by each of the copy's workers: at 8 MiB, pushing sixteen 7 MiB
#: layers peaked at 149 MiB (64 MiB now), and the PATCH those layers now take cost no time.
MONOLITHIC_UPLOAD_LIMIT = 2 * 1024 * 1024
#: The largest PATCH of an upload; 0: each blob goes in one streamed PATCH (the default, as
#: registries do costly work per PATCH).
UPLOAD_CHUNK_SIZE = 0
#: An upload reads its source in pieces of this size.
UPLOAD_PIECE_SIZE = 1024 * 1024
#: How many of the bytes last sent an upload keeps, to resend them from where the registry
#: says it stopped after a failure; a blob no bigger than this can always start over.
UPLOAD_REPLAY_WINDOW = 4 * 1024 * 1024
#: A blob body at least this long, arriving over plain HTTP/1.1, is read straight from the
#: socket after its first bytes (a third less CPU per byte than going through httpcore, h11
#: and httpx chunk by chunk); its connection is then closed instead of reused, which costs a
#: new TCP connection (no TLS: TLS connections always go through httpx).
DIRECT_READ_MIN = 1024 * 1024
# The most a direct read() returns at once: each is a new bytes object, and 1 MiB ones come
# from fresh pages (the allocator gives them back), which costs more than the calls saved.
# readinto() fills the caller's buffer whatever its size.
_DIRECT_READ_PIECE = 256 * 1024

_ACCEPT_MANIFESTS = ", ".join(mt.MANIFEST_TYPES)
_OCTET = "application/octet-stream"
_USER_AGENT = "imagetypes"
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# Generic content types some registries send instead of a manifest's own.
_GENERIC_TYPES = frozenset({"", "application/json", "text/plain", _OCTET})


def endpoint_host(domain: str) -> str:
    """The host to contact for a reference's domain (``docker.io`` -> ``registry-1.docker.io``)."""
    if domain in (DOCKER_HUB_DOMAIN, _DOCKER_HUB_INDEX):
        return DOCKER_HUB_ENDPOINT
    return domain


@attrs.frozen
class ManifestInfo:
    """What a HEAD on a manifest tells: its digest, media type and size."""

    digest: Digest
    media_type: str
    size: int


_NotFound = type[RegistryError]


def _quote_name(name: str) -> str:
    return urllib.parse.quote(name, safe="/")


class RegistryClient:
    """The distribution API of one registry host.

    ``host`` is ``HOST[:PORT]`` as it appears in image names (``docker.io`` is mapped to its
    endpoint); ``repository`` is the repository whose credentials are used.
    """

    def __init__(
        self,
        host: str,
        options: TransportOptions | None = None,
        *,
        repository: str | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.options = options or TransportOptions()
        self.host = host
        self.endpoint = endpoint_host(host)
        self.retry: RetryPolicy = self.options.retry
        self._sleep = sleep
        extra = self.options.extra
        creds = resolve_credentials(host, repository, self.options)
        self.auth = RegistryAuth(creds, registry_token=self.options.registry_token)
        hooks: Mapping[str, list[Callable[..., Any]]] = extra.get("docker.event_hooks") or {}
        self.upload_chunk_size = int(extra.get("docker.upload_chunk_size", UPLOAD_CHUNK_SIZE))
        self.monolithic_limit = int(extra.get("docker.monolithic_limit", MONOLITHIC_UPLOAD_LIMIT))
        self.upload_replay_window = int(
            extra.get("docker.upload_replay_window", UPLOAD_REPLAY_WINDOW)
        )
        timeout = float(extra.get("docker.timeout", 60.0))
        #: Blob bodies at least this long are read straight from a plain-HTTP socket (below 0:
        #: never); see :data:`DIRECT_READ_MIN`.
        self.direct_read_min = int(extra.get("docker.direct_read_min", DIRECT_READ_MIN))
        self.read_timeout = timeout
        self._http = httpx.Client(
            auth=self.auth,
            verify=make_ssl_context(self.endpoint, self.options),
            follow_redirects=True,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 30.0)),
            headers={"User-Agent": _USER_AGENT},
            event_hooks={k: list(v) for k, v in hooks.items()},
            transport=transport or extra.get("docker.http_transport"),
        )
        self._base: str | None = None
        self._base_lock = threading.Lock()
        # (repository, digest) -> size of blobs this client wrote or found there. A blob does
        # not leave a repository during one copy or sync run, so later images of the run that
        # share it skip their HEAD (a registry that lost it fails the manifest PUT instead).
        # Shared by every view of a pooled client; dict reads and writes are atomic.
        self._present: dict[tuple[str, Digest], int] = {}
        #: A view of a run's pooled client (see :mod:`._pool`): one of many images of a run.
        self.shared = False
        # repository -> its tags when first listed (None: it did not exist); see _first_look.
        self._first_looks: dict[str, frozenset[str] | _Unknown | None] = {}
        self._first_look_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<RegistryClient {self.host}>"

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- endpoint ---------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """``https://HOST`` (or ``http://HOST`` for an insecure registry), found by a ping."""
        with self._base_lock:
            if self._base is None:
                self._base = self._ping()
            return self._base

    def _ping(self) -> str:
        schemes = ["https"]
        if self.options.tls_verify is False:
            schemes.append("http")
        failures: list[str] = []
        last: Exception | None = None
        for scheme in schemes:
            base = f"{scheme}://{self.endpoint}"
            try:
                response = self._send("GET", f"{base}/v2/", expect=(200, 401), retry=True)
            except RegistryConnectionError as e:
                failures.append(f"{scheme}: {e}")
                last = e
                continue
            _release(response, MAX_PING_BODY)
            return base
        assert last is not None
        cls = type(last) if isinstance(last, RegistryConnectionError) else RegistryConnectionError
        raise cls(f"cannot reach registry {self.host}: " + "; ".join(failures)) from last

    def url(self, path: str) -> str:
        """The absolute URL of an API path (``/v2/...``)."""
        return self.base_url + path

    # -- requests --------------------------------------------------------------------------
    def _send(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        expect: Sequence[int] = (200,),
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        content: bytes | Iterable[bytes] | None = None,
        retry: bool | None = None,
        resend: bool = True,
        what: str = "",
        not_found: _NotFound = RegistryError,
    ) -> httpx.Response:
        """Send a request (retrying per policy when idempotent); return the streamed response.

        ``resend=False`` sends it once whatever happens (its body is a stream read once).
        A status outside ``expect`` raises the typed error; the caller closes the response.
        """
        retriable = (method in _IDEMPOTENT if retry is None else retry) and resend
        delays = iter(self.retry.delays() if retriable else ())
        delays_for_429 = False
        attempt = 0
        while True:
            request = self._http.build_request(
                method, url, headers=headers, params=params, content=content
            )
            # Messages name the URL without its query (upload state, tokens' parameters).
            what = what or f"{method} {request.url.copy_with(query=None)}"
            try:
                response = self._http.send(request, stream=True)
            except httpx.TransportError as e:
                error = _connection_error(e, self.host, what)
                # A TLS failure is a matter of configuration: trying again cannot help.
                delay = None if isinstance(error, RegistryTLSError) else next(delays, None)
                if delay is None:
                    raise error from e
                attempt += 1
                self._retrying(what, attempt, delay, str(error))
                continue
            status = response.status_code
            if status in expect:
                if method == "HEAD" or (
                    method != "GET" and response.headers.get("content-length") == "0"
                ):
                    _release(response)
                return response
            if status in self.retry.statuses and (retriable or (status == 429 and resend)):
                # 429 means the request was not processed, so even a POST may be sent again.
                if not retriable and not delays_for_429:
                    delays = iter(self.retry.delays())
                    delays_for_429 = True
                delay = next(delays, None)
                if delay is not None:
                    wait = self.retry.retry_after(status, response.headers.get("retry-after"))
                    response.close()
                    attempt += 1
                    self._retrying(what, attempt, delay if wait is None else wait, f"HTTP {status}")
                    continue
            try:
                body = read_bounded(response, MAX_ERROR_BODY)
            except (ImageError, httpx.TransportError):
                body = b""  # the status alone still makes a typed error
            finally:
                response.close()
            answer = _error_for(response, body, what, not_found)
            # Worth a new try later (the copy engine puts a blob again); never credentials.
            answer.retryable = status in self.retry.statuses and status not in (401, 403)
            raise answer

    def _retrying(self, what: str, attempt: int, delay: float, reason: str) -> None:
        """Report a retry (log and the caller's on_retry), then wait before it."""
        log.debug("retrying %s (attempt %d) in %.2fs after %s", what, attempt, delay, reason)
        if self.options.on_retry is not None:
            self.options.on_retry(RetryAttempt(what, attempt, delay, reason))
        self._sleep(delay)

    def _fetch(
        self, url: str | httpx.URL, limit: int, what: str, **send: Any
    ) -> tuple[httpx.Response, bytes]:
        """GET ``url`` and read its (bounded) body, retrying when the body breaks mid-way.

        ``_send`` retries failures to get an answer; this also retries an answer whose body
        is cut or stalls, which for these small documents means asking again.
        """
        delays = iter(self.retry.delays())
        attempt = 0
        while True:
            response = self._send("GET", url, what=what, **send)
            try:
                return response, self._read(response, limit, what)
            except RegistryConnectionError as e:
                delay = None if isinstance(e, RegistryTLSError) else next(delays, None)
                if delay is None:
                    raise
                attempt += 1
                self._retrying(what, attempt, delay, str(e))
            finally:
                response.close()

    def _read(self, response: httpx.Response, limit: int, what: str) -> bytes:
        try:
            return read_bounded(response, limit)
        except _TooLarge as e:
            raise ManifestTooLargeError(f"{what}: over {limit} bytes") from e
        except httpx.TransportError as e:
            raise _connection_error(e, self.host, what) from e

    def _repo_url(self, repository: str, rest: str) -> str:
        return self.url(f"/v2/{_quote_name(repository)}/{rest}")

    # -- manifests -------------------------------------------------------------------------
    def get_manifest(
        self, repository: str, reference: str, *, accept: Sequence[str] = mt.MANIFEST_TYPES
    ) -> tuple[bytes, str, Digest]:
        """The manifest at ``reference`` (tag or digest): bytes, media type, digest.

        The bytes are checked against the digest asked for and against the registry's
        ``Docker-Content-Digest``.
        """
        what = f"manifest {self.host}/{repository}{_ref_suffix(reference)}"
        response, data = self._fetch(
            self._repo_url(repository, f"manifests/{reference}"),
            MAX_MANIFEST_SIZE,
            f"reading {what}",
            headers={"Accept": ", ".join(accept)},
            not_found=ManifestUnknownError,
        )
        media_type = mt.normalize(response.headers.get("content-type", ""))
        if media_type in _GENERIC_TYPES:
            media_type = mt.detect_manifest_media_type(data) or media_type
        digest = _check_manifest_digest(data, reference, response.headers, media_type, what)
        return data, media_type, digest

    def head_manifest(self, repository: str, reference: str) -> ManifestInfo:
        """Digest, media type and size of the manifest at ``reference``, without its body."""
        what = f"manifest {self.host}/{repository}{_ref_suffix(reference)}"
        response = self._send(
            "HEAD",
            self._repo_url(repository, f"manifests/{reference}"),
            headers={"Accept": _ACCEPT_MANIFESTS},
            what=f"checking {what}",
            not_found=ManifestUnknownError,
        )
        response.close()
        header = response.headers.get("docker-content-digest")
        if header is None:
            if ":" in reference:  # tags cannot hold a colon: this is a digest
                digest = Digest.parse(reference)
            else:
                # No digest in the answer: fetch the manifest and hash it.
                data, media_type, digest = self.get_manifest(repository, reference)
                return ManifestInfo(digest, media_type, len(data))
        else:
            digest = _parse_digest_header(header, what)
        size = int(response.headers.get("content-length", "0") or 0)
        media_type = mt.normalize(response.headers.get("content-type", ""))
        return ManifestInfo(digest, media_type, size)

    def put_manifest(
        self, repository: str, reference: str, data: bytes, media_type: str
    ) -> tuple[Digest, httpx.Headers]:
        """Store a manifest under a tag or digest; return its digest and the answer's headers."""
        if len(data) > MAX_MANIFEST_SIZE:
            raise ManifestTooLargeError(
                f"a manifest of {len(data)} bytes is over the {MAX_MANIFEST_SIZE} byte limit"
            )
        if media_type == mt.DOCKER_SCHEMA1_SIGNED_MANIFEST:
            # A signed schema 1 manifest is addressed by the digest of its payload (the
            # signatures are not part of it), as the registry computes it.
            from imagetypes.image import manifest_digest

            digest = manifest_digest(data)
        else:
            digest = Digest.from_bytes(data)
        what = f"manifest {self.host}/{repository}{_ref_suffix(reference)}"
        if reference.startswith(digest.algorithm + ":") and reference != str(digest):
            raise DigestMismatchError(
                f"writing {what}: the manifest's digest is {digest}",
                expected=reference,
                actual=digest,
            )
        response = self._send(
            "PUT",
            self._repo_url(repository, f"manifests/{reference}"),
            headers={"Content-Type": media_type},
            content=data,
            expect=(200, 201, 202),
            what=f"writing {what}",
            not_found=ManifestUnknownError,
        )
        response.close()
        header = response.headers.get("docker-content-digest")
        if header is not None and _parse_digest_header(header, what) != digest:
            raise DigestMismatchError(
                f"writing {what}: the registry stored digest {header}, not {digest}",
                expected=digest,
                actual=header,
            )
        return digest, response.headers

    def delete_manifest(self, repository: str, digest: Digest) -> None:
        """Delete the manifest with that digest (and so every tag pointing at it)."""
        what = f"manifest {self.host}/{repository}@{digest}"
        response = self._send(
            "DELETE",
            self._repo_url(repository, f"manifests/{digest}"),
            expect=(200, 202, 204),
            what=f"deleting {what}",
            not_found=ManifestUnknownError,
        )
        response.close()

    # -- blobs -----------------------------------------------------------------------------
    def known_blob_size(self, repository: str, digest: Digest) -> int | None:
        """The blob's size if this client wrote it to or found it in the repository, without
        asking; else ``None``."""
        return self._present.get((repository, digest))

    def blob_size(self, repository: str, digest: Digest) -> int | None:
        """The blob's size if the repository has it, else ``None``.

        Asks once per blob and repository: a blob this client wrote or found there before is
        answered from memory.
        """
        known = self._present.get((repository, digest))
        if known is not None:
            return known
        response = self._send(
            "HEAD",
            self._repo_url(repository, f"blobs/{digest}"),
            expect=(200, 404),
            what=f"checking blob {digest} in {self.host}/{repository}",
        )
        response.close()
        if response.status_code == 404:
            return None
        length = response.headers.get("content-length")
        if length and length.isdigit():
            self._present[(repository, digest)] = int(length)
            return int(length)
        return -1

    def surely_absent_blob(self, repository: str, digest: Digest) -> bool:
        """Whether a run's pooled client knows, without asking, that the repository lacks
        the blob: the repository did not exist when the run first looked, and the run has not
        put the blob there since. Always ``False`` outside a run (asking costs one ``HEAD``;
        looking costs a tag listing, worth it only for the many images of a run)."""
        if (repository, digest) in self._present:
            return False
        return self.surely_new_repository(repository)

    def surely_new_repository(self, repository: str) -> bool:
        """Whether a run's pooled client found, at its first look, that the registry had no
        such repository. ``False`` outside a run."""
        return self.shared and self._first_look(repository) is None

    def surely_untagged(self, repository: str, tag: str) -> bool:
        """Whether a run's pooled client knows, without asking, that ``tag`` is not in the
        repository: it was not there when the run first listed the tags (a tag another client
        adds meanwhile is then overwritten, as it would be a moment later). ``False`` outside
        a run."""
        if not self.shared:
            return False
        tags = self._first_look(repository)
        return tags is None or (isinstance(tags, frozenset) and tag not in tags)

    def _first_look(self, repository: str) -> frozenset[str] | _Unknown | None:
        """The repository's tags when this (pooled) client first listed them, ``None`` when
        the registry said there is no such repository, ``_UNKNOWN`` when listing failed."""
        with self._first_look_lock:  # one listing, however many images start at once
            if repository in self._first_looks:
                return self._first_looks[repository]
            result: frozenset[str] | _Unknown | None
            try:
                result = frozenset(self.tags(repository))
            except RepositoryNotFoundError as e:
                result = None if "NAME_UNKNOWN" in e.codes else _UNKNOWN
            except ImageError as e:  # no right to list, say: ask blob by blob as before
                log.debug("listing %s/%s to skip checks failed: %s", self.host, repository, e)
                result = _UNKNOWN
            self._first_looks[repository] = result
            return result

    def open_blob(self, repository: str, digest: Digest, offset: int = 0) -> httpx.Response:
        """A streamed GET of the blob (from ``offset``; a 200 means the range was ignored)."""
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        return self._send(
            "GET",
            self._repo_url(repository, f"blobs/{digest}"),
            headers=headers,
            expect=(200, 206),
            what=f"reading blob {digest} from {self.host}/{repository}",
            not_found=BlobUnknownError,
        )

    def blob_reader(
        self, repository: str, digest: Digest, size: int | None = None, offset: int = 0
    ) -> BlobReader:
        """A raw stream of the blob that resumes a broken download where it stopped."""
        return BlobReader(self, repository, digest, size, offset)

    def mount_blob(
        self, repository: str, digest: Digest, source: str, size: int | None = None
    ) -> bool:
        """Mount a blob from another repository of this registry; ``True`` if it worked.

        ``size``, when the caller knows it, is remembered with the blob (see :meth:`blob_size`).
        """
        self.auth.add_scope(Scope("repository", source, frozenset({"pull"})))
        response = self._send(
            "POST",
            self._repo_url(repository, "blobs/uploads/"),
            params={"mount": str(digest), "from": source},
            expect=(201, 202),
            what=f"mounting blob {digest} from {source} into {self.host}/{repository}",
        )
        response.close()
        if response.status_code == 201:
            if size is not None and size >= 0:
                self._present[(repository, digest)] = size
            return True
        # 202: the registry could not mount and opened an upload instead; we do not want it.
        location = response.headers.get("location")
        if location:
            self._cancel_upload(response.request.url, location)
        return False

    def upload_blob(
        self, repository: str, stream: VerifyingReader, size: int | None = None
    ) -> tuple[Digest, int]:
        """Upload a blob read from a verifying ``stream``; return its digest and size.

        Known sizes under :attr:`monolithic_limit` go in one PUT; others are streamed in one
        PATCH (or PATCHes of at most :attr:`upload_chunk_size` bytes when that is set). When a
        PATCH fails, the upload goes on from where the registry says it stopped, as long as
        those bytes are among the last :attr:`upload_replay_window` sent; otherwise it fails.
        The stream is read to its end (so verified) before the upload is completed; a failure
        cancels the upload.
        """
        what = f"uploading a blob to {self.host}/{repository}"
        upload = _Upload(self._start_upload(repository, what))
        try:
            if size is not None and 0 <= size < self.monolithic_limit:
                data = stream.read()
                digest = stream.digest
                final = self._finish_upload(upload.location, digest, data, what)
            else:
                self._stream_upload(repository, upload, stream, size, what)
                digest = stream.digest
                final = self._finish_upload(upload.location, digest, None, what)
        except BaseException:
            self._cancel_upload(upload.location, upload.location)
            raise
        header = final.headers.get("docker-content-digest")
        if header is not None and _parse_digest_header(header, what) != digest:
            raise DigestMismatchError(
                f"{what}: the registry stored {header}, we sent {digest}",
                expected=digest,
                actual=header,
            )
        self._present[(repository, digest)] = stream.size
        return digest, stream.size

    def _start_upload(self, repository: str, what: str) -> httpx.URL:
        response = self._send(
            "POST", self._repo_url(repository, "blobs/uploads/"), expect=(202,), what=what
        )
        response.close()
        return _location(response, what)

    def _finish_upload(
        self, location: httpx.URL, digest: Digest, data: bytes | None, what: str
    ) -> httpx.Response:
        url = location.copy_merge_params({"digest": str(digest)})
        headers = {"Content-Type": _OCTET}
        response = self._send(
            "PUT",
            url,
            headers=headers,
            content=data if data is not None else b"",
            expect=(201, 204),
            # A PUT that closes an upload is not idempotent: a second one finds no upload.
            retry=False,
            what=what,
        )
        response.close()
        return response

    def _stream_upload(
        self,
        repository: str,
        upload: _Upload,
        stream: VerifyingReader,
        size: int | None,
        what: str,
    ) -> None:
        """Send all of ``stream`` to the open upload, resuming (or restarting) after failures."""
        body = _UploadBody(stream, size, self.upload_replay_window, UPLOAD_PIECE_SIZE)
        limit = self.upload_chunk_size if self.upload_chunk_size > 0 else None
        delays = iter(self.retry.delays())
        attempt = 0
        done = 0  # the bytes the registry has
        while not body.complete(done):
            end: int | None = None
            if size is not None:
                end = size if limit is None else min(size, done + limit)
            elif limit is not None:
                end = done + limit
            headers = {"Content-Type": _OCTET}
            if size is not None and end is not None:
                # The length is known: no chunked encoding, which some proxies refuse.
                headers["Content-Length"] = str(end - done)
                if done:
                    headers["Content-Range"] = f"{done}-{end - 1}"
            failure: BaseException
            try:
                response = self._send(
                    "PATCH",
                    upload.location,
                    headers=headers,
                    content=body.pieces(done, end),
                    expect=(202,),
                    retry=False,
                    resend=False,
                    what=what,
                )
                response.close()
                upload.location = _location(response, what)
                done = body.read_to
                delays = iter(self.retry.delays())  # progress: a fresh budget
                continue
            except RegistryTLSError:
                raise
            except RegistryError as e:
                if body.source_error is not None:
                    raise
                if (
                    not isinstance(e, RegistryConnectionError)
                    and e.status not in self.retry.statuses
                ):
                    raise
                failure = e
            except httpx.StreamError as e:
                # httpx wanted to send the body again (a 401 answered with a new token, a
                # redirect): a stream is read once, so this is resumed like a failure.
                if body.source_error is not None:
                    raise
                failure = e
            delay = next(delays, None)
            if delay is None:
                raise failure
            attempt += 1
            self._retrying(what, attempt, delay, str(failure) or type(failure).__name__)
            before, done = done, self._resume_point(repository, upload, body, failure, what)
            if done > before:
                delays = iter(self.retry.delays())  # progress: a fresh budget

    def _resume_point(
        self,
        repository: str,
        upload: _Upload,
        body: _UploadBody,
        failure: BaseException,
        what: str,
    ) -> int:
        """Where to go on after a failed PATCH: the registry's offset, or 0 in a new upload."""
        try:
            location, have = self._upload_status(upload.location, what)
        except RegistryError as e:
            # distribution refuses to resume an upload whose size moved past the offset its
            # upload state recorded (part of a PATCH arrived, or its answer was lost).
            location, have = upload.location, -1
            problem = f"the upload could not be resumed after {failure}: {e}"
            status_error: RegistryError | None = e
        else:
            status_error = None
            if body.window_start <= have <= body.read_to:
                upload.location = location
                if have != body.read_to:
                    log.debug("%s: resuming at byte %d after %s", what, have, failure)
                return have
            problem = (
                f"cannot resume after {failure}: the registry has {have} bytes, "
                f"only bytes {body.window_start} to {body.read_to} are still at hand"
            )
        if body.window_start == 0:
            # Everything sent is still at hand: start a new upload and send it again.
            log.debug("%s: starting over: %s", what, problem)
            self._cancel_upload(upload.location, upload.location)
            upload.location = self._start_upload(repository, what)
            return 0
        raise RegistryError(
            f"{what}: {problem}",
            status=status_error.status if status_error else None,
            errors=status_error.errors if status_error else (),
            # The upload is cancelled; a new one, from a fresh read of the blob, may succeed.
            retryable=True,
        ) from failure

    def _upload_status(self, location: httpx.URL, what: str) -> tuple[httpx.URL, int]:
        response = self._send("GET", location, expect=(204,), what=f"{what} (resuming)")
        response.close()
        have = _range_end(response.headers.get("range"))
        return _location(response, what, default=location), have

    def _cancel_upload(self, base: httpx.URL, location: httpx.URL | str) -> None:
        url = base.join(str(location))
        try:
            response = self._send("DELETE", url, expect=(200, 202, 204, 404), retry=False)
            response.close()
        except ImageError as e:
            # Cleanup after a failure: the registry expires abandoned uploads by itself, and
            # the error the caller sees is the one that made us cancel.
            log.debug("could not cancel upload %s: %s", url.copy_with(query=None), e)

    # -- lists -----------------------------------------------------------------------------
    def _paginate(
        self, path: str, key: str, what: str, page_size: int | None, not_found: _NotFound
    ) -> Iterator[str]:
        url: httpx.URL | str = self.url(path)
        params = {"n": str(page_size)} if page_size else None
        while True:
            response, body = self._fetch(
                url, MAX_LIST_BODY, what, params=params, not_found=not_found
            )
            try:
                obj = json.loads(body)
                items = obj.get(key) or []
            except (ValueError, AttributeError) as e:
                raise RegistryError(f"{what}: the registry sent an invalid answer") from e
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise RegistryError(f"{what}: the registry sent an invalid {key!r} list")
            yield from items
            nxt = response.links.get("next", {}).get("url")
            if not nxt or not items:
                return
            url = response.request.url.join(nxt)
            params = None  # the next link carries its own query

    def tags(self, repository: str, page_size: int | None = None) -> Iterator[str]:
        """The repository's tags, page by page as they are consumed."""
        return self._paginate(
            f"/v2/{_quote_name(repository)}/tags/list",
            "tags",
            f"listing tags of {self.host}/{repository}",
            page_size,
            RepositoryNotFoundError,
        )

    def catalog(self, page_size: int | None = None) -> Iterator[str]:
        """The registry's repositories, page by page as they are consumed."""
        return self._paginate(
            "/v2/_catalog",
            "repositories",
            f"listing repositories of {self.host}",
            page_size,
            RegistryUnsupportedError,
        )

    def referrers(
        self, repository: str, digest: Digest, artifact_type: str | None = None
    ) -> list[Descriptor]:
        """Manifests whose ``subject`` is ``digest``: the referrers API, else the tag schema.

        Registries without the API (a 404, or an answer that is no index) are asked for the
        ``<alg>-<hex>`` fallback tag that OCI 1.1 clients maintain.
        """
        what = f"listing referrers of {self.host}/{repository}@{digest}"
        params = {"artifactType": artifact_type} if artifact_type else None
        response, body = self._fetch(
            self._repo_url(repository, f"referrers/{digest}"),
            MAX_MANIFEST_SIZE,
            what,
            params=params,
            headers={"Accept": mt.OCI_INDEX},
            expect=(200, 404),
        )
        content_type = mt.normalize(response.headers.get("content-type", ""))
        if response.status_code == 200 and content_type == mt.OCI_INDEX:
            found = _index_descriptors(body, what)
        else:
            found = self.fallback_referrers(repository, digest)
        if artifact_type:
            found = [d for d in found if d.artifact_type == artifact_type]
        return found

    def fallback_referrers(self, repository: str, digest: Digest) -> list[Descriptor]:
        """The referrers listed in the tag-schema index (``sha256-<hex>``); empty if none."""
        try:
            data, _, _ = self.get_manifest(repository, referrers_tag(digest), accept=[mt.OCI_INDEX])
        except NotFoundError:
            return []
        return _index_descriptors(data, f"referrers index of {digest}")

    # -- search ----------------------------------------------------------------------------
    def search(self, term: str, limit: int = 25) -> Iterator[Mapping[str, Any]]:
        """Docker Hub's ``/v1/search``; registries without it raise UnsupportedError."""
        base = "https://index.docker.io" if self.endpoint == DOCKER_HUB_ENDPOINT else self.base_url
        page = 1
        while True:
            response, body = self._fetch(
                f"{base}/v1/search",
                MAX_LIST_BODY,
                f"searching {self.host} for {term!r}",
                params={"q": term, "n": str(limit), "page": str(page)},
                expect=(200, 404, 405),
            )
            if response.status_code != 200:
                raise RegistryUnsupportedError(
                    f"{self.host} offers no search (HTTP {response.status_code} on /v1/search)",
                    status=response.status_code,
                )
            try:
                obj = json.loads(body)
            except ValueError as e:
                raise RegistryError(f"{self.host}: invalid search results") from e
            results = obj.get("results") if isinstance(obj, dict) else None
            if not isinstance(results, list):
                raise RegistryError(f"{self.host}: invalid search results")
            for item in results:
                if isinstance(item, dict):
                    yield item
            pages = obj.get("num_pages")
            if not results or not isinstance(pages, int) or page >= pages:
                return
            page += 1


class BlobReader:
    """A raw blob stream that, when the connection breaks, continues with a Range request.

    Resumes follow the client's retry policy (one budget per blob). The bytes are not
    verified here: :class:`~imagetypes.digest.VerifyingReader` around it checks the whole blob.

    ``read(n)`` returns at most ``n`` bytes and ``readinto`` fills a caller's buffer. A body of
    at least :attr:`RegistryClient.direct_read_min` bytes on a plain-HTTP/1.1 connection is
    read from the socket itself once httpx handed over the bytes it had buffered (see
    :data:`DIRECT_READ_MIN`); other bodies come through httpx.
    """

    def __init__(
        self,
        client: RegistryClient,
        repository: str,
        digest: Digest,
        size: int | None,
        offset: int = 0,
    ) -> None:
        self._client = client
        self._repository = repository
        self._digest = digest
        self._size = size if size is not None and size >= 0 else None
        self._pos = offset
        self._delays = iter(client.retry.delays())
        self._buf = b""
        self._bufpos = 0
        self._eof = False
        self._response: httpx.Response | None = None
        self._chunks: Iterator[bytes] = iter(())
        # The socket the rest of the body is read from, and how much of the body is left.
        self._sock: socket.socket | None = None
        self._remaining = 0
        # Set while the first chunk has not arrived yet: (socket, body length).
        self._direct: tuple[socket.socket, int] | None = None
        #: How many times the download was resumed.
        self.resumes = 0
        #: How many bytes were read from the socket directly (for tests and diagnostics).
        self.direct_bytes = 0
        if self._size is not None and offset >= self._size:
            self._eof = True
        else:
            self._open()

    @property
    def position(self) -> int:
        """The offset in the blob of the next byte ``read`` returns."""
        return self._pos

    def _open(self) -> None:
        response = self._client.open_blob(self._repository, self._digest, self._pos)
        self._response = response
        self._sock = None
        self._direct = None
        encoding = response.headers.get("content-encoding", "").strip().lower()
        # Asked with Accept-Encoding: identity, so the body is the blob's bytes; a proxy that
        # encodes it all the same is undone by iter_bytes (which also serves a body httpx
        # already read, as a transport may hand it over).
        raw = encoding in ("", "identity") and not response.is_stream_consumed
        chunks = response.iter_raw() if raw else response.iter_bytes()
        if self._pos and response.status_code == 200:
            # The server ignored the range: skip what we already have.
            self._chunks = _skip(chunks, self._pos)
            return
        if response.status_code == 206:
            start = _content_range_start(response.headers.get("content-range"))
            if start != self._pos:
                response.close()
                raise RegistryError(
                    f"reading blob {self._digest}: asked for bytes from {self._pos}, "
                    f"the registry sent from {start}"
                )
        self._chunks = chunks
        length = _content_length(response)
        minimum = self._client.direct_read_min
        if raw and length is not None and 0 <= minimum <= length:
            sock = _plain_socket(response)
            if sock is not None:
                self._direct = (sock, length)

    def _resume(self, cause: BaseException | None) -> None:
        self._sock = None
        if self._response is not None:
            self._response.close()
        delay = next(self._delays, None)
        if delay is None:
            text = f": {cause}" if cause else " (the connection closed early)"
            raise RegistryConnectionError(
                f"reading blob {self._digest} from {self._client.host}/{self._repository} "
                f"broke at byte {self._pos}{text}"
            ) from cause
        self.resumes += 1
        self._client._retrying(
            f"GET {self._client.host}/{self._repository} blob {self._digest} from byte {self._pos}",
            self.resumes,
            delay,
            str(cause) if cause else "the connection closed early",
        )
        self._open()

    def _fill(self) -> bool:
        """Make bytes available (in the buffer, or on the direct socket); False at the end."""
        while True:
            if self._sock is not None:
                return True
            try:
                chunk = next(self._chunks)
            except StopIteration:
                if self._size is not None and self._pos < self._size:
                    self._resume(None)
                    continue
                return False
            except httpx.TransportError as e:
                self._resume(e)
                continue
            if not chunk:
                continue
            self._buf = chunk
            self._bufpos = 0
            if self._direct is not None:
                # httpx has handed over everything it buffered (h11 gives out all it holds of
                # a body at once): the rest is still in the socket, which is now ours.
                sock, length = self._direct
                self._direct = None
                if length > len(chunk):
                    sock.settimeout(self._client.read_timeout)
                    self._sock = sock
                    self._remaining = length - len(chunk)
            return True

    def _direct_done(self, n: int) -> None:
        self._pos += n
        self.direct_bytes += n
        self._remaining -= n
        if not self._remaining:
            # The body is complete, but httpcore does not know: closing the response closes
            # (never reuses) the connection.
            self._sock = None
            self._chunks = iter(())
            if self._response is not None:
                self._response.close()

    def _at_end(self) -> None:
        self._eof = True
        self.close()

    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0:
            return read_all(self)
        if self._eof or size == 0:
            return b""
        while True:
            if self._bufpos < len(self._buf):
                end = min(len(self._buf), self._bufpos + size)
                if self._bufpos == 0 and end == len(self._buf):
                    out = self._buf
                else:
                    out = self._buf[self._bufpos : end]
                self._bufpos = end
                self._pos += len(out)
                return out
            if self._sock is not None:
                try:
                    data = self._sock.recv(min(size, self._remaining, _DIRECT_READ_PIECE))
                except OSError as e:  # timeouts, resets, TLS errors on the way
                    self._resume(e)
                    continue
                if not data:
                    self._resume(None)
                    continue
                self._direct_done(len(data))
                return data
            if not self._fill():
                self._at_end()
                return b""

    def readinto(self, buffer: bytearray | memoryview, /) -> int:
        """Read into ``buffer``; from the direct socket, without an intermediate bytes object."""
        view = memoryview(buffer).cast("B")
        if self._eof or not len(view):
            return 0
        while True:
            if self._bufpos < len(self._buf):
                n = min(len(view), len(self._buf) - self._bufpos)
                view[:n] = memoryview(self._buf)[self._bufpos : self._bufpos + n]
                self._bufpos += n
                self._pos += n
                return n
            if self._sock is not None:
                try:
                    n = self._sock.recv_into(view, min(len(view), self._remaining))
                except OSError as e:
                    self._resume(e)
                    continue
                if not n:
                    self._resume(None)
                    continue
                self._direct_done(n)
                return n
            if not self._fill():
                self._at_end()
                return 0

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._sock = None
        self._direct = None
        if self._response is not None:
            self._response.close()
            self._response = None

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- helpers ---------------------------------------------------------------------------------
class _TooLarge(RegistryError):
    pass


def read_bounded(response: httpx.Response, limit: int) -> bytes:
    """The (decoded) body of a streamed response, refusing more than ``limit`` bytes."""
    parts: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        if total > limit:
            response.close()
            raise _TooLarge(f"{response.request.url.copy_with(query=None)}: over {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def _release(response: httpx.Response, limit: int = 0) -> None:
    """Read what is left of a short body, so that closing hands the connection back to the pool.

    httpcore closes the connection of a response closed before its body ended, even an empty
    body: every answer to a HEAD, POST or PUT would cost a new connection (and TLS handshake).
    A body longer than ``limit`` (or of unknown length) is not worth reading: the connection is
    closed instead. What was read stays readable (``response.content``).
    """
    try:
        if response.request.method != "HEAD":
            length = _content_length(response)
            if length is None or length > limit:
                return
        response.read()
    except httpx.TransportError:
        # The answer was complete: failing to finish its (short) body only costs the
        # connection, which the next request opens again.
        return
    finally:
        response.close()


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length", "").strip()
    return int(value) if value.isdigit() else None


def _plain_socket(response: httpx.Response) -> socket.socket | None:
    """The socket of a plain-HTTP/1.1 response whose body bytes arrive on it as they are.

    httpcore exposes it as the ``network_stream`` extension. Anything else (TLS, TLS inside a
    proxy tunnel, HTTP/2, a transport that is not httpcore's) gives ``None``.
    """
    if response.http_version != "HTTP/1.1":
        return None
    stream = response.extensions.get("network_stream")
    info = getattr(stream, "get_extra_info", None)
    if info is None:
        return None
    try:
        sock = info("socket")
        tls = info("ssl_object")
    except Exception:  # an unknown stream type: keep to httpx
        return None
    if tls is not None or isinstance(sock, ssl.SSLSocket) or not isinstance(sock, socket.socket):
        return None
    return sock


def _skip(chunks: Iterator[bytes], count: int) -> Iterator[bytes]:
    for chunk in chunks:
        if count >= len(chunk):
            count -= len(chunk)
            continue
        yield chunk[count:] if count else chunk
        count = 0


class _Upload:
    """An open upload session: where its next request goes."""

    def __init__(self, location: httpx.URL) -> None:
        self.location = location


class _UploadBody:
    """The bytes of one upload, read once from the source in pieces; the last ones are kept
    (at least ``window`` bytes) so that a PATCH that failed can be resent from where the
    registry stopped, without reading the source again."""

    def __init__(self, source: VerifyingReader, size: int | None, window: int, piece: int) -> None:
        self._source = source
        self._size = size
        self._window = max(window, 0)
        self._piece = max(piece, 1)
        self._kept: deque[tuple[int, bytes]] = deque()
        self._kept_bytes = 0
        #: The offset of the next byte to read from the source.
        self.read_to = 0
        #: The source reached its end (and was verified).
        self.eof = False
        #: What the source raised, if it failed: that is not a failure of the upload.
        self.source_error: BaseException | None = None

    @property
    def window_start(self) -> int:
        """The first byte that can still be sent again."""
        return self._kept[0][0] if self._kept else self.read_to

    def complete(self, done: int) -> bool:
        """Whether the registry, holding ``done`` bytes, has the whole (verified) source."""
        return self.eof and done >= self.read_to

    def _read(self, size: int) -> bytes:
        try:
            data = self._source.read(size)
        except BaseException as e:
            self.source_error = e
            raise
        if not data:
            self.eof = True
            return b""
        if self._size is not None and self.read_to + len(data) > self._size:
            self.source_error = ImageError(
                f"the blob being uploaded is longer than its stated {self._size} bytes"
            )
            raise self.source_error
        self._kept.append((self.read_to, data))
        self._kept_bytes += len(data)
        self.read_to += len(data)
        while self._kept and self._kept_bytes - len(self._kept[0][1]) >= self._window:
            _, old = self._kept.popleft()
            self._kept_bytes -= len(old)
        return data

    def pieces(self, start: int, end: int | None) -> Iterator[bytes]:
        """The bytes from ``start`` (at least :attr:`window_start`) to ``end`` (None: all)."""
        for offset, data in list(self._kept):
            stop = offset + len(data)
            if stop <= start:
                continue
            if end is not None and offset >= end:
                return
            lo = max(start - offset, 0)
            hi = len(data) if end is None else min(len(data), end - offset)
            yield data if lo == 0 and hi == len(data) else data[lo:hi]
        while not self.eof and (end is None or self.read_to < end):
            want = self._piece if end is None else min(self._piece, end - self.read_to)
            if data := self._read(want):
                yield data
        if end is not None and end == self._size and not self.eof:
            # Read the end, so the source is verified before the registry has all of it.
            self._read(self._piece)
            if not self.eof:  # pragma: no cover - _read raised
                raise ImageError("the blob being uploaded is longer than stated")


def _location(response: httpx.Response, what: str, default: httpx.URL | None = None) -> httpx.URL:
    value = response.headers.get("location")
    if not value:
        if default is not None:
            return default
        raise RegistryError(f"{what}: the registry sent no upload Location")
    return response.request.url.join(value)


def _range_end(header: str | None) -> int:
    """The number of bytes an upload holds, from its ``Range: 0-<last>`` header."""
    if not header:
        return 0
    _, _, last = header.replace("bytes=", "").partition("-")
    try:
        end = int(last)
    except ValueError:
        return 0
    # distribution answers "0-0" for an empty upload (and, ambiguously, for one byte).
    return 0 if end <= 0 else end + 1


def _content_range_start(header: str | None) -> int | None:
    if not header:
        return None
    text = header.strip()
    if text.startswith("bytes"):
        text = text[len("bytes") :].strip()
    start, _, _ = text.partition("-")
    try:
        return int(start)
    except ValueError:
        return None


def referrers_tag(digest: Digest) -> str:
    """The fallback tag that lists the referrers of ``digest`` (``sha256-<hex>``)."""
    return f"{digest.algorithm}-{digest.hex}"


def _index_descriptors(data: bytes, what: str) -> list[Descriptor]:
    try:
        obj = json.loads(data)
    except ValueError as e:
        raise ManifestError(f"{what}: not JSON") from e
    items = obj.get("manifests") if isinstance(obj, dict) else None
    if not isinstance(items, list):
        raise ManifestError(f"{what}: not an index")
    return [Descriptor.from_dict(item) for item in items]


def _ref_suffix(reference: str) -> str:
    return f"@{reference}" if ":" in reference else f":{reference}"


def _parse_digest_header(value: str, what: str) -> Digest:
    try:
        return Digest.parse(value.strip())
    except InvalidDigestError as e:
        raise RegistryError(f"{what}: the registry sent an invalid digest {value!r}") from e


def _check_manifest_digest(
    data: bytes, reference: str, headers: httpx.Headers, media_type: str, what: str
) -> Digest:
    asked: Digest | None = None
    if ":" in reference:
        asked = Digest.parse(reference)
    actual = Digest.from_bytes(data, asked.algorithm if asked else "sha256")
    if asked is not None and actual != asked:
        raise DigestMismatchError(
            f"{what}: the registry sent content with digest {actual}", expected=asked, actual=actual
        )
    header = headers.get("docker-content-digest")
    # A signed schema 1 manifest's digest covers its payload without the signatures.
    if header is not None and media_type != mt.DOCKER_SCHEMA1_SIGNED_MANIFEST:
        claimed = _parse_digest_header(header, what)
        check = (
            actual
            if claimed.algorithm == actual.algorithm
            else Digest.from_bytes(data, claimed.algorithm)
        )
        if claimed != check:
            raise DigestMismatchError(
                f"{what}: the registry says its digest is {claimed}, the content's is {check}",
                expected=claimed,
                actual=check,
            )
    return asked or actual


def _connection_error(e: httpx.TransportError, host: str, what: str) -> RegistryConnectionError:
    text = str(e) or type(e).__name__
    cause: BaseException | None = e
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            if isinstance(cause, ssl.SSLCertVerificationError):
                hint = " (trust its CA with cert_dir or certs.d, or use tls_verify=False)"
            else:
                hint = " (a registry speaking plain http needs tls_verify=False)"
            return RegistryTLSError(f"{what}: TLS with {host} failed: {text}{hint}")
        cause = cause.__cause__ or cause.__context__
    if "CERTIFICATE_VERIFY_FAILED" in text or "WRONG_VERSION_NUMBER" in text:
        return RegistryTLSError(f"{what}: TLS with {host} failed: {text}")
    return RegistryConnectionError(f"{what}: {text}")


_CODE_CLASSES: dict[str, type[RegistryError]] = {
    "UNAUTHORIZED": AuthenticationError,
    "DENIED": AccessDeniedError,
    "TOOMANYREQUESTS": TooManyRequestsError,
    "UNSUPPORTED": RegistryUnsupportedError,
    "MANIFEST_UNKNOWN": ManifestUnknownError,
    "BLOB_UNKNOWN": BlobUnknownError,
    "NAME_UNKNOWN": RepositoryNotFoundError,
}
_STATUS_CLASSES: dict[int, type[RegistryError]] = {
    401: AuthenticationError,
    403: AccessDeniedError,
    429: TooManyRequestsError,
    405: RegistryUnsupportedError,
}
_NOT_FOUND_CODES = frozenset({"MANIFEST_UNKNOWN", "BLOB_UNKNOWN", "NAME_UNKNOWN"})


def _error_for(
    response: httpx.Response, body: bytes, what: str, not_found: _NotFound
) -> RegistryError:
    details = parse_error_details(body)
    status = response.status_code
    said = "; ".join(str(d) for d in details)
    if not said:
        said = f"HTTP {status} {response.reason_phrase}".strip()
        snippet = body[:200].decode("utf-8", "replace").strip()
        if snippet and snippet.isprintable():
            said += f": {snippet}"
    codes = {d.code for d in details}
    cls: type[RegistryError]
    if status in _STATUS_CLASSES:
        cls = _STATUS_CLASSES[status]
    elif status == 404 or codes & _NOT_FOUND_CODES:
        cls = not_found if not_found is not RegistryError else _by_code(codes, RegistryError)
    else:
        cls = _by_code(codes, RegistryError)
    return cls(f"{what}: {said}", status=status, errors=details)


def _by_code(codes: set[str], default: type[RegistryError]) -> type[RegistryError]:
    for code, cls in _CODE_CLASSES.items():
        if code in codes:
            return cls
    return default
