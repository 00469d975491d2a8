"""The registry auth flow's pure parts: challenges, scopes; and the flow against canned answers
for what the real token server in the integration tests does not do (expiry, async drivers)."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest

from imagetypes import Credentials
from imagetypes_transports.docker import AuthenticationError, RegistryAuth, Scope
from imagetypes_transports.docker._auth import parse_challenges, scopes_for_request


def test_parse_bearer_challenge() -> None:
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull"'
    )
    (c,) = parse_challenges([header])
    assert c.scheme == "bearer"
    assert c.params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/busybox:pull",
    }


def test_parse_several_challenges_and_escapes() -> None:
    got = parse_challenges(['Basic realm="a \\"quoted\\" realm", Bearer realm=https://x/t'])
    assert [c.scheme for c in got] == ["basic", "bearer"]
    assert got[0].params["realm"] == 'a "quoted" realm'
    assert got[1].params["realm"] == "https://x/t"


def test_scope_parse_and_cover() -> None:
    s = Scope.parse("repository:library/busybox:pull,push")
    assert s is not None
    assert s.name == "library/busybox"
    assert s.actions == {"pull", "push"}
    assert str(s) == "repository:library/busybox:pull,push"
    pull = Scope.parse("repository:library/busybox:pull")
    assert pull is not None
    assert s.covers(pull)
    assert not pull.covers(s)
    assert Scope("registry", "catalog", frozenset({"*"})).covers(
        Scope("registry", "catalog", frozenset({"anything"}))
    )
    assert Scope.parse("nonsense") is None


@pytest.mark.parametrize(
    ("method", "url", "expected"),
    [
        ("GET", "https://r/v2/", set()),
        ("GET", "https://r/v2/_catalog?n=2", {"registry:catalog:*"}),
        ("GET", "https://r/v2/a/b/manifests/latest", {"repository:a/b:pull"}),
        ("HEAD", "https://r/v2/a/blobs/sha256:00", {"repository:a:pull"}),
        ("PUT", "https://r/v2/a/manifests/v1", {"repository:a:pull,push"}),
        ("PATCH", "https://r/v2/a/blobs/uploads/uuid?_state=x", {"repository:a:pull,push"}),
        ("DELETE", "https://r/v2/a/manifests/sha256:00", {"repository:a:delete"}),
        ("GET", "https://r/v2/x/tags/list", {"repository:x:pull"}),
        # A repository whose name has "blobs" and "manifests" components.
        (
            "GET",
            "https://r/v2/blobs/manifests/x/blobs/sha256:0",
            {"repository:blobs/manifests/x:pull"},
        ),
        (
            "POST",
            "https://r/v2/dst/blobs/uploads/?mount=sha256:0&from=src/repo",
            {"repository:dst:pull,push", "repository:src/repo:pull"},
        ),
    ],
)
def test_scopes_for_request(method: str, url: str, expected: set[str]) -> None:
    assert {str(s) for s in scopes_for_request(method, httpx.URL(url))} == expected


class FakeRegistry:
    """Canned registry + token server answers for one host (the real ones are in integration)."""

    def __init__(self, *, expires_in: int = 300) -> None:
        self.token_requests: list[httpx.Request] = []
        self.registry_requests: list[httpx.Request] = []
        self.expires_in = expires_in
        self.issued = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example":
            self.token_requests.append(request)
            self.issued += 1
            scopes = request.url.params.get_list("scope")
            token = base64.b64encode(json.dumps({"n": self.issued, "s": scopes}).encode()).decode()
            return httpx.Response(200, json={"token": token, "expires_in": self.expires_in})
        self.registry_requests.append(request)
        auth = request.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            granted = json.loads(base64.b64decode(auth[7:]))["s"]
            needed = {str(s) for s in scopes_for_request(request.method, request.url)}
            have = {Scope.parse(s) for s in granted}
            if all(
                any(h is not None and h.covers(Scope.parse(n)) for h in have)  # type: ignore[arg-type]
                for n in needed
            ):
                return httpx.Response(200, json={})
        scope = " ".join(str(s) for s in scopes_for_request(request.method, request.url))
        challenge = 'Bearer realm="https://auth.example/token",service="reg"'
        if scope:
            challenge += f',scope="{scope}"'
        return httpx.Response(
            401,
            headers={"WWW-Authenticate": challenge},
            json={"errors": [{"code": "UNAUTHORIZED"}]},
        )


def test_tokens_are_cached_and_scopes_accumulate() -> None:
    fake = FakeRegistry()
    now = [1000.0]
    auth = RegistryAuth(clock=lambda: now[0])
    with httpx.Client(transport=httpx.MockTransport(fake.handler), auth=auth) as client:
        assert client.get("https://reg.example/v2/").status_code == 401  # the ping
        assert client.get("https://reg.example/v2/dst/manifests/x").status_code == 200
        assert client.head("https://reg.example/v2/dst/blobs/sha256:0").status_code == 200
        assert auth.tokens_fetched == 1  # the pull token was reused
        r = client.post("https://reg.example/v2/dst/blobs/uploads/?mount=sha256:0&from=src")
        assert r.status_code == 200
        assert auth.tokens_fetched == 2
        last = fake.token_requests[-1].url.params.get_list("scope")
        assert sorted(last) == ["repository:dst:pull,push", "repository:src:pull"]
        # The push token also serves pulls of both repositories.
        assert client.get("https://reg.example/v2/src/blobs/sha256:0").status_code == 200
        assert auth.tokens_fetched == 2
        # Once expired, a new token is fetched up front (the realm is known).
        now[0] += 10_000
        assert client.get("https://reg.example/v2/dst/manifests/x").status_code == 200
        assert auth.tokens_fetched == 3
        assert fake.registry_requests[-1].headers["authorization"].startswith("Bearer ")


def test_credentials_go_to_the_realm_and_never_into_reprs() -> None:
    fake = FakeRegistry()
    auth = RegistryAuth(Credentials("alice", "s3cret-pw"))
    with httpx.Client(transport=httpx.MockTransport(fake.handler), auth=auth) as client:
        assert client.get("https://reg.example/v2/a/manifests/x").status_code == 200
    token_request = fake.token_requests[0]
    assert token_request.url.params["account"] == "alice"
    user_pw = base64.b64decode(token_request.headers["authorization"][6:]).decode()
    assert user_pw == "alice:s3cret-pw"
    for r in fake.registry_requests:
        assert "Basic" not in r.headers.get("authorization", "")
    assert "s3cret" not in repr(auth)
    assert "s3cret" not in repr(Credentials("alice", "s3cret-pw"))


def test_identity_token_uses_oauth2_refresh_grant() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example":
            seen.append(request)
            return httpx.Response(200, json={"access_token": "acc", "expires_in": 60})
        if request.headers.get("authorization") == "Bearer acc":
            return httpx.Response(200)
        return httpx.Response(
            401,
            headers={"WWW-Authenticate": 'Bearer realm="https://auth.example/t",service="svc"'},
        )

    auth = RegistryAuth(Credentials("<token>", "refresh-me"))
    with httpx.Client(transport=httpx.MockTransport(handler), auth=auth) as client:
        assert client.get("https://reg.example/v2/a/manifests/x").status_code == 200
    (req,) = seen
    assert req.method == "POST"
    form = dict(x.split("=", 1) for x in req.content.decode().split("&"))
    assert form["grant_type"] == "refresh_token"
    assert form["refresh_token"] == "refresh-me"
    assert form["service"] == "svc"


def test_token_server_refusal_is_an_authentication_error_without_secrets() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example":
            return httpx.Response(
                401, json={"errors": [{"code": "UNAUTHORIZED", "message": "bad password"}]}
            )
        return httpx.Response(
            401, headers={"WWW-Authenticate": 'Bearer realm="https://auth.example/t"'}
        )

    auth = RegistryAuth(Credentials("bob", "hunter2"))
    with (
        httpx.Client(transport=httpx.MockTransport(handler), auth=auth) as client,
        pytest.raises(AuthenticationError, match="bad password") as info,
    ):
        client.get("https://reg.example/v2/a/manifests/x")
    assert "hunter2" not in str(info.value)
    assert "'bob'" in str(info.value)


def test_oversized_token_answer_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example":
            return httpx.Response(200, content=b"x" * (1024 * 1024 + 10))
        return httpx.Response(
            401, headers={"WWW-Authenticate": 'Bearer realm="https://auth.example/t"'}
        )

    auth = RegistryAuth()
    with (
        httpx.Client(transport=httpx.MockTransport(handler), auth=auth) as client,
        pytest.raises(Exception, match="more than 1048576 bytes"),
    ):
        client.get("https://reg.example/v2/a/manifests/x")


def test_registry_token_is_sent_as_is() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        return httpx.Response(200)

    auth = RegistryAuth(registry_token="tok123")
    with httpx.Client(transport=httpx.MockTransport(handler), auth=auth) as client:
        client.get("https://reg.example/v2/a/manifests/x")
    assert seen == ["Bearer tok123"]


def test_the_same_flow_drives_an_async_client() -> None:
    fake = FakeRegistry()
    auth = RegistryAuth(Credentials("alice", "pw"))

    async def run() -> int:
        async def handler(request: httpx.Request) -> httpx.Response:
            return fake.handler(request)

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler), auth=auth) as c:
            r = await c.get("https://reg.example/v2/a/manifests/x")
            await c.get("https://reg.example/v2/a/blobs/sha256:0")
            return r.status_code

    assert asyncio.run(run()) == 200
    assert auth.tokens_fetched == 1
