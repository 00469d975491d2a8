"""The promises of SECURITY.md that no other test states end to end: corrupt content is
refused by every transport, oversized answers are refused, credentials stay out of logs,
reprs and error messages and never follow a redirect to another host, TLS is verified by
default, and writing an archive touches nothing but the destination."""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from chaos_proxy import ChaosProxy, Fault
from imagebuilder import make_image, write_oci_layout
from registry_fixtures import (
    Fault as RedirectFault,
)
from registry_fixtures import (
    FaultProxy,
    RecordingServer,
    RunningRegistry,
    start_registry,
    write_htpasswd,
)
from reliability_support import check_layout

from imagetypes import (
    Credentials,
    ImageError,
    ManifestTooLargeError,
    RetryPolicy,
    SizeMismatchError,
    TransportOptions,
    VerificationError,
)
from imagetypes.copy import CopyOptions, copy_image
from imagetypes_transports.docker import (
    AuthenticationError,
    RegistryTLSError,
    transport,
)

pytestmark = pytest.mark.integration

IMAGE = make_image(91, (200_000, 50_000))
LAYER = next(d for d in IMAGE.blobs if d != IMAGE.config_digest)
FAST = RetryPolicy(attempts=2, backoff=0.01, max_backoff=0.02)
PLAIN = TransportOptions(tls_verify=False, retry=FAST)
PASSWORD = "s3cret-Pa55word-xyzzy"


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_oci_layout(tmp_path_factory.mktemp("sec") / "src", {"v1": IMAGE})


# -- every blob is verified, whatever the transport ----------------------------------------------
def _flip_inside(path: Path, needle: bytes) -> None:
    data = bytearray(path.read_bytes())
    at = data.find(needle)
    assert at >= 0, f"the layer's bytes are not in {path.name}"
    data[at + len(needle) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["oci", "dir", "oci-archive", "docker-archive"])
def test_a_corrupt_stored_blob_is_refused(layout: Path, tmp_path: Path, kind: str) -> None:
    blob = IMAGE.blobs[LAYER]
    stored = tmp_path / "stored"
    if kind == "oci":
        source = f"oci:{stored}:v1"
    elif kind == "dir":
        source = f"dir:{stored}"
    else:
        stored = tmp_path / "stored.tar"
        source = f"{kind}:{stored}" + (":v1" if kind == "oci-archive" else "")
    copy_image(f"oci:{layout}:v1", source)
    if kind == "docker-archive":
        import gzip

        # docker-archive keeps layers uncompressed: corrupt the layer's file content.
        _flip_inside(stored, gzip.decompress(blob)[2048:2112])
    elif stored.is_dir():
        name = LAYER.hex
        target = stored / "blobs/sha256" / name if kind == "oci" else stored / name
        _flip_inside(target, blob[1000:1064])
    else:
        _flip_inside(stored, blob[1000:1064])
    dest = tmp_path / "dest"
    with pytest.raises(VerificationError):
        copy_image(source, f"oci:{dest}:v1")
    assert not dest.exists()  # nothing was made of the corrupt image


def test_a_blob_longer_than_its_descriptor_is_refused(
    registry: RunningRegistry, chaos: ChaosProxy, layout: Path, tmp_path: Path
) -> None:
    copy_image(
        f"oci:{layout}:v1",
        f"docker://{registry.host}/sec/long:v1",
        CopyOptions(destination_options=PLAIN),
    )
    blob = IMAGE.blobs[LAYER]
    chaos.add(Fault("GET", f"/blobs/{LAYER}", "substitute", body=blob + b"x" * 100_000))
    dest = tmp_path / "dest"
    with pytest.raises(SizeMismatchError):
        copy_image(
            f"docker://{chaos.host}/sec/long:v1",
            f"oci:{dest}:v1",
            CopyOptions(source_options=PLAIN),
        )
    assert not dest.exists()


def test_an_oversized_manifest_from_a_registry_is_refused(
    registry: RunningRegistry, chaos: ChaosProxy, layout: Path
) -> None:
    copy_image(
        f"oci:{layout}:v1",
        f"docker://{registry.host}/sec/big:v1",
        CopyOptions(destination_options=PLAIN),
    )
    huge = b'{"schemaVersion":2,"pad":"' + b"x" * (5 * 1024 * 1024) + b'"}'
    chaos.add(Fault("GET", "/manifests/v1", "substitute", body=huge))
    ref = transport.parse_reference(f"//{chaos.host}/sec/big:v1")
    with ref.open_source(PLAIN) as src, pytest.raises(ManifestTooLargeError):
        src.get_manifest()


# -- credentials -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    work = tmp_path_factory.mktemp("sec-basic")
    htpasswd = write_htpasswd(work / "htpasswd", {"alice": PASSWORD})
    reg = start_registry(work, auth={"htpasswd": {"realm": "sec", "path": str(htpasswd)}})
    try:
        yield reg
    finally:
        reg.stop()


