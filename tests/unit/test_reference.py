"""imagetypes.reference: the image name grammar, checked against Docker's own test tables.

The tables below come from the reference package of CNCF distribution / containers/image
(``reference_test.go``, ``normalize_test.go``), adapted to the normalizing parse.
"""

from __future__ import annotations

import time

import attrs
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from imagetypes.digest import Digest
from imagetypes.errors import ImageError, InvalidReferenceError
from imagetypes.reference import NAME_TOTAL_LENGTH_MAX, Reference

F64 = "sha256:" + "f" * 64
F128 = "sha512:" + "f" * 128
REDIS_DIGEST = "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"
HEX64 = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"

# input, domain, path, tag, digest, str(), familiar()
VALID = [
    ("busybox", "docker.io", "library/busybox", None, None,
     "docker.io/library/busybox", "busybox"),
    ("test_com", "docker.io", "library/test_com", None, None,
     "docker.io/library/test_com", "test_com"),
    ("test.com:tag", "docker.io", "library/test.com", "tag", None,
     "docker.io/library/test.com:tag", "test.com:tag"),
    ("test.com:5000", "docker.io", "library/test.com", "5000", None,
     "docker.io/library/test.com:5000", "test.com:5000"),
    ("test.com/repo:tag", "test.com", "repo", "tag", None,
     "test.com/repo:tag", "test.com/repo:tag"),
    ("test:5000/repo", "test:5000", "repo", None, None, "test:5000/repo", "test:5000/repo"),
    ("test:5000/repo:tag", "test:5000", "repo", "tag", None,
     "test:5000/repo:tag", "test:5000/repo:tag"),
    (f"test:5000/repo@{F64}", "test:5000", "repo", None, F64,
     f"test:5000/repo@{F64}", f"test:5000/repo@{F64}"),
    (f"test:5000/repo:tag@{F64}", "test:5000", "repo", "tag", F64,
     f"test:5000/repo:tag@{F64}", f"test:5000/repo:tag@{F64}"),
    ("lowercase:Uppercase", "docker.io", "library/lowercase", "Uppercase", None,
     "docker.io/library/lowercase:Uppercase", "lowercase:Uppercase"),
    ("sub-dom1.foo.com/bar/baz/quux:some-long-tag", "sub-dom1.foo.com", "bar/baz/quux",
     "some-long-tag", None, "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
     "sub-dom1.foo.com/bar/baz/quux:some-long-tag"),
    ("b.gcr.io/test.example.com/my-app:test.example.com", "b.gcr.io",
     "test.example.com/my-app", "test.example.com", None,
     "b.gcr.io/test.example.com/my-app:test.example.com",
     "b.gcr.io/test.example.com/my-app:test.example.com"),
    ("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com", "myimage", "xn--n3h.com", None,
     "xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com/myimage:xn--n3h.com"),
    (f"xn--7o8h.com/myimage:xn--7o8h.com@{F128}", "xn--7o8h.com", "myimage", "xn--7o8h.com",
     F128, f"xn--7o8h.com/myimage:xn--7o8h.com@{F128}",
     f"xn--7o8h.com/myimage:xn--7o8h.com@{F128}"),
    ("foo_bar.com:8080", "docker.io", "library/foo_bar.com", "8080", None,
     "docker.io/library/foo_bar.com:8080", "foo_bar.com:8080"),
    ("foo/foo_bar.com:8080", "docker.io", "foo/foo_bar.com", "8080", None,
     "docker.io/foo/foo_bar.com:8080", "foo/foo_bar.com:8080"),
    ("localhost:5000/a/b:tag@" + F64, "localhost:5000", "a/b", "tag", F64,
     "localhost:5000/a/b:tag@" + F64, "localhost:5000/a/b:tag@" + F64),
    ("localhost/foo", "localhost", "foo", None, None, "localhost/foo", "localhost/foo"),
    ("index.docker.io/foo", "docker.io", "library/foo", None, None,
     "docker.io/library/foo", "foo"),
    (f"docker.io/{HEX64}", "docker.io", f"library/{HEX64}", None, None,
     f"docker.io/library/{HEX64}", f"library/{HEX64}"),
    (f"redis@{REDIS_DIGEST}", "docker.io", "library/redis", None, REDIS_DIGEST,
     f"docker.io/library/redis@{REDIS_DIGEST}", f"redis@{REDIS_DIGEST}"),
    (f"dmcgowan/myapp@{REDIS_DIGEST}", "docker.io", "dmcgowan/myapp", None, REDIS_DIGEST,
     f"docker.io/dmcgowan/myapp@{REDIS_DIGEST}", f"dmcgowan/myapp@{REDIS_DIGEST}"),
    # A 63-hex-digit name is not an image ID.
    (HEX64[:-1], "docker.io", f"library/{HEX64[:-1]}", None, None,
     f"docker.io/library/{HEX64[:-1]}", HEX64[:-1]),
    # IPv6 hosts (the current distribution grammar).
    ("[::1]:5000/repo", "[::1]:5000", "repo", None, None, "[::1]:5000/repo", "[::1]:5000/repo"),
    ("[2001:db8::1]/repo:tag", "[2001:db8::1]", "repo", "tag", None,
     "[2001:db8::1]/repo:tag", "[2001:db8::1]/repo:tag"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "domain", "path", "tag", "digest", "full", "familiar"), VALID, ids=lambda v: str(v)
)
def test_parse_valid(
    text: str,
    domain: str,
    path: str,
    tag: str | None,
    digest: str | None,
    full: str,
    familiar: str,
) -> None:
    ref = Reference.parse(text)
    assert ref.domain == domain
    assert ref.path == path
    assert ref.tag == tag
    assert ref.digest == (Digest.parse(digest) if digest else None)
    assert ref.name == f"{domain}/{path}"
    assert str(ref) == full
    assert ref.familiar() == familiar
    assert Reference.parse(full) == ref
    assert Reference.parse(familiar) == ref


