"""TLS (a CA made here, certs.d folders, client certificates), htpasswd basic auth and bearer
token auth (a token server written here, JWTs the real registry verifies)."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import attrs
import httpx
import pytest
from imagebuilder import BuiltImage, make_image
from registry_fixtures import (
    REGISTRY_BIN,
    CertificateAuthority,
    RunningRegistry,
    TokenServer,
    start_registry,
    write_htpasswd,
)

from imagetypes import BlobInfo, Credentials, Digest, TransportOptions
from imagetypes_transports.docker import (
    AuthenticationError,
    DockerReference,
    RegistryConnectionError,
    RegistryTLSError,
    TLSConfigError,
    transport,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(REGISTRY_BIN is None, reason="docker-registry is not installed"),
]


def ref(host: str, name: str) -> DockerReference:
    return transport.parse_reference(f"//{host}/{name}")


def push(reference: DockerReference, img: BuiltImage, options: TransportOptions) -> None:
    with reference.open_destination(options) as dest:
        for digest, blob in img.blobs.items():
            info = BlobInfo("", digest, len(blob))
            if dest.try_reusing_blob(info) is None:
                dest.put_blob(io.BytesIO(blob), info)
        dest.put_manifest(img.manifest, img.media_type)
        dest.commit()


def pull_manifest(reference: DockerReference, options: TransportOptions) -> bytes:
    with reference.open_source(options) as src:
        return src.get_manifest()[0]


# -- TLS ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create()


@pytest.fixture(scope="module")
def tls_registry(
    tmp_path_factory: pytest.TempPathFactory, ca: CertificateAuthority
) -> Iterator[RunningRegistry]:
    work = tmp_path_factory.mktemp("tls-registry")
    reg = start_registry(work, tls=ca.issue_server(work / "certs"))
    try:
        yield reg
    finally:
        reg.stop()


def test_tls_trusted_through_cert_dir(
    tls_registry: RunningRegistry, ca: CertificateAuthority, tmp_path: Path
) -> None:
    certs = tmp_path / "certs.d"
    certs.mkdir()
    (certs / "ca.crt").write_bytes(ca.cert_pem)
    options = TransportOptions(cert_dir=str(certs))
    img = make_image(30)
    r = ref(tls_registry.host, "tls/img:v1")
    push(r, img, options)
    assert pull_manifest(r, options) == img.manifest


def test_tls_refused_without_the_ca(tls_registry: RunningRegistry, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    r = ref(tls_registry.host, "tls/img:v1")
    with pytest.raises(RegistryTLSError, match="cert_dir"):
        pull_manifest(r, TransportOptions(cert_dir=str(empty)))


def test_tls_verify_false_skips_verification(tls_registry: RunningRegistry) -> None:
    img = make_image(31)
    r = ref(tls_registry.host, "tls/insecure:v1")
    push(r, img, TransportOptions(tls_verify=False))
    assert pull_manifest(r, TransportOptions(tls_verify=False)) == img.manifest


def test_client_certificate_from_cert_dir(tmp_path: Path, ca: CertificateAuthority) -> None:
    work = tmp_path / "mtls"
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.cert_pem)
    reg = start_registry(work, tls=ca.issue_server(work / "certs"), client_cas=(ca_file,))
    try:
        only_ca = tmp_path / "only-ca"
        only_ca.mkdir()
        (only_ca / "ca.crt").write_bytes(ca.cert_pem)
        r = ref(reg.host, "mtls/img:v1")
        with pytest.raises(RegistryConnectionError):
            pull_manifest(r, TransportOptions(cert_dir=str(only_ca), retry=_no_retry()))
        with_client = tmp_path / "with-client"
        shutil.copytree(only_ca, with_client)
        ca.issue_server(with_client, ("imagetypes-client",), client=True, stem="client")
        img = make_image(32)
        push(r, img, TransportOptions(cert_dir=str(with_client)))
        assert pull_manifest(r, TransportOptions(cert_dir=str(with_client))) == img.manifest
        # A client certificate without its key is a configuration error, said as such.
        (with_client / "client.key").unlink()
        with pytest.raises(TLSConfigError, match=r"missing key client\.key"):
            pull_manifest(r, TransportOptions(cert_dir=str(with_client)))
    finally:
        reg.stop()


def _no_retry() -> object:
    from imagetypes import RetryPolicy

    return RetryPolicy.none()


# -- htpasswd basic auth -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    work = tmp_path_factory.mktemp("basic-registry")
    htpasswd = write_htpasswd(work / "htpasswd", {"alice": "correct horse"})
    reg = start_registry(
        work, auth={"htpasswd": {"realm": "imagetypes-test", "path": str(htpasswd)}}
    )
    try:
        yield reg
    finally:
        reg.stop()


def test_basic_auth_right_password(basic_registry: RunningRegistry) -> None:
    options = TransportOptions(tls_verify=False, credentials=Credentials("alice", "correct horse"))
    img = make_image(33)
    r = ref(basic_registry.host, "basic/img:v1")
    push(r, img, options)
    assert pull_manifest(r, options) == img.manifest


@pytest.mark.parametrize("creds", [Credentials("alice", "wrong"), None])
def test_basic_auth_refused(basic_registry: RunningRegistry, creds: Credentials | None) -> None:
    options = TransportOptions(tls_verify=False, credentials=creds)
    r = ref(basic_registry.host, "basic/img:v1")
    with pytest.raises(AuthenticationError, match="UNAUTHORIZED") as info:
        pull_manifest(r, options)
    assert info.value.status == 401
    assert "wrong" not in str(info.value)


# -- bearer tokens -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    server = TokenServer(
        tmp_path_factory.mktemp("token-server"),
        users={"alice": "s3cret", "bob": "b0b"},
        refresh_tokens={"identity-token-1": "alice"},
        denied={"bob": {"tok/private"}},
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory, token_server: TokenServer
) -> Iterator[RunningRegistry]:
    reg = start_registry(
        tmp_path_factory.mktemp("token-registry"), auth=token_server.registry_auth_config()
    )
    try:
        yield reg
    finally:
        reg.stop()


ALICE = TransportOptions(tls_verify=False, credentials=Credentials("alice", "s3cret"))


def test_bearer_push_pull_and_scope_accumulation(
    token_registry: RunningRegistry, token_server: TokenServer
) -> None:
    img = make_image(34)
    token_server.requests.clear()
    r = ref(token_registry.host, "tok/src:v1")
    push(r, img, ALICE)
    assert pull_manifest(r, ALICE) == img.manifest
    scopes = [set(req.scopes) for req in token_server.requests]
    assert {"repository:tok/src:pull,push"} in scopes
    assert all(req.account == "alice" for req in token_server.requests)
    # A destination with a mount source asks for one token covering both repositories.
    token_server.requests.clear()
    options = TransportOptions(
        tls_verify=False,
        credentials=Credentials("alice", "s3cret"),
        extra={"docker.mount_from": ["tok/src"]},
    )
    push(ref(token_registry.host, "tok/dst:v1"), img, options)
    assert any(
        {"repository:tok/dst:pull,push", "repository:tok/src:pull"} <= set(req.scopes)
        for req in token_server.requests
    )
    # Tokens are cached: a handful of fetches for the whole push, not one per request.
    assert len(token_server.requests) <= 3
    assert pull_manifest(ref(token_registry.host, "tok/dst:v1"), ALICE) == img.manifest


def test_a_mount_the_token_does_not_allow_falls_back_to_an_upload(
    token_registry: RunningRegistry, token_server: TokenServer, tmp_path: Path
) -> None:
    # Alice reads tok/private; bob may write tok/bob but not read tok/private. A copy between
    # them on one registry tries a cross-repository mount with bob's token, which the registry
    # refuses (401: the token lacks pull on tok/private): the blobs are uploaded instead, as
    # skopeo does, and the copy succeeds.
    from imagetypes.copy import CopyOptions, copy_image

    img = make_image(37, (3000, 5000, 7000))
    push(ref(token_registry.host, "tok/private:v1"), img, ALICE)
    bob = TransportOptions(tls_verify=False, credentials=Credentials("bob", "b0b"))
    seen: list[tuple[str, str, int]] = []

    def record(response: httpx.Response) -> None:
        request = response.request
        seen.append((request.method, str(request.url), response.status_code))

    recorded = attrs.evolve(bob, extra={"docker.event_hooks": {"response": [record]}})
    token_server.requests.clear()
    result = copy_image(
        f"docker://{token_registry.host}/tok/private:v1",
        f"docker://{token_registry.host}/tok/bob:v1",
        CopyOptions(source_options=ALICE, destination_options=recorded, concurrency=1),
    )
    assert result.manifest_digest == Digest.from_bytes(img.manifest)
    assert pull_manifest(ref(token_registry.host, "tok/bob:v1"), bob) == img.manifest
    # The mount was asked for (bob's token requests name tok/private) and refused, once: the
    # other blobs were asked for (HEAD) and uploaded, with no mount tried again.
    assert any(
        r.account == "bob" and any("tok/private" in s for s in r.scopes)
        for r in token_server.requests
    )
    mounts = [(m, status) for m, url, status in seen if "mount=" in url]
    assert mounts[-1] == ("POST", 401)
    assert {m for m, _ in mounts} == {"POST"}
    assert len({url for _, url, _ in seen if "mount=" in url}) == 1
    heads = [status for m, url, status in seen if m == "HEAD" and "/blobs/" in url]
    assert heads == [404] * len(img.blobs)


def test_bearer_wrong_password(token_registry: RunningRegistry) -> None:
    options = TransportOptions(tls_verify=False, credentials=Credentials("alice", "nope"))
    with pytest.raises(AuthenticationError, match="invalid user name or password") as info:
        pull_manifest(ref(token_registry.host, "tok/src:v1"), options)
    assert "nope" not in str(info.value)


def test_bearer_anonymous_is_refused(token_registry: RunningRegistry) -> None:
    with pytest.raises(AuthenticationError, match="UNAUTHORIZED"):
        pull_manifest(ref(token_registry.host, "tok/src:v1"), TransportOptions(tls_verify=False))


def test_identity_token(token_registry: RunningRegistry, token_server: TokenServer) -> None:
    img = make_image(35)
    push(ref(token_registry.host, "tok/idt:v1"), img, ALICE)
    token_server.requests.clear()
    options = TransportOptions(
        tls_verify=False, credentials=Credentials("<token>", "identity-token-1")
    )
    assert pull_manifest(ref(token_registry.host, "tok/idt:v1"), options) == img.manifest
    assert [(r.method, r.grant_type) for r in token_server.requests] == [("POST", "refresh_token")]


def test_catalog_needs_its_own_scope(
    token_registry: RunningRegistry, token_server: TokenServer
) -> None:
    from imagetypes_transports.docker import open_registry

    push(ref(token_registry.host, "tok/cat:v1"), make_image(36), ALICE)
    with open_registry(
        token_registry.host, tls_verify=False, credentials=Credentials("alice", "s3cret")
    ) as reg:
        assert "tok/cat" in list(reg.repositories())
    assert any("registry:catalog:*" in r.scopes for r in token_server.requests)
