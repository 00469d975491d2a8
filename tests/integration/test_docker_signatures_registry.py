"""Signatures of registry images against the real registry and skopeo.

Simple signatures in lookaside storage (registries.d): ours read by skopeo under a policy
that requires our key, skopeo's (``--sign-by``) read and verified by us; lookaside served over
http. Sigstore attachments: written and read by us; skopeo 1.9.3 as Debian builds it cannot
sign or verify sigstore signatures ("sigstore disabled"), but it does copy attachments, so
each side reads what the other stored.
"""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpgkit import Key, key_pair
from imagebuilder import BuiltImage, make_image, write_oci_layout
from registry_fixtures import RunningRegistry

from imagetypes import BlobInfo, TransportOptions
from imagetypes.trust import (
    InvalidSignatureError,
    RegistriesConf,
    SigstoreSignature,
    generate_sigstore_key,
    parse_signature_blob,
    sign_sigstore,
    sign_simple,
    verify_sigstore,
    verify_simple,
)
from imagetypes_transports.docker import (
    REGISTRIES_CONF_OPTION,
    REGISTRIES_D_OPTION,
    DockerReference,
    sigstore_attachment_tag,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed"),
]
needs_skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Key, Key]]:
    with key_pair(tmp_path_factory.mktemp("gpg")) as pair:
        yield pair


