"""Registry client behaviour the Debian registry (distribution 2.8) cannot show: tag list
pagination, the referrers API, oversized and lying answers, error JSON mapping. Each handler
below stands for a registry answer documented in the distribution / OCI specs."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from imagetypes import (
    BlobNotFoundError,
    Digest,
    DigestMismatchError,
    ManifestNotFoundError,
    ManifestTooLargeError,
    RetryPolicy,
    TransportOptions,
)
from imagetypes import mediatypes as mt
from imagetypes_transports.docker import (
    AccessDeniedError,
    BlobUnknownError,
    ManifestUnknownError,
    RegistryClient,
    RegistryError,
    RegistryUnsupportedError,
    TooManyRequestsError,
)

Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, **options: object) -> RegistryClient:
    def wrapped(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/":
            return httpx.Response(200, json={})
        return handler(request)

    opts = TransportOptions(retry=RetryPolicy(attempts=2, backoff=0), **options)  # type: ignore[arg-type]
    return RegistryClient(
        "registry.example", opts, transport=httpx.MockTransport(wrapped), sleep=lambda s: None
    )


def test_tags_follow_link_headers_lazily() -> None:
    pages = {
        None: (["a", "b"], '</v2/r/tags/list?last=b&n=2>; rel="next"'),
        "b": (["c", "d"], '</v2/r/tags/list?last=d&n=2>; rel="next"'),
        "d": (["e"], None),
    }
    asked: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        last = request.url.params.get("last")
        asked.append(last)
        assert request.url.params["n"] == "2"
        tags, link = pages[last]
        headers = {"Link": link} if link else {}
        return httpx.Response(200, json={"name": "r", "tags": tags}, headers=headers)

    with client(handler) as c:
        it = c.tags("r", page_size=2)
        assert next(it) == "a"
        assert asked == [None]
        assert list(it) == ["b", "c", "d", "e"]
        assert asked == [None, "b", "d"]


def test_manifest_over_4_mib_is_refused() -> None:
    big = b"{" + b" " * (4 * 1024 * 1024) + b"}"

    def handler(request: httpx.Request) -> httpx.Response:
        # Chunked, so the size is only known by reading.
        return httpx.Response(
            200,
            content=iter([big[i : i + 65536] for i in range(0, len(big), 65536)]),
            headers={"Content-Type": mt.OCI_MANIFEST},
        )

    with client(handler) as c, pytest.raises(ManifestTooLargeError):
        c.get_manifest("r", "latest")


def test_manifest_checked_against_docker_content_digest() -> None:
    body = b'{"schemaVersion":2}'

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            content=body,
            headers={
                "Content-Type": mt.OCI_MANIFEST,
                "Docker-Content-Digest": str(Digest.from_bytes(b"other")),
            },
        )

    with client(handler) as c, pytest.raises(DigestMismatchError, match="registry says"):
        c.get_manifest("r", "latest")


def test_generic_content_type_is_detected_from_the_bytes() -> None:
    body = json.dumps({"schemaVersion": 2, "manifests": []}).encode()

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Accept"] == ", ".join(mt.MANIFEST_TYPES)
        return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})

    with client(handler) as c:
        data, media_type, digest = c.get_manifest("r", "latest")
    assert (data, media_type, digest) == (body, mt.OCI_INDEX, Digest.from_bytes(body))


@pytest.mark.parametrize(
    ("status", "code", "cls", "core"),
    [
        (404, "MANIFEST_UNKNOWN", ManifestUnknownError, ManifestNotFoundError),
        (404, "NAME_UNKNOWN", ManifestUnknownError, ManifestNotFoundError),
        (403, "DENIED", AccessDeniedError, RegistryError),
        (429, "TOOMANYREQUESTS", TooManyRequestsError, RegistryError),
        (405, "UNSUPPORTED", RegistryUnsupportedError, RegistryError),
    ],
)
def test_error_json_becomes_typed_errors(
    status: int, code: str, cls: type[Exception], core: type[Exception]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status, json={"errors": [{"code": code, "message": "the registry says no"}]}
        )

    with client(handler) as c, pytest.raises(cls) as info:
        c.get_manifest("r", "latest")
    assert isinstance(info.value, core)
    assert f"{code}: the registry says no" in str(info.value)
    assert info.value.codes == (code,)  # type: ignore[attr-defined]


def test_missing_blob_is_blob_not_found() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"errors": [{"code": "BLOB_UNKNOWN", "message": "x"}]})

    digest = Digest.from_bytes(b"nothing")
    with client(handler) as c, pytest.raises(BlobUnknownError) as info:
        c.blob_reader("r", digest, 7)
    assert isinstance(info.value, BlobNotFoundError)


def test_error_bodies_are_bounded() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, content=b"x" * (2 * 1024 * 1024))

    with client(handler) as c, pytest.raises(RegistryError, match="HTTP 400") as info:
        c.get_manifest("r", "latest")
    assert len(str(info.value)) < 1000


def test_referrers_api_is_used_when_present() -> None:
    subject = Digest.from_bytes(b"subject")
    entry = {
        "mediaType": mt.OCI_MANIFEST,
        "digest": str(Digest.from_bytes(b"a")),
        "size": 1,
        "artifactType": "application/vnd.example",
    }

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == f"/v2/r/referrers/{subject}"
        index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [entry]}
        return httpx.Response(200, json=index, headers={"Content-Type": mt.OCI_INDEX})

    with client(handler) as c:
        (found,) = c.referrers("r", subject)
        assert found.artifact_type == "application/vnd.example"
        assert c.referrers("r", subject, artifact_type="application/other") == []


def test_put_manifest_checks_the_stored_digest() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            201, headers={"Docker-Content-Digest": str(Digest.from_bytes(b"else"))}
        )

    with client(handler) as c, pytest.raises(DigestMismatchError):
        c.put_manifest("r", "v1", b"{}", mt.OCI_MANIFEST)


def test_blob_range_answer_must_start_where_asked() -> None:
    digest = Digest.from_bytes(b"0123456789")

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Range"] == "bytes=4-"
        return httpx.Response(206, content=b"23456789", headers={"Content-Range": "bytes 2-9/10"})

    with client(handler) as c, pytest.raises(RegistryError, match="sent from 2"):
        c.blob_reader("r", digest, 10, offset=4)


def test_blob_range_ignored_by_server_is_skipped_locally() -> None:
    blob = b"0123456789"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=blob)

    with client(handler) as c:
        assert c.blob_reader("r", Digest.from_bytes(blob), 10, offset=4).read() == b"456789"


def test_blob_that_ends_early_is_resumed() -> None:
    blob = b"abcdefghij" * 100
    calls: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers.get("Range"))
        if len(calls) == 1:
            # No Content-Length and a short body: the connection "closed" early.
            return httpx.Response(200, content=iter([blob[:300]]))
        return httpx.Response(
            206, content=blob[300:], headers={"Content-Range": "bytes 300-999/1000"}
        )

    with client(handler) as c:
        reader = c.blob_reader("r", Digest.from_bytes(blob), len(blob))
        assert reader.read() == blob
        assert reader.resumes == 1
    assert calls == [None, "bytes=300-"]
