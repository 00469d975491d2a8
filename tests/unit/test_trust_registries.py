"""registries.conf (+ drop-ins), registries.d and the YAML subset parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagetypes import Digest, Reference
from imagetypes.trust import (
    BlockedRegistryError,
    Endpoint,
    RegistriesConf,
    RegistriesConfError,
    RegistriesD,
    lookaside_signature_url,
)
from imagetypes.trust._yaml import YAMLSubsetError, parse_yaml_mapping

DIGEST = "sha256:" + "a" * 64

CONF = """
unqualified-search-registries = ["registry.fedoraproject.org", "docker.io"]
short-name-mode = "enforcing"

[[registry]]
prefix = "example.com/foo"
location = "internal.example.com/bar"
insecure = false

[[registry.mirror]]
location = "mirror-1.example.com/bar"
[[registry.mirror]]
location = "mirror-2.example.com"
insecure = true
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "mirror-3.example.com"
pull-from-mirror = "tag-only"

[[registry]]
location = "example.com"

[[registry]]
prefix = "*.blocked.io"
blocked = true

[[registry]]
prefix = "*.wild.io"
location = "wild-mirror.io"

[[registry]]
location = "digest-mirrored.io"
mirror-by-digest-only = true
mirror = [{ location = "dm.example.com" }]