# normalize_test.go: TestValidateReferenceName, TestValidateRemoteName
VALID_NAMES = [
    "docker/docker",
    "library/debian",
    "debian",
    "docker.io/docker/docker",
    "docker.io/library/debian",
    "docker.io/debian",
    "index.docker.io/docker/docker",
    "index.docker.io/library/debian",
    "index.docker.io/debian",
    "127.0.0.1:5000/docker/docker",
    "127.0.0.1:5000/library/debian",
    "127.0.0.1:5000/debian",
    "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
    "docker-rules/docker",
    "docker---rules/docker",
    "doc/docker",
    "d/docker",
    "jess/t",
    "dock__er/docker",
]


@pytest.mark.parametrize("text", VALID_NAMES)
def test_valid_names(text: str) -> None:
    ref = Reference.parse(text)
    assert ref.is_name_only
    assert Reference.parse(str(ref)) == ref


INVALID = [
    "",
    ":justtag",
    "@" + F64,
    "repo@sha256:" + "f" * 34,
    "validname@invaliddigest:" + "f" * 64,
    "Uppercase:tag",
    "Uppercase/lowercase:tag",
    "test:5000/Uppercase/lowercase:tag",
    "a/" * 128 + "a:tag",
    # Valid for Go's non-normalizing Parse (domain "a"), too long once on docker.io.
    "a/" * 127 + "a:tag-puts-this-over-max",
    "aa/asdf$$^/aa",
    "https://github.com/docker/docker",
    "docker/Docker",
    "-docker",
    "-docker/docker",
    "-docker.io/docker/docker",
    "docker///docker",
    "docker.io/docker/Docker",
    "docker.io/docker///docker",
    HEX64,
    "docker-/docker",
    "-docker-/docker",
    "____/____",
    "_docker/_docker",
    "dock..er/docker",
    "dock_.er/docker",
    "dock-.er/docker",
    "docker/",
    "this_is_not_a_valid_namespace_because_its_length_is_greater_than_255_" * 4 + "/docker",
    "busybox:",
    "busybox@",
    "busybox:-foo",
    "busybox:.foo",
    "busybox:" + "a" * 129,
    "busybox:tag:tag",
    "busybox@sha256:" + "F" * 64,
    "busybox@md5:" + "f" * 32,
    "a_b.com/foo",
    "host:port/foo",
    "localhost:/foo",
    "[fe80::1%eth0]:5000/repo",
    "busybox latest",
    " busybox",
    "busybox\n",
    "bü/x",
    "x" * 100_000,
]


