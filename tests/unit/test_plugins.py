"""imagetypes.plugins: transport discovery through real entry points.

Each test writes throwaway distributions (a ``*.dist-info`` folder with METADATA and
entry_points.txt, plus a module) into ``tmp_path`` and puts that folder on ``sys.path``, so
``importlib.metadata`` finds them exactly as it finds an installed plugin. The built-in
transports may or may not load here; nothing below depends on them.
"""

from __future__ import annotations

import itertools
import logging
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from imagetypes.errors import (
    DuplicateTransportError,
    InvalidReferenceError,
    TransportError,
    UnknownTransportError,
    UnsupportedError,
)
from imagetypes.plugins import (
    ENTRY_POINT_GROUP,
    TransportInfo,
    get_transport,
    list_transports,
    parse_reference,
    register_transport,
    reset_transports,
)
from imagetypes.types import ImageDestination, ImageReference, ImageSource, Transport

_counter = itertools.count()

# A complete plugin module; NAME is the transport name it declares.
PLUGIN_SOURCE = """
from imagetypes.errors import UnsupportedError
from imagetypes.types import ImageReference, Transport


class PluginReference(ImageReference):
    def __init__(self, transport, details):
        self._transport = transport
        self.details = details

    @property
    def transport(self):
        return self._transport

    def string_within_transport(self):
        return self.details

    def open_source(self, options=None):
        raise UnsupportedError("test plugin")

    def open_destination(self, options=None):
        raise UnsupportedError("test plugin")


class PluginTransport(Transport):
    name = NAME

    def parse_reference(self, text):
        return PluginReference(self, text)


transport = PluginTransport()
"""


class _Reference(ImageReference):
    def __init__(self, transport: Transport, details: str) -> None:
        self._transport = transport
        self.details = details

    @property
    def transport(self) -> Transport:
        return self._transport

    def string_within_transport(self) -> str:
        return self.details

    def open_source(self, options: object = None) -> ImageSource:
        raise UnsupportedError("test transport")

    def open_destination(self, options: object = None) -> ImageDestination:
        raise UnsupportedError("test transport")


class RuntimeTransport(Transport):
    def __init__(self, name: str) -> None:
        self.name = name

    def parse_reference(self, text: str) -> ImageReference:
        return _Reference(self, text)


MakeDist = Callable[..., str]


