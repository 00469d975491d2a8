"""The documentation stays true: its Python examples run, the notebook runs, the CLI page
lists every option the parser knows, and every page is in the site's navigation.

Python code blocks (```python) of each page run in order, in one fresh interpreter per page,
inside a temporary directory holding a copy of the repository's examples. A block that cannot
run here (it needs the network or real credentials) is preceded by ``<!-- skip-test -->``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
NOTEBOOK = DOCS / "notebooks" / "explore.ipynb"
SKIP_MARKER = "<!-- skip-test -->"
# Blocks marked to skip, per page: keep this short; prefer examples that run locally.
EXPECTED_SKIPS = {
    "auth.md": 2,
    "transports/docker.md": 1,
}
BLOCK_TIMEOUT = 180

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[^\n`]*)$")


@dataclasses.dataclass(frozen=True)
class Block:
    page: str
    line: int  # 1-based line of the block's first line of code in the page
    language: str
    source: str  # dedented by the fence's indentation (a block inside a list item)
    skip: bool


def extract_blocks(path: Path) -> list[Block]:
    """Every fenced block of a page, with its language and whether it is marked to skip."""
    page = path.relative_to(DOCS).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        language = m["info"].strip().split(" ")[0]
        previous = next((t.strip() for t in reversed(lines[:i]) if t.strip()), "")
        end = i + 1
        while end < len(lines) and not _FENCE.match(lines[end]):
            end += 1
        if end == len(lines):
            raise AssertionError(f"{page}:{i + 1}: unclosed code block")
        source = "\n".join(t[len(m["indent"]) :] for t in lines[i + 1 : end])
        blocks.append(Block(page, i + 2, language, source, previous == SKIP_MARKER))
        i = end + 1
    return blocks


def _pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def _python_pages() -> list[str]:
    return [
        p.relative_to(DOCS).as_posix()
        for p in _pages()
        if any(b.language == "python" for b in extract_blocks(p))
    ]


# Runs a page's blocks in order in one namespace. Each block is compiled with the page's name
# and its line offset, so a traceback points at the line of the Markdown file.
_RUNNER = r"""
import json, sys
blocks = json.load(open(sys.argv[1], encoding="utf-8"))
namespace = {"__name__": "__main__"}
for block in blocks:
    code = compile("\n" * (block["line"] - 1) + block["source"], block["page"], "exec")
    exec(code, namespace)
"""


def _hermetic_env(tmp_path: Path) -> dict[str, str]:
    """The environment for examples: no real auth files, certs.d or caches are touched."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"REGISTRY_AUTH_FILE", "DOCKER_CONFIG", "XDG_CACHE_HOME"}
    }
    for name, sub in (("HOME", "home"), ("XDG_RUNTIME_DIR", "run"), ("XDG_CONFIG_HOME", "cfg")):
        folder = tmp_path / sub
        folder.mkdir(exist_ok=True)
        env[name] = str(folder)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    shutil.copytree(ROOT / "examples" / "hello-layout", work / "examples" / "hello-layout")
    return work


def test_blocks_are_found() -> None:
    # Guards the parametrised tests below against silently running nothing.
    pages = _python_pages()
    assert {"quickstart.md", "copy.md", "testing.md", "transports/docker.md"} <= set(pages)
    assert sum(len(extract_blocks(DOCS / p)) for p in pages) > 20


def test_skip_markers_are_rare_and_known() -> None:
    skipped: dict[str, int] = {}
    for path in _pages():
        for block in extract_blocks(path):
            if block.skip:
                assert block.language == "python", f"{block.page}:{block.line}: skip on non-python"
                skipped[block.page] = skipped.get(block.page, 0) + 1
    assert skipped == EXPECTED_SKIPS


