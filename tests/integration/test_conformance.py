"""The transport conformance suite (imagetypes.testing.conformance) over every transport.

One test per (transport, check). A transport that is not installed is skipped, so this file
also runs where a plugin is missing.

HOOK: to add a transport, add a ``Target`` to ``TARGETS`` below with the flags the transport
needs (see ``ConformanceSuite``). docker-archive: is listed, commented out, with the flags it
needs and the checks it fails today.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from imagetypes import TransportOptions, get_transport, register_transport, reset_transports
from imagetypes.errors import TransportError
from imagetypes.testing.conformance import CHECK_NAMES, ConformanceSuite
from imagetypes.testing.memory import MemoryStore, MemoryTransport
from imagetypes.testing.registry import InMemoryRegistry

_ZIP_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "zip-transport"

Factory = Callable[[str], str]


@dataclass(frozen=True)
class Target:
    """A transport under test: how to make fresh references, and what it supports."""

    transport: str
    #: (tmp_path, exit stack) -> (reference factory, transport options)
    setup: Callable[[Path, ExitStack], tuple[Factory, TransportOptions | None]]
    flags: dict[str, bool] = field(default_factory=dict)


def _in_dir(prefix: str, suffix: str = "") -> Callable[[Path, ExitStack], tuple[Factory, None]]:
    def setup(tmp: Path, stack: ExitStack) -> tuple[Factory, None]:
        return (lambda name: f"{prefix}:{tmp / name}{suffix}"), None

    return setup


def _memory(tmp: Path, stack: ExitStack) -> tuple[Factory, None]:
    register_transport(MemoryTransport(MemoryStore()), replace=True)
    stack.callback(reset_transports)
    return (lambda name: f"memory:{name}"), None


def _zip(tmp: Path, stack: ExitStack) -> tuple[Factory, None]:
    try:
        import imagetypes_zip
    except ImportError:
        # Not installed (tests/integration/test_example_plugin.py installs it): use the source.
        sys.path.insert(0, str(_ZIP_EXAMPLE))
        stack.callback(sys.path.remove, str(_ZIP_EXAMPLE))
        import imagetypes_zip
    try:
        get_transport("zip")
    except TransportError:
        register_transport(imagetypes_zip.transport, replace=True)
        stack.callback(reset_transports)
    return (lambda name: f"zip:{tmp / name}.zip"), None


def _docker(tmp: Path, stack: ExitStack) -> tuple[Factory, TransportOptions]:
    served = stack.enter_context(InMemoryRegistry().serve())
    return (lambda name: f"docker://{served}/{name}:latest"), TransportOptions(tls_verify=False)


TARGETS = [
    Target("oci", lambda tmp, _: ((lambda name: f"oci:{tmp / 'layout'}:{name}"), None)),
    Target("dir", _in_dir("dir"), {"supports_signatures": True}),
    Target("memory", _memory, {"supports_signatures": True}),
    Target("zip", _zip, {"supports_signatures": True}),
    Target("docker", _docker),
    Target("oci-archive", _in_dir("oci-archive", ".tar")),
    # docker-archive: stores uncompressed layers and regenerates manifests, never overwrites,
    # holds no indexes.
    Target(
        "docker-archive",
        _in_dir("docker-archive", ".tar"),
        {"preserves_manifests": False, "supports_overwrite": False, "supports_index": False},
    ),
]


@pytest.fixture(params=TARGETS, ids=[t.transport for t in TARGETS])
def suite(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ConformanceSuite]:
    target: Target = request.param
    with ExitStack() as stack:
        factory, options = target.setup(tmp_path, stack)
        try:
            get_transport(target.transport)
        except TransportError as e:
            pytest.skip(f"the {target.transport} transport is not installed: {e}")
        flags: dict[str, Any] = dict(target.flags)
        yield ConformanceSuite(make_reference=factory, options=options, **flags)


@pytest.mark.parametrize("check", CHECK_NAMES)
def test_conformance(suite: ConformanceSuite, check: str) -> None:
    result = suite.run(check)
    if result.skipped:
        pytest.skip(result.message)
    assert result.passed, f"{check}: {result.message}"