def skopeo(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if home is not None:
        env["GNUPGHOME"] = str(home)
    return subprocess.run(
        ["skopeo", *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def registries_d(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sigs.yaml").write_text(text)
    return directory


def options(conf: Path) -> TransportOptions:
    return TransportOptions(
        tls_verify=False,
        extra={REGISTRIES_D_OPTION: str(conf), REGISTRIES_CONF_OPTION: RegistriesConf()},
    )


def push(
    image: BuiltImage, name: str, opts: TransportOptions, signatures: list[bytes] | None = None
) -> None:
    with DockerReference.parse(name).open_destination(opts) as dst:
        for digest, blob in image.blobs.items():
            dst.put_blob(io.BytesIO(blob), BlobInfo(digest=digest, size=len(blob)))
        dst.put_manifest(image.manifest, image.media_type)
        if signatures:
            dst.put_signatures(signatures)
        dst.commit()


def signatures_of(name: str, opts: TransportOptions) -> list[bytes]:
    with DockerReference.parse(name).open_source(opts) as src:
        return src.get_signatures()


def test_our_lookaside_signature_reads_back_and_verifies(
    registry: RunningRegistry, keys: tuple[Key, Key], tmp_path: Path
) -> None:
    one, two = keys
    store = tmp_path / "store"
    conf = registries_d(
        tmp_path / "registries.d", f"default-docker:\n  lookaside: {store.as_uri()}\n"
    )
    image = make_image(401, (1000,))
    name = f"{registry.host}/signed/ours:v1"
    signature = sign_simple(image.manifest, name, one.fingerprint, gpg_home=one.home)
    push(image, name, options(conf), [signature])
    assert (store / f"signed/ours@sha256={image.digest.hex}" / "signature-1").read_bytes() == (
        signature
    )
    [got] = signatures_of(name, options(conf))
    verified = verify_simple(got, image.manifest, one.public, identity=name)
    assert verified.key_fingerprint == one.fingerprint
    with pytest.raises(InvalidSignatureError):
        verify_simple(got, image.manifest, two.public, identity=name)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_lookaside_over_http(
    registry: RunningRegistry, keys: tuple[Key, Key], tmp_path: Path
) -> None:
    one, _ = keys
    staging = tmp_path / "staging"
    write_conf = registries_d(
        tmp_path / "write.d", f"default-docker:\n  lookaside-staging: {staging.as_uri()}\n"
    )
    image = make_image(402, (500,))
    name = f"{registry.host}/signed/http:v1"
    signatures = [
        sign_simple(image.manifest, name, one.fingerprint, gpg_home=one.home) for _ in range(2)
    ]
    push(image, name, options(write_conf), signatures)
    handler = functools.partial(_QuietHandler, directory=str(staging))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        read_conf = registries_d(
            tmp_path / "read.d",
            f"default-docker:\n  lookaside: http://127.0.0.1:{port}/\n",
        )
        got = signatures_of(name, options(read_conf))
    finally:
        server.shutdown()
        server.server_close()
    assert got == signatures
    for signature in got:
        verify_simple(signature, image.manifest, one.public, identity=name)


@needs_skopeo
def test_skopeo_signs_into_lookaside_we_read_and_verify(
    registry: RunningRegistry, keys: tuple[Key, Key], tmp_path: Path
) -> None:
    one, _ = keys
    store = tmp_path / "store"
    conf = registries_d(
        tmp_path / "registries.d", f"default-docker:\n  lookaside: {store.as_uri()}\n"
    )
    image = make_image(403, (1200,))
    layout = write_oci_layout(tmp_path / "layout", {"v1": image})
    name = f"{registry.host}/signed/theirs:v1"
    result = skopeo(
        "--registries.d",
        str(conf),
        "copy",
        "--dest-tls-verify=false",
        "--sign-by",
        one.fingerprint,
        f"oci:{layout}:v1",
        f"docker://{name}",
        home=one.home,
    )
    assert result.returncode == 0, result.stderr
    [got] = signatures_of(name, options(conf))
    verified = verify_simple(got, image.manifest, one.public, identity=name)
    assert verified.key_fingerprint == one.fingerprint
    assert verified.docker_manifest_digest == image.digest


def _policy(path: Path, scope: str, key: Path) -> Path:
    policy = {
        "default": [{"type": "reject"}],
        "transports": {
            "docker": {scope: [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(key)}]}
        },
    }
    path.write_text(json.dumps(policy))
    return path


@needs_skopeo
def test_skopeo_policy_accepts_our_lookaside_signature(
    registry: RunningRegistry, keys: tuple[Key, Key], tmp_path: Path
) -> None:
    one, two = keys
    store = tmp_path / "store"
    conf = registries_d(
        tmp_path / "registries.d", f"default-docker:\n  lookaside: {store.as_uri()}\n"
    )
    image = make_image(404, (800,))
    name = f"{registry.host}/signed/policy:v1"
    signature = sign_simple(image.manifest, name, one.fingerprint, gpg_home=one.home)
    push(image, name, options(conf), [signature])
    (tmp_path / "one.gpg").write_bytes(one.public)
    (tmp_path / "two.gpg").write_bytes(two.public)
    scope = f"{registry.host}/signed"
    accepting = _policy(tmp_path / "accept.json", scope, tmp_path / "one.gpg")
    rejecting = _policy(tmp_path / "reject.json", scope, tmp_path / "two.gpg")

    def copy(policy: Path, out: Path) -> subprocess.CompletedProcess[str]:
        return skopeo(
            "--registries.d",
            str(conf),
            "--policy",
            str(policy),
            "copy",
            "--src-tls-verify=false",
            f"docker://{name}",
            f"dir:{out}",
        )

    ok = copy(accepting, tmp_path / "accepted")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "accepted" / "signature-1").read_bytes() == signature
    refused = copy(rejecting, tmp_path / "refused")
    assert refused.returncode != 0
    assert "signature" in refused.stderr.lower()


@pytest.fixture(scope="module")
def sigstore_key() -> tuple[bytes, bytes]:
    return generate_sigstore_key(b"pass")


def test_sigstore_attachments_round_trip(
    registry: RunningRegistry, sigstore_key: tuple[bytes, bytes], tmp_path: Path
) -> None:
    conf = registries_d(
        tmp_path / "registries.d", "default-docker:\n  use-sigstore-attachments: true\n"
    )
    image = make_image(405, (700,))
    name = f"{registry.host}/sigstore/ours:v1"
    payload, annotations = sign_sigstore(image.manifest, name, sigstore_key[0], b"pass")
    blob = SigstoreSignature(payload, annotations).to_blob()
    push(image, name, options(conf), [blob])
    got = signatures_of(name, options(conf))
    assert got == [blob]
    verified = verify_sigstore(got[0], image.manifest, sigstore_key[1], identity=name)
    assert verified.docker_manifest_digest == image.digest
    # Without attachments enabled, a source does not look for them.
    plain = registries_d(
        tmp_path / "plain.d", f"default-docker:\n  lookaside: {(tmp_path / 'x').as_uri()}\n"
    )
    assert signatures_of(name, options(plain)) == []


@needs_skopeo
def test_skopeo_copies_our_sigstore_attachments(
    registry: RunningRegistry, sigstore_key: tuple[bytes, bytes], tmp_path: Path
) -> None:
    conf = registries_d(
        tmp_path / "registries.d", "default-docker:\n  use-sigstore-attachments: true\n"
    )
    image = make_image(406, (700,))
    name = f"{registry.host}/sigstore/to-skopeo:v1"
    payload, annotations = sign_sigstore(image.manifest, name, sigstore_key[0], b"pass")
    blob = SigstoreSignature(payload, annotations).to_blob()
    push(image, name, options(conf), [blob])
    out = tmp_path / "out"
    result = skopeo(
        "--registries.d",
        str(conf),
        "--insecure-policy",
        "copy",
        "--src-tls-verify=false",
        f"docker://{name}",
        f"dir:{out}",
    )
    assert result.returncode == 0, result.stderr
    # skopeo found our attachment and stored it in dir: as the same blob.
    assert (out / "signature-1").read_bytes() == blob


@needs_skopeo
def test_we_read_sigstore_attachments_skopeo_wrote(
    registry: RunningRegistry, sigstore_key: tuple[bytes, bytes], tmp_path: Path
) -> None:
    conf = registries_d(
        tmp_path / "registries.d", "default-docker:\n  use-sigstore-attachments: true\n"
    )
    image = make_image(407, (700,))
    name = f"{registry.host}/sigstore/from-skopeo:v1"
    payload, annotations = sign_sigstore(image.manifest, name, sigstore_key[0], b"pass")
    blob = SigstoreSignature(payload, annotations).to_blob()
    # A dir: image carrying the sigstore signature, as skopeo keeps them.
    source = tmp_path / "src"
    source.mkdir()
    (source / "version").write_text("Directory Transport Version: 1.1\n")
    (source / "manifest.json").write_bytes(image.manifest)
    for digest, data in image.blobs.items():
        (source / digest.hex).write_bytes(data)
    (source / "signature-1").write_bytes(blob)
    result = skopeo(
        "--registries.d",
        str(conf),
        "--insecure-policy",
        "copy",
        "--dest-tls-verify=false",
        f"dir:{source}",
        f"docker://{name}",
    )
    assert result.returncode == 0, result.stderr
    got = signatures_of(name, options(conf))
    assert got == [blob]
    sig = parse_signature_blob(got[0])
    assert isinstance(sig, SigstoreSignature)
    verify_sigstore(sig, image.manifest, sigstore_key[1], identity=name)
    # The same signature attached by us gives a byte-identical attachment manifest (and so
    # an identical config).
    ours = f"{registry.host}/sigstore/from-ours:v1"
    push(image, ours, options(conf), [blob])
    manifests = []
    for each in (name, ours):
        with DockerReference.parse(each).open_source(options(conf)) as src:
            data, _, _ = src.client.get_manifest(
                src.physical_reference.repository, sigstore_attachment_tag(image.digest)
            )
        manifests.append(data)
    assert manifests[0] == manifests[1]
    assert [layer["annotations"] for layer in json.loads(manifests[0])["layers"]] == [
        dict(annotations)
    ]


def test_copy_image_carries_lookaside_signatures_between_repositories(
    registry: RunningRegistry, keys: tuple[Key, Key], tmp_path: Path
) -> None:
    from imagetypes.copy import CopyOptions, copy_image

    one, _ = keys
    first, second = tmp_path / "first", tmp_path / "second"
    read_conf = registries_d(tmp_path / "a.d", f"default-docker:\n  lookaside: {first.as_uri()}\n")
    write_conf = registries_d(
        tmp_path / "b.d", f"default-docker:\n  lookaside-staging: {second.as_uri()}\n"
    )
    image = make_image(408, (900,))
    name = f"{registry.host}/signed/copy-from:v1"
    signature = sign_simple(image.manifest, name, one.fingerprint, gpg_home=one.home)
    push(image, name, options(read_conf), [signature])
    target = f"{registry.host}/signed/copy-to:v1"
    copy_image(
        f"docker://{name}",
        f"docker://{target}",
        CopyOptions(source_options=options(read_conf), destination_options=options(write_conf)),
    )
    stored = second / f"signed/copy-to@sha256={image.digest.hex}" / "signature-1"
    assert stored.read_bytes() == signature
    # The signature names the source; it verifies for that identity over the copied manifest.
    with DockerReference.parse(target).open_source(options(read_conf)) as src:
        manifest, _ = src.get_manifest()
    verify_simple(stored.read_bytes(), manifest, one.public, identity=name)
