"""A sync shares one registry client per registry and repository (one ping each), against a
real registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from imagebuilder import BuiltImage, make_image, write_oci_layout
from registry_fixtures import RunningRegistry, counting_hooks

from imagetypes import TransportOptions
from imagetypes.copy import CopyOptions, SyncOptions, SyncReport, copy_image, sync
from imagetypes.types import SharedState
from imagetypes_transports.docker._pool import CLIENT_POOL_KEY, RegistryClientPool

pytestmark = pytest.mark.integration

TAGS = 6


def _pings(sent: list[tuple[str, str]]) -> int:
    return sum(1 for method, path in sent if method == "GET" and path == "/v2/")


@pytest.fixture(scope="module")
def source(
    registry: RunningRegistry, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, dict[str, BuiltImage]]:
    # Odd tags are one image (shared blobs), even tags images of their own.
    shared = make_image(71, (30_000, 2000))
    tagged = {f"v{i}": shared if i % 2 else make_image(80 + i, (1000 + i,)) for i in range(TAGS)}
    layout = write_oci_layout(tmp_path_factory.mktemp("pool") / "layout", tagged)
    for tag in tagged:
        copy_image(
            f"oci:{layout}:{tag}",
            f"docker://{registry.host}/pool/src:{tag}",
            CopyOptions(destination_options=TransportOptions(tls_verify=False)),
        )
    return f"{registry.host}/pool/src", tagged


def _one_copy_pings(registry: RunningRegistry, repo: str) -> tuple[int, int]:
    """The pings of one plain copy_image: what one client per side costs."""
    src_hooks, src_sent = counting_hooks()
    dst_hooks, dst_sent = counting_hooks()
    copy_image(
        f"docker://{repo}:v0",
        f"docker://{registry.host}/pool/single:v0",
        CopyOptions(
            source_options=TransportOptions(
                tls_verify=False, extra={"docker.event_hooks": src_hooks}
            ),
            destination_options=TransportOptions(
                tls_verify=False, extra={"docker.event_hooks": dst_hooks}
            ),
        ),
    )
    return _pings(src_sent), _pings(dst_sent)


def test_a_sync_of_many_tags_pings_each_registry_once(
    registry: RunningRegistry, source: tuple[str, dict[str, BuiltImage]]
) -> None:
    repo, tagged = source
    one_source, one_destination = _one_copy_pings(registry, repo)
    assert one_source >= 1
    assert one_destination >= 1
    src_hooks, src_sent = counting_hooks()
    dst_hooks, dst_sent = counting_hooks()
    report = sync(
        repo,
        f"{registry.host}/pooled",
        source_kind="docker",
        destination_kind="docker",
        options=SyncOptions(
            concurrency=3,
            copy_options=CopyOptions(
                source_options=TransportOptions(
                    tls_verify=False, extra={"docker.event_hooks": src_hooks}
                ),
                destination_options=TransportOptions(
                    tls_verify=False, extra={"docker.event_hooks": dst_hooks}
                ),
            ),
        ),
    )
    assert report.ok
    assert len(report.copied) == TAGS
    for image in report.images:
        assert image.digest == str(tagged[image.source.rsplit(":", 1)[1]].digest)
    # The listing and all the sources share one client, all destinations another: as many
    # pings as one copy of one image, where a client per image would make TAGS times more.
    assert _pings(src_sent) == one_source
    assert _pings(dst_sent) == one_destination
    # Shared layers are uploaded once and found by the other images.
    assert sum(1 for m, _ in dst_sent if m == "POST") == len(
        {d for img in tagged.values() for d in img.blobs}
    )


def test_a_caller_batch_shares_clients_and_closes_them(
    registry: RunningRegistry, source: tuple[str, dict[str, BuiltImage]]
) -> None:
    repo, tagged = source
    hooks, sent = counting_hooks()
    base = TransportOptions(tls_verify=False, extra={"docker.event_hooks": hooks})
    with SharedState() as state:
        options = state.attach(base)
        for tag in list(tagged)[:3]:
            copy_image(
                f"docker://{repo}:{tag}",
                f"docker://{registry.host}/batch/dst:{tag}",
                CopyOptions(source_options=options, destination_options=options),
            )
        pool = state.get(CLIENT_POOL_KEY, RegistryClientPool)
        assert pool.created == 2  # the source repository, the destination repository
    # Closed with the state: a closed pool makes no more clients.
    with pytest.raises(RuntimeError):
        pool.client(registry.host, base, repository="batch/dst")
    one_source, one_destination = _one_copy_pings(registry, repo)
    assert _pings(sent) == one_source + one_destination


def test_different_credentials_get_different_clients_in_one_run(
    registry: RunningRegistry, source: tuple[str, dict[str, BuiltImage]], tmp_path: Path
) -> None:
    from imagetypes.types import Credentials

    repo, _ = source
    with SharedState() as state:
        anonymous = state.attach(TransportOptions(tls_verify=False))
        with_creds = state.attach(
            TransportOptions(tls_verify=False, credentials=Credentials("someone", "pw"))
        )
        for options in (anonymous, with_creds, anonymous):
            copy_image(
                f"docker://{repo}:v1",
                f"dir:{tmp_path / 'out'}",
                CopyOptions(source_options=options),
            )
        pool = state.get(CLIENT_POOL_KEY, RegistryClientPool)
        assert pool.created == 2


def _sync(
    registry: RunningRegistry, repo: str, dest: str, hooks: dict[str, list[Any]]
) -> SyncReport:
    return sync(
        repo,
        f"{registry.host}/{dest}",
        source_kind="docker",
        destination_kind="docker",
        options=SyncOptions(
            concurrency=3,
            copy_options=CopyOptions(
                source_options=TransportOptions(tls_verify=False),
                destination_options=TransportOptions(
                    tls_verify=False, extra={"docker.event_hooks": hooks}
                ),
            ),
        ),
    )


def test_a_sync_into_a_new_repository_asks_nothing_it_knows(
    registry: RunningRegistry, source: tuple[str, dict[str, BuiltImage]]
) -> None:
    repo, tagged = source
    blobs = {d for img in tagged.values() for d in img.blobs}
    # A new repository: one tag listing (NAME_UNKNOWN) instead of a HEAD per manifest and blob.
    hooks, sent = counting_hooks()
    report = _sync(registry, repo, "fresh", hooks)
    assert report.ok
    assert len(report.copied) == TAGS
    assert [p for m, p in sent if m == "GET" and p.endswith("/tags/list")] == [
        "/v2/fresh/src/tags/list"
    ]
    assert [(m, p) for m, p in sent if m == "HEAD"] == []
    assert sum(1 for m, _ in sent if m == "POST") == len(blobs)  # each blob uploaded once
    for image in report.images:
        assert image.digest == str(tagged[image.source.rsplit(":", 1)[1]].digest)

    # Again, now that it holds every tag: each manifest is checked (HEAD) and nothing moves.
    hooks, sent = counting_hooks()
    again = _sync(registry, repo, "fresh", hooks)
    assert again.ok
    assert len(again.copied) == 0
    assert len(again.images) == TAGS
    assert sum(1 for m, p in sent if m == "HEAD" and "/manifests/" in p) == TAGS
    assert [m for m, _ in sent if m in ("POST", "PUT", "PATCH")] == []

    # A repository holding one of the images: the source is on the same registry, so every
    # blob is mounted from it, once, in one request whether it was there or not (no HEAD
    # first), and none is uploaded.
    one_tag = next(iter(tagged))
    copy_image(
        f"docker://{repo}:{one_tag}",
        f"docker://{registry.host}/partial/src:{one_tag}",
        CopyOptions(
            source_options=TransportOptions(tls_verify=False),
            destination_options=TransportOptions(tls_verify=False),
        ),
    )
    hooks, sent = counting_hooks()
    report = _sync(registry, repo, "partial", hooks)
    assert report.ok
    assert len(report.copied) == TAGS - 1
    assert not [p for m, p in sent if m == "HEAD" and "/blobs/" in p]
    copied = {d for tag, img in tagged.items() if tag != one_tag for d in img.blobs}
    assert sum(1 for m, _ in sent if m == "POST") == len(copied)
    assert not [p for m, p in sent if m in ("PUT", "PATCH") and "/blobs/uploads/" in p]