[aliases]
"fedora" = "registry.fedoraproject.org/fedora"
"app" = "quay.io/org/app"
"""


@pytest.fixture
def conf() -> RegistriesConf:
    return RegistriesConf.parse(CONF)


def sources(conf: RegistriesConf, ref: str) -> list[tuple[str, bool, str]]:
    return [
        (s.endpoint.location, s.endpoint.insecure, str(s.reference)) for s in conf.pull_sources(ref)
    ]


def test_mirrors_in_order_primary_last(conf: RegistriesConf) -> None:
    assert sources(conf, "example.com/foo/app:1") == [
        ("mirror-1.example.com/bar", False, "mirror-1.example.com/bar/app:1"),
        ("mirror-3.example.com", False, "mirror-3.example.com/app:1"),
        ("internal.example.com/bar", False, "internal.example.com/bar/app:1"),
    ]
    assert sources(conf, f"example.com/foo/app@{DIGEST}") == [
        ("mirror-1.example.com/bar", False, f"mirror-1.example.com/bar/app@{DIGEST}"),
        ("mirror-2.example.com", True, f"mirror-2.example.com/app@{DIGEST}"),
        ("internal.example.com/bar", False, f"internal.example.com/bar/app@{DIGEST}"),
    ]


def test_mirror_by_digest_only(conf: RegistriesConf) -> None:
    assert [s[0] for s in sources(conf, "digest-mirrored.io/a:1")] == ["digest-mirrored.io"]
    assert [s[0] for s in sources(conf, f"digest-mirrored.io/a@{DIGEST}")] == [
        "dm.example.com",
        "digest-mirrored.io",
    ]


def test_longest_prefix_wins(conf: RegistriesConf) -> None:
    reg = conf.find_registry("example.com/foo/app")
    assert reg is not None
    assert reg.prefix == "example.com/foo"
    reg = conf.find_registry("example.com/other")
    assert reg is not None
    assert reg.prefix == "example.com"
    # A prefix matches whole path components only.
    reg = conf.find_registry("example.com/foobar")
    assert reg is not None
    assert reg.prefix == "example.com"
    assert conf.find_registry("quay.io/x") is None
    assert sources(conf, "quay.io/x:1") == [("quay.io", False, "quay.io/x:1")]


def test_wildcards(conf: RegistriesConf) -> None:
    reg = conf.find_registry("a.b.wild.io/ns/app")
    assert reg is not None
    assert reg.prefix == "*.wild.io"
    assert sources(conf, "a.wild.io/ns/app:1") == [
        ("wild-mirror.io", False, "wild-mirror.io/ns/app:1")
    ]
    assert conf.find_registry("wild.io/app") is None
    assert conf.find_registry("notwild.io/app") is None
    # The wildcard applies to the host only, not to a path component.
    reg = conf.find_registry("example.com/x.wild.io/app")
    assert reg is not None
    assert reg.prefix == "example.com"
    assert conf.find_registry("quay.io/x.wild.io/app") is None


def test_blocked(conf: RegistriesConf) -> None:
    with pytest.raises(BlockedRegistryError, match="blocked"):
        conf.pull_sources("x.blocked.io/app:1")


def test_search_aliases_and_mode(conf: RegistriesConf) -> None:
    assert conf.unqualified_search_registries == ("registry.fedoraproject.org", "docker.io")
    assert conf.short_name_mode == "enforcing"
    assert conf.resolve_alias("fedora") == Reference.parse("registry.fedoraproject.org/fedora")
    assert conf.resolve_alias("nothing") is None


def test_drop_ins_override_in_order(tmp_path: Path) -> None:
    main = tmp_path / "registries.conf"
    main.write_text(CONF)
    d = tmp_path / "registries.conf.d"
    d.mkdir()
    (d / "10-first.conf").write_text(
        'unqualified-search-registries = ["quay.io"]\n'
        '[[registry]]\nlocation = "example.com"\nblocked = true\n'
        '[aliases]\n"app" = "first.io/app"\n"new" = "first.io/new"\n'
    )
    (d / "20-second.conf").write_text('[aliases]\n"app" = "second.io/app"\n"fedora" = ""\n')
    (d / "ignored.txt").write_text("this is not TOML = [")
    conf = RegistriesConf.load(main, drop_in_dirs=[d])
    assert conf.sources == (main, d / "10-first.conf", d / "20-second.conf")
    assert conf.unqualified_search_registries == ("quay.io",)
    reg = conf.find_registry("example.com/other")
    assert reg is not None
    assert reg.blocked
    # Entries with other prefixes are kept.
    assert conf.find_registry("example.com/foo/x") is not None
    assert conf.resolve_alias("app") == Reference.parse("second.io/app")
    assert conf.resolve_alias("new") == Reference.parse("first.io/new")
    assert conf.resolve_alias("fedora") is None
    assert conf.short_name_mode == "enforcing"


def test_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf_file = tmp_path / "custom.conf"
    conf_file.write_text('unqualified-search-registries = ["env.example.com"]\n')
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(conf_file))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert RegistriesConf.load(drop_in_dirs=[]).unqualified_search_registries == (
        "env.example.com",
    )
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(tmp_path / "missing.conf"))
    with pytest.raises(RegistriesConfError, match="cannot read"):
        RegistriesConf.load(drop_in_dirs=[])


def test_user_file_uses_only_user_drop_ins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONTAINERS_REGISTRIES_CONF", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    config = tmp_path / ".config" / "containers"
    (config / "registries.conf.d").mkdir(parents=True)
    (config / "registries.conf").write_text('unqualified-search-registries = ["user.io"]\n')
    (config / "registries.conf.d" / "a.conf").write_text('short-name-mode = "disabled"\n')
    conf = RegistriesConf.load()
    assert conf.unqualified_search_registries == ("user.io",)
    assert conf.short_name_mode == "disabled"


def test_v1_format_is_converted() -> None:
    conf = RegistriesConf.parse(
        "[registries.search]\nregistries = ['docker.io']\n"
        "[registries.insecure]\nregistries = ['insecure.io']\n"
        "[registries.block]\nregistries = ['blocked.io']\n"
    )
    assert conf.unqualified_search_registries == ("docker.io",)
    assert conf.is_insecure("insecure.io")
    with pytest.raises(BlockedRegistryError):
        conf.pull_sources("blocked.io/a:1")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[registry]\n", "invalid TOML"),
        ("[[registry]]\ninsecure = true\n", "both location and prefix are unset"),
        ('[[registry]]\nprefix = "example.com"\n', "location is unset"),
        ('[[registry]]\nlocation = "https://example.com"\n', "URI schemes"),
        ('[[registry]]\nprefix = "*.example.com/foo"\nlocation = "x.io"\n', "wildcard prefix"),
        ('[[registry]]\nlocation = "a.io"\ninsecure = "yes"\n', "must be a bool"),
        ('[[registry]]\nlocation = "a.io"\npull-from-mirror = "all"\n', "non-mirror"),
        (
            '[[registry]]\nlocation = "a.io"\n[[registry.mirror]]\ninsecure = true\n',
            "mirror location is unset",
        ),
        (
            '[[registry]]\nlocation = "a.io"\n[[registry.mirror]]\nlocation = "m.io"\n'
            'pull-from-mirror = "sometimes"\n',
            "unsupported pull-from-mirror",
        ),
        (
            '[[registry]]\nlocation = "a.io"\nmirror-by-digest-only = true\n[[registry.mirror]]\n'
            'location = "m.io"\npull-from-mirror = "all"\n',
            "at the same time",
        ),
        (
            '[[registry]]\nlocation = "a.io"\n[[registry]]\nlocation = "a.io"\ninsecure = true\n',
            "conflicting 'insecure'",
        ),
        ('unqualified-search-registries = ["not a host"]\n', "invalid unqualified"),
        ('short-name-mode = "strict"\n', "invalid short-name-mode"),
        ('[aliases]\n"quay.io/x" = "quay.io/x"\n', "must not contain a registry"),
        ('[aliases]\n"x" = "x/y"\n', "must contain registry and repository"),
        ('[aliases]\n"x" = "quay.io/x:1"\n', "must not contain a tag"),
        (
            "[registries.search]\nregistries = ['a.io']\n[[registry]]\nlocation = 'b.io'\n",
            "mixing v1 and v2",
        ),
    ],
)
def test_invalid_files(text: str, message: str) -> None:
    with pytest.raises(RegistriesConfError, match=message):
        RegistriesConf.parse(text)


def test_v1_drop_in_is_refused(tmp_path: Path) -> None:
    main = tmp_path / "r.conf"
    main.write_text("")
    d = tmp_path / "d"
    d.mkdir()
    (d / "x.conf").write_text("[registries.search]\nregistries = ['a.io']\n")
    with pytest.raises(RegistriesConfError, match="v2 format"):
        RegistriesConf.load(main, drop_in_dirs=[d])


def test_endpoint_defaults() -> None:
    assert Endpoint("a.io") == Endpoint("a.io", False, None)


# -- registries.d ----------------------------------------------------------------------------

REGISTRIES_D = """
# Default: local storage
default-docker:
  lookaside: file:///var/lib/containers/sigstore
  lookaside-staging: file:///srv/staging

