"""imagetypes.platform: parsing, aliases, matching with default variants, best_match."""

from __future__ import annotations

import json
import sys

import pytest

from imagetypes.errors import ImageError, InvalidPlatformError
from imagetypes.platform import Platform, best_match


@pytest.mark.parametrize(
    ("text", "os", "architecture", "variant"),
    [
        ("linux/amd64", "linux", "amd64", None),
        ("linux/arm64/v8", "linux", "arm64", "v8"),
        ("linux/arm/v6", "linux", "arm", "v6"),
        ("windows/amd64", "windows", "amd64", None),
        ("Linux/AMD64", "linux", "amd64", None),
        ("  linux/s390x ", "linux", "s390x", None),
        # Aliases, as uname and Debian spell them.
        ("linux/x86_64", "linux", "amd64", None),
        ("linux/x86-64", "linux", "amd64", None),
        ("linux/aarch64", "linux", "arm64", None),
        ("linux/aarch64/v8", "linux", "arm64", "v8"),
        ("linux/armhf", "linux", "arm", "v7"),
        ("linux/armel", "linux", "arm", "v6"),
        ("linux/armhf/v6", "linux", "arm", "v6"),
        ("linux/i386", "linux", "386", None),
        ("linux/i686", "linux", "386", None),
        ("macos/arm64", "darwin", "arm64", None),
    ],
)
def test_parse(text: str, os: str, architecture: str, variant: str | None) -> None:
    p = Platform.parse(text)
    assert (p.os, p.architecture, p.variant) == (os, architecture, variant)


@pytest.mark.parametrize(
    "text",
    ["", "linux", "linux/", "/amd64", "linux//v7", "linux/amd64/v8/x", "linux/am d64", "a/b/c/"],
)
def test_parse_invalid(text: str) -> None:
    with pytest.raises(InvalidPlatformError) as info:
        Platform.parse(text)
    assert isinstance(info.value, ImageError)
    assert isinstance(info.value, ValueError)


def test_constructor_validates() -> None:
    with pytest.raises(InvalidPlatformError):
        Platform("", "amd64")
    with pytest.raises(InvalidPlatformError):
        Platform("linux", "")
    with pytest.raises(InvalidPlatformError):
        Platform("linux", "arm", "v 7")
    assert Platform("linux", "amd64", "").variant is None


def test_str() -> None:
    assert str(Platform.parse("linux/arm64/v8")) == "linux/arm64/v8"
    assert str(Platform("linux", "amd64")) == "linux/amd64"


def test_equality_is_exact_normalized_fills_default_variant() -> None:
    plain = Platform.parse("linux/arm64")
    v8 = Platform.parse("linux/arm64/v8")
    assert plain != v8
    assert plain.normalized() == v8
    assert Platform.parse("linux/arm").normalized().variant == "v7"
    assert Platform.parse("linux/amd64").normalized() == Platform.parse("linux/amd64")
    assert hash(v8) == hash(Platform("linux", "arm64", "v8"))


@pytest.mark.parametrize(
    ("image", "wanted", "expected"),
    [
        ("linux/arm64", "linux/arm64/v8", True),
        ("linux/arm64/v8", "linux/arm64", True),
        ("linux/arm64/v8", "linux/arm64/v8", True),
        ("linux/arm", "linux/arm/v7", True),
        ("linux/arm/v7", "linux/arm", True),
        # A request without a variant accepts any variant.
        ("linux/arm/v6", "linux/arm", True),
        ("linux/arm/v6", "linux/arm/v7", False),
        ("linux/arm", "linux/arm/v6", False),
        ("linux/arm64/v9", "linux/arm64/v8", False),
        ("linux/amd64", "linux/arm64", False),
        ("windows/amd64", "linux/amd64", False),
        ("linux/amd64/v2", "linux/amd64", True),
    ],
)
def test_matches(image: str, wanted: str, expected: bool) -> None:
    assert Platform.parse(image).matches(Platform.parse(wanted)) is expected


def test_matches_compares_os_version_only_when_both_have_one() -> None:
    ltsc2019 = Platform("windows", "amd64", os_version="10.0.17763.1234")
    ltsc2022 = Platform("windows", "amd64", os_version="10.0.20348.100")
    plain = Platform("windows", "amd64")
    assert not ltsc2019.matches(ltsc2022)
    assert ltsc2019.matches(plain)
    assert plain.matches(ltsc2022)


def test_best_match_prefers_the_exact_variant() -> None:
    candidates = [
        (Platform.parse("linux/amd64"), "amd64"),
        (Platform.parse("linux/arm/v6"), "armv6"),
        (Platform.parse("linux/arm/v7"), "armv7"),
    ]
    # linux/arm means v7: v6 also serves it, but v7 is preferred although listed later.
    assert best_match(candidates, Platform.parse("linux/arm")) == "armv7"
    assert best_match(candidates, Platform.parse("linux/arm/v6")) == "armv6"
    assert best_match(candidates[:2], Platform.parse("linux/arm")) == "armv6"
    assert best_match(candidates, Platform.parse("linux/amd64")) == "amd64"
    assert best_match(candidates, Platform.parse("linux/s390x")) is None


def test_best_match_default_variant_and_unknown_platforms() -> None:
    candidates = [
        (None, "attestation"),  # an instance without a platform never matches
        (Platform.parse("linux/arm64"), "arm64"),
    ]
    assert best_match(candidates, Platform.parse("linux/arm64/v8")) == "arm64"
    assert best_match(candidates, Platform.parse("linux/arm64")) == "arm64"
    assert best_match([], Platform.parse("linux/arm64")) is None


def test_dict_round_trip_in_go_field_order() -> None:
    data = {
        "architecture": "amd64",
        "os": "windows",
        "os.version": "10.0.17763.1234",
        "os.features": ["win32k"],
        "variant": "v3",
    }
    p = Platform.from_dict(data)
    assert p.os_version == "10.0.17763.1234"
    assert p.os_features == ("win32k",)
    assert p.to_dict() == data
    assert json.dumps(p.to_dict()) == json.dumps(data)  # same key order as containers/image
    assert Platform.from_dict({"os": "linux", "architecture": "amd64"}).to_dict() == {
        "architecture": "amd64",
        "os": "linux",
    }


@pytest.mark.parametrize(
    "data", [{}, {"os": "linux"}, {"architecture": "amd64"}, {"os": "", "architecture": "amd64"}]
)
def test_from_dict_invalid(data: dict[str, str]) -> None:
    with pytest.raises(InvalidPlatformError):
        Platform.from_dict(data)


def test_current() -> None:
    p = Platform.current()
    assert p == Platform(p.os, p.architecture, p.variant)
    assert p.architecture not in {"x86_64", "aarch64", "i686"}
    if sys.platform.startswith("linux"):
        assert p.os == "linux"
    assert Platform.parse(str(p)) == p
