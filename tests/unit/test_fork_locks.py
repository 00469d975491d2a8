"""Module-level locks start afresh in a forked child (multiprocessing's ``fork`` start method).

A thread of the parent that holds one when the process forks does not exist in the child, so
the child's copy of the lock would stay taken for ever: its first plugin look-up, TLS context or
docker-archive index would hang. (The compression pool, the copy engine's turns and the
blob-info cache have tests of their own.)
"""

from __future__ import annotations

import importlib
import io
import sys
import tarfile
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from childpython import fork_while_held  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="fork start method")


def _use_plugins(_: Path) -> None:
    from imagetypes import plugins

    plugins.reset_transports()
    assert plugins.get_transport("oci").name == "oci"


def _use_tls(_: Path) -> None:
    from imagetypes import TransportOptions
    from imagetypes_transports.docker._tls import make_ssl_context

    make_ssl_context("127.0.0.1:1", TransportOptions(tls_verify=False))


def _use_archive_index(archive: Path) -> None:
    from imagetypes_transports.docker_archive._tar import _cached_index

    assert "manifest.json" in _cached_index(archive, "test").members


_CASES = {
    "plugins": ("imagetypes.plugins", "_lock", _use_plugins),
    "tls": ("imagetypes_transports.docker._tls", "_ssl_lock", _use_tls),
    "archive": ("imagetypes_transports.docker_archive._tar", "_cache_lock", _use_archive_index),
}


def _child(case: str, archive: Path) -> None:
    _CASES[case][2](archive)


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    path = tmp_path / "a.tar"
    with tarfile.open(path, "w") as tar:
        data = b"[]"
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("case", sorted(_CASES))
def test_a_forked_child_does_not_wait_for_a_lock_the_parent_held(case: str, archive: Path) -> None:
    module_name, attr, use = _CASES[case]
    module = importlib.import_module(module_name)
    # None: the child hung on the lock the parent's thread held, and was killed.
    assert fork_while_held(lambda: getattr(module, attr), _child, case, archive) == 0
    use(archive)  # the parent's lock is free again, and still works
