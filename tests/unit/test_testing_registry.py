"""imagetypes.testing.registry: the distribution API through plain httpx requests, in-process."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator

import httpx
import pytest

from imagetypes import mediatypes as mt
from imagetypes.testing.random import random_image
from imagetypes.testing.registry import BasicAuth, BearerAuth, InMemoryRegistry

BASE = "http://registry.test"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def error_code(response: httpx.Response) -> str:
    return str(response.json()["errors"][0]["code"])


@pytest.fixture
def registry() -> InMemoryRegistry:
    return InMemoryRegistry()


@pytest.fixture
def client(registry: InMemoryRegistry) -> Iterator[httpx.Client]:
    with httpx.Client(transport=registry.transport(), base_url=BASE) as c:
        yield c


def push_blob(client: httpx.Client, name: str, data: bytes) -> str:
    digest = digest_of(data)
    r = client.post(f"/v2/{name}/blobs/uploads/", params={"digest": digest}, content=data)
    assert r.status_code == 201, r.text
    return digest


def push_image(client: httpx.Client, name: str, tag: str, seed: int = 0) -> str:
    image = random_image(seed, layers=1, layer_size=64)
    for blob in image.blobs.values():
        push_blob(client, name, blob)
    r = client.put(
        f"/v2/{name}/manifests/{tag}",
        content=image.manifest,
        headers={"Content-Type": image.media_type},
    )
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == str(image.digest)
    return str(image.digest)


# -- base ------------------------------------------------------------------------------------------
def test_ping(client: httpx.Client) -> None:
    r = client.get("/v2/")
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_unknown_endpoint_and_invalid_name(client: httpx.Client) -> None:
    assert client.get("/nothing").status_code == 404
    r = client.get("/v2/UPPER/tags/list")
    assert r.status_code == 400
    assert error_code(r) == "NAME_INVALID"


# -- manifests -------------------------------------------------------------------------------------
def test_manifest_put_get_head_by_tag_and_digest(client: httpx.Client) -> None:
    image = random_image(3, layers=2, layer_size=100)
    for blob in image.blobs.values():
        push_blob(client, "library/app", blob)
    r = client.put(
        "/v2/library/app/manifests/1.0",
        content=image.manifest,
        headers={"Content-Type": image.media_type},
    )
    assert r.status_code == 201
    assert r.headers["Location"].endswith(f"/v2/library/app/manifests/{image.digest}")
    for ref in ("1.0", str(image.digest)):
        got = client.get(f"/v2/library/app/manifests/{ref}")
        assert got.status_code == 200
        assert got.content == image.manifest  # stored byte for byte
        assert got.headers["Content-Type"] == image.media_type
        assert got.headers["Docker-Content-Digest"] == str(image.digest)
        head = client.head(f"/v2/library/app/manifests/{ref}")
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["Content-Length"] == str(len(image.manifest))


def test_manifest_bytes_are_kept_exactly(client: httpx.Client) -> None:
    image = random_image(4, layers=1, layer_size=10)
    for blob in image.blobs.values():
        push_blob(client, "a", blob)
    # Re-indented JSON: a different digest, and it must come back unchanged.
    pretty = json.dumps(json.loads(image.manifest), indent=3).encode()
    r = client.put(
        "/v2/a/manifests/pretty", content=pretty, headers={"Content-Type": mt.OCI_MANIFEST}
    )
    assert r.headers["Docker-Content-Digest"] == digest_of(pretty)
    assert client.get("/v2/a/manifests/pretty").content == pretty


def test_manifest_put_by_digest_is_verified(client: httpx.Client) -> None:
    image = random_image(5, layers=1, layer_size=10)
    for blob in image.blobs.values():
        push_blob(client, "a", blob)
    wrong = digest_of(b"something else")
    r = client.put(
        f"/v2/a/manifests/{wrong}",
        content=image.manifest,
        headers={"Content-Type": image.media_type},
    )
    assert r.status_code == 400
    assert error_code(r) == "DIGEST_INVALID"
    r = client.put(
        f"/v2/a/manifests/{image.digest}",
        content=image.manifest,
        headers={"Content-Type": image.media_type},
    )
    assert r.status_code == 201
    assert client.get("/v2/a/tags/list").json()["tags"] == []


def test_manifest_refusals(client: httpx.Client) -> None:
    image = random_image(6, layers=1, layer_size=10)
    headers = {"Content-Type": image.media_type}
    r = client.put("/v2/a/manifests/t", content=image.manifest, headers=headers)
    assert r.status_code == 400
    assert error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    r = client.put("/v2/a/manifests/t", content=b"not json", headers=headers)
    assert error_code(r) == "MANIFEST_INVALID"
    r = client.put("/v2/a/manifests/bad:tag", content=image.manifest, headers=headers)
    assert r.status_code == 400
    r = client.get("/v2/a/manifests/missing")
    assert r.status_code == 404
    assert error_code(r) == "MANIFEST_UNKNOWN"


def test_manifest_delete_by_tag_and_digest(client: httpx.Client) -> None:
    digest = push_image(client, "a", "one")
    r = client.put(
        "/v2/a/manifests/two",
        content=client.get("/v2/a/manifests/one").content,
        headers={"Content-Type": mt.OCI_MANIFEST},
    )
    assert r.status_code == 201
    assert client.delete("/v2/a/manifests/one").status_code == 202
    assert client.get("/v2/a/manifests/one").status_code == 404
    assert client.get("/v2/a/manifests/two").status_code == 200
    assert client.delete(f"/v2/a/manifests/{digest}").status_code == 202
    assert client.get(f"/v2/a/manifests/{digest}").status_code == 404
    assert client.get("/v2/a/tags/list").json()["tags"] == []


def test_index_needs_its_instances(client: httpx.Client) -> None:
    from imagetypes.testing.random import random_index

    index = random_index(1, ["linux/amd64", "linux/arm64"], layers=1, layer_size=10)
    r = client.put(
        "/v2/m/manifests/multi", content=index.manifest, headers={"Content-Type": index.media_type}
    )
    assert error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    for image in index.images:
        for blob in image.blobs.values():
            push_blob(client, "m", blob)
        r = client.put(
            f"/v2/m/manifests/{image.digest}",
            content=image.manifest,
            headers={"Content-Type": image.media_type},
        )
        assert r.status_code == 201
    r = client.put(
        "/v2/m/manifests/multi", content=index.manifest, headers={"Content-Type": index.media_type}
    )
    assert r.status_code == 201
    assert client.get("/v2/m/manifests/multi").headers["Content-Type"] == mt.OCI_INDEX


# -- blobs -----------------------------------------------------------------------------------------
def test_blob_get_head_range_delete(client: httpx.Client, registry: InMemoryRegistry) -> None:
    data = bytes(range(256)) * 4
    digest = push_blob(client, "a", data)
    r = client.get(f"/v2/a/blobs/{digest}")
    assert r.content == data
    assert r.headers["Docker-Content-Digest"] == digest
    head = client.head(f"/v2/a/blobs/{digest}")
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(data))
    part = client.get(f"/v2/a/blobs/{digest}", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == data[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    tail = client.get(f"/v2/a/blobs/{digest}", headers={"Range": "bytes=1000-"})
    assert tail.content == data[1000:]
    bad = client.get(f"/v2/a/blobs/{digest}", headers={"Range": "bytes=5000-"})
    assert bad.status_code == 416
    assert registry.counters.blob_gets == 3  # the refused range read is not counted
    assert registry.counters.blob_heads == 1
    assert client.get(f"/v2/other/blobs/{digest}").status_code == 404  # not linked there
    assert client.delete(f"/v2/a/blobs/{digest}").status_code == 202
    r = client.get(f"/v2/a/blobs/{digest}")
    assert r.status_code == 404
    assert error_code(r) == "BLOB_UNKNOWN"


def test_invalid_digest(client: httpx.Client) -> None:
    r = client.get("/v2/a/blobs/sha256:1234")
    assert r.status_code == 400
    assert error_code(r) == "DIGEST_INVALID"


# -- uploads ---------------------------------------------------------------------------------------
def test_chunked_upload_session(client: httpx.Client, registry: InMemoryRegistry) -> None:
    data = b"0123456789" * 10
    r = client.post("/v2/a/blobs/uploads/")
    assert r.status_code == 202
    location = r.headers["Location"]
    assert r.headers["Range"] == "0-0"
    uuid = r.headers["Docker-Upload-UUID"]
    assert uuid in location
    r = client.patch(location, content=data[:40], headers={"Content-Range": "0-39"})
    assert r.status_code == 202
    assert r.headers["Range"] == "0-39"
    # A chunk that does not continue where the last one ended is refused.
    r = client.patch(r.headers["Location"], content=data[50:60], headers={"Content-Range": "50-59"})
    assert r.status_code == 416
    r = client.patch(location, content=data[40:90])  # no Content-Range: appended
    assert r.headers["Range"] == "0-89"
    status = client.get(location)
    assert status.status_code == 204
    assert status.headers["Range"] == "0-89"
    assert registry.upload_sessions_open() == 1
    r = client.put(location, params={"digest": digest_of(data)}, content=data[90:])
    assert r.status_code == 201
    assert r.headers["Docker-Content-Digest"] == digest_of(data)
    assert client.get(f"/v2/a/blobs/{digest_of(data)}").content == data
    assert registry.upload_sessions_open() == 0
    assert registry.counters.upload_sessions == 1
    assert registry.counters.chunks == 2  # the refused chunk is not counted
    assert client.get(location).status_code == 404  # the session is gone


def test_upload_digest_mismatch_stores_nothing(client: httpx.Client) -> None:
    location = client.post("/v2/a/blobs/uploads/").headers["Location"]
    client.patch(location, content=b"hello")
    wrong = digest_of(b"other")
    r = client.put(location, params={"digest": wrong})
    assert r.status_code == 400
    assert error_code(r) == "DIGEST_INVALID"
    assert client.head(f"/v2/a/blobs/{wrong}").status_code == 404
    assert client.head(f"/v2/a/blobs/{digest_of(b'hello')}").status_code == 404
    r = client.post("/v2/a/blobs/uploads/", params={"digest": wrong}, content=b"hello")
    assert error_code(r) == "DIGEST_INVALID"


def test_upload_cancel(client: httpx.Client, registry: InMemoryRegistry) -> None:
    location = client.post("/v2/a/blobs/uploads/").headers["Location"]
    assert client.delete(location).status_code == 204
    assert registry.upload_sessions_open() == 0
    r = client.patch(location, content=b"x")
    assert r.status_code == 404
    assert error_code(r) == "BLOB_UPLOAD_UNKNOWN"


def test_cross_repository_mount(client: httpx.Client, registry: InMemoryRegistry) -> None:
    digest = push_blob(client, "src/repo", b"shared layer")
    r = client.post("/v2/dst/blobs/uploads/", params={"mount": digest, "from": "src/repo"})
    assert r.status_code == 201
    assert r.headers["Docker-Content-Digest"] == digest
    assert client.get(f"/v2/dst/blobs/{digest}").content == b"shared layer"
    assert registry.counters.mounts == 1
    # A blob the source does not have: the registry starts an upload session instead.
    missing = digest_of(b"not there")
    r = client.post("/v2/dst/blobs/uploads/", params={"mount": missing, "from": "src/repo"})
    assert r.status_code == 202
    assert "Docker-Upload-UUID" in r.headers
    assert registry.counters.mounts == 1
    assert registry.counters.mount_misses == 1


# -- listings --------------------------------------------------------------------------------------
def test_tags_pagination(client: httpx.Client) -> None:
    for tag in ("c", "a", "d", "b", "e"):
        push_image(client, "repo", tag)
    assert client.get("/v2/repo/tags/list").json() == {"name": "repo", "tags": list("abcde")}
    seen: list[str] = []
    url: str | None = "/v2/repo/tags/list?n=2"
    pages = 0
    while url:
        r = client.get(url)
        assert r.status_code == 200
        seen += r.json()["tags"]
        pages += 1
        link = r.headers.get("Link")
        url = link.split(";")[0].strip("<>") if link else None
    assert seen == list("abcde")
    assert pages == 3
    r = client.get("/v2/repo/tags/list", params={"n": "2", "last": "b"})
    assert r.json()["tags"] == ["c", "d"]
    assert client.get("/v2/repo/tags/list", params={"n": "-1"}).status_code == 400
    r = client.get("/v2/nope/tags/list")
    assert r.status_code == 404
    assert error_code(r) == "NAME_UNKNOWN"


def test_catalog_pagination(client: httpx.Client) -> None:
    names = ["z/last", "a/first", "m/middle"]
    for name in names:
        push_blob(client, name, name.encode())
    assert client.get("/v2/_catalog").json() == {"repositories": sorted(names)}
    r = client.get("/v2/_catalog", params={"n": 1})
    assert r.json() == {"repositories": ["a/first"]}
    assert r.headers["Link"] == '</v2/_catalog?last=a%2Ffirst&n=1>; rel="next"'
    r = client.get("/v2/_catalog", params={"n": 5, "last": "a/first"})
    assert r.json() == {"repositories": ["m/middle", "z/last"]}
    assert "Link" not in r.headers


# -- referrers -------------------------------------------------------------------------------------
def test_referrers_with_artifact_type_filter(client: httpx.Client) -> None:
    from imagetypes.descriptor import Descriptor
    from imagetypes.digest import Digest
    from imagetypes.manifest import OCIManifest

    subject_digest = push_image(client, "app", "v1")
    subject_data = client.get("/v2/app/manifests/v1").content
    subject = Descriptor(mt.OCI_MANIFEST, Digest.parse(subject_digest), len(subject_data))
    empty = b"{}"
    push_blob(client, "app", empty)
    empty_desc = Descriptor(mt.OCI_EMPTY, Digest.from_bytes(empty), 2)
    digests = {}
    for kind in ("application/vnd.example.sbom", "application/vnd.example.signature"):
        artifact = OCIManifest.build(
            empty_desc,
            [empty_desc],
            artifact_type=kind,
            subject=subject,
            annotations={"kind": kind},
        )
        r = client.put(
            f"/v2/app/manifests/{artifact.digest}",
            content=artifact.raw,
            headers={"Content-Type": mt.OCI_MANIFEST},
        )
        assert r.status_code == 201
        assert r.headers["OCI-Subject"] == subject_digest
        digests[kind] = str(artifact.digest)
    r = client.get(f"/v2/app/referrers/{subject_digest}")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == mt.OCI_INDEX
    body = r.json()
    assert body["mediaType"] == mt.OCI_INDEX
    assert {m["digest"] for m in body["manifests"]} == set(digests.values())
    assert {m["artifactType"] for m in body["manifests"]} == set(digests)
    r = client.get(
        f"/v2/app/referrers/{subject_digest}",
        params={"artifactType": "application/vnd.example.sbom"},
    )
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["digest"] for m in r.json()["manifests"]] == [digests["application/vnd.example.sbom"]]
    assert r.json()["manifests"][0]["annotations"] == {"kind": "application/vnd.example.sbom"}
    # No referrers: an empty index, not a 404.
    r = client.get(f"/v2/app/referrers/{digest_of(b'nothing')}")
    assert r.status_code == 200
    assert r.json()["manifests"] == []


# -- authentication --------------------------------------------------------------------------------
def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_auth() -> None:
    registry = InMemoryRegistry(auth=BasicAuth("alice", "s3cret"))
    with httpx.Client(transport=registry.transport(), base_url=BASE) as client:
        r = client.get("/v2/")
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"].startswith("Basic ")
        assert error_code(r) == "UNAUTHORIZED"
        assert client.get("/v2/", headers=basic("alice", "wrong")).status_code == 401
        assert client.get("/v2/", headers=basic("alice", "s3cret")).status_code == 200
        r = client.post(
            "/v2/a/blobs/uploads/",
            params={"digest": digest_of(b"x")},
            content=b"x",
            headers=basic("alice", "s3cret"),
        )
        assert r.status_code == 201
        assert registry.counters.unauthorized == 2


def get_token(
    client: httpx.Client, challenge: str, scope: str, headers: dict[str, str] | None = None
) -> str:
    realm = challenge.split('realm="')[1].split('"')[0]
    service = challenge.split('service="')[1].split('"')[0]
    r = client.get(realm, params={"service": service, "scope": scope}, headers=headers)
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def test_bearer_auth_scopes() -> None:
    registry = InMemoryRegistry(auth=BearerAuth("bob", "pw"))
    with httpx.Client(transport=registry.transport(), base_url=BASE) as client:
        r = client.post("/v2/app/blobs/uploads/", params={"digest": digest_of(b"x")}, content=b"x")
        assert r.status_code == 401
        challenge = r.headers["WWW-Authenticate"]
        assert challenge.startswith(f'Bearer realm="{BASE}/token"')
        assert 'scope="repository:app:pull,push"' in challenge
        # Wrong password: no token.
        realm_r = client.get(
            "/token", params={"scope": "repository:app:pull"}, headers=basic("bob", "no")
        )
        assert realm_r.status_code == 401
        token = get_token(client, challenge, "repository:app:pull,push", headers=basic("bob", "pw"))
        auth = {"Authorization": f"Bearer {token}"}
        r = client.post(
            "/v2/app/blobs/uploads/", params={"digest": digest_of(b"x")}, content=b"x", headers=auth
        )
        assert r.status_code == 201
        # The token is scoped to "app": another repository is refused.
        r = client.get(f"/v2/other/blobs/{digest_of(b'x')}", headers=auth)
        assert r.status_code == 401
        assert 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
        # A pull-only token cannot push, and a forged token is nobody.
        pull = get_token(client, challenge, "repository:app:pull", headers=basic("bob", "pw"))
        r = client.post("/v2/app/blobs/uploads/", headers={"Authorization": f"Bearer {pull}"})
        assert r.status_code == 401
        r = client.get(
            f"/v2/app/blobs/{digest_of(b'x')}", headers={"Authorization": f"Bearer {pull}"}
        )
        assert r.content == b"x"
        assert client.get("/v2/", headers={"Authorization": "Bearer forged"}).status_code == 401
        assert registry.counters.tokens_issued == 2


def test_bearer_anonymous_pull() -> None:
    registry = InMemoryRegistry(auth=BearerAuth("bob", "pw", anonymous_pull=True))
    with httpx.Client(transport=registry.transport(), base_url=BASE) as client:
        token = get_token(client, 'realm="/token",service="s"', "repository:app:pull,push")
        auth = {"Authorization": f"Bearer {token}"}
        assert client.get("/v2/app/tags/list", headers=auth).status_code == 404  # allowed, empty
        r = client.post("/v2/app/blobs/uploads/", headers=auth)
        assert r.status_code == 401  # anonymous: pull only


# -- concurrency -----------------------------------------------------------------------------------
def test_served_concurrent_uploads() -> None:
    registry = InMemoryRegistry()
    errors: list[BaseException] = []
    blobs = [bytes([i]) * (1000 + i) for i in range(16)]

    with registry.serve() as served:
        assert served.registry is registry
        assert str(served) == f"127.0.0.1:{served.port}"

        def upload(data: bytes) -> None:
            try:
                with httpx.Client(base_url=served.url) as c:
                    loc = c.post("/v2/c/blobs/uploads/").headers["Location"]
                    loc = c.patch(loc, content=data[:500]).headers["Location"]
                    r = c.put(loc, params={"digest": digest_of(data)}, content=data[500:])
                    assert r.status_code == 201, r.text
            except BaseException as e:  # collected and re-raised in the test thread
                errors.append(e)

        threads = [threading.Thread(target=upload, args=(b,)) for b in blobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert not errors
    for data in blobs:
        assert registry.blob("c", digest_of(data)) == data
    assert registry.counters.uploads == len(blobs)
