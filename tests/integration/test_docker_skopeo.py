"""Interop with skopeo through a real registry: what we push skopeo reads byte for byte, and
what skopeo pushes we read byte for byte."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest
from imagebuilder import BuiltImage, BuiltIndex, make_image, make_multiarch, write_oci_layout
from registry_fixtures import SKOPEO_BIN, RunningRegistry, environ_without_proxies

from imagetypes import BlobInfo, Descriptor, Digest, TransportOptions
from imagetypes_transports.docker import DockerReference, transport

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(SKOPEO_BIN is None, reason="skopeo is not installed"),
]

INSECURE = TransportOptions(tls_verify=False)


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    return path


def skopeo(*args: str) -> bytes:
    assert SKOPEO_BIN is not None
    result = subprocess.run(
        [SKOPEO_BIN, *args],
        capture_output=True,
        env=environ_without_proxies(),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def push(reference: DockerReference, item: BuiltImage | BuiltIndex) -> None:
    images = item.images if isinstance(item, BuiltIndex) else [item]
    with reference.open_destination(INSECURE) as dest:
        for img in images:
            for digest, blob in img.blobs.items():
                info = BlobInfo("", digest, len(blob))
                if dest.try_reusing_blob(info) is None:
                    dest.put_blob(io.BytesIO(blob), info)
            if isinstance(item, BuiltIndex):
                dest.put_manifest(img.manifest, img.media_type, img.digest)
        dest.put_manifest(item.manifest, item.media_type)
        dest.commit()


def blob_file(layout: Path, digest: str) -> bytes:
    algo, hexpart = digest.split(":")
    return (layout / "blobs" / algo / hexpart).read_bytes()


@pytest.mark.parametrize("docker", [False, True], ids=["oci", "docker-v2s2"])
def test_skopeo_reads_what_we_push(
    registry: RunningRegistry, tmp_path: Path, policy: Path, docker: bool
) -> None:
    img = make_image(50, (5000, 9000), docker=docker)
    name = f"{registry.host}/interop/ours-{'docker' if docker else 'oci'}:v1"
    push(transport.parse_reference(f"//{name}"), img)
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{name}")
    assert raw == img.manifest
    out = tmp_path / "layout"
    skopeo(
        "--policy",
        str(policy),
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        f"docker://{name}",
        f"oci:{out}:v1",
    )
    for digest, blob in img.blobs.items():
        if not docker:  # skopeo keeps OCI blobs as they are
            assert blob_file(out, str(digest)) == blob
    inspected = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{name}"))
    assert inspected["Digest"] == str(img.digest)


def test_skopeo_copies_our_index(registry: RunningRegistry, tmp_path: Path, policy: Path) -> None:
    index = make_multiarch(51)
    name = f"{registry.host}/interop/ours-index:v1"
    push(transport.parse_reference(f"//{name}"), index)
    assert skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{name}") == index.manifest
    out = tmp_path / "layout"
    skopeo(
        "--policy",
        str(policy),
        "copy",
        "--quiet",
        "--all",
        "--src-tls-verify=false",
        f"docker://{name}",
        f"oci:{out}:v1",
    )
    top = json.loads((out / "index.json").read_text())["manifests"][0]
    assert top["digest"] == str(index.digest)
    for img in index.images:
        assert blob_file(out, str(img.digest)) == img.manifest


def test_we_read_what_skopeo_pushes(
    registry: RunningRegistry, tmp_path: Path, policy: Path
) -> None:
    img = make_image(52, (7000,))
    layout = write_oci_layout(tmp_path / "src", {"v1": img})
    name = f"{registry.host}/interop/theirs:v1"
    skopeo(
        "--policy",
        str(policy),
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        f"oci:{layout}:v1",
        f"docker://{name}",
    )
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{name}")
    with transport.parse_reference(f"//{name}").open_source(INSECURE) as src:
        data, media_type = src.get_manifest()
        assert data == raw
        assert media_type == json.loads(raw)["mediaType"]
        manifest = json.loads(data)
        for d in [manifest["config"], *manifest["layers"]]:
            desc = Descriptor.from_dict(d)
            with src.get_blob(desc) as reader:
                content = reader.read()
            assert Digest.from_bytes(content) == desc.digest
            assert content == img.blobs[desc.digest]


def test_skopeo_delete_and_our_delete_agree(registry: RunningRegistry) -> None:
    img = make_image(53)
    name = f"{registry.host}/interop/deleted:v1"
    ref = transport.parse_reference(f"//{name}")
    push(ref, img)
    ref.delete(INSECURE)
    result = subprocess.run(
        [str(SKOPEO_BIN), "inspect", "--raw", "--tls-verify=false", f"docker://{name}"],
        capture_output=True,
        env=environ_without_proxies(),
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert b"manifest unknown" in result.stderr.lower()