@pytest.mark.parametrize("page", _python_pages())
def test_python_examples_run(page: str, tmp_path: Path) -> None:
    blocks = [
        {"page": b.page, "line": b.line, "source": b.source}
        for b in extract_blocks(DOCS / page)
        if b.language == "python" and not b.skip
    ]
    script = tmp_path / "blocks.json"
    script.write_text(json.dumps(blocks), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(script)],
        cwd=_workdir(tmp_path),
        env=_hermetic_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"examples of {page} failed:\n{result.stderr}"


def test_notebook_runs(tmp_path: Path) -> None:
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    work = _workdir(tmp_path)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(not c.outputs for c in code_cells), "commit the notebook without outputs"

    # A kernel spec of our own: the kernel runs this interpreter, whatever "python" is on PATH
    # or whichever kernels are installed.
    spec_dir = tmp_path / "kernels" / "imagetypes-docs"
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": "imagetypes docs", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    manager = KernelManager(
        kernel_name="imagetypes-docs",
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec_dir.parent)]),
    )
    client = NotebookClient(
        notebook,
        km=manager,
        timeout=BLOCK_TIMEOUT,
        allow_errors=False,  # any cell error raises CellExecutionError
        resources={"metadata": {"path": str(work)}},
    )
    client.execute(cwd=str(work), env=_hermetic_env(tmp_path))

    outputs = [o for c in code_cells for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    # The index, the image, its config, the Docker manifest, two listings, the registry image
    # and the subset index display as rich HTML.
    assert len(html) >= 8
    assert all('class="imagetypes-display"' in h for h in html)
    assert any("examples/hello-arm64" in h for h in html)


# -- the command line page ------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("the parser has no subcommands")


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def test_cli_page_documents_every_command_and_option() -> None:
    from imagetypes.cli import _build_parser

    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    parser = _build_parser()
    commands = _subcommands(parser)
    assert {"copy", "inspect", "login"} <= set(commands)
    missing: list[str] = []
    global_options = _options(parser)  # every subcommand accepts these too
    for option in sorted(global_options):
        if not re.search(rf"`{re.escape(option)}[`= \[]", text):
            missing.append(f"global {option}")
    for name, sub in sorted(commands.items()):
        heading = re.search(rf"^## [^\n]*`imagetypes {re.escape(name)}\b[^\n]*$", text, re.M)
        if heading is None:
            missing.append(f"command {name} (a '## `imagetypes {name} ...`' heading)")
            continue
        # The command's section runs to the next heading of the same level.
        end = text.find("\n## ", heading.end())
        section = text[heading.start() : end if end != -1 else len(text)]
        for option in sorted(_options(sub) - global_options):
            if not re.search(rf"`{re.escape(option)}[`= \[,]", section):
                missing.append(f"{name} {option}")
    assert not missing, "docs/cli.md does not document: " + ", ".join(missing)


def test_copy_page_documents_every_option_and_result_field() -> None:
    import attrs

    from imagetypes import CopyOptions, CopyResult

    text = (DOCS / "copy.md").read_text(encoding="utf-8")
    options = [f.name for f in attrs.fields(CopyOptions)]
    results = [f.name for f in attrs.fields(CopyResult)]
    assert "instances" in options
    missing = [n for n in options if not re.search(rf"^\| `{n}` \|", text, re.M)]
    missing += [n for n in results if f"`{n}`" not in text]
    assert not missing, "docs/copy.md does not document: " + ", ".join(missing)


# -- the site -------------------------------------------------------------------------------------


def test_every_page_is_in_the_navigation() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = set(re.findall(r"^\s*- (?:[^\n:]+|\"[^\"]+\"): ([\w/.-]+\.md)\s*$", config, re.M))
    pages = {p.relative_to(DOCS).as_posix() for p in _pages()}
    assert pages - nav == set(), "pages missing from mkdocs.yml's nav"
    assert nav - pages == set(), "nav entries without a page"


def test_site_uses_no_external_fonts() -> None:
    # Material loads Google Fonts unless told not to: the site must work offline.
    assert re.search(r"^\s+font: false\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)