@pytest.mark.parametrize("text", INVALID, ids=lambda t: repr(t[:60]))
def test_parse_invalid(text: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        Reference.parse(text)
    assert isinstance(info.value, ImageError)
    assert isinstance(info.value, ValueError)
    assert str(info.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        (":tag", "empty"),
        (HEX64, "image ID"),
        ("Busybox", "lowercase"),
        ("docker.io/library/BusyBox:1", "lowercase"),
        ("busybox:-x", "invalid tag"),
        ("busybox@sha256:abc", "sha256"),
        ("busybox@crc32:" + "f" * 32, "unsupported digest algorithm"),
        ("a/" * 128 + "a", "maximum is 255"),
        ("dock..er/x", "registry host"),
        ("foo//bar", "repository name"),
    ],
)
def test_error_messages_name_the_problem(text: str, fragment: str) -> None:
    with pytest.raises(InvalidReferenceError, match=fragment):
        Reference.parse(text)


def test_error_message_for_huge_input_is_short() -> None:
    with pytest.raises(InvalidReferenceError) as info:
        Reference.parse("a" * 100_000)
    assert len(str(info.value)) < 300


def test_name_length_limit_is_exact() -> None:
    path = "a/" * 122 + "a"  # localhost/ + 245 = 255
    ok = Reference.parse(f"localhost/{path}")
    assert len(ok.name) == NAME_TOTAL_LENGTH_MAX
    with pytest.raises(InvalidReferenceError, match="255"):
        Reference.parse(f"localhost/{path}a")
    # The tag and digest do not count.
    assert Reference.parse(f"localhost/{path}:{'t' * 128}@{F128}").tag == "t" * 128


# normalize_test.go: TestParseRepositoryInfo
# (path, familiar name, full name, an ambiguous spelling or "", domain)
REPOSITORY_INFO = [
    ("fooo/bar", "fooo/bar", "docker.io/fooo/bar", "index.docker.io/fooo/bar", "docker.io"),
    ("library/ubuntu", "ubuntu", "docker.io/library/ubuntu", "library/ubuntu", "docker.io"),
    ("nonlibrary/ubuntu", "nonlibrary/ubuntu", "docker.io/nonlibrary/ubuntu", "", "docker.io"),
    ("other/library", "other/library", "docker.io/other/library", "", "docker.io"),
    ("private/moonbase", "127.0.0.1:8000/private/moonbase",
     "127.0.0.1:8000/private/moonbase", "", "127.0.0.1:8000"),
    ("privatebase", "127.0.0.1:8000/privatebase", "127.0.0.1:8000/privatebase", "",
     "127.0.0.1:8000"),
    ("private/moonbase", "example.com/private/moonbase", "example.com/private/moonbase", "",
     "example.com"),
    ("privatebase", "example.com/privatebase", "example.com/privatebase", "", "example.com"),
    ("private/moonbase", "example.com:8000/private/moonbase",
     "example.com:8000/private/moonbase", "", "example.com:8000"),
    ("privatebasee", "example.com:8000/privatebasee", "example.com:8000/privatebasee", "",
     "example.com:8000"),
    ("library/ubuntu-12.04-base", "ubuntu-12.04-base", "docker.io/library/ubuntu-12.04-base",
     "index.docker.io/library/ubuntu-12.04-base", "docker.io"),
    ("library/foo", "foo", "docker.io/library/foo", "docker.io/foo", "docker.io"),
    ("library/foo/bar", "library/foo/bar", "docker.io/library/foo/bar", "", "docker.io"),
    ("store/foo/bar", "store/foo/bar", "docker.io/store/foo/bar", "", "docker.io"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "familiar", "full", "ambiguous", "domain"), REPOSITORY_INFO)
