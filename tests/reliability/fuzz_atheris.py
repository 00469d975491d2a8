"""Coverage-guided fuzzing with atheris (libFuzzer), run by hand; pytest does not collect it.

    pip install atheris
    python tests/reliability/fuzz_atheris.py TARGET [libFuzzer options, e.g. -runs=100000]

TARGET is one of ``manifest``, ``reference``, ``transport-reference``, ``www-authenticate``,
``docker-archive``. A crash is any exception that is not an ImageError; libFuzzer writes the
input that caused it to ``crash-*`` in the working directory (run it from a scratch folder).
The hypothesis tests in test_fuzz.py check the same properties deterministically in CI.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from imagetypes import (
        ImageError,
        Reference,
        TransportOptions,
        list_transports,
        parse_manifest,
        parse_reference,
    )
    from imagetypes_transports.docker._auth import parse_challenges
    from imagetypes_transports.docker_archive import transport as archive_transport

_TRANSPORTS = sorted(t.name for t in list_transports())
_WORK = Path(tempfile.mkdtemp(prefix="imagetypes-atheris-"))


def _manifest(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    media_type = fdp.PickValueInList([None, "", "application/vnd.oci.image.manifest.v1+json"])
    m = parse_manifest(fdp.ConsumeBytes(fdp.remaining_bytes()), media_type)
    m.to_dict()
    assert parse_manifest(m.raw, m.media_type) == m


def _reference(data: bytes) -> None:
    text = atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(400)
    ref = Reference.parse(text)
    assert Reference.parse(str(ref)) == ref


def _transport_reference(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    name = fdp.PickValueInList(_TRANSPORTS)
    ref = parse_reference(f"{name}:{fdp.ConsumeUnicodeNoSurrogates(300)}")
    assert parse_reference(str(ref)) == ref


def _www_authenticate(data: bytes) -> None:
    parse_challenges([atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(2000)])


def _docker_archive(data: bytes) -> None:
    path = _WORK / "archive.tar"
    # A fresh inode each time: the reader caches indexes by file identity.
    path.unlink(missing_ok=True)
    path.write_bytes(data)
    options = TransportOptions(tmpdir=str(_WORK))
    with archive_transport.parse_reference(str(path)).open_source(options) as src:
        raw, media_type = src.get_manifest()
        manifest = parse_manifest(raw, media_type)
        for desc in (manifest.config, *manifest.layers):  # type: ignore[attr-defined]
            src.get_blob(desc).read_to_end()


TARGETS: dict[str, Callable[[bytes], None]] = {
    "manifest": _manifest,
    "reference": _reference,
    "transport-reference": _transport_reference,
    "www-authenticate": _www_authenticate,
    "docker-archive": _docker_archive,
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [libFuzzer options]")
    target = TARGETS[sys.argv[1]]

    def one_input(data: bytes) -> None:
        with contextlib.suppress(ImageError):  # refusing bad input is the right answer
            target(data)

    os.chdir(_WORK)  # parse_reference of a relative path must create nothing, anywhere
    atheris.Setup([sys.argv[0], *sys.argv[2:]], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
