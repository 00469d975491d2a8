"""Start-up cost: what ``import imagetypes``, the command and a local copy load.

Every benchmark row is a whole process, so what a command imports is part of its time. These
tests run fresh interpreters and assert on ``sys.modules`` (never on timings, which depend on the
machine): the package and the command's parser import almost nothing, each command loads the
library parts it uses when it runs, and a copy between two local layouts loads neither SQLite
(the blob-info cache), nor the registry client, nor the signature code.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parents[1]
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

from childpython import checkout_environ  # noqa: E402
from imagebuilder import make_image, write_oci_layout  # noqa: E402

from imagetypes import plugins  # noqa: E402

_MARKER = "MODULES-AFTER:"

# Loaded by nothing that a local copy or the command's parser needs.
_NEVER_LOCAL = {
    "sqlite3",
    "httpx",
    "cryptography",
    "imagetypes.trust._sigstore",
    "imagetypes.trust._simple",
    "imagetypes.trust._gpg",
    "imagetypes.trust._signature",
    "imagetypes.trust._registries_conf",
    "imagetypes_transports.docker",
}
# Not even wanted by ``import imagetypes``, ``--version`` or ``--help``.
_NOT_AT_START = _NEVER_LOCAL | {
    "attr",
    "attrs",
    "importlib.metadata",
    "imagetypes.copy",
    "imagetypes.copy._engine",
    "imagetypes.copy._progress",
    "imagetypes.copy._cache",
    "imagetypes.trust",
    "imagetypes.trust._policy",
    "imagetypes.manifest",
    "imagetypes.image",
    "imagetypes.plugins",
    "imagetypes.types",
    "imagetypes.digest",
    "imagetypes_transports",
}


def _modules_after(code: str, cwd: Path, env: dict[str, str] | None = None) -> set[str]:
    """Run ``code`` in a fresh interpreter; the names in its ``sys.modules`` afterwards."""
    script = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import json as _json, sys as _sys
        _sys.stdout.write("\\n{_MARKER}" + _json.dumps(sorted(_sys.modules)) + "\\n")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        env=checkout_environ(**(env or {})),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith(_MARKER)]
    assert lines, proc.stdout
    modules = set(json.loads(lines[-1][len(_MARKER) :]))
    assert "imagetypes" in modules  # the script really imported the package
    return modules


def _main(argv: list[str]) -> str:
    return f"""
        from imagetypes.cli import main
        rc = main({argv!r})
        assert rc == 0, rc
        """


def test_import_imagetypes_loads_only_the_package(tmp_path: Path) -> None:
    modules = _modules_after("import imagetypes", tmp_path)
    # The package and the few lines that install its lazy names.
    ours = {m for m in modules if m.split(".")[0].startswith("imagetypes")}
    assert ours == {"imagetypes", "imagetypes._lazy"}
    assert not modules & _NOT_AT_START


def test_a_name_loads_its_module_only(tmp_path: Path) -> None:
    modules = _modules_after("from imagetypes import ImageError, Platform", tmp_path)
    assert {"imagetypes.errors", "imagetypes.platform"} <= modules
    assert not modules & {"imagetypes.copy", "imagetypes.trust", "imagetypes.manifest", "sqlite3"}


@pytest.mark.parametrize(
    "argv",
    [["--version"], ["--help"], ["copy", "--help"], ["sync", "--help"], ["inspect", "--help"]],
    ids=" ".join,
)
def test_the_parser_imports_almost_nothing(tmp_path: Path, argv: list[str]) -> None:
    # main() is what the ``imagetypes`` console script calls.
    modules = _modules_after(_main(argv), tmp_path)
    assert "imagetypes.cli" in modules
    assert not modules & _NOT_AT_START


def test_python_dash_m_version_imports_almost_nothing(tmp_path: Path) -> None:
    # The program ends in os._exit (imagetypes.cli.run): what is loaded is written by an
    # atexit handler, which run() calls.
    code = f"""
        import atexit, json, runpy, sys
        atexit.register(
            lambda: sys.stdout.write("\\n{_MARKER}" + json.dumps(sorted(sys.modules)) + "\\n")
        )
        sys.argv = ["imagetypes", "--version"]
        runpy.run_module("imagetypes", run_name="__main__", alter_sys=True)
        """
    modules = _modules_after(code, tmp_path)
    assert "imagetypes.cli" in modules
    assert not modules & _NOT_AT_START


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    return write_oci_layout(tmp_path / "src", {"v1": make_image(11)})


@pytest.fixture
def accept_anything(tmp_path: Path) -> Path:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    return policy


@pytest.mark.parametrize("destination", ["oci", "dir"])
def test_a_local_copy_loads_no_cache_registry_or_signature_code(
    tmp_path: Path, layout: Path, accept_anything: Path, destination: str
) -> None:
    cache = tmp_path / "cache" / "blobinfo.sqlite"
    out = tmp_path / "out"
    dest = f"oci:{out}:v1" if destination == "oci" else f"dir:{out}"
    argv = ["copy", "--quiet", "--policy", str(accept_anything), "--blob-info-cache", str(cache)]
    modules = _modules_after(_main([*argv, f"oci:{layout}:v1", dest]), tmp_path)
    # The copy happened...
    assert (out / ("index.json" if destination == "oci" else "manifest.json")).is_file()
    assert {"imagetypes.copy._engine", "imagetypes.trust._policy"} <= modules
    # ... without what it had no use for; the cache file was never opened.
    assert not modules & _NEVER_LOCAL
    assert not cache.parent.exists()
    # Its layers are copied as they are: the optional compression backends stay unloaded;
    # no program is run (gpg, credential helpers), so neither is subprocess.
    assert not modules & {"isal.isal_zlib", "backports.zstd", "compression.zstd", "subprocess"}
    if plugins._scan_folders() is not None:  # no zip or egg on sys.path here
        assert "importlib.metadata" not in modules


def test_the_default_cache_stays_closed_for_a_local_copy(
    tmp_path: Path, layout: Path, accept_anything: Path
) -> None:
    xdg = tmp_path / "xdg"
    argv = ["copy", "--quiet", "--policy", str(accept_anything)]
    modules = _modules_after(
        _main([*argv, f"oci:{layout}:v1", f"oci:{tmp_path / 'out'}:v1"]),
        tmp_path,
        env={"XDG_CACHE_HOME": str(xdg)},
    )
    assert (tmp_path / "out" / "index.json").is_file()
    assert "sqlite3" not in modules
    assert not xdg.exists()


def test_a_copy_that_recompresses_still_uses_the_cache(tmp_path: Path, layout: Path) -> None:
    cache = tmp_path / "c.sqlite"
    code = f"""
        from imagetypes.copy import CopyOptions, copy_image
        options = CopyOptions(dest_decompress=True, blob_info_cache={str(cache)!r})
        result = copy_image({f"oci:{layout}:v1"!r}, {f"oci:{tmp_path / 'out'}:v1"!r}, options)
        assert result.layers_recompressed, result
        """
    modules = _modules_after(code, tmp_path)
    # The compressed/uncompressed pairs it learnt are worth keeping for later copies.
    assert "sqlite3" in modules
    assert cache.is_file()


# -- the lazy names stay in step with what type checkers see ---------------------------------


def _type_checking_imports(path: Path) -> dict[str, str]:
    """``{name: ".module"}`` for the ``from .module import name`` under ``if TYPE_CHECKING:``."""
    found: dict[str, str] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for child in node.body:
                if isinstance(child, ast.ImportFrom) and child.level == 1:
                    for alias in child.names:
                        found[alias.asname or alias.name] = "." + (child.module or "")
    return found


@pytest.mark.parametrize("package", ["imagetypes", "imagetypes.copy", "imagetypes.trust"])
def test_lazy_names_match_the_type_checking_imports(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__file__ is not None
    static = _type_checking_imports(Path(module.__file__))
    lazy = {name: where for where, names in module._EXPORTS.items() for name in names}
    assert lazy == static
    assert set(lazy) == set(module.__all__) - {"__version__"}
    for name, where in lazy.items():
        source = importlib.import_module(where, package)
        assert getattr(module, name) is getattr(source, name), name
    assert set(module.__all__) <= set(dir(module))


def test_an_unknown_name_is_an_attribute_error() -> None:
    import imagetypes

    with pytest.raises(AttributeError, match="no attribute 'NoSuchName'"):
        _ = imagetypes.NoSuchName  # type: ignore[attr-defined]
    with pytest.raises(ImportError):
        from imagetypes.copy import NoSuchName  # type: ignore[attr-defined]  # noqa: F401


# -- transport discovery without importlib.metadata ------------------------------------------


def _labelled(entries: list[plugins._EntryPoint]) -> list[tuple[str, str, str]]:
    return [(e.name, e.value, e.dist_label()) for e in entries]


def test_discovery_reads_what_importlib_metadata_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for site, version in ((first, "2.0"), (second, "1.0")):
        info = site / f"shadowed_plugin-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: shadowed-plugin\nVersion: {version}\n\nbody: x\n"
        )
        (info / "entry_points.txt").write_text(
            f"# a comment\n[console_scripts]\nnot-this = x:y\n\n[{plugins.ENTRY_POINT_GROUP}]\n"
            f"shadowed{version[0]} = shadowed_plugin.v{version[0]} : transport [extra]\n"
        )
    other = second / "Other.Plugin-3.dist-info"
    other.mkdir()
    (other / "entry_points.txt").write_text(f"[{plugins.ENTRY_POINT_GROUP}]\nother=other_mod\n")
    monkeypatch.syspath_prepend(str(second))
    monkeypatch.syspath_prepend(str(first))  # first wins: version 2.0 shadows 1.0
    scanned = plugins._scan_folders()
    assert scanned is not None
    found = _labelled(scanned)
    assert found == _labelled(plugins._scan_metadata())
    assert (
        "shadowed2",
        "shadowed_plugin.v2 : transport [extra]",
        " (shadowed-plugin 2.0)",
    ) in found
    assert ("other", "other_mod", "") in found
    assert not [f for f in found if f[0] == "shadowed1"]


def test_a_zip_on_sys_path_is_left_to_importlib_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "plugins.zip"
    archive.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip file
    monkeypatch.syspath_prepend(str(archive))
    assert plugins._scan_folders() is None


def test_entry_point_values_load_like_importlib_metadata() -> None:
    ep = plugins._EntryPoint("x", "imagetypes.digest:Digest.parse", lambda: "")
    from imagetypes.digest import Digest

    assert ep.load() == Digest.parse
    assert (
        plugins._EntryPoint("x", "imagetypes.digest", lambda: "").load()
        is sys.modules["imagetypes.digest"]
    )
    with pytest.raises(ValueError, match="invalid entry point"):
        plugins._EntryPoint("x", "not a value!", lambda: "").load()
