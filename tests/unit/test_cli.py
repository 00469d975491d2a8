"""The imagetypes command, run in-process through ``main([...])``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagetypes import __version__
from imagetypes import mediatypes as mt
from imagetypes.cli import _marshal_indent as dumps
from imagetypes.cli import main
from imagetypes.cli._progress import human_size
from imagetypes.digest import Digest
from imagetypes.image import open_image
from imagetypes.manifest._gojson import quote
from imagetypes.plugins import register_transport, reset_transports
from imagetypes.types import ImageReference, Transport
from tests.imagebuilder import BuiltImage, BuiltIndex, make_image, make_multiarch, write_oci_layout

LABELS = {"b": "2", "a": "x<y>&z"}


@pytest.fixture
def single() -> BuiltImage:
    return make_image(1, labels=LABELS)


@pytest.fixture
def multi() -> BuiltIndex:
    return make_multiarch(2)


@pytest.fixture
def layout(tmp_path: Path, single: BuiltImage, multi: BuiltIndex) -> Path:
    return write_oci_layout(tmp_path / "layout", {"single": single, "multi": multi})


def unwarned(err: str) -> list[str]:
    """Lines of stderr, less warnings the library logs (a broken plugin, say)."""
    return [x for x in err.splitlines() if not x.startswith("imagetypes: warning: ")]


def assert_one_line_error(err: str) -> None:
    lines = unwarned(err)
    assert len(lines) == 1
    assert lines[0].startswith("imagetypes: error: ")
    assert err.endswith("\n")
    assert "Traceback" not in err


# -- inspect ------------------------------------------------------------------------------------


def test_inspect_prints_the_inspect_dict(
    layout: Path, single: BuiltImage, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", f"oci:{layout}:single"]) == 0
    out, err = capsys.readouterr()
    assert unwarned(err) == []
    with open_image(f"oci:{layout}:single") as image:
        expected = image.inspect()
    assert json.loads(out) == expected
    assert out == dumps(expected) + "\n"
    assert '"a": "x\\u003cy\\u003e\\u0026z"' in out  # Go's HTML-safe escaping
    assert f'\n    "Digest": "{single.digest}",\n' in out  # four-space indent, as skopeo


def test_inspect_index_with_override(
    layout: Path, multi: BuiltIndex, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--override-arch", "arm64", "inspect", f"oci:{layout}:multi"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["Digest"] == str(multi.digest)
    assert info["Architecture"] == "arm64"
    # Global flags are accepted after the subcommand too.
    assert main(["inspect", "--override-arch", "arm", f"oci:{layout}:multi"]) == 0
    assert json.loads(capsys.readouterr().out)["Architecture"] == "arm"


def test_inspect_raw_is_the_stored_bytes(
    layout: Path, multi: BuiltIndex, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert main(["inspect", "--raw", f"oci:{layout}:multi"]) == 0
    assert capsysbinary.readouterr().out == multi.manifest


def test_inspect_raw_config(
    layout: Path, single: BuiltImage, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert main(["inspect", "--raw", "--config", f"oci:{layout}:single"]) == 0
    assert capsysbinary.readouterr().out == single.config


def test_inspect_config(
    layout: Path, single: BuiltImage, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", "--config", f"oci:{layout}:single"]) == 0
    out = capsys.readouterr().out
    config = json.loads(out)
    original = json.loads(single.config)
    assert config["rootfs"] == original["rootfs"]
    assert config["config"]["Labels"] == LABELS
    assert list(config) == ["created", "architecture", "os", "config", "rootfs", "history"]
    assert out.endswith("}\n")


# -- manifest-digest and transports -------------------------------------------------------------


def test_manifest_digest(
    tmp_path: Path, multi: BuiltIndex, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "manifest.json"
    path.write_bytes(multi.manifest)
    assert main(["manifest-digest", str(path)]) == 0
    assert capsys.readouterr().out == f"{multi.digest}\n"


def test_transports_lists_oci_and_dir(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["transports"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = {line.split()[0] for line in lines}
    assert {"oci", "dir"} <= names
    oci_line = next(line for line in lines if line.split()[0] == "oci")
    assert "imagetypes_transports.oci:transport" in oci_line


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"imagetypes version {__version__}\n"


# -- errors -------------------------------------------------------------------------------------


def test_missing_layout_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", f"oci:{tmp_path / 'nothing'}:x"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert_one_line_error(err)


def test_unknown_transport(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "nosuch:thing"]) == 1
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert "nosuch" in err


def test_missing_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["manifest-digest", str(tmp_path / "absent.json")]) == 1
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert "absent.json" in err


def test_platform_mismatch_names_the_platforms(
    layout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--override-arch", "s390x", "inspect", f"oci:{layout}:multi"]) == 1
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert "linux/arm64/v8" in err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["inspect"],
        ["copy", "oci:x"],
        ["copy", "--platform", "not-a-platform", "oci:a", "dir:b"],
        ["copy", "--all", "--platform", "linux/amd64", "oci:a", "dir:b"],
        ["copy", "--format", "v2s3", "oci:a", "dir:b"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "usage:" in err


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(
    tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = f"oci:{tmp_path / 'nothing'}:x"
    argv = ["--debug", "inspect", ref] if where == "before" else ["inspect", ref, "--debug"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.splitlines()[-1].startswith("imagetypes: error: ")


class InterruptingTransport(Transport):
    """A transport whose references are interrupted as they are parsed (a Ctrl-C stand-in)."""

    name = "interrupt"

    def parse_reference(self, text: str) -> ImageReference:
        raise KeyboardInterrupt


def test_keyboard_interrupt_exits_130(capsys: pytest.CaptureFixture[str]) -> None:
    register_transport(InterruptingTransport(), replace=True)
    try:
        assert main(["inspect", "interrupt:x"]) == 130
    finally:
        reset_transports()
    assert "Traceback" not in capsys.readouterr().err


# -- copy ---------------------------------------------------------------------------------------


def test_copy_prints_progress_on_stderr_only(
    layout: Path, tmp_path: Path, single: BuiltImage, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "out"
    digestfile = tmp_path / "digest"
    argv = ["copy", "--digestfile", str(digestfile), f"oci:{layout}:single", f"dir:{dest}"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out == ""
    lines = unwarned(err)
    layer_digests = [x["digest"] for x in json.loads(single.manifest)["layers"]]
    for digest in layer_digests:
        assert any(line.startswith(f"Copying blob {digest} done ") for line in lines), err
    assert any(line.startswith(f"Copying config {single.config_digest} done ") for line in lines)
    assert lines[-1] == "Writing manifest to image destination"
    assert (dest / "manifest.json").read_bytes() == single.manifest
    assert digestfile.read_text() == str(single.digest)


def test_copy_all_with_format(
    layout: Path, tmp_path: Path, multi: BuiltIndex, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "out"
    argv = ["copy", "--all", "--format", "v2s2", f"oci:{layout}:multi", f"dir:{dest}"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("Writing manifest to image destination") == 3
    assert unwarned(err)[-1] == "Writing manifest list to image destination"
    with open_image(f"dir:{dest}", platform="linux/arm/v7") as image:
        index = image.index()
        assert index is not None
        assert index.media_type == mt.DOCKER_MANIFEST_LIST
        assert image.manifest().media_type == mt.DOCKER_MANIFEST
        assert image.raw_config() == multi.images[2].config


def test_copy_platform_subset_and_quiet(
    layout: Path, tmp_path: Path, multi: BuiltIndex, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "out"
    argv = ["copy", "-q", "--platform", "linux/arm64", f"oci:{layout}:multi", f"oci:{dest}:x"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert unwarned(err) == []
    index = json.loads(Path(dest / "index.json").read_bytes())
    (entry,) = index["manifests"]
    top = json.loads((dest / "blobs" / "sha256" / Digest.parse(entry["digest"]).hex).read_bytes())
    assert [m["digest"] for m in top["manifests"]] == [str(multi.images[1].digest)]


def test_copy_system_instance_uses_override(
    layout: Path, tmp_path: Path, multi: BuiltIndex, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "out"
    argv = ["--override-arch", "arm", "--override-variant", "v7", "copy", "-q",
            f"oci:{layout}:multi", f"dir:{dest}"]  # fmt: skip
    assert main(argv) == 0
    assert (dest / "manifest.json").read_bytes() == multi.images[2].manifest


def test_copy_failure_is_one_line(
    tmp_path: Path, layout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["copy", f"oci:{layout}:nope", f"dir:{tmp_path / 'out'}"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert_one_line_error(err)
    assert not (tmp_path / "out" / "manifest.json").exists()


# -- output helpers -----------------------------------------------------------------------------


def test_go_json_escaping() -> None:
    # The expected text is what skopeo (Go's encoding/json) printed for the same label value.
    value = "é\u2028\n\t\b\f\x01\x7f/'\\\"<>&"
    expected = '"é\\u2028\\n\\t\\u0008\\u000c\\u0001\x7f/\'\\\\\\"\\u003c\\u003e\\u0026"'
    assert quote(value) == expected
    assert json.loads(quote(value)) == value


def test_go_json_layout() -> None:
    assert dumps({"a": [], "b": {}, "c": [1, None, True], "d": {"x": "y"}}) == (
        '{\n    "a": [],\n    "b": {},\n    "c": [\n        1,\n        null,\n        true\n'
        '    ],\n    "d": {\n        "x": "y"\n    }\n}'
    )


@pytest.mark.parametrize(
    ("size", "text"), [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (1258291, "1.2 MiB")]
)
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text


# -- flags to options ---------------------------------------------------------------------------


def test_flags_map_to_transport_options() -> None:
    from imagetypes.cli import _bare_bool_flags, _build_parser, _transport_options
    from imagetypes.platform import Platform
    from imagetypes.types import Credentials

    argv = ["--override-arch", "arm64", "copy", "--src-tls-verify", "--dest-tls-verify=false"]
    argv += ["--src-creds", "me:secret", "--dest-authfile", "auth.json", "oci:a", "dir:b"]
    args = _build_parser().parse_args(_bare_bool_flags(argv))
    assert (args.source, args.destination) == ("oci:a", "dir:b")
    src, dest = _transport_options(args, "src_"), _transport_options(args, "dest_")
    assert src.tls_verify is True
    assert src.credentials == Credentials("me", "secret")
    assert src.platform is not None
    assert src.platform.architecture == "arm64"
    assert dest.tls_verify is False
    assert dest.credentials is None
    assert dest.authfile == "auth.json"

    args = _build_parser().parse_args(_bare_bool_flags(["inspect", "--tls-verify", "oci:x"]))
    assert args.image == "oci:x"
    options = _transport_options(args)
    assert options.tls_verify is True
    assert options.platform is None

    argv = ["inspect", "--override-os", "windows", "--override-variant", "v7", "oci:x"]
    options = _transport_options(_build_parser().parse_args(argv))
    assert options.platform == Platform("windows", Platform.current().architecture, "v7")


def test_debug_logs_debug_messages(
    layout: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--debug", "copy", "--format", "v2s2", f"oci:{layout}:single", f"dir:{tmp_path / 'o'}"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "DEBUG imagetypes.cli._progress: converting manifest" in err
    # Without --debug, debug messages stay hidden.
    assert main(["copy", "--format", "v2s2", f"oci:{layout}:single", f"dir:{tmp_path / 'p'}"]) == 0
    assert "DEBUG" not in capsys.readouterr().err


def test_link_blobs_choices_are_the_library_modes() -> None:
    # The parser spells the modes out (it must not load imagetypes.types): kept in step here.
    import argparse

    from imagetypes.cli._copyflags import add_compression_flags
    from imagetypes.copy import CopyOptions
    from imagetypes.types import LINK_MODES

    parser = argparse.ArgumentParser()
    add_compression_flags(parser)
    action = next(a for a in parser._actions if a.dest == "link_blobs")
    assert tuple(action.choices or ()) == LINK_MODES
    assert action.default == CopyOptions().link_blobs
