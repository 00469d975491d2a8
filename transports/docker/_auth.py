"""Registry authentication as one httpx auth flow: anonymous, basic, bearer tokens and OAuth2.

The flow (:meth:`RegistryAuth._flow`) is a generator shared by the sync and async drivers
(:meth:`~RegistryAuth.sync_auth_flow`, :meth:`~RegistryAuth.async_auth_flow`); the drivers only
differ in how they read a token response's body, which they do with a size bound.

Bearer tokens are fetched from the realm a registry names in its ``WWW-Authenticate``
challenge, for every scope this client has needed so far (so a destination's token covers
``pull,push`` on its repository and ``pull`` on the repositories it mounts from), and cached
until they expire.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import AsyncGenerator, Generator, Iterable, Mapping
from typing import Any

import attrs
import httpx

from imagetypes.types import Credentials

from ._credentials import IDENTITY_TOKEN_USER
from ._errors import AuthenticationError, RegistryError, parse_error_details

__all__ = [
    "MAX_TOKEN_RESPONSE",
    "Challenge",
    "RegistryAuth",
    "Scope",
    "parse_challenges",
    "scopes_for_request",
]

#: Bound on a token server's answer.
MAX_TOKEN_RESPONSE = 1024 * 1024
#: Tokens are kept at least this long, whatever ``expires_in`` says (docker's rule).
_MIN_TOKEN_LIFETIME = 60.0
#: Tokens are dropped this long before they expire, so a request never carries a stale one.
_EXPIRY_MARGIN = 10.0
_CLIENT_ID = "imagetypes"
# Token answers are read with a bound on the bytes that arrive, so they must not be compressed.
_IDENTITY = {"Accept-Encoding": "identity"}

_AUTH_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*,?')
_SCHEME = re.compile(r"\s*,?\s*([A-Za-z][A-Za-z0-9_.-]*)(?:\s+|(?=,)|$)")


@attrs.frozen
class Challenge:
    """One ``WWW-Authenticate`` challenge: a scheme (lower case) and its parameters."""

    scheme: str
    params: Mapping[str, str] = attrs.field(factory=dict)


def parse_challenges(headers: Iterable[str]) -> list[Challenge]:
    """Parse ``WWW-Authenticate`` header values (several challenges per value allowed)."""
    out: list[Challenge] = []
    for header in headers:
        pos = 0
        while pos < len(header):
            m = _SCHEME.match(header, pos)
            if not m:
                break
            scheme = m.group(1).lower()
            pos = m.end()
            params: dict[str, str] = {}
            while pos < len(header):
                p = _AUTH_PARAM.match(header, pos)
                if not p:
                    break
                value = p.group(2)
                value = re.sub(r"\\(.)", r"\1", value) if value is not None else p.group(3)
                params[p.group(1).lower()] = value
                pos = p.end()
            out.append(Challenge(scheme, params))
    return out


def _actions(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


@attrs.frozen(order=True)
class Scope:
    """A token scope: ``repository:library/busybox:pull,push`` or ``registry:catalog:*``."""

    type: str
    name: str
    actions: frozenset[str] = attrs.field(converter=_actions, order=False)

    @classmethod
    def parse(cls, text: str) -> Scope | None:
        """Parse ``type:name:actions``; ``None`` for text that is not a scope."""
        typ, sep, rest = text.partition(":")
        name, sep2, actions = rest.rpartition(":")
        if not sep or not sep2 or not typ or not name:
            return None
        return cls(typ, name, frozenset(a for a in actions.split(",") if a))

    def covers(self, other: Scope) -> bool:
        """True if a token for this scope is also good for ``other``."""
        return (
            self.type == other.type
            and self.name == other.name
            and ("*" in self.actions or self.actions >= other.actions)
        )

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"


def _merge(scopes: Iterable[Scope]) -> frozenset[Scope]:
    """One scope per resource, with the union of the actions asked for it."""
    merged: dict[tuple[str, str], set[str]] = {}
    for s in scopes:
        merged.setdefault((s.type, s.name), set()).update(s.actions)
    return frozenset(Scope(t, n, frozenset(a)) for (t, n), a in merged.items())


_MARKERS = ("/manifests/", "/blobs/", "/tags/list", "/referrers/")


def scopes_for_request(method: str, url: httpx.URL) -> frozenset[Scope]:
    """The scopes a request to a distribution API URL needs (empty for the ``/v2/`` ping)."""
    path = url.path
    if not path.startswith("/v2/"):
        return frozenset()
    rest = path[len("/v2/") :]
    if rest in ("", "/"):
        return frozenset()
    if rest.rstrip("/") == "_catalog":
        return frozenset({Scope("registry", "catalog", frozenset({"*"}))})
    # A repository name may itself contain "blobs" or "manifests" as a component, so the
    # marker that starts the API part of the path is the last one in it.
    cut = max(rest.rfind(m) for m in _MARKERS)
    if cut <= 0:
        return frozenset()
    name = rest[:cut]
    method = method.upper()
    if method in ("GET", "HEAD"):
        actions = {"pull"}
    elif method == "DELETE":
        actions = {"delete"}
    else:
        actions = {"pull", "push"}
    scopes = {Scope("repository", name, frozenset(actions))}
    source = url.params.get("from")
    if source and url.params.get("mount"):
        scopes.add(Scope("repository", source, frozenset({"pull"})))
    return frozenset(scopes)


@attrs.frozen
class _ReadBody:
    """Asks a driver to read a response body, at most ``limit`` bytes, and send it back."""

    response: httpx.Response
    limit: int


@attrs.frozen
class _Token:
    value: str = attrs.field(repr=False)
    scopes: frozenset[Scope]
    expires: float

    def covers(self, needed: Iterable[Scope]) -> bool:
        return all(any(have.covers(want) for have in self.scopes) for want in needed)


_FlowStep = httpx.Request | _ReadBody
_Flow = Generator[_FlowStep, "httpx.Response | bytes", None]


def _too_large(url: httpx.URL, limit: int) -> RegistryError:
    return RegistryError(f"{url.copy_with(query=None)} answered with more than {limit} bytes")


class RegistryAuth(httpx.Auth):
    """Authentication for one registry host, reusable by sync and async httpx clients.

    ``credentials`` are sent to the registry itself (basic) or to the token realm it names
    (bearer); ``registry_token`` is sent as a bearer token as it is. Neither ever appears in a
    repr, log or error message.
    """

    requires_request_body = False
    requires_response_body = False

    def __init__(
        self,
        credentials: Credentials | None = None,
        *,
        registry_token: str | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        self._credentials = credentials
        self._registry_token = registry_token
        self._clock = clock
        self._lock = threading.Lock()
        self._challenge: Challenge | None = None
        self._scopes: set[Scope] = set()
        self._tokens: list[_Token] = []
        #: Number of tokens fetched so far (for tests and diagnostics).
        self.tokens_fetched = 0

    def __repr__(self) -> str:
        who = self._credentials.username if self._credentials else "anonymous"
        scheme = self._challenge.scheme if self._challenge else "unknown"
        return f"<RegistryAuth {who} scheme={scheme}>"

    # -- state ------------------------------------------------------------------------------
    def add_scope(self, scope: Scope | str) -> None:
        """Ask for ``scope`` in every token fetched from now on (e.g. pull on a mount source)."""
        parsed = Scope.parse(scope) if isinstance(scope, str) else scope
        if parsed is None:
            raise ValueError(f"not a token scope: {scope!r}")
        with self._lock:
            self._scopes.add(parsed)

    @property
    def scopes(self) -> frozenset[Scope]:
        """Every scope this client has needed so far, merged per resource."""
        with self._lock:
            return _merge(self._scopes)

    def _cached_header(self, needed: frozenset[Scope]) -> str | None:
        if self._registry_token is not None:
            return f"Bearer {self._registry_token}"
        with self._lock:
            challenge = self._challenge
            if challenge is None:
                return None
            if challenge.scheme == "basic":
                return self._basic_header() if self._credentials else None
            now = self._clock()
            self._tokens = [t for t in self._tokens if t.expires > now]
            for token in reversed(self._tokens):
                if token.covers(needed):
                    return f"Bearer {token.value}"
        return None

    def _basic_header(self) -> str:
        assert self._credentials is not None
        raw = f"{self._credentials.username}:{self._credentials.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    # -- the flow -------------------------------------------------------------------------
    def _flow(self, request: httpx.Request) -> _Flow:
        needed = scopes_for_request(request.method, request.url)
        with self._lock:
            self._scopes.update(needed)
        header = self._cached_header(needed)
        challenge = self._challenge
        if header is None and needed and challenge is not None and challenge.scheme == "bearer":
            # The realm is known: fetch a token up front instead of collecting a 401 first.
            token = yield from self._fetch_token(challenge, needed)
            header = f"Bearer {token.value}"
        if header is not None:
            request.headers["Authorization"] = header
        response = yield request
        assert isinstance(response, httpx.Response)
        if response.status_code != 401 or self._registry_token is not None:
            return
        challenges = parse_challenges(response.headers.get_list("www-authenticate"))
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        chosen = bearer or basic
        if chosen is None:
            return
        with self._lock:
            self._challenge = chosen
        # httpx reads a response it is asked to retry; bound what that may take.
        yield _ReadBody(response, MAX_TOKEN_RESPONSE)
        if not needed and "scope" not in chosen.params:
            return  # the ping: learning the challenge is all it is for
        if chosen is basic:
            if self._credentials is None or header is not None:
                return  # nothing (else) to offer: the caller turns the 401 into an error
            request.headers["Authorization"] = self._basic_header()
            yield request
            return
        extra = {s for s in map(Scope.parse, chosen.params.get("scope", "").split()) if s}
        token = yield from self._fetch_token(chosen, needed | extra)
        if header == f"Bearer {token.value}":
            return  # the same token again: sending it again cannot help
        request.headers["Authorization"] = f"Bearer {token.value}"
        yield request

    def _fetch_token(
        self, challenge: Challenge, needed: frozenset[Scope]
    ) -> Generator[_FlowStep, httpx.Response | bytes, _Token]:
        realm = challenge.params.get("realm")
        if not realm:
            raise AuthenticationError("the registry asked for a bearer token but named no realm")
        with self._lock:
            self._scopes.update(needed)
            scopes = _merge(self._scopes)
        scope_strings = sorted(str(s) for s in scopes)
        service = challenge.params.get("service")
        creds = self._credentials
        if creds is not None and creds.username == IDENTITY_TOKEN_USER:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": creds.password,
                "client_id": _CLIENT_ID,
                "scope": " ".join(scope_strings),
            }
            if service:
                form["service"] = service
            token_request = httpx.Request("POST", realm, data=form, headers=_IDENTITY)
        else:
            params: list[tuple[str, str | int | float | bool | None]] = []
            if service:
                params.append(("service", service))
            params.extend(("scope", s) for s in scope_strings)
            if creds is not None:
                params.append(("account", creds.username))
            headers = dict(_IDENTITY)
            if creds is not None:
                headers["Authorization"] = self._basic_header()
            token_request = httpx.Request("GET", realm, params=params, headers=headers)
        response = yield token_request
        assert isinstance(response, httpx.Response)
        body = yield _ReadBody(response, MAX_TOKEN_RESPONSE)
        assert isinstance(body, bytes)
        where = token_request.url.copy_with(query=None)
        if response.status_code != 200:
            details = parse_error_details(body)
            said = "; ".join(str(d) for d in details) or f"HTTP {response.status_code}"
            who = f"as {creds.username!r}" if creds else "anonymously"
            cls = AuthenticationError if response.status_code in (400, 401, 403) else RegistryError
            raise cls(
                f"the token server at {where} refused a token {who} for "
                f"{' '.join(scope_strings) or 'the registry'}: {said}",
                status=response.status_code,
                errors=details,
            )
        token = self._parse_token(body, where, scopes)
        with self._lock:
            self._tokens.append(token)
            self.tokens_fetched += 1
        return token

    def _parse_token(self, body: bytes, where: httpx.URL, scopes: frozenset[Scope]) -> _Token:
        try:
            obj = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise AuthenticationError(f"the token server at {where} sent invalid JSON") from e
        if not isinstance(obj, dict):
            raise AuthenticationError(f"the token server at {where} sent no token object")
        value = obj.get("token") or obj.get("access_token")
        if not isinstance(value, str) or not value:
            raise AuthenticationError(f"the token server at {where} sent no token")
        expires_in = obj.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 0.0
        lifetime = max(lifetime, _MIN_TOKEN_LIFETIME)
        return _Token(value, scopes, self._clock() + lifetime - _EXPIRY_MARGIN)

    # -- drivers --------------------------------------------------------------------------
    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        flow = self._flow(request)
        try:
            step = next(flow)
            while True:
                value: httpx.Response | bytes
                if isinstance(step, _ReadBody):
                    value = _read_bounded(step.response, step.limit)
                else:
                    value = yield step
                step = flow.send(value)
        except StopIteration:
            return

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        flow = self._flow(request)
        try:
            step = next(flow)
            while True:
                value: httpx.Response | bytes
                if isinstance(step, _ReadBody):
                    value = await _aread_bounded(step.response, step.limit)
                else:
                    value = yield step
                step = flow.send(value)
        except StopIteration:
            return


def _read_bounded(response: httpx.Response, limit: int) -> bytes:
    """Read a body of at most ``limit`` bytes, leaving it readable again (httpx reads it too)."""
    stream = response.stream
    if not isinstance(stream, httpx.SyncByteStream):
        raise TypeError("a sync auth flow got an async response")
    parts: list[bytes] = []
    total = 0
    try:
        for chunk in stream:
            total += len(chunk)
            if total > limit:
                raise _too_large(response.request.url, limit)
            parts.append(chunk)
    finally:
        stream.close()
    response.stream = httpx.ByteStream(b"".join(parts))
    return response.read()


async def _aread_bounded(response: httpx.Response, limit: int) -> bytes:
    """The async twin of :func:`_read_bounded`."""
    stream = response.stream
    if not isinstance(stream, httpx.AsyncByteStream):
        raise TypeError("an async auth flow got a sync response")
    parts: list[bytes] = []
    total = 0
    try:
        async for chunk in stream:
            total += len(chunk)
            if total > limit:
                raise _too_large(response.request.url, limit)
            parts.append(chunk)
    finally:
        await stream.aclose()
    response.stream = httpx.ByteStream(b"".join(parts))
    return await response.aread()
