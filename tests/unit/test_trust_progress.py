"""Signing and storing signatures in the progress: the events a copy reports for API users, and
skopeo's lines ("Signing manifest using ...", "Storing signatures") on a non-terminal stderr,
with stdout left empty."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from imagetypes.cli import main
from imagetypes.cli._copyflags import BlobBars, SummaryLines
from imagetypes.cli._progress import LineProgress, signature_line
from imagetypes.copy import CopyOptions, EventCollector, ManifestWritten, copy_image
from imagetypes.copy._progress import SigningManifest, StoringSignatures
from imagetypes.copy._trust import Signer, signatures_to_store
from imagetypes.digest import Digest
from imagetypes.manifest import parse_manifest
from imagetypes.reference import Reference
from tests.imagebuilder import BuiltImage, make_image, make_multiarch, write_oci_layout

REF = "quay.io/ns/app:1.0"
PASSPHRASE = "open sesame"


@pytest.fixture(scope="module")
def sigstore_key() -> tuple[bytes, bytes]:
    pytest.importorskip("cryptography")
    from imagetypes.trust import generate_sigstore_key

    return generate_sigstore_key(PASSPHRASE)


@pytest.fixture
def image() -> BuiltImage:
    return make_image(seed=91, layer_sizes=(200,))


def dir_image(path: Path, image: BuiltImage, signatures: tuple[bytes, ...] = ()) -> Path:
    path.mkdir(parents=True)
    (path / "version").write_text("Directory Transport Version: 1.1\n")
    (path / "manifest.json").write_bytes(image.manifest)
    for digest, blob in image.blobs.items():
        (path / digest.hex).write_bytes(blob)
    for n, signature in enumerate(signatures, 1):
        (path / f"signature-{n}").write_bytes(signature)
    return path


# -- the lines ----------------------------------------------------------------------------------

DIGEST = Digest.from_bytes(b"m")


@pytest.mark.parametrize(
    ("event", "line"),
    [
        (SigningManifest(DIGEST, "simple", REF), "Signing manifest using simple signing"),
        (SigningManifest(DIGEST, "sigstore", REF), "Signing manifest using a sigstore signature"),
        (StoringSignatures(DIGEST, 2, 1), "Storing signatures"),
        (StoringSignatures(DIGEST, 1, 0, index=True), "Storing list signatures"),
    ],
)
def test_skopeo_lines(event: SigningManifest | StoringSignatures, line: str) -> None:
    assert signature_line(event) == line
    for renderer in (LineProgress, SummaryLines):
        stream = io.StringIO()
        renderer(stream)(event)
        assert stream.getvalue() == line + "\n"
    # On a terminal, the same line is printed above the bars.
    stream = io.StringIO()
    BlobBars(stream)(event)
    assert line in stream.getvalue()


def test_other_events_have_no_signature_line() -> None:
    assert (
        signature_line(ManifestWritten(DIGEST, "application/vnd.oci.image.manifest.v1+json"))
        is None
    )


# -- the events ---------------------------------------------------------------------------------


def test_copy_reports_sigstore_signing_then_storing(
    sigstore_key: tuple[bytes, bytes], image: BuiltImage, tmp_path: Path
) -> None:
    src = dir_image(tmp_path / "src", image)
    events = EventCollector()
    copy_image(
        f"dir:{src}",
        f"dir:{tmp_path / 'out'}",
        CopyOptions(
            sign_by_sigstore_private_key=sigstore_key[0],
            sign_passphrase=PASSPHRASE,
            sign_identity=REF,
            progress=events,
        ),
    )
    kinds = [type(e) for e in events.events]
    written = kinds.index(ManifestWritten)
    assert kinds[written + 1 : written + 3] == [SigningManifest, StoringSignatures]
    signing = events.events[written + 1]
    assert signing == SigningManifest(image.digest, "sigstore", REF)
    assert events.events[written + 2] == StoringSignatures(image.digest, 1, 1, False)
    assert (tmp_path / "out" / "signature-1").is_file()


def test_copy_without_signing_reports_no_signing(image: BuiltImage, tmp_path: Path) -> None:
    src = dir_image(tmp_path / "src", image)
    events = EventCollector()
    copy_image(f"dir:{src}", f"dir:{tmp_path / 'out'}", CopyOptions(progress=events))
    assert not events.of_type(SigningManifest)
    assert not events.of_type(StoringSignatures)


def test_signatures_to_store(sigstore_key: tuple[bytes, bytes], image: BuiltImage) -> None:
    manifest = parse_manifest(image.manifest)
    events = EventCollector()
    # Nothing to store: nothing reported.
    assert signatures_to_store(None, [], manifest, events) == []
    assert events.events == []
    # Copied signatures alone: stored, none made.
    assert signatures_to_store(None, [b"old"], manifest, events) == [b"old"]
    assert events.events == [StoringSignatures(image.digest, 1, 0, False)]
    # With a signer: each new signature is announced, then all are stored, copied first.
    signer = Signer(
        identity=Reference.parse(REF),
        gpg_key=None,
        gpg_home=None,
        passphrase=PASSPHRASE,
        sigstore_key=sigstore_key[0],
    )
    events.events.clear()
    stored = signatures_to_store(signer, [b"old"], manifest, events)
    assert len(stored) == 2
    assert stored[0] == b"old"
    assert stored[1].startswith(b"\x00sigstore-json\n")
    assert events.events == [
        SigningManifest(image.digest, "sigstore", REF),
        StoringSignatures(image.digest, 2, 1, False),
    ]
    # No callback: the same signatures, nothing reported anywhere.
    assert len(signatures_to_store(signer, [], manifest, None)) == 1


def test_index_signatures_are_list_signatures(
    sigstore_key: tuple[bytes, bytes], tmp_path: Path
) -> None:
    built = make_multiarch(seed=92)
    layout = write_oci_layout(tmp_path / "layout", {"multi": built})
    events = EventCollector()
    copy_image(
        f"oci:{layout}:multi",
        f"dir:{tmp_path / 'out'}",
        CopyOptions(
            instances="all",
            sign_by_sigstore_private_key=sigstore_key[0],
            sign_passphrase=PASSPHRASE,
            sign_identity=REF,
            progress=events,
        ),
    )
    storing = events.of_type(StoringSignatures)
    assert len(storing) == len(built.images) + 1
    assert [e.index for e in storing if isinstance(e, StoringSignatures)] == [False] * len(
        built.images
    ) + [True]
    assert len(events.of_type(SigningManifest)) == len(built.images) + 1


# -- the command line, stderr not a terminal ----------------------------------------------------


def test_cli_copy_prints_signing_on_stderr_only(
    sigstore_key: tuple[bytes, bytes],
    image: BuiltImage,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src = dir_image(tmp_path / "src", image)
    key = tmp_path / "key.private"
    key.write_bytes(sigstore_key[0])
    passphrase = tmp_path / "pass"
    passphrase.write_text(PASSPHRASE + "\n")
    argv = [
        "--insecure-policy", "copy", "--sign-by-sigstore-private-key", str(key),
        "--sign-passphrase-file", str(passphrase), "--sign-identity", REF,
        f"dir:{src}", f"dir:{tmp_path / 'out'}",
    ]  # fmt: skip
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[-3:] == [
        "Writing manifest to image destination",
        "Signing manifest using a sigstore signature",
        "Storing signatures",
    ]
    # -q: nothing at all.
    assert main([*argv[:2], "-q", *argv[2:-1], f"dir:{tmp_path / 'quiet'}"]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "Signing" not in err
