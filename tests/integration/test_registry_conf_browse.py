"""open_registry() honours registries.conf as pulls do: a blocked registry or repository is a
typed error, a location that rewrites a name is where the catalog and tags are read, and an
``insecure`` entry allows plain HTTP - against a real registry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from imagebuilder import make_image, write_oci_layout
from registry_fixtures import RunningRegistry

from imagetypes import ImageError, TransportOptions, open_registry
from imagetypes.copy import CopyOptions, copy_image, list_sync_images
from imagetypes.trust import BlockedRegistryError, RegistriesConf

pytestmark = pytest.mark.integration

CONF_OPTION = "docker.registries_conf"


@pytest.fixture(scope="module")
def populated(registry: RunningRegistry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The registry with ``browse/ns/app:{a,b}``, ``browse/ns/tool:x`` and ``browse/other:y``."""
    images = {"a": make_image(701, (300,)), "b": make_image(702, (310,))}
    layout = write_oci_layout(tmp_path_factory.mktemp("browse") / "layout", images)
    plain = CopyOptions(destination_options=TransportOptions(tls_verify=False))
    for target in ("browse/ns/app:a", "browse/ns/app:b", "browse/ns/tool:x", "browse/other:y"):
        tag = "a" if target.endswith((":a", ":x", ":y")) else "b"
        copy_image(f"oci:{layout}:{tag}", f"docker://{registry.host}/{target}", plain)
    return registry.host


def options(text: str) -> TransportOptions:
    # No tls_verify: an insecure entry in registries.conf has to allow plain HTTP by itself.
    return TransportOptions(extra={CONF_OPTION: RegistriesConf.parse(text)})


def test_rewritten_registry_lists_the_namespace_at_its_location(populated: str) -> None:
    conf = f"""
[[registry]]
prefix = "logical.example"
location = "{populated}/browse/ns"
insecure = true
"""
    with open_registry("docker://logical.example", options=options(conf)) as registry:
        names = list(registry.repositories())
        # Only the repositories under the namespace, named as logical.example's.
        assert "app" in names
        assert "tool" in names
        assert not any(n.startswith(("browse/", "other")) for n in names)
        assert sorted(registry.repository("app").tags()) == ["a", "b"]
        assert list(registry.repository("tool").tags()) == ["x"]
        assert "logical.example" in repr(registry)
        assert populated in repr(registry)


def test_rewritten_repository_reads_tags_at_its_location(populated: str) -> None:
    conf = f"""
[[registry]]
prefix = "logical.example/apps/web"
location = "{populated}/browse/ns/app"
insecure = true
"""
    with open_registry("docker://logical.example", options=options(conf)) as registry:
        assert sorted(registry.repository("apps/web").tags()) == ["a", "b"]


def test_sync_lists_a_rewritten_repository(populated: str) -> None:
    conf = f"""
[[registry]]
prefix = "logical.example/mirror"
location = "{populated}/browse/ns"
insecure = true
"""
    listed = list_sync_images("logical.example/mirror/app", "docker", options(conf))
    assert sorted(s.reference for s in listed) == [
        "docker://logical.example/mirror/app:a",
        "docker://logical.example/mirror/app:b",
    ]


def test_blocked_registry_is_refused_when_opened(populated: str) -> None:
    conf = f"""
[[registry]]
location = "{populated}"
blocked = true
"""
    with pytest.raises(BlockedRegistryError, match="blocked"):
        open_registry(f"docker://{populated}", options=options(conf))


def test_blocked_repository_is_refused_and_others_are_not(populated: str) -> None:
    conf = f"""
[[registry]]
location = "{populated}"
insecure = true

[[registry]]
location = "{populated}/browse/ns/tool"
blocked = true
"""
    with open_registry(f"docker://{populated}", options=options(conf)) as registry:
        assert sorted(registry.repository("browse/ns/app").tags()) == ["a", "b"]
        with pytest.raises(BlockedRegistryError, match="browse/ns/tool"):
            registry.repository("browse/ns/tool").tags()


def test_without_an_insecure_entry_tls_is_required(populated: str) -> None:
    # The same registry, with no entry: TLS verification stays on and plain HTTP fails.
    with (
        open_registry(f"docker://{populated}", options=options("")) as registry,
        pytest.raises(ImageError) as caught,
    ):
        list(registry.repository("browse/ns/app").tags())
    assert "TLS" in str(caught.value)


def test_cli_list_tags_follows_registries_conf(populated: str, tmp_path: Path) -> None:
    conf = tmp_path / "registries.conf"
    conf.write_text(
        f'[[registry]]\nprefix = "logical.example"\nlocation = "{populated}/browse"\n'
        "insecure = true\n"
        '[[registry]]\nprefix = "blocked.example"\nlocation = "blocked.example"\nblocked = true\n'
    )
    env_argv = [sys.executable, "-m", "imagetypes", "--registries-conf", str(conf), "list-tags"]
    done = subprocess.run(
        [*env_argv, "docker://logical.example/ns/app"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"a"' in done.stdout
    assert '"b"' in done.stdout
    refused = subprocess.run(
        [*env_argv, "docker://blocked.example/app"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert refused.returncode != 0
    assert "blocked" in refused.stderr
