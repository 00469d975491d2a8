"""Rich display of images, manifests, configs and registry listings in IPython and Jupyter.

The models call into this module from their ``_repr_html_`` (Jupyter) and ``_repr_pretty_``
(IPython's ``pretty`` protocol) methods, so every display shares one layout: a *card* with a
title, labelled fields and tables, rendered as self-contained HTML (escaped, inline styles, no
external assets) or as aligned plain text.

:class:`Listing` (from :func:`listing`, :meth:`Registry.listing <imagetypes.Registry.listing>`
or :meth:`Repository.listing <imagetypes.Repository.listing>`) shows a list of names, such as a
registry's repositories or a repository's tags.
"""

from __future__ import annotations

import html
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import attrs

if TYPE_CHECKING:
    from .descriptor import Descriptor
    from .digest import Digest
    from .image import Image
    from .manifest import ImageConfig, Manifest

__all__ = [
    "DEFAULT_LISTING_LIMIT",
    "Card",
    "Listing",
    "PrettyPrinter",
    "Table",
    "config_card",
    "human_size",
    "image_card",
    "listing",
    "manifest_card",
    "render_html",
    "render_pretty",
    "render_text",
    "short_digest",
]

#: How many names :func:`listing` reads by default before it stops (a catalog may be huge).
DEFAULT_LISTING_LIMIT = 1000


class PrettyPrinter(Protocol):
    """The part of IPython's ``IPython.lib.pretty.PrettyPrinter`` the displays use."""

    def text(self, obj: str) -> None: ...

    def break_(self) -> None: ...


# -- values ---------------------------------------------------------------------------------------


