"""The in-memory registry against a real client: skopeo pushes to it and pulls from it on a
loopback port, with the same digests. Also the pytest plugin's fixtures and the registry CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from imagebuilder import make_image, make_multiarch, write_oci_layout

from imagetypes.testing.random import random_image
from imagetypes.testing.registry import BasicAuth, BearerAuth, InMemoryRegistry, ServedRegistry

# Until the lead registers the plugin under the pytest11 entry point, load it here (loading it
# twice would be an error).
if not any(ep.value == "imagetypes.testing.pytest_plugin" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["imagetypes.testing.pytest_plugin"]

if TYPE_CHECKING:
    from imagetypes.testing.pytest_plugin import OCILayoutFactory

SKOPEO = shutil.which("skopeo")
pytestmark = pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed")


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    assert SKOPEO is not None
    return subprocess.run(
        [SKOPEO, "--insecure-policy", *args], capture_output=True, text=True, timeout=180
    )


def ok(*args: str) -> str:
    result = skopeo(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_push_and_pull_keep_digests(inmemory_registry: ServedRegistry, tmp_path: Path) -> None:
    image = make_image(1, (2048, 4096))
    write_oci_layout(tmp_path / "src", {"v1": image})
    ok(
        "copy",
        "--dest-tls-verify=false",
        f"oci:{tmp_path / 'src'}:v1",
        f"docker://{inmemory_registry}/team/app:v1",
    )
    registry = inmemory_registry.registry
    assert registry is not None
    assert registry.tags("team/app") == {"v1": image.digest}
    assert registry.manifest("team/app", "v1") == (image.manifest, image.media_type)
    for digest, data in image.blobs.items():
        assert registry.blob("team/app", digest) == data
    raw = ok("inspect", "--raw", "--tls-verify=false", f"docker://{inmemory_registry}/team/app:v1")
    assert raw.encode() == image.manifest
    info = json.loads(
        ok("inspect", "--tls-verify=false", f"docker://{inmemory_registry}/team/app:v1")
    )
    assert info["Digest"] == str(image.digest)
    assert info["RepoTags"] == ["v1"]
    # And back: the layout skopeo writes from the registry holds the same manifest.
    ok(
        "copy",
        "--src-tls-verify=false",
        f"docker://{inmemory_registry}/team/app:v1",
        f"oci:{tmp_path / 'back'}:v1",
    )
    index = json.loads((tmp_path / "back" / "index.json").read_bytes())
    assert index["manifests"][0]["digest"] == str(image.digest)
    assert registry.counters.blob_gets >= len(image.blobs)


def test_multiarch_roundtrip(inmemory_registry: ServedRegistry, tmp_path: Path) -> None:
    index = make_multiarch(2)
    write_oci_layout(tmp_path / "src", {"multi": index})
    dest = f"docker://{inmemory_registry}/multi:latest"
    ok("copy", "--all", "--dest-tls-verify=false", f"oci:{tmp_path / 'src'}:multi", dest)
    raw = ok("inspect", "--raw", "--tls-verify=false", dest)
    assert raw.encode() == index.manifest
    ok("copy", "--all", "--src-tls-verify=false", dest, f"oci:{tmp_path / 'back'}:multi")
    back = json.loads((tmp_path / "back" / "index.json").read_bytes())
    assert back["manifests"][0]["digest"] == str(index.digest)
    for image in index.images:
        assert (tmp_path / "back" / "blobs" / "sha256" / image.digest.hex).read_bytes() == (
            image.manifest
        )


def test_copy_between_repositories_mounts(
    inmemory_registry: ServedRegistry, tmp_path: Path
) -> None:
    image = make_image(3, (1024, 1024, 1024))
    write_oci_layout(tmp_path / "src", {"v1": image})
    ok(
        "copy",
        "--dest-tls-verify=false",
        f"oci:{tmp_path / 'src'}:v1",
        f"docker://{inmemory_registry}/first:v1",
    )
    registry = inmemory_registry.registry
    assert registry is not None
    uploads = registry.counters.uploads
    ok(
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        f"docker://{inmemory_registry}/first:v1",
        f"docker://{inmemory_registry}/second:v1",
    )
    assert registry.counters.mounts >= 3  # the layers were mounted, not uploaded again
    assert registry.counters.uploads - uploads <= 1  # at most the config
    assert registry.tags("second") == {"v1": image.digest}


def test_list_tags(inmemory_registry: ServedRegistry, tmp_path: Path) -> None:
    image = make_image(4, (256,))
    write_oci_layout(tmp_path / "src", {"v1": image})
    for tag in ("b", "a", "c"):
        ok(
            "copy",
            "--dest-tls-verify=false",
            f"oci:{tmp_path / 'src'}:v1",
            f"docker://{inmemory_registry}/tags:{tag}",
        )
    out = json.loads(ok("list-tags", "--tls-verify=false", f"docker://{inmemory_registry}/tags"))
    assert sorted(out["Tags"]) == ["a", "b", "c"]


@pytest.mark.parametrize("auth", [BasicAuth("alice", "pw"), BearerAuth("alice", "pw")])
def test_push_with_authentication(auth: BasicAuth | BearerAuth, tmp_path: Path) -> None:
    image = make_image(5, (512,))
    write_oci_layout(tmp_path / "src", {"v1": image})
    registry = InMemoryRegistry(auth=auth)
    with registry.serve() as served:
        dest = f"docker://{served}/secure:v1"
        denied = skopeo("copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'src'}:v1", dest)
        assert denied.returncode != 0
        assert registry.tags("secure") == {}
        wrong = skopeo(
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:nope",
            f"oci:{tmp_path / 'src'}:v1",
            dest,
        )
        assert wrong.returncode != 0
        ok(
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:pw",
            f"oci:{tmp_path / 'src'}:v1",
            dest,
        )
        assert registry.tags("secure") == {"v1": image.digest}
        raw = ok("inspect", "--raw", "--tls-verify=false", "--creds", "alice:pw", dest)
        assert raw.encode() == image.manifest
    if isinstance(auth, BearerAuth):
        assert registry.counters.tokens_issued >= 1
    assert registry.counters.unauthorized >= 1


def test_oci_layout_fixture(oci_layout: OCILayoutFactory) -> None:
    image = random_image(6)
    image.write_to(oci_layout("v1"))
    assert oci_layout("v1") == f"oci:{oci_layout.path}:v1"
    raw = ok("inspect", "--raw", oci_layout("v1"))
    assert raw.encode() == image.manifest


def test_registry_command_line() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "imagetypes.testing.registry", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("serving an in-memory registry on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1].strip()
        response = httpx.get(f"{url}/v2/", timeout=10)
        assert response.status_code == 200
        assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    finally:
        process.terminate()
        process.wait(timeout=10)