def test_repository_info(path: str, familiar: str, full: str, ambiguous: str, domain: str) -> None:
    spellings = [familiar, full] + ([ambiguous] if ambiguous else [])
    for text in spellings:
        ref = Reference.parse(text)
        assert ref.familiar_name == familiar, text
        assert ref.familiar() == familiar, text
        assert str(ref) == full, text
        assert ref.name == full, text
        assert ref.domain == domain, text
        assert ref.path == path, text


def test_tag_and_digest_together() -> None:
    short = "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
    ref = Reference.parse(short)
    assert str(ref) == "docker.io/library/" + short
    assert ref.familiar() == short
    assert ref.tag == "latest"
    assert ref.digest is not None
    assert not ref.is_name_only


# normalize_test.go: TestParseDockerRef (minus its tag-dropping case, which is not ours)
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:latest", "docker.io/library/busybox:latest"),
        (
            f"busybox@{REDIS_DIGEST}",
            f"docker.io/library/busybox@{REDIS_DIGEST}",
        ),
        ("library/busybox", "docker.io/library/busybox:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest"),
        ("docker.io/library/busybox", "docker.io/library/busybox:latest"),
        ("docker.io/busybox:latest", "docker.io/library/busybox:latest"),
        ("library/busybox:latest", "docker.io/library/busybox:latest"),
        ("gcr.io/library/busybox", "gcr.io/library/busybox:latest"),
        ("gcr.io/library/busybox:1", "gcr.io/library/busybox:1"),
        (f"gcr.io/a:1@{REDIS_DIGEST}", f"gcr.io/a:1@{REDIS_DIGEST}"),
    ],
)
def test_with_default_tag(text: str, expected: str) -> None:
    assert str(Reference.parse(text).with_default_tag()) == expected


def test_with_tag_and_digest() -> None:
    ref = Reference.parse("quay.io/org/app")
    tagged = ref.with_tag("v1.2")
    assert str(tagged) == "quay.io/org/app:v1.2"
    assert ref.tag is None  # values are immutable
    both = tagged.with_digest(REDIS_DIGEST)
    assert str(both) == f"quay.io/org/app:v1.2@{REDIS_DIGEST}"
    assert both.with_tag("v2").digest == Digest.parse(REDIS_DIGEST)
    assert ref.with_digest(Digest.parse(F64)).digest == Digest.parse(F64)
    assert both.name_only() == ref
    assert ref.is_name_only
    assert not tagged.is_name_only
    assert not ref.with_digest(F64).is_name_only
    with pytest.raises(InvalidReferenceError):
        ref.with_tag("-foo")
    with pytest.raises(InvalidReferenceError):
        ref.with_tag("")
    with pytest.raises(InvalidReferenceError):
        ref.with_digest("foo")


def test_familiar_keeps_host_when_the_short_form_would_change_registry() -> None:
    ref = Reference("docker.io", "foo.bar/baz", "1")
    assert ref.familiar() == "docker.io/foo.bar/baz:1"
    assert Reference.parse(ref.familiar()) == ref
    ref = Reference("docker.io", "localhost/baz")
    assert Reference.parse(ref.familiar()) == ref


def test_values_are_frozen_hashable_and_compare_by_value() -> None:
    a = Reference.parse("busybox:1")
    b = Reference("docker.io", "library/busybox", "1")
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b, a.with_tag("2")}) == 2
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        a.tag = "2"  # type: ignore[misc]


