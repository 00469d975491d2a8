"""docker:// references, registry locations, certs.d lookup."""

from __future__ import annotations

from pathlib import Path

import pytest

import imagetypes
from imagetypes import Credentials, Digest, InvalidReferenceError, TransportOptions
from imagetypes_transports.docker import (
    DockerReference,
    TLSConfigError,
    endpoint_host,
    resolve_credentials,
    transport,
)
from imagetypes_transports.docker._registry import parse_registry_location
from imagetypes_transports.docker._tls import cert_dir_for, make_ssl_context

DIGEST = Digest.from_bytes(b"x")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("//busybox", "docker://docker.io/library/busybox:latest"),
        ("//busybox:1.36", "docker://docker.io/library/busybox:1.36"),
        ("//quay.io/a/b:c", "docker://quay.io/a/b:c"),
        ("//localhost:5000/x", "docker://localhost:5000/x:latest"),
        (f"//ghcr.io/o/r@{DIGEST}", f"docker://ghcr.io/o/r@{DIGEST}"),
    ],
)
def test_parse_and_round_trip(text: str, expected: str) -> None:
    ref = transport.parse_reference(text)
    assert str(ref) == expected
    assert imagetypes.parse_reference(expected) == ref
    assert ref.docker_reference is not None
    assert f"docker://{ref.docker_reference}" == expected


def test_fields() -> None:
    ref = transport.parse_reference("//busybox")
    assert isinstance(ref, DockerReference)
    assert (ref.registry_host, ref.repository, ref.tag, ref.digest) == (
        "docker.io",
        "library/busybox",
        "latest",
        None,
    )
    assert ref.tag_or_digest == "latest"
    by_digest = transport.parse_reference(f"//quay.io/a/b@{DIGEST}")
    assert by_digest.digest == DIGEST
    assert by_digest.tag_or_digest == str(DIGEST)


@pytest.mark.parametrize(
    "text", ["busybox", "/busybox", "//", "//UPPER/case", f"//a.io/b:t@{DIGEST}"]
)
def test_invalid(text: str) -> None:
    with pytest.raises(InvalidReferenceError):
        transport.parse_reference(text)


def test_docker_hub_endpoint() -> None:
    assert endpoint_host("docker.io") == "registry-1.docker.io"
    assert endpoint_host("quay.io") == "quay.io"
    assert endpoint_host("localhost:5000") == "localhost:5000"


@pytest.mark.parametrize(
    ("location", "host"),
    [("docker://quay.io", "quay.io"), ("127.0.0.1:5000", "127.0.0.1:5000"), ("a.io/", "a.io")],
)
def test_registry_location(location: str, host: str) -> None:
    assert parse_registry_location(location) == host


@pytest.mark.parametrize("location", ["", "docker://", "a.io/repo", "a b"])
def test_bad_registry_location(location: str) -> None:
    with pytest.raises(InvalidReferenceError):
        parse_registry_location(location)


def test_repository_names_are_normalised() -> None:
    with transport.open_registry("docker.io") as reg:
        repo = reg.repository("busybox")
        assert repo.name == "library/busybox"
        assert str(repo.reference("1.36")) == "docker://docker.io/library/busybox:1.36"
        assert str(repo.reference(str(DIGEST))) == f"docker://docker.io/library/busybox@{DIGEST}"


def test_credentials_seam() -> None:
    creds = Credentials("u", "p")
    assert resolve_credentials("r.io", "a/b", TransportOptions(credentials=creds)) == creds
    assert (
        resolve_credentials("r.io", "a/b", TransportOptions(credentials=creds, no_creds=True))
        is None
    )
    assert resolve_credentials("r.io", None, TransportOptions()) is None


def test_certs_d_lookup(tmp_path: Path) -> None:
    first = tmp_path / "first"
    second = tmp_path / "second"
    (second / "r.io:5000").mkdir(parents=True)
    (first / "other").mkdir(parents=True)
    options = TransportOptions()
    found = cert_dir_for("r.io:5000", options, roots=[str(first), str(second)])
    assert found == second / "r.io:5000"
    assert cert_dir_for("r.io", options, roots=[str(first), str(second)]) is None
    # cert_dir replaces the search.
    explicit = TransportOptions(cert_dir=str(first))
    assert cert_dir_for("r.io:5000", explicit, roots=[str(second)]) == first


def test_cert_dir_problems_are_reported(tmp_path: Path) -> None:
    (tmp_path / "lonely.key").write_text("not a key")
    with pytest.raises(TLSConfigError, match=r"missing client certificate lonely\.cert"):
        make_ssl_context("r.io", TransportOptions(cert_dir=str(tmp_path)))
    (tmp_path / "lonely.key").unlink()
    (tmp_path / "bad.crt").write_text("not a certificate")
    with pytest.raises(TLSConfigError, match=r"cannot load CA certificate .*bad\.crt"):
        make_ssl_context("r.io", TransportOptions(cert_dir=str(tmp_path)))