docker:
  registry.example.com:
    lookaside: https://sigs.example.com/sigs
  registry.example.com/team:
    use-sigstore-attachments: true
  "registry.example.com/team/special":
    sigstore: https://legacy.example.com   # the deprecated spelling
  "*.corp.io":
    lookaside: https://corp-sigs.io
"""


def test_lookaside_most_specific_namespace_wins() -> None:
    d = RegistriesD.parse(REGISTRIES_D)
    ref = Reference.parse("registry.example.com/team/app:1")
    assert d.lookaside_for(ref) == "https://sigs.example.com/sigs/team/app"
    assert d.use_sigstore_attachments(ref)
    special = Reference.parse("registry.example.com/team/special:1")
    assert d.lookaside_for(special) == "https://legacy.example.com/team/special"
    assert d.lookaside_for(Reference.parse("a.corp.io/x/y:1")) == "https://corp-sigs.io/x/y"
    other = Reference.parse("quay.io/ns/app:1")
    assert d.lookaside_for(other) == "file:///var/lib/containers/sigstore/ns/app"
    assert d.lookaside_for(other, write=True) == "file:///srv/staging/ns/app"
    assert not d.use_sigstore_attachments(other)


def test_lookaside_signature_url() -> None:
    digest = Digest.parse(DIGEST)
    assert lookaside_signature_url("https://s.io/ns/app", digest, 0) == (
        f"https://s.io/ns/app@sha256={'a' * 64}/signature-1"
    )


def test_registries_d_load_merges_and_refuses_duplicates(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("docker:\n  a.io:\n    lookaside: https://a\n")
    (tmp_path / "b.yaml").write_text("default-docker:\n  lookaside: https://default\n")
    (tmp_path / "c.yml").write_text("this: [is, ignored]\n")
    d = RegistriesD.load(tmp_path)
    assert d.lookaside_for(Reference.parse("a.io/x:1")) == "https://a/x"
    assert d.lookaside_for(Reference.parse("b.io/x:1")) == "https://default/x"
    (tmp_path / "d.yaml").write_text("docker:\n  a.io:\n    lookaside: https://again\n")
    with pytest.raises(RegistriesConfError, match="defined both in"):
        RegistriesD.load(tmp_path)
    assert RegistriesD.load(tmp_path / "missing").lookaside_for(Reference.parse("a.io/x:1")) is None


def test_registries_d_refuses_a_file_too_large_or_not_utf8(tmp_path: Path) -> None:
    # Read like registries.conf (bounded, UTF-8): a large file used to be cut at 1 MiB and
    # parsed as far as it went.
    big = tmp_path / "big.yaml"
    big.write_text("docker:\n  a.io:\n    lookaside: https://a\n" + "#" * (1024 * 1024) + "\n")
    with pytest.raises(RegistriesConfError, match="too large"):
        RegistriesD.load(tmp_path)
    big.unlink()
    (tmp_path / "latin.yaml").write_bytes(b"docker:\n  a.io:\n    lookaside: https://\xe9\n")
    with pytest.raises(RegistriesConfError, match="UTF-8"):
        RegistriesD.load(tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("docker:\n  a.io:\n    lookaside: [1, 2]\n", "unsupported YAML"),
        ("docker:\n  - a.io\n", "unsupported YAML"),
        ("docker:\n  a.io:\n    use-sigstore-attachments: maybe\n", "must be a boolean"),
        ("docker:\n  a.io:\n    lookaside: x\n    lookaside: y\n", "duplicate key"),
        ("docker:\n  a.io:\n\tlookaside: x\n", "tabs"),
        ("docker: 3\n", "must be a mapping"),
        ("default-docker:\n  lookaside: |\n    x\n", "unsupported YAML"),
    ],
)
def test_invalid_registries_d(text: str, message: str) -> None:
    with pytest.raises(RegistriesConfError, match=message):
        RegistriesD.parse(text)


YAML_CASES = [
    "",
    "# only a comment\n",
    "---\na: b\n",
    "a: 'single ''quoted'''\nb: \"double \\\"quoted\\\" \\u00e9\"\n",
    "a:\n  b:\n    c: d\n  e: f\ng: h\n",
    "a: {}\nb:\nc: ~\nd: null\n",
    "a: yes\nb: No\nc: on\nd: FALSE\ne: true\n",
    "url: https://x.io:443/path#frag\nk: v # comment\n",
    "'quoted key': 1.5\n\"k2\": value with spaces\n",
    "a:\n    deep: 1\nb:\n  shallow: 2\n",
]


@pytest.mark.parametrize("text", YAML_CASES)
def test_yaml_subset_agrees_with_pyyaml(text: str) -> None:
    yaml = pytest.importorskip("yaml")
    expected = yaml.safe_load(text) or {}
    # PyYAML resolves numbers; the subset keeps them as strings (registries.d has none).
    assert parse_yaml_mapping(text) == _stringify_numbers(expected)


def _stringify_numbers(value: object) -> object:
    if isinstance(value, dict):
        return {k: _stringify_numbers(v) for k, v in value.items()}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


@pytest.mark.parametrize(
    "text",
    [
        "a: &anchor x\n",
        "a: *alias\n",
        "a: !tag x\n",
        "a: [1]\n",
        "a: {b: c}\n",
        "- x\n",
        "a: >\n  folded\n",
        "a: 'unterminated\n",
        "a:\n  b: c\n d: e\n",
        "just text\n",
        "a: b: c\n",
        "---\na: 1\n---\nb: 2\n",
    ],
)
def test_yaml_subset_refuses_what_it_does_not_support(text: str) -> None:
    with pytest.raises(YAMLSubsetError, match="line"):
        parse_yaml_mapping(text)