def _secrets() -> list[str]:
    return [
        PASSWORD,
        base64.b64encode(f"alice:{PASSWORD}".encode()).decode(),
        "registry-token-xyzzy",
    ]


def _text_of(error: BaseException) -> str:
    parts = []
    seen: BaseException | None = error
    while seen is not None:
        parts += [str(seen), repr(seen)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def test_credentials_never_appear_in_logs_reprs_or_errors(
    basic_registry: RunningRegistry, layout: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = TransportOptions(
        tls_verify=False, retry=FAST, credentials=Credentials("alice", PASSWORD)
    )
    ref = f"docker://{basic_registry.host}/sec/creds:v1"
    result = copy_image(f"oci:{layout}:v1", ref, CopyOptions(destination_options=good))
    copy_image(ref, f"oci:{tmp_path / 'back'}:v1", CopyOptions(source_options=good))
    assert check_layout(tmp_path / "back")["v1"] == str(IMAGE.digest)
    texts = [repr(good), str(good), repr(result)]
    docker_ref = transport.parse_reference(f"//{basic_registry.host}/sec/creds:v1")
    with docker_ref.open_source(good) as src:
        src.get_manifest()
        texts += [repr(src), repr(src.client), repr(src.client.auth), repr(src.client.options)]
    with docker_ref.open_destination(good) as dest:
        texts += [repr(dest), repr(dest.client)]
    # A wrong password, and a token sent as is: refused, and said without the secrets.
    for options in (
        TransportOptions(
            tls_verify=False, retry=FAST, credentials=Credentials("alice", "x" + PASSWORD)
        ),
        TransportOptions(tls_verify=False, retry=FAST, registry_token="registry-token-xyzzy"),
    ):
        with pytest.raises(AuthenticationError) as info:
            copy_image(ref, f"oci:{tmp_path / 'no'}:v1", CopyOptions(source_options=options))
        texts += [_text_of(info.value), repr(options)]
    texts += [r.getMessage() for r in caplog.records]
    assert len(caplog.records) > 0  # debug logging was on, and said things
    for secret in _secrets():
        for text in texts:
            assert secret not in text


def test_credentials_do_not_follow_a_redirect_to_another_host(
    basic_registry: RunningRegistry, layout: Path
) -> None:
    good = TransportOptions(
        tls_verify=False, retry=FAST, credentials=Credentials("alice", PASSWORD)
    )
    ref = f"docker://{basic_registry.host}/sec/redirect:v1"
    copy_image(f"oci:{layout}:v1", ref, CopyOptions(destination_options=good))
    proxy = FaultProxy(basic_registry.host)
    storage = RecordingServer("127.0.0.2", {f"/v2/sec/redirect/blobs/{LAYER}": IMAGE.blobs[LAYER]})
    try:
        proxy.add(RedirectFault("GET", f"/blobs/{LAYER}", "redirect", location=storage.url))
        r = transport.parse_reference(f"//{proxy.host}/sec/redirect:v1")
        with r.open_source(good) as src:
            src.get_manifest()
            from imagetypes import Descriptor

            desc = Descriptor("application/octet-stream", LAYER, len(IMAGE.blobs[LAYER]))
            with src.get_blob(desc) as reader:
                assert reader.read() == IMAGE.blobs[LAYER]
    finally:
        proxy.stop()
        storage.stop()
    assert len(storage.seen) == 1
    assert "Authorization" not in storage.seen[0].headers
    assert any("Authorization" in s.headers for s in proxy.seen)  # the registry did get them


# -- TLS -----------------------------------------------------------------------------------------
def test_tls_is_verified_by_default_and_never_downgraded(registry: RunningRegistry) -> None:
    """A registry that speaks plain http is refused unless tls_verify=False says otherwise:
    no silent fallback to http."""
    ref = transport.parse_reference(f"//{registry.host}/sec/none:v1")
    with ref.open_source(TransportOptions(retry=FAST)) as src, pytest.raises(RegistryTLSError):
        src.get_manifest()


# -- archives ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["docker-archive", "oci-archive"])
def test_writing_an_archive_touches_only_its_destination(
    layout: Path, tmp_path: Path, kind: str
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "neighbour").write_bytes(b"keep")
    suffix = ":example.com/a:v1" if kind == "docker-archive" else ":v1"
    copy_image(f"oci:{layout}:v1", f"{kind}:{folder / 'image.tar'}{suffix}")
    assert sorted(os.listdir(folder)) == ["image.tar", "neighbour"]
    assert (folder / "neighbour").read_bytes() == b"keep"
    # A failed write leaves nothing at all: a source whose blob is missing.
    broken = tmp_path / "broken"
    write_oci_layout(broken, {"v1": IMAGE})
    (broken / "blobs/sha256" / LAYER.hex).unlink()
    with pytest.raises(ImageError):
        copy_image(f"oci:{broken}:v1", f"{kind}:{folder / 'other.tar'}{suffix}")
    assert sorted(os.listdir(folder)) == ["image.tar", "neighbour"]
