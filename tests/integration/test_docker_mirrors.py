"""registries.conf in the docker: transport against real registries: pull mirrors, blocking,
location rewriting and insecure registries.

Two distribution registries run: the session's ``registry`` (the primary, or the rewritten
location) and a second one acting as the mirror. A "down" primary is a loopback port nobody
listens on.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from imagebuilder import BuiltImage, make_image
from registry_fixtures import RunningRegistry, free_port, start_registry

from imagetypes import BlobInfo, NotFoundError, RetryPolicy, TransportOptions
from imagetypes.manifest import parse_manifest
from imagetypes.trust import BlockedRegistryError, RegistriesConf
from imagetypes_transports.docker import (
    REGISTRIES_CONF_OPTION,
    DockerReference,
    RegistryConnectionError,
)

pytestmark = pytest.mark.integration

INSECURE = TransportOptions(tls_verify=False, extra={REGISTRIES_CONF_OPTION: RegistriesConf()})


@pytest.fixture(scope="module")
def mirror(
    tmp_path_factory: pytest.TempPathFactory, registry: RunningRegistry
) -> Iterator[RunningRegistry]:
    """A second registry, the mirror (``registry`` makes the test skip without the binary)."""
    reg = start_registry(tmp_path_factory.mktemp("mirror"))
    try:
        yield reg
    finally:
        reg.stop()


def push(image: BuiltImage, name: str) -> None:
    """Write ``image`` to ``docker://name`` (no registries.conf involved)."""
    with DockerReference.parse(name).open_destination(INSECURE) as dst:
        for digest, blob in image.blobs.items():
            dst.put_blob(io.BytesIO(blob), BlobInfo(digest=digest, size=len(blob)))
        dst.put_manifest(image.manifest, image.media_type)
        dst.commit()


def conf_options(tmp_path: Path, text: str) -> TransportOptions:
    """Options reading registries.conf ``text`` from a file; TLS as registries.conf says."""
    path = tmp_path / "registries.conf"
    path.write_text(text)
    # No retries: a "down" endpoint fails at once.
    return TransportOptions(retry=RetryPolicy.none(), extra={REGISTRIES_CONF_OPTION: str(path)})


def pull_all(name: str, options: TransportOptions) -> tuple[str, bytes, dict[str, bytes]]:
    """Read the manifest and every blob of ``docker://name``; (physical name, manifest, blobs)."""
    with DockerReference.parse(name).open_source(options) as src:
        data, media_type = src.get_manifest()
        manifest = parse_manifest(data, media_type)
        blobs = {
            str(d.digest): src.get_blob_bytes(d)
            for d in (manifest.config, *manifest.layers)  # type: ignore[attr-defined]
        }
        assert str(src.reference) == f"docker://{DockerReference.parse(name).docker_reference}"
        return str(src.physical_reference.docker_reference), data, blobs


def test_mirror_serves_the_pull_while_the_primary_is_down(
    mirror: RunningRegistry, tmp_path: Path
) -> None:
    down = f"127.0.0.1:{free_port()}"
    image = make_image(301, (3000,))
    push(image, f"{mirror.host}/mirrored/team/app:v1")
    options = conf_options(
        tmp_path,
        f"""
[[registry]]
location = "{down}"
insecure = true

[[registry.mirror]]
location = "{mirror.host}/mirrored"
insecure = true
""",
    )
    physical, manifest, blobs = pull_all(f"{down}/team/app:v1", options)
    assert physical == f"{mirror.host}/mirrored/team/app:v1"
    assert manifest == image.manifest
    assert blobs == {str(d): b for d, b in image.blobs.items()}


def test_mirrors_are_tried_in_order_and_the_primary_last(
    registry: RunningRegistry, mirror: RunningRegistry, tmp_path: Path
) -> None:
    down = f"127.0.0.1:{free_port()}"
    image = make_image(302, (1000,))
    other = make_image(303, (1000,))
    # The first mirror lacks the image, the second has it, the primary has another one.
    push(image, f"{mirror.host}/second/order/app:v1")
    push(other, f"{registry.host}/order/app:v1")
    text = f"""
[[registry]]
location = "{registry.host}"
insecure = true

[[registry.mirror]]
location = "{down}"
insecure = true

[[registry.mirror]]
location = "{mirror.host}/first"
insecure = true

[[registry.mirror]]
location = "{mirror.host}/second"
insecure = true
"""
    physical, manifest, _ = pull_all(f"{registry.host}/order/app:v1", conf_options(tmp_path, text))
    assert physical == f"{mirror.host}/second/order/app:v1"
    assert manifest == image.manifest
    # No mirror has this tag: the primary serves it.
    push(other, f"{registry.host}/order/app:v2")
    physical, manifest, _ = pull_all(f"{registry.host}/order/app:v2", conf_options(tmp_path, text))
    assert physical == f"{registry.host}/order/app:v2"
    assert manifest == other.manifest