def human_size(size: int) -> str:
    """A byte count for people: ``250 B``, ``1.5 KiB``, ``3.0 MiB``."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def short_digest(digest: Digest | str, length: int = 12) -> str:
    """``sha256:0ba593919f03``: the algorithm and the first ``length`` hex digits."""
    text = str(digest)
    algorithm, sep, encoded = text.partition(":")
    if not sep:
        return text[:length]
    return f"{algorithm}:{encoded[:length]}"


# -- the layout -----------------------------------------------------------------------------------


@attrs.frozen
class Cell:
    """A table cell: the text shown, and optionally a longer text (a full digest) on hover."""

    text: str
    title: str | None = None
    code: bool = False


def _cell(value: Cell | str) -> Cell:
    return value if isinstance(value, Cell) else Cell(value)


def _cells(rows: Iterable[Sequence[Cell | str]]) -> tuple[tuple[Cell, ...], ...]:
    return tuple(tuple(_cell(c) for c in row) for row in rows)


# Named converters: mypy's attrs plugin mistypes ``converter=tuple``.
def _strs(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _tables(values: Iterable[Table]) -> tuple[Table, ...]:
    return tuple(values)


def _fields(values: Iterable[tuple[str, Cell | str]]) -> tuple[tuple[str, Cell], ...]:
    return tuple((label, _cell(value)) for label, value in values)


@attrs.frozen
class Table:
    """A titled table: column headings and rows of cells."""

    #: Shown above the table with the number of rows (nothing when empty).
    title: str
    columns: tuple[str, ...] = attrs.field(converter=_strs)
    rows: tuple[tuple[Cell, ...], ...] = attrs.field(converter=_cells)
    #: Shown when there are no rows.
    empty: str = "none"


@attrs.frozen
class Card:
    """What one object shows: a title, labelled fields, and tables."""

    title: str
    fields: tuple[tuple[str, Cell], ...] = attrs.field(converter=_fields)
    tables: tuple[Table, ...] = attrs.field(default=(), converter=_tables)


def _digest_cell(digest: Digest | str) -> Cell:
    return Cell(short_digest(digest), title=str(digest), code=True)


def _code(text: str) -> Cell:
    return Cell(text, code=True)


# -- rendering ------------------------------------------------------------------------------------

_STYLE_BOX = "font-family:inherit;line-height:1.4;margin:0.2em 0"
_STYLE_TABLE = "border-collapse:collapse;margin:0.2em 0 0.6em 0"
_STYLE_CELL = "text-align:left;padding:0.1em 0.8em 0.1em 0;vertical-align:top"
_STYLE_HEAD = _STYLE_CELL + ";font-weight:bold;border-bottom:1px solid currentColor"
_STYLE_LABEL = _STYLE_CELL + ";font-weight:bold"


def _html_cell(cell: Cell, tag: str = "td", style: str = _STYLE_CELL) -> str:
    text = html.escape(cell.text)
    if cell.code:
        text = f"<code>{text}</code>"
    title = f' title="{html.escape(cell.title, quote=True)}"' if cell.title else ""
    return f'<{tag} style="{style}"{title}>{text}</{tag}>'


def render_html(card: Card) -> str:
    """The card as a self-contained HTML fragment; every value is escaped."""
    out = [f'<div class="imagetypes-display" style="{_STYLE_BOX}">']
    out.append(f"<strong>{html.escape(card.title)}</strong>")
    if card.fields:
        out.append(f'<table style="{_STYLE_TABLE}">')
        for label, value in card.fields:
            out.append(
                "<tr>" + _html_cell(Cell(label), "th", _STYLE_LABEL) + _html_cell(value) + "</tr>"
            )
        out.append("</table>")
    for table in card.tables:
        if table.title:
            count = len(table.rows)
            out.append(f"<div><strong>{html.escape(table.title)}</strong> ({count})</div>")
        if not table.rows:
            out.append(f"<div><em>{html.escape(table.empty)}</em></div>")
            continue
        out.append(f'<table style="{_STYLE_TABLE}"><thead><tr>')
        out.extend(_html_cell(Cell(c), "th", _STYLE_HEAD) for c in table.columns)
        out.append("</tr></thead><tbody>")
        for row in table.rows:
            out.append("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>")
        out.append("</tbody></table>")
    out.append("</div>")
    return "".join(out)


def _one_line(text: str) -> str:
    # A label or annotation value may hold newlines; plain text keeps one row per entry.
    return text.replace("\r", "\\r").replace("\n", "\\n")


def render_lines(card: Card) -> list[str]:
    """The card as lines of aligned plain text."""
    lines = [_one_line(card.title)]
    if card.fields:
        width = max(len(label) for label, _ in card.fields)
        lines.extend(
            f"  {label.ljust(width)}  {_one_line(value.title or value.text)}"
            for label, value in card.fields
        )
    for table in card.tables:
        if table.title:
            lines.append(f"{_one_line(table.title)} ({len(table.rows)})")
        if not table.rows:
            lines.append(f"  {table.empty}")
            continue
        grid = [list(table.columns)] + [[_one_line(c.text) for c in row] for row in table.rows]
        widths = [max(len(r[i]) for r in grid) for i in range(len(table.columns))]
        for row_text in grid:
            cells = [t.ljust(w) for t, w in zip(row_text, widths, strict=True)]
            lines.append(("  " + "  ".join(cells)).rstrip())
    return lines


def render_text(card: Card) -> str:
    """The card as plain text (what IPython prints)."""
    return "\n".join(render_lines(card))


def render_pretty(card: Card, p: PrettyPrinter, cycle: bool, short: str) -> None:
    """Write the card to an IPython pretty printer (``short`` when it is part of a cycle)."""
    if cycle:
        p.text(short)
        return
    for i, line in enumerate(render_lines(card)):
        if i:
            p.break_()
        p.text(line)


# -- cards for the models -------------------------------------------------------------------------


def _descriptor_row(kind: str, d: Descriptor) -> tuple[Cell | str, ...]:
    return (kind, _digest_cell(d.digest), human_size(d.size), _code(d.media_type))


def _map_table(title: str, values: Mapping[str, str], empty: str = "none") -> Table:
    rows = [(k, values[k]) for k in sorted(values)]
    return Table(title, ("Key", "Value"), rows, empty=empty)


def _manifest_kind(manifest: Manifest) -> str:
    from .manifest import DockerManifest, DockerManifestList, DockerSchema1Manifest, OCIIndex

    if isinstance(manifest, OCIIndex):
        return "OCI image index"
    if isinstance(manifest, DockerManifestList):
        return "Docker manifest list"
    if isinstance(manifest, DockerManifest):
        return "Docker schema 2 manifest"
    if isinstance(manifest, DockerSchema1Manifest):
        return "Docker schema 1 manifest" + (" (signed)" if manifest.signed else "")
    if getattr(manifest, "artifact_type", None):
        return "OCI artifact manifest"
    return "OCI image manifest"


def manifest_card(manifest: Manifest) -> Card:
    """A manifest: its type, digest and size, then its config and layers or its instances."""
    from .manifest import DockerSchema1Manifest, ImageManifest, IndexManifest

    fields: list[tuple[str, Cell | str]] = [
        ("Media type", _code(manifest.media_type)),
        ("Digest", _code(str(manifest.digest))),
        ("Size", human_size(manifest.size)),
    ]
    tables: list[Table] = []
    artifact_type = getattr(manifest, "artifact_type", None)
    if artifact_type:
        fields.append(("Artifact type", _code(artifact_type)))
    subject = getattr(manifest, "subject", None)
    if subject is not None:
        fields.append(("Subject", _code(str(subject.digest))))
    if isinstance(manifest, ImageManifest):
        total = manifest.config.size + sum(d.size for d in manifest.layers)
        fields.append(("Config and layers", human_size(total)))
        rows = [_descriptor_row("config", manifest.config)]
        rows.extend(_descriptor_row(f"layer {i}", d) for i, d in enumerate(manifest.layers, 1))
        tables.append(Table("Blobs", ("", "Digest", "Size", "Media type"), rows))
    elif isinstance(manifest, IndexManifest):
        instance_rows = [
            (
                str(d.platform) if d.platform is not None else "-",
                _digest_cell(d.digest),
                human_size(d.size),
                _code(d.media_type),
            )
            for d in manifest.manifests
        ]
        tables.append(
            Table("Instances", ("Platform", "Digest", "Size", "Media type"), instance_rows)
        )
    elif isinstance(manifest, DockerSchema1Manifest):
        fields.extend(
            [
                ("Name", manifest.name or "-"),
                ("Tag", manifest.tag or "-"),
                ("Architecture", manifest.architecture or "-"),
            ]
        )
        layer_rows = [
            (str(i), _digest_cell(d)) for i, d in enumerate(reversed(manifest.fs_layers), 1)
        ]
        tables.append(Table("Layers, base first", ("#", "Digest"), layer_rows))
    annotations: Mapping[str, str] = getattr(manifest, "annotations", {})
    if annotations:
        tables.append(_map_table("Annotations", annotations))
    return Card(_manifest_kind(manifest), fields, tables)


def config_card(config: ImageConfig) -> Card:
    """An image config: platform, creation, author, environment, labels, history."""
    fields: list[tuple[str, Cell | str]] = [
        ("Platform", str(config.platform)),
        ("Digest", _code(str(config.digest))),
        ("Size", human_size(config.size)),
        ("Created", config.created or "-"),
    ]
    if config.author:
        fields.append(("Author", config.author))
    if config.docker_version:
        fields.append(("Docker version", config.docker_version))
    tables = [
        Table("Environment", ("Variable",), [(_code(e),) for e in config.env]),
        _map_table("Labels", config.labels),
        Table(
            "History",
            ("Created", "Created by", "Empty layer"),
            [
                (
                    str(h.get("created") or "-"),
                    _code(str(h.get("created_by") or "-")),
                    "yes" if h.get("empty_layer") else "",
                )
                for h in config.history
            ],
        ),
    ]
    return Card("Image config", fields, tables)


def image_card(image: Image, config: ImageConfig | None, config_note: str = "") -> Card:
    """An image: where it is, its platform, digests, sizes, creation, layers and labels.

    ``config`` is the image's parsed config, or None when it was not read (``config_note`` says
    why); the rest comes from the manifest.
    """
    schema1 = image.schema1_manifest()
    manifest: Manifest = image.manifest() if schema1 is None else schema1
    layers = image.layers()
    platform = config.platform if config is not None else None
    fields: list[tuple[str, Cell | str]] = [
        ("Reference", _code(str(image.reference))),
        ("Platform", str(platform) if platform is not None else "-"),
        ("Digest", _code(str(image.digest))),
    ]
    index = image.index()
    if index is not None:
        fields.append(("Index digest", _code(str(index.digest))))
    n = len(layers)
    counted = f"{n} layer{'' if n == 1 else 's'}"
    if schema1 is None:
        layer_bytes = sum(d.size for d in layers)
        config_size = image.manifest().config.size
        size = (
            f"{human_size(layer_bytes + config_size)} ({counted} {human_size(layer_bytes)}, "
            f"config {human_size(config_size)})"
        )
    else:
        size = f"unknown ({counted}; schema 1 records no sizes)"
    fields.extend(
        [
            ("Manifest", f"{_manifest_kind(manifest)}, {human_size(manifest.size)}"),
            ("Size", size),
        ]
    )
    if config is not None:
        fields.append(("Created", config.created or "-"))
        if config.author:
            fields.append(("Author", config.author))
    else:
        fields.append(("Config", config_note))
    tables = [
        Table(
            "Layers",
            ("#", "Digest", "Size", "Media type"),
            [
                (
                    str(i),
                    _digest_cell(d.digest),
                    human_size(d.size) if d.size >= 0 else "-",
                    _code(d.media_type),
                )
                for i, d in enumerate(layers, 1)
            ],
        )
    ]
    if config is not None:
        tables.append(_map_table("Labels", config.labels))
    return Card("Image", fields, tables)


# -- listings -------------------------------------------------------------------------------------


@attrs.frozen
class Listing:
    """A list of names (repositories, tags) that displays itself as a table in notebooks.

    It is a sequence of the names read: iterate it, take ``len()``, test ``in``, or index it.
    ``truncated`` is true when more names were available than the limit it was read with.
    """

    title: str
    names: tuple[str, ...] = attrs.field(converter=_strs)
    truncated: bool = False

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __getitem__(self, i: int) -> str:
        return self.names[i]

    def card(self) -> Card:
        """The listing as a :class:`Card`: a one-column table of the names."""
        count = f"{len(self.names)}{'+' if self.truncated else ''}"
        fields: list[tuple[str, Cell | str]] = [("Count", count)]
        if self.truncated:
            fields.append(("Note", f"only the first {len(self.names)} were read"))
        table = Table("", ("Name",), [(_code(n),) for n in self.names], empty="none")
        return Card(self.title, fields, (table,))

    def _repr_html_(self) -> str:
        return render_html(self.card())

    def _repr_pretty_(self, p: PrettyPrinter, cycle: bool) -> None:
        render_pretty(self.card(), p, cycle, f"Listing({self.title!r}, ...)")


def listing(
    names: Iterable[str], *, title: str = "Names", limit: int | None = DEFAULT_LISTING_LIMIT
) -> Listing:
    """Read up to ``limit`` names (``None``: all) from any iterable into a :class:`Listing`.

    Names are kept in the order given; lazily paginated sources (a registry's catalog) are read
    no further than needed to know whether there are more.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must not be negative: {limit}")
    if limit is None:
        return Listing(title, tuple(names))
    read = tuple(itertools.islice(names, limit + 1))
    return Listing(title, read[:limit], truncated=len(read) > limit)
