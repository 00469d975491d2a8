"""Rich display (IPython ``_repr_pretty_``, Jupyter ``_repr_html_``) of images, manifests,
configs and registry listings."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from imagebuilder import make_image, make_index, make_multiarch, write_oci_layout
from IPython.lib.pretty import pretty

from imagetypes import (
    CopyOptions,
    Image,
    ImageConfig,
    TransportOptions,
    copy_image,
    open_image,
    open_registry,
    parse_manifest,
)
from imagetypes import mediatypes as mt
from imagetypes._display import Listing, human_size, listing, short_digest
from imagetypes.testing import ServedRegistry

HOSTILE = '<script>alert("x")</script> & more'


class _Tags(HTMLParser):
    """Collects the element names of an HTML fragment, and checks it is well nested."""

    VOID = frozenset({"br", "hr", "img", "meta", "link", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.stack: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend(attrs)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1:] == [tag], f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()


def _parse_html(fragment: str) -> _Tags:
    parser = _Tags()
    parser.feed(fragment)
    parser.close()
    assert parser.stack == [], f"unclosed elements: {parser.stack}"
    return parser


def _check_self_contained(fragment: str) -> _Tags:
    parsed = _parse_html(fragment)
    assert not {"script", "link", "img", "iframe", "style"} & set(parsed.tags)
    for name, value in parsed.attrs:
        assert name in {"class", "style", "title"}, name
        assert "url(" not in (value or "")
    return parsed


@pytest.fixture
def hostile_layout(tmp_path: Path) -> Path:
    image = make_image(
        3,
        (100, 5000),
        architecture="arm64",
        variant="v8",
        labels={"org.example.note": HOSTILE, "a.first": "1"},
    )
    return write_oci_layout(tmp_path / "layout", {"v1": image, "multi": make_multiarch(4)})


def test_human_size_and_short_digest() -> None:
    assert [human_size(n) for n in (0, 1023, 1024, 1536, 5 * 1024**2, 3 * 1024**5)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "1.5 KiB",
        "5.0 MiB",
        "3072.0 TiB",
    ]
    assert short_digest("sha256:" + "ab" * 32) == "sha256:abababababab"
    assert short_digest("sha256:" + "ab" * 32, 4) == "sha256:abab"


def test_image_pretty_shows_platform_digests_layers_and_labels(hostile_layout: Path) -> None:
    with open_image(f"oci:{hostile_layout}:v1") as image:
        text = pretty(image)
        manifest = image.manifest()
        lines = text.splitlines()
        assert lines[0] == "Image"
        assert f"oci:{hostile_layout}:v1" in text
        assert re.search(r"^  Platform\s+linux/arm64/v8$", text, re.M)
        assert re.search(rf"^  Digest\s+{image.digest}$", text, re.M)
        assert "Index digest" not in text  # a plain image, not chosen from an index
        assert re.search(r"^  Created\s+2024-01-02T03:04:05Z$", text, re.M)
        total = manifest.config.size + sum(d.size for d in manifest.layers)
        assert re.search(rf"^  Size\s+{human_size(total)} \(2 layers ", text, re.M)
        assert "Layers (2)" in lines
        for i, layer in enumerate(manifest.layers, 1):
            row = f"  {i}  {short_digest(layer.digest)}  {human_size(layer.size)}"
            assert any(line.startswith(row) for line in lines), row
            assert layer.media_type == mt.OCI_LAYER_GZIP
        assert text.count(mt.OCI_LAYER_GZIP) == 2
        # Labels, sorted, with their values as they are (plain text needs no escaping).
        labels = lines[lines.index("Labels (2)") + 2 :]
        assert labels[0].split() == ["a.first", "1"]
        assert labels[1].startswith("  org.example.note")
        assert labels[1].endswith(HOSTILE)


def test_image_chosen_from_an_index_shows_the_index(hostile_layout: Path) -> None:
    with open_image(f"oci:{hostile_layout}:multi", platform="linux/arm/v7") as image:
        text = pretty(image)
        assert re.search(r"^  Platform\s+linux/arm/v7$", text, re.M)
        assert re.search(rf"^  Index digest\s+{image.top_digest}$", text, re.M)
        assert image.top_digest != image.digest


def test_image_html_is_escaped_and_self_contained(hostile_layout: Path) -> None:
    with open_image(f"oci:{hostile_layout}:v1") as image:
        fragment = image._repr_html_()
        digest = str(image.digest)
        layers = image.layers()
    _check_self_contained(fragment)
    assert HOSTILE not in fragment
    assert html.escape(HOSTILE) in fragment
    assert digest in fragment
    for layer in layers:  # short digests shown, the full one on hover
        assert f'title="{layer.digest}"' in fragment
        assert f"<code>{short_digest(layer.digest)}</code>" in fragment
    assert "linux/arm64/v8" in fragment


def test_closed_image_displays_without_reading(hostile_layout: Path) -> None:
    image = open_image(f"oci:{hostile_layout}:v1")
    image.close()
    text = pretty(image)
    assert re.search(r"^  Config\s+not read \(the image is closed\)$", text, re.M)
    assert "Layers (2)" in text  # the manifest is still known

    # Once read, the config stays displayable after closing.
    with open_image(f"oci:{hostile_layout}:v1") as image2:
        image2.config()
    assert "linux/arm64/v8" in pretty(image2)


def test_unreadable_config_is_reported(hostile_layout: Path) -> None:
    with open_image(f"oci:{hostile_layout}:v1") as image:
        config = image.manifest().config
        (hostile_layout / "blobs" / "sha256" / config.digest.hex).write_bytes(b"{}")
        text = pretty(image)
    assert re.search(r"^  Config\s+unreadable: .*", text, re.M)
    assert re.search(r"^  Platform\s+-$", text, re.M)


def test_pretty_cycle_prints_the_short_repr(hostile_layout: Path) -> None:
    from IPython.lib.pretty import RepresentationPrinter

    with open_image(f"oci:{hostile_layout}:v1") as image:
        import io

        out = io.StringIO()
        printer = RepresentationPrinter(out)
        image._repr_pretty_(printer, True)
        printer.flush()
        assert out.getvalue() == repr(image)


def test_index_manifest_lists_instances_with_platforms() -> None:
    for docker in (False, True):
        built = make_multiarch(1, docker=docker)
        index = parse_manifest(built.manifest)
        text = pretty(index)
        first = "Docker manifest list" if docker else "OCI image index"
        assert text.splitlines()[0] == first
        assert "Instances (3)" in text
        for platform, img in zip(
            ("linux/amd64", "linux/arm64/v8", "linux/arm/v7"), built.images, strict=True
        ):
            assert re.search(
                rf"^  {re.escape(platform)}\s+{short_digest(img.digest)}\s+"
                rf"{human_size(len(img.manifest))}\s+{re.escape(img.media_type)}$",
                text,
                re.M,
            )
        fragment = index._repr_html_()
        _check_self_contained(fragment)
        assert fragment.count("<tr>") == 3 + 1 + 3  # 3 fields, a header row, 3 instances


def test_image_manifest_lists_config_and_layers() -> None:
    built = make_image(5, (10, 20, 30), docker=True, annotations=None)
    manifest = parse_manifest(built.manifest)
    text = pretty(manifest)
    assert text.splitlines()[0] == "Docker schema 2 manifest"
    assert re.search(rf"^  Digest\s+{manifest.digest}$", text, re.M)
    assert re.search(rf"^  Size\s+{len(built.manifest)} B$", text, re.M)
    assert re.search(rf"^  config\s+{short_digest(built.config_digest)}\s", text, re.M)
    assert len(re.findall(rf"^  layer \d\s+.*{re.escape(mt.DOCKER_LAYER)}$", text, re.M)) == 3


def test_oci_manifest_annotations_are_escaped() -> None:
    built = make_image(6, (10,), annotations={"org.example.x": HOSTILE})
    manifest = parse_manifest(built.manifest)
    assert pretty(manifest).splitlines()[0] == "OCI image manifest"
    fragment = manifest._repr_html_()
    _check_self_contained(fragment)
    assert html.escape(HOSTILE) in fragment
    assert HOSTILE not in fragment
    assert "Annotations (1)" in pretty(manifest)


def test_oci_index_of_docker_manifests_counts_rows() -> None:
    index = parse_manifest(make_index([make_image(7, (10,))]).manifest)
    assert "Instances (1)" in pretty(index)


def test_config_display() -> None:
    built = make_image(8, (10, 20), labels={"b": "2", "a": HOSTILE})
    config = ImageConfig.parse(built.config)
    text = pretty(config)
    assert text.splitlines()[0] == "Image config"
    assert re.search(r"^  Platform\s+linux/amd64$", text, re.M)
    assert "Environment (1)" in text
    assert "PATH=/usr/bin:/bin" in text
    assert "History (2)" in text
    assert "layer 1" in text
    assert text.index("  a  ") < text.index("  b  ")  # labels sorted
    fragment = config._repr_html_()
    _check_self_contained(fragment)
    assert html.escape(HOSTILE) in fragment
    assert HOSTILE not in fragment


def test_listing_reads_no_further_than_needed() -> None:
    consumed: list[str] = []

    def names() -> Iterator[str]:
        for i in range(100):
            consumed.append(str(i))
            yield f"repo-{i}"

    result = listing(names(), title="Repositories", limit=5)
    assert list(result) == [f"repo-{i}" for i in range(5)]
    assert result.truncated
    assert len(consumed) == 6  # one more than the limit, to know there are more
    assert len(result) == 5
    assert "repo-4" in result
    assert result[0] == "repo-0"
    text = pretty(result)
    assert text.splitlines()[0] == "Repositories"
    assert re.search(r"^  Count\s+5\+$", text, re.M)
    assert "only the first 5 were read" in text

    whole = listing(["b", "a"], limit=None)
    assert whole.names == ("b", "a")
    assert not whole.truncated
    assert not listing(["a"], limit=1).truncated
    with pytest.raises(ValueError, match="negative"):
        listing([], limit=-1)


def test_listing_html() -> None:
    result = Listing("Tags of x", [HOSTILE, "v1"])
    fragment = result._repr_html_()
    _check_self_contained(fragment)
    assert HOSTILE not in fragment
    assert f"<code>{html.escape(HOSTILE)}</code>" in fragment
    assert "<em>none</em>" in Listing("Tags", [])._repr_html_()


def test_registry_and_repository_listings(
    inmemory_registry: ServedRegistry, hostile_layout: Path
) -> None:
    plain_http = CopyOptions(destination_options=TransportOptions(tls_verify=False))
    for target in ("library/app:1.0", "tools/x:1.0", "library/app:2.0"):
        copy_image(f"oci:{hostile_layout}:v1", f"docker://{inmemory_registry}/{target}", plain_http)
    with open_registry(str(inmemory_registry), tls_verify=False) as registry:
        repositories = registry.listing()
        assert repositories.title == "Repositories"
        assert list(repositories) == ["library/app", "tools/x"]
        assert not repositories.truncated
        assert registry.listing(limit=1).truncated
        tags = registry.repository("library/app").listing()
        assert tags.title == "Tags of library/app"
        assert sorted(tags) == ["1.0", "2.0"]
        assert "<code>2.0</code>" in tags._repr_html_()
        options = TransportOptions(tls_verify=False)
        with registry.repository("library/app").image("2.0", options) as image:
            assert isinstance(image, Image)
            assert "docker://" in pretty(image)