def test_constructor_converts_digest_text() -> None:
    ref = Reference("localhost:5000", "x", digest=F64)
    assert ref.digest == Digest.parse(F64)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"domain": "index.docker.io", "path": "library/x"}, "docker.io"),
        ({"domain": "docker.io", "path": "busybox"}, "namespace"),
        ({"domain": "myhost", "path": "x"}, "registry host"),
        ({"domain": "", "path": "x"}, "registry host"),
        ({"domain": "quay.io", "path": ""}, "at least one component"),
        ({"domain": "quay.io", "path": "X"}, "lowercase"),
        ({"domain": "quay.io", "path": "x", "tag": "-x"}, "tag"),
        ({"domain": "quay.io", "path": "x", "digest": "sha256:zz"}, "digest"),
    ],
)
def test_constructor_refuses_what_parse_would_read_differently(
    kwargs: dict[str, str], fragment: str
) -> None:
    with pytest.raises(InvalidReferenceError, match=fragment):
        Reference(**kwargs)


def test_parse_refuses_non_strings() -> None:
    with pytest.raises(InvalidReferenceError, match="string"):
        Reference.parse(b"busybox")  # type: ignore[arg-type]


def test_parse_is_fast_on_hostile_input() -> None:
    hostile = [
        "a" * 250 + "!",
        "a-" * 120 + "!",
        "a." * 120 + "/b",
        ("a/" * 120) + ":" + "x" * 128 + "@sha256:" + "f" * 63,
        "a" * 200 + ":" * 300,
    ]
    start = time.perf_counter()
    for _ in range(200):
        for text in hostile:
            with pytest.raises(InvalidReferenceError):
                Reference.parse(text)
    # 1000 parses take milliseconds; the bound only catches catastrophic backtracking.
    assert time.perf_counter() - start < 5


# -- properties ------------------------------------------------------------------------------
_label = st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?", fullmatch=True)
_port = st.integers(min_value=1, max_value=65535).map(lambda p: f":{p}")
_domains = st.one_of(
    st.just("docker.io"),
    st.just("localhost"),
    st.builds(lambda p: f"localhost{p}", _port),
    st.builds(
        lambda labels, port: ".".join(labels) + port,
        st.lists(_label, min_size=2, max_size=4),
        st.one_of(st.just(""), _port),
    ),
    st.builds(lambda label, port: label + port, _label, _port),
    st.builds(lambda port: f"[::1]{port}", st.one_of(st.just(""), _port)),
)
_components = st.from_regex(
    r"[a-z0-9]{1,6}(?:(?:[._]|__|-{1,3})[a-z0-9]{1,6}){0,2}", fullmatch=True
)
_tags = st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,30}", fullmatch=True))
_digests = st.one_of(
    st.none(),
    st.builds(Digest.from_bytes, st.binary(max_size=16)),
    st.builds(lambda b: Digest.from_bytes(b, "sha512"), st.binary(max_size=16)),
)


@st.composite
def references(draw: st.DrawFn) -> Reference:
    domain = draw(_domains)
    components = draw(st.lists(_components, min_size=1, max_size=5))
    if domain == "docker.io" and len(components) == 1:
        components.insert(0, "library")
    name_length = len(domain) + 1 + len("/".join(components))
    assume(name_length <= NAME_TOTAL_LENGTH_MAX)
    return Reference(domain, "/".join(components), draw(_tags), draw(_digests))


@settings(max_examples=300)
@given(references())
def test_str_round_trips(ref: Reference) -> None:
    assert Reference.parse(str(ref)) == ref
    assert Reference.parse(ref.familiar()) == ref
    assert str(ref).startswith(ref.name)
    assert ref.with_default_tag().tag == (ref.tag or (None if ref.digest else "latest"))


_grammar_chars = st.text(alphabet="aAz09._-:/@[]%$ \n", max_size=60)


@settings(max_examples=500)
@given(st.one_of(st.text(max_size=80), _grammar_chars, st.builds(str, references())))
def test_parse_never_raises_anything_else(text: str) -> None:
    try:
        ref = Reference.parse(text)
    except InvalidReferenceError:
        return
    # Whatever parses is normalized: parsing its full form gives it back.
    assert Reference.parse(str(ref)) == ref