@pytest.fixture
def make_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeDist]:
    """Write a distribution on a fresh sys.path entry; return the module name it created.

    ``make_dist(dist_name, {ep_name: "attr"}, source)`` writes module ``<unique>`` with
    ``source`` and entry points ``ep_name = <unique>:attr`` in group imagetypes.transports.
    """
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    modules: list[str] = []

    def make(dist_name: str, entry_points: Mapping[str, str], source: str) -> str:
        module = f"imagetypes_test_plugin_{next(_counter)}"
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        info = site / f"{dist_name}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 1.0\n")
        lines = [f"[{ENTRY_POINT_GROUP}]"]
        lines += [f"{name} = {module}:{attr}" for name, attr in entry_points.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        modules.append(module)
        return module

    reset_transports()
    yield make
    reset_transports()
    for module in modules:
        sys.modules.pop(module, None)


def plugin(name: str) -> str:
    return f"NAME = {name!r}\n{PLUGIN_SOURCE}"


def _infos(name: str) -> list[TransportInfo]:
    return [i for i in list_transports() if i.name == name]


def test_third_party_transport_is_found_with_its_origin(make_dist: MakeDist) -> None:
    module = make_dist("acme-transport", {"acme": "transport"}, plugin("acme"))
    transport = get_transport("acme")
    assert transport.name == "acme"
    assert type(transport).__module__ == module
    (info,) = _infos("acme")
    assert info.transport is transport
    assert info.origin == f"entry point {module}:transport (acme-transport 1.0)"
    names = [i.name for i in list_transports()]
    assert names == sorted(names)


def test_parse_reference_dispatches_to_the_plugin(make_dist: MakeDist) -> None:
    make_dist("acme-transport", {"acme": "transport"}, plugin("acme"))
    ref = parse_reference("acme:some:details/with:colons")
    assert ref.transport is get_transport("acme")
    assert ref.string_within_transport() == "some:details/with:colons"
    assert str(ref) == "acme:some:details/with:colons"


def test_a_transport_class_is_instantiated(make_dist: MakeDist) -> None:
    make_dist("acme-class", {"acmecls": "PluginTransport"}, plugin("acmecls"))
    transport = get_transport("acmecls")
    assert isinstance(transport, Transport)
    assert type(transport).__name__ == "PluginTransport"


def test_broken_plugin_is_logged_and_skipped(
    make_dist: MakeDist, caplog: pytest.LogCaptureFixture
) -> None:
    make_dist("broken-plugin", {"broken": "transport"}, "raise RuntimeError('boom at import')\n")
    make_dist("good-plugin", {"good": "transport"}, plugin("good"))
    with caplog.at_level(logging.WARNING, logger="imagetypes.plugins"):
        # Plugins are imported when their name is asked for: the broken one is not touched.
        assert get_transport("good").name == "good"
        assert not [r for r in caplog.records if "broken" in r.getMessage()]
        # Listing imports them all: the broken one is logged and skipped, the good one stays.
        assert "good" in [i.name for i in list_transports()]
    messages = [r.getMessage() for r in caplog.records if r.name == "imagetypes.plugins"]
    broken = [m for m in messages if "broken" in m]
    assert len(broken) == 1
    assert "boom at import" in broken[0]
    assert _infos("broken") == []
    with pytest.raises(UnknownTransportError):
        get_transport("broken")


@pytest.mark.parametrize(
    ("source", "attr", "fragment"),
    [
        ("transport = object()\n", "transport", "not an imagetypes Transport"),
        (plugin("othername"), "transport", "othername"),
        (plugin("wrongattr"), "no_such_attribute", "no_such_attribute"),
    ],
    ids=["not-a-transport", "name-mismatch", "missing-attribute"],
)
def test_invalid_plugin_objects_are_skipped(
    make_dist: MakeDist,
    caplog: pytest.LogCaptureFixture,
    source: str,
    attr: str,
    fragment: str,
) -> None:
    make_dist("bad-plugin", {"badplug": attr}, source)
    make_dist("good-plugin", {"good": "transport"}, plugin("good"))
    with caplog.at_level(logging.WARNING, logger="imagetypes.plugins"):
        assert [i.name for i in _infos("good")] == ["good"]
    assert _infos("badplug") == []
    logged = [r.getMessage() for r in caplog.records if "badplug" in r.getMessage()]
    assert len(logged) == 1
    assert fragment in logged[0]


def test_two_plugins_with_one_name_conflict(make_dist: MakeDist) -> None:
    first = make_dist("first-dist", {"twin": "transport"}, plugin("twin"))
    second = make_dist("second-dist", {"twin": "transport"}, plugin("twin"))
    with pytest.raises(DuplicateTransportError) as info:
        get_transport("twin")
    message = str(info.value)
    assert "twin" in message
    assert first in message
    assert second in message
    assert isinstance(info.value, TransportError)
    assert len(_infos("twin")) == 2  # listed twice, so the user can see both origins
    with pytest.raises(DuplicateTransportError):
        parse_reference("twin:x")


def test_unknown_transport_names_the_known_ones(make_dist: MakeDist) -> None:
    make_dist("acme-transport", {"acme": "transport"}, plugin("acme"))
    with pytest.raises(UnknownTransportError) as info:
        get_transport("nope")
    assert "'nope'" in str(info.value)
    assert "acme" in str(info.value)
    assert isinstance(info.value, LookupError)
    with pytest.raises(UnknownTransportError, match="nope"):
        parse_reference("nope:x")


@pytest.mark.parametrize("text", ["no-separator", ":details", ""])
def test_parse_reference_without_transport(make_dist: MakeDist, text: str) -> None:
    with pytest.raises(InvalidReferenceError, match="transport:details"):
        parse_reference(text)


def test_parse_reference_refuses_non_strings(make_dist: MakeDist) -> None:
    with pytest.raises(InvalidReferenceError, match="string"):
        parse_reference(42)  # type: ignore[arg-type]


def test_discovery_is_cached_until_reset(make_dist: MakeDist) -> None:
    make_dist("acme-transport", {"acme": "transport"}, plugin("acme"))
    first = get_transport("acme")
    make_dist("late-plugin", {"late": "transport"}, plugin("late"))
    assert get_transport("acme") is first
    with pytest.raises(UnknownTransportError):
        get_transport("late")
    reset_transports()
    assert get_transport("late").name == "late"


def test_register_transport(make_dist: MakeDist) -> None:
    make_dist("acme-transport", {"acme": "transport"}, plugin("acme"))
    runtime = RuntimeTransport("runtime-test")
    register_transport(runtime)
    assert get_transport("runtime-test") is runtime
    (info,) = _infos("runtime-test")
    assert info.origin == "registered at runtime"
    assert str(parse_reference("runtime-test:abc")) == "runtime-test:abc"

    with pytest.raises(DuplicateTransportError, match="runtime-test"):
        register_transport(RuntimeTransport("runtime-test"))
    with pytest.raises(DuplicateTransportError, match="acme"):
        register_transport(RuntimeTransport("acme"))
    assert get_transport("runtime-test") is runtime

    replacement = RuntimeTransport("acme")
    register_transport(replacement, replace=True)
    assert get_transport("acme") is replacement
    assert [i.transport for i in _infos("acme")] == [replacement]

    reset_transports()
    with pytest.raises(UnknownTransportError):
        get_transport("runtime-test")


def test_register_refuses_non_transports(make_dist: MakeDist) -> None:
    with pytest.raises(TransportError, match="not an imagetypes Transport"):
        register_transport(object())  # type: ignore[arg-type]