def test_all_endpoints_failing_raise_the_primary_error_naming_the_mirrors(
    mirror: RunningRegistry, tmp_path: Path
) -> None:
    down = f"127.0.0.1:{free_port()}"
    options = conf_options(
        tmp_path,
        f"""
[[registry]]
location = "{down}"
insecure = true

[[registry.mirror]]
location = "{mirror.host}/nothing-here"
insecure = true
""",
    )
    with pytest.raises(RegistryConnectionError) as info:
        DockerReference.parse(f"{down}/gone/app:v1").open_source(options)
    text = str(info.value)
    assert "mirrors also failed" in text
    assert f"{mirror.host}/nothing-here/gone/app:v1" in text


def test_digest_only_mirror_is_skipped_for_tag_pulls(
    registry: RunningRegistry, mirror: RunningRegistry, tmp_path: Path
) -> None:
    image = make_image(304, (2000,))
    push(image, f"{registry.host}/byd/app:v1")
    push(image, f"{mirror.host}/m/byd/app:v1")
    options = conf_options(
        tmp_path,
        f"""
[[registry]]
location = "{registry.host}"
insecure = true

[[registry.mirror]]
location = "{mirror.host}/m"
insecure = true
pull-from-mirror = "digest-only"
""",
    )
    physical, manifest, _ = pull_all(f"{registry.host}/byd/app:v1", options)
    assert physical == f"{registry.host}/byd/app:v1"
    assert manifest == image.manifest
    by_digest = f"{registry.host}/byd/app@{image.digest}"
    physical, manifest, _ = pull_all(by_digest, options)
    assert physical == f"{mirror.host}/m/byd/app@{image.digest}"
    assert manifest == image.manifest


def test_blocked_registry_is_refused(registry: RunningRegistry, tmp_path: Path) -> None:
    image = make_image(305, (100,))
    push(image, f"{registry.host}/blocked/app:v1")
    options = conf_options(
        tmp_path,
        f"""
[[registry]]
prefix = "{registry.host}/blocked"
location = "{registry.host}/blocked"
blocked = true
""",
    )
    ref = DockerReference.parse(f"{registry.host}/blocked/app:v1")
    with pytest.raises(BlockedRegistryError, match="blocked"):
        ref.open_source(options)
    with pytest.raises(BlockedRegistryError, match="blocked"):
        ref.open_destination(options)
    with pytest.raises(BlockedRegistryError, match="blocked"):
        ref.delete(options)
    # Other repositories of that registry are not covered by the prefix.
    push(image, f"{registry.host}/open/app:v1")
    _, manifest, _ = pull_all(f"{registry.host}/open/app:v1", TransportOptions(tls_verify=False))
    assert manifest == image.manifest


def test_prefix_rewriting_pulls_from_the_new_location(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    image = make_image(306, (1500,))
    push(image, f"{registry.host}/rewritten/team/app:v1")
    options = conf_options(
        tmp_path,
        f"""
[[registry]]
prefix = "example.test/team"
location = "{registry.host}/rewritten/team"
insecure = true
""",
    )
    physical, manifest, blobs = pull_all("example.test/team/app:v1", options)
    assert physical == f"{registry.host}/rewritten/team/app:v1"
    assert manifest == image.manifest
    assert blobs == {str(d): b for d, b in image.blobs.items()}
    # Names outside the prefix are left alone (and fail where they are).
    with pytest.raises(NotFoundError):
        pull_all(f"{registry.host}/team/app:v1", attrs.evolve(options, tls_verify=False))
    # Pushes are never rewritten (containers-registries.conf(5)).
    with DockerReference.parse("example.test/team/app:v1").open_destination(options) as dst:
        assert dst.client.host == "example.test"


def test_insecure_entry_allows_plain_http(registry: RunningRegistry, tmp_path: Path) -> None:
    image = make_image(307, (100,))
    name = f"{registry.host}/insecure/app:v1"
    options = conf_options(
        tmp_path, f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n'
    )
    # No tls_verify given: registries.conf decides, for pushes and pulls alike.
    with DockerReference.parse(name).open_destination(options) as dst:
        for digest, blob in image.blobs.items():
            dst.put_blob(io.BytesIO(blob), BlobInfo(digest=digest, size=len(blob)))
        dst.put_manifest(image.manifest, image.media_type)
        dst.commit()
    _, manifest, _ = pull_all(name, options)
    assert manifest == image.manifest
    # Without the entry, the registry's plain http is refused.
    strict = conf_options(tmp_path, "")
    with pytest.raises(RegistryConnectionError):
        pull_all(name, strict)
