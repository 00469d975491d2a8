"""Build the example image shipped in ``examples/hello-layout``, with imagetypes itself.

The image is a tiny multi-arch OCI layout: an index (tagged ``latest``) over a linux/amd64 and a
linux/arm64 image, each with one gzip layer holding ``/hello.txt``. Everything is deterministic
(fixed timestamps, owners and gzip header), so running this again gives byte-identical files::

    python examples/make_example.py                   # rewrites examples/hello-layout
    python examples/make_example.py --output ./other  # somewhere else

It is written through the library's public API: the ``oci:`` transport's
:class:`~imagetypes.ImageDestination` (``put_blob``, ``put_manifest``, ``commit``) and the
manifest builders :meth:`OCIManifest.build <imagetypes.manifest.OCIManifest.build>` and
:meth:`OCIIndex.build <imagetypes.manifest.OCIIndex.build>`.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import struct
import sys
import tarfile
import zlib
from pathlib import Path

from imagetypes import BlobInfo, Descriptor, Digest, Platform, parse_reference
from imagetypes import mediatypes as mt
from imagetypes.manifest import OCIIndex, OCIManifest

#: The tag (``org.opencontainers.image.ref.name``) of the index in the layout.
TAG = "latest"
#: Where the shipped example lives, next to this script.
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "hello-layout"
#: Every timestamp in the image (files, config, history).
CREATED = "2024-01-01T00:00:00Z"
_MTIME = 1704067200  # CREATED as a Unix time
PLATFORMS = (Platform("linux", "amd64"), Platform("linux", "arm64", "v8"))


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _gzip(data: bytes) -> bytes:
    """gzip with a fixed header (no name, mtime 0, OS unknown).

    Why not ``gzip.compress``: its header bytes differ between Python versions (3.11 delegates
    to zlib, which writes another OS byte), and the example must be byte-identical everywhere.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS, 9)
    body = compressor.compress(data) + compressor.flush()
    header = b"\x1f\x8b\x08\x00" + struct.pack("<I", 0) + b"\x02\xff"
    trailer = struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, len(data) & 0xFFFFFFFF)
    return header + body + trailer


def _layer_tar(platform: Platform) -> bytes:
    """An uncompressed tar with ``hello.txt`` (and a little padding text, for a few KiB)."""
    files = {
        "hello.txt": f"Hello from imagetypes! This is the {platform} image.\n".encode(),
        "etc/motd": (
            b"This image was built by examples/make_example.py with the imagetypes API.\n" * 8
        ),
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for directory in ("etc",):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = _MTIME
            tar.addfile(info)
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            info.mtime = _MTIME
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def _config(platform: Platform, diff_id: Digest) -> bytes:
    """An OCI image config, keys in the order Go (and so skopeo and umoci) writes them."""
    config: dict[str, object] = {"created": CREATED, "architecture": platform.architecture}
    if platform.variant:
        config["variant"] = platform.variant
    config["os"] = platform.os
    config["config"] = {
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["cat", "/hello.txt"],
        "WorkingDir": "/",
        "Labels": {"org.opencontainers.image.title": "hello"},
    }
    config["rootfs"] = {"type": "layers", "diff_ids": [str(diff_id)]}
    config["history"] = [
        {"created": CREATED, "created_by": "examples/make_example.py", "comment": "hello.txt"}
    ]
    return _dumps(config)


def build_example(output: Path) -> Digest:
    """Write the example layout to ``output`` (which must not exist); return the index digest."""
    destination = parse_reference(f"oci:{output}:{TAG}")
    entries: list[Descriptor] = []
    with destination.open_destination() as dest:
        for platform in PLATFORMS:
            tar = _layer_tar(platform)
            layer = _gzip(tar)
            layer_desc = dest.put_blob(
                io.BytesIO(layer),
                BlobInfo(mt.OCI_LAYER_GZIP, Digest.from_bytes(layer), len(layer)),
            )
            config = _config(platform, Digest.from_bytes(tar))
            config_desc = dest.put_blob(
                io.BytesIO(config),
                BlobInfo(mt.OCI_CONFIG, Digest.from_bytes(config), len(config)),
            )
            manifest = OCIManifest.build(config_desc, [layer_desc])
            dest.put_manifest(manifest.raw, mt.OCI_MANIFEST, instance=manifest.digest)
            entries.append(manifest.descriptor(platform=platform))
        index = OCIIndex.build(entries)
        dest.put_manifest(index.raw, mt.OCI_INDEX)
        dest.commit()
    return index.digest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="where to write the layout (replaced if it is an OCI layout already)",
    )
    args = parser.parse_args(argv)
    output: Path = args.output.resolve()
    if output.exists():
        if not (output / "oci-layout").is_file():
            parser.error(f"{output} exists and is not an OCI layout; not replacing it")
        shutil.rmtree(output)
    digest = build_example(output)
    print(f"wrote oci:{output}:{TAG} (index {digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
