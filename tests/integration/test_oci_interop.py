"""The oci: transport against real peers: umoci and skopeo write what we read, and read what
we write; oci-image-tool and the OCI JSON schemas accept our layouts."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from imagetypes import mediatypes as mt
from imagetypes.descriptor import BlobInfo, Descriptor
from imagetypes.digest import Digest
from imagetypes_transports.oci import REF_NAME_ANNOTATION, OCILayout, transport
from tests.imagebuilder import BuiltImage, BuiltIndex, make_image, make_multiarch, write_oci_layout
from tests.schemas import require_schemas, validate

pytestmark = pytest.mark.integration


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed")
    return path


def run(*args: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, cwd=cwd, check=False
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} failed ({result.returncode}):\n{result.stderr}"
        )
    return result.stdout


def run_bytes(*args: str | Path) -> bytes:
    result = subprocess.run([str(a) for a in args], capture_output=True, check=False)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed:\n{result.stderr.decode()}")
    return result.stdout


# -- independent readers of a layout (no imagetypes code) ----------------------------------
def index_entries(path: Path) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads((path / "index.json").read_bytes())["manifests"]
    return entries


def stored_manifest(path: Path, name: str) -> bytes:
    """The manifest bytes a tool stored for ``name``, read straight from the files."""
    for entry in index_entries(path):
        if (entry.get("annotations") or {}).get(REF_NAME_ANNOTATION) == name:
            return stored_blob(path, entry["digest"])
    raise AssertionError(f"{name!r} is not in {path}/index.json")


def stored_blob(path: Path, digest: str) -> bytes:
    algorithm, hexpart = digest.split(":")
    return (path / "blobs" / algorithm / hexpart).read_bytes()


# -- through imagetypes --------------------------------------------------------------------
def read_image(ref: str) -> dict[Digest, bytes]:
    """Every manifest and blob of the image at ``oci:ref``, read and verified by our source."""
    out: dict[Digest, bytes] = {}
    with transport.parse_reference(ref).open_source() as src:
        top, media_type = src.get_manifest()
        out[Digest.from_bytes(top)] = top
        manifests = [top]
        if mt.is_index(media_type):
            manifests = []
            for entry in json.loads(top)["manifests"]:
                data, instance_type = src.get_manifest(Digest.parse(entry["digest"]))
                assert instance_type == entry["mediaType"]
                out[Digest.from_bytes(data)] = data
                manifests.append(data)
        for manifest in manifests:
            obj = json.loads(manifest)
            for d in [obj["config"], *obj["layers"]]:
                desc = Descriptor.from_dict(d)
                with src.get_blob(desc) as reader:
                    out[desc.digest] = reader.read()
    return out


def write_image(ref: str, item: BuiltImage | BuiltIndex) -> None:
    """Write through the ImageDestination API, as the copy engine would."""
    with transport.parse_reference(ref).open_destination() as dest:
        images = item.images if isinstance(item, BuiltIndex) else [item]
        for img in images:
            for digest, blob in img.blobs.items():
                info = BlobInfo("", digest, len(blob))
                if dest.try_reusing_blob(info) is None:
                    dest.put_blob(io.BytesIO(blob), info)
            if isinstance(item, BuiltIndex):
                dest.put_manifest(img.manifest, img.media_type, img.digest)
        dest.put_manifest(item.manifest, item.media_type)
        dest.commit()


def all_blobs(item: BuiltImage | BuiltIndex) -> dict[Digest, bytes]:
    out: dict[Digest, bytes] = {item.digest: item.manifest}
    for img in item.images if isinstance(item, BuiltIndex) else [item]:
        out[img.digest] = img.manifest
        out.update(img.blobs)
    return out


# -- umoci writes, we read -----------------------------------------------------------------
def test_read_umoci_layout(tmp_path: Path) -> None:
    need("umoci")
    layout = tmp_path / "umoci"
    run("umoci", "init", "--layout", layout)
    run("umoci", "new", "--image", f"{layout}:base")
    (tmp_path / "hello.txt").write_text("hello from umoci\n")
    run("umoci", "insert", "--rootless", "--image", f"{layout}:base",
        tmp_path / "hello.txt", "/etc/hello.txt")  # fmt: skip
    run("umoci", "config", "--image", f"{layout}:base", "--tag", "configured",
        "--config.cmd", "/bin/true", "--config.label", "org.example=umoci")  # fmt: skip

    listed = sorted(run("umoci", "ls", "--layout", layout).split())
    assert listed == ["base", "configured"]
    assert sorted(OCILayout(layout).ref_names()) == listed
    for name in listed:
        stored = stored_manifest(layout, name)
        with transport.parse_reference(f"{layout}:{name}").open_source() as src:
            assert src.get_manifest() == (stored, mt.OCI_MANIFEST)
        content = read_image(f"{layout}:{name}")
        manifest = json.loads(stored)
        assert len(manifest["layers"]) == 1  # the inserted file
        config = json.loads(content[Digest.parse(manifest["config"]["digest"])])
        if name == "configured":
            assert config["config"]["Cmd"] == ["/bin/true"]
            assert config["config"]["Labels"] == {"org.example": "umoci"}


# -- skopeo writes, we read ----------------------------------------------------------------
@pytest.mark.parametrize("multi_arch", [False, True])
def test_read_skopeo_copy(tmp_path: Path, multi_arch: bool) -> None:
    need("skopeo")
    item: BuiltImage | BuiltIndex = make_multiarch(3) if multi_arch else make_image(3)
    source = write_oci_layout(tmp_path / "a", {"x": item})
    target = tmp_path / "b"
    extra = ["--all"] if multi_arch else []
    run("skopeo", "copy", "--quiet", *extra, f"oci:{source}:x", f"oci:{target}:y")

    stored = stored_manifest(target, "y")
    assert stored == item.manifest  # skopeo kept the bytes: we compare against them too
    assert run_bytes("skopeo", "inspect", "--raw", f"oci:{target}:y") == stored
    with transport.parse_reference(f"{target}:y").open_source() as src:
        assert src.get_manifest() == (stored, item.media_type)
    assert read_image(f"{target}:y") == all_blobs(item)


# -- we write, skopeo and umoci read -------------------------------------------------------
@pytest.mark.parametrize("multi_arch", [False, True])
def test_skopeo_reads_what_we_write(tmp_path: Path, multi_arch: bool) -> None:
    need("skopeo")
    item: BuiltImage | BuiltIndex = make_multiarch(4) if multi_arch else make_image(4)
    ours = tmp_path / "ours"
    write_image(f"{ours}:t", item)
    write_image(f"{ours}:second", make_image(40))  # into the now existing layout

    for name, expected in (("t", item.manifest), ("second", make_image(40).manifest)):
        assert run_bytes("skopeo", "inspect", "--raw", f"oci:{ours}:{name}") == expected

    # skopeo picks an instance by platform and reads its config: same digest as built.
    image = item.images[1] if isinstance(item, BuiltIndex) else item
    os_, arch, variant = image.platform
    platform = ["--override-os", os_, "--override-arch", arch]
    if variant:
        platform += ["--override-variant", variant]
    config = run_bytes("skopeo", *platform, "inspect", "--config", "--raw", f"oci:{ours}:t")
    assert Digest.from_bytes(config) == image.config_digest
    inspected = json.loads(run("skopeo", *platform, "inspect", f"oci:{ours}:t"))
    assert inspected["Digest"] == str(item.digest)  # skopeo reports the top-level digest
    assert inspected["Architecture"] == arch

    copied = tmp_path / "copied"
    extra = ["--all"] if multi_arch else []
    run("skopeo", "copy", "--quiet", *extra, f"oci:{ours}:t", f"oci:{copied}:c")
    assert stored_manifest(copied, "c") == item.manifest
    assert read_image(f"{copied}:c") == all_blobs(item)


def test_umoci_lists_what_we_write(tmp_path: Path) -> None:
    need("umoci")
    ours = tmp_path / "ours"
    write_image(f"{ours}:first", make_image(5))
    write_image(f"{ours}:second", make_image(6))
    write_image(f"{ours}:first", make_image(7))  # replaced, not duplicated
    assert sorted(run("umoci", "ls", "--layout", ours).split()) == ["first", "second"]
    # umoci can build on our image: it reads our manifest, config and layers.
    run("umoci", "config", "--image", f"{ours}:first", "--tag", "derived",
        "--config.label", "org.example.derived=yes")  # fmt: skip
    assert sorted(OCILayout(ours).ref_names()) == ["derived", "first", "second"]
    derived = json.loads(stored_manifest(ours, "derived"))
    assert derived["layers"] == json.loads(make_image(7).manifest)["layers"]
    assert read_image(f"{ours}:derived")  # every blob verifies


def test_mixed_writers_share_one_layout(tmp_path: Path) -> None:
    need("skopeo")
    shared = tmp_path / "shared"
    write_image(f"{shared}:ours", make_image(8))
    source = write_oci_layout(tmp_path / "src", {"x": make_multiarch(9)})
    run("skopeo", "copy", "--quiet", "--all", f"oci:{source}:x", f"oci:{shared}:theirs")
    write_image(f"{shared}:ours2", make_image(10))
    assert OCILayout(shared).ref_names() == ["ours", "theirs", "ours2"]
    for name in ("ours", "theirs", "ours2"):
        assert run_bytes("skopeo", "inspect", "--raw", f"oci:{shared}:{name}") == (
            stored_manifest(shared, name)
        )
        assert read_image(f"{shared}:{name}")


# -- validators ----------------------------------------------------------------------------
def test_oci_image_tool_validates_our_layouts(tmp_path: Path) -> None:
    need("oci-image-tool")
    ours = tmp_path / "ours"
    write_image(f"{ours}:single", make_image(11))
    write_image(f"{ours}:other", make_image(12, (100, 200, 300)))
    # oci-image-tool 1.0.0-rc1 has no "imageLayout" type: "image" autodetects a layout and
    # validates every ref (or those named with --ref); it skips indexes with a warning.
    out = run("oci-image-tool", "validate", "--type", "image", ours)
    assert "Validation succeeded" in out
    for name in ("single", "other"):
        run("oci-image-tool", "validate", "--type", "image", "--ref", f"name={name}", ours)
    write_image(f"{ours}:multi", make_multiarch(13))
    assert "Validation succeeded" in run("oci-image-tool", "validate", "--type", "image", ours)

    # The validator does catch a broken layout: lose a layer of ours.
    layer = json.loads(make_image(11).manifest)["layers"][0]["digest"]
    broken = tmp_path / "broken"
    shutil.copytree(ours, broken)
    (broken / "blobs" / "sha256" / layer.split(":")[1]).unlink()
    result = subprocess.run(
        ["oci-image-tool", "validate", "--type", "image", "--ref", "name=single", str(broken)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0


def test_index_json_matches_the_schema(tmp_path: Path) -> None:
    require_schemas()
    ours = tmp_path / "ours"
    write_image(f"{ours}:a", make_image(14))
    write_image(f"{ours}:b", make_multiarch(15))
    write_image(str(ours), make_image(16))  # an unnamed entry
    write_image(f"{ours}:a", make_image(17))  # a replaced one
    transport.parse_reference(f"{ours}:b").delete()
    validate((ours / "index.json").read_bytes(), "index")
    validate((ours / "oci-layout").read_bytes(), "layout")
    for entry in index_entries(ours):
        validate(entry, "descriptor")
        validate(stored_blob(ours, entry["digest"]), "manifest")
    assert [(e.get("annotations") or {}).get(REF_NAME_ANNOTATION) for e in index_entries(ours)] == [
        None,
        "a",
    ]


def test_delete_leaves_a_layout_skopeo_reads(tmp_path: Path) -> None:
    need("skopeo")
    first = make_image(18, labels={"n": "1"})
    second = make_image(18, labels={"n": "2"})  # shares its layers with first
    ours = tmp_path / "ours"
    write_image(f"{ours}:first", first)
    write_image(f"{ours}:second", second)
    transport.parse_reference(f"{ours}:first").delete()
    assert OCILayout(ours).ref_names() == ["second"]
    assert run_bytes("skopeo", "inspect", "--raw", f"oci:{ours}:second") == second.manifest
    run("skopeo", "copy", "--quiet", f"oci:{ours}:second", f"oci:{tmp_path / 'out'}:s")
    files = {p.name for p in (ours / "blobs" / "sha256").iterdir()}
    assert files == {d.hex for d in all_blobs(second)}
    for name in files:
        data = (ours / "blobs" / "sha256" / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == name
