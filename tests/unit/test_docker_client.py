"""Registry client behaviour the Debian registry (distribution 2.8) cannot show: tag list
pagination, the referrers API, oversized and lying answers, error JSON mapping. Each handler
below stands for a registry answer documented in the distribution / OCI specs."""

from __future__ import annotations

import io
import json
import random
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
    VerifyingReader,
)
from imagetypes import mediatypes as mt
from imagetypes_transports.docker import (
    AccessDeniedError,
    BlobUnknownError,
    ManifestUnknownError,
    RegistryClient,
    RegistryConnectionError,
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


# -- streamed uploads against a registry that keeps what arrived of a cut PATCH ---------------
# distribution 2.8 refuses to go on with such an upload; the OCI distribution spec lets a
# registry keep the bytes and report them (GET on the upload: 204 with ``Range: 0-<last>``).
MiB = 1024 * 1024


class PartialRegistry:
    """An upload endpoint that stores what it receives, even from a PATCH cut mid-way."""

    def __init__(self, cuts: list[int], *, keep_partial: bool = True) -> None:
        self.cuts = list(cuts)  # cut the n-th PATCH after this many of its bytes
        self.keep_partial = keep_partial
        self.data = bytearray()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.stored: dict[str, bytes] = {}
        self.uploads = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        headers = dict(request.headers)
        self.requests.append((request.method, headers))
        here = {"Location": "/v2/r/blobs/uploads/u1"}
        if request.method == "POST":
            self.uploads += 1
            self.data = bytearray()
            return httpx.Response(202, headers=here)
        if request.method == "GET":
            last = max(len(self.data) - 1, 0)
            return httpx.Response(204, headers={**here, "Range": f"0-{last}"})
        if request.method == "PATCH":
            cut = self.cuts.pop(0) if self.cuts else None
            # Without a Content-Range the bytes are appended, as distribution does.
            start = headers.get("content-range", f"{len(self.data)}-").partition("-")[0]
            if int(start) != len(self.data):
                return httpx.Response(416, headers={**here, "Range": f"0-{len(self.data) - 1}"})
            before = len(self.data)
            got = 0
            assert isinstance(request.stream, httpx.SyncByteStream)
            for piece in request.stream:
                if cut is not None and got + len(piece) > cut:
                    self.data += piece[: cut - got]
                    if not self.keep_partial:
                        del self.data[before:]
                    raise httpx.WriteError("connection reset by peer")
                self.data += piece
                got += len(piece)
            if "content-length" in headers:
                assert got == int(headers["content-length"])
            return httpx.Response(202, headers={**here, "Range": f"0-{len(self.data) - 1}"})
        if request.method == "PUT":
            digest = request.url.params["digest"]
            assert str(Digest.from_bytes(bytes(self.data))) == digest
            self.stored[digest] = bytes(self.data)
            return httpx.Response(201, headers={"Docker-Content-Digest": digest})
        if request.method == "DELETE":
            return httpx.Response(204)
        raise AssertionError(request.method)

    def of(self, method: str) -> list[dict[str, str]]:
        return [h for m, h in self.requests if m == method]


class StreamingTransport(httpx.BaseTransport):
    """Like ``httpx.MockTransport``, but the handler reads the request body as it streams in
    (MockTransport reads all of it first), as a server on a socket would."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/":
            return httpx.Response(200, json={})
        return self.handler(request)


def upload_client(registry: PartialRegistry, **extra: object) -> RegistryClient:
    opts = TransportOptions(
        retry=RetryPolicy(attempts=2, backoff=0), extra={"docker.monolithic_limit": 0, **extra}
    )
    return RegistryClient(
        "registry.example", opts, transport=StreamingTransport(registry), sleep=lambda s: None
    )


def blob(size: int) -> tuple[bytes, Digest]:
    data = bytes(random.Random(size).randbytes(size))
    return data, Digest.from_bytes(data)


@pytest.mark.parametrize("cut", [2, 700_000, 2 * MiB + 17, 5 * MiB - 1])
def test_cut_patch_resumes_from_the_registry_offset(cut: int) -> None:
    data, digest = blob(5 * MiB + 3)
    registry = PartialRegistry([cut])
    with upload_client(registry) as c:
        got = c.upload_blob("r", VerifyingReader(io.BytesIO(data), digest, len(data)), len(data))
    assert got == (digest, len(data))
    assert registry.stored == {str(digest): data}
    assert registry.uploads == 1  # resumed, not started over
    first, second = registry.of("PATCH")
    assert "content-range" not in first  # a stream upload
    assert first["content-length"] == str(len(data))
    assert second["content-range"] == f"{cut}-{len(data) - 1}"
    assert second["content-length"] == str(len(data) - cut)
    assert len(registry.of("GET")) == 1


def test_cut_patch_of_unknown_length_resumes_chunked() -> None:
    data, digest = blob(3 * MiB)
    registry = PartialRegistry([MiB + 5, MiB])
    with upload_client(registry) as c:
        got = c.upload_blob("r", VerifyingReader(io.BytesIO(data), digest))
    assert got == (digest, len(data))
    assert registry.stored == {str(digest): data}
    assert registry.uploads == 1
    patches = registry.of("PATCH")
    assert len(patches) == 3
    assert all(p.get("transfer-encoding") == "chunked" for p in patches)


def test_cut_before_the_replay_window_fails_cleanly() -> None:
    data, digest = blob(6 * MiB)
    # The registry dropped what it got of the PATCH: more than the window was sent since.
    registry = PartialRegistry([3 * MiB], keep_partial=False)
    with (
        upload_client(registry, **{"docker.upload_replay_window": MiB}) as c,
        pytest.raises(RegistryError, match=r"has 0 bytes, only bytes \d+ to \d+ are still"),
    ):
        c.upload_blob("r", VerifyingReader(io.BytesIO(data), digest, len(data)), len(data))
    assert registry.stored == {}
    assert registry.of("DELETE")  # the upload was cancelled


def test_cut_of_a_blob_within_the_window_starts_over_when_it_must() -> None:
    data, digest = blob(3 * MiB)
    registry = PartialRegistry([0])
    with upload_client(registry) as c:
        assert c.upload_blob("r", VerifyingReader(io.BytesIO(data), digest), None)[0] == digest
    # The registry kept nothing and the stream (3 MiB) fits in the window: sent again.
    assert registry.stored == {str(digest): data}
    assert registry.uploads == 1


def test_chunk_limit_splits_the_stream_into_patches() -> None:
    data, digest = blob(5 * MiB + 1)
    registry = PartialRegistry([])
    with upload_client(registry, **{"docker.upload_chunk_size": 2 * MiB}) as c:
        c.upload_blob("r", VerifyingReader(io.BytesIO(data), digest, len(data)), len(data))
    assert registry.stored == {str(digest): data}
    ranges = [p.get("content-range") for p in registry.of("PATCH")]
    assert ranges == [None, f"{2 * MiB}-{4 * MiB - 1}", f"{4 * MiB}-{5 * MiB}"]


def test_a_failing_source_is_not_taken_for_a_registry_failure() -> None:
    data, digest = blob(3 * MiB)

    class Breaks(io.BytesIO):
        def read(self, size: int | None = -1, /) -> bytes:
            if self.tell() >= MiB:
                raise RegistryConnectionError("the source registry went away")
            return super().read(size)

    registry = PartialRegistry([])
    with (
        upload_client(registry) as c,
        pytest.raises(RegistryConnectionError, match="source registry went away"),
    ):
        c.upload_blob("r", VerifyingReader(Breaks(data), digest, len(data)), len(data))
    assert len(registry.of("PATCH")) == 1  # not resent: the registry was not at fault
    assert registry.stored == {}


def test_a_corrupt_source_never_completes_the_upload() -> None:
    data, digest = blob(3 * MiB)
    registry = PartialRegistry([])
    bad = data[:-1] + b"\0"
    with upload_client(registry) as c, pytest.raises(DigestMismatchError):
        c.upload_blob("r", VerifyingReader(io.BytesIO(bad), digest, len(data)), len(data))
    assert registry.stored == {}
    assert not registry.of("PUT")
