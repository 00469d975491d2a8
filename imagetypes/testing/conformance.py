"""A conformance suite for transports: does a transport keep the contracts of the ABCs?

A transport author gives a factory that turns a short name into a fresh, empty location of
the transport (a reference or its ``transport:details`` string), and runs the checks::

    from imagetypes.testing.conformance import check_transport

    def test_my_transport(tmp_path):
        check_transport(lambda name: f"zip:{tmp_path / name}.zip")

or one test per check, so failures show up one by one::

    from imagetypes.testing.conformance import ConformanceSuite, CHECK_NAMES

    @pytest.mark.parametrize("check", CHECK_NAMES)
    def test_my_transport(check, tmp_path):
        suite = ConformanceSuite(lambda name: f"zip:{tmp_path / name}.zip")
        result = suite.run(check)
        if result.skipped:
            pytest.skip(result.message)

Names passed to the factory are lowercase letters, digits and dashes, valid as file names and
as registry repository names. The checks: write-then-read of single images (OCI and Docker
schema 2, byte-identical manifests, verified blobs) and of a multi-platform index; blob reuse
after a write; nothing readable after a destination is closed without commit; a corrupt blob
stream rejected with :class:`~imagetypes.VerificationError` and nothing committed; signatures;
unknown blobs and missing images raising the library's errors; and copies to and from the
``oci:`` transport through :func:`~imagetypes.copy_image`.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import attrs

from .. import mediatypes as mt
from ..copy import CopyOptions, copy_image
from ..descriptor import BlobInfo, Descriptor
from ..digest import Digest
from ..errors import ImageError, NotFoundError, UnsupportedError, VerificationError
from ..manifest import ImageManifest, parse_manifest
from ..plugins import parse_reference
from ..types import ImageReference, ImageSource, TransportOptions
from .random import RandomImage, random_image, random_index

__all__ = [
    "CHECK_NAMES",
    "CheckResult",
    "ConformanceError",
    "ConformanceReport",
    "ConformanceSuite",
    "check_transport",
]

ReferenceFactory = Callable[[str], "str | ImageReference"]
Outcome = Literal["passed", "failed", "skipped"]


class ConformanceError(AssertionError):
    """A transport broke a contract. The message names the check and what went wrong."""


class _Skip(Exception):
    """A check does not apply to this transport."""


@attrs.frozen
class CheckResult:
    """The outcome of one check: ``passed``, ``failed`` (with why) or ``skipped`` (with why)."""

    name: str
    outcome: Outcome
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"

    @property
    def failed(self) -> bool:
        return self.outcome == "failed"

    @property
    def skipped(self) -> bool:
        return self.outcome == "skipped"


@attrs.frozen
class ConformanceReport:
    """The results of a run of the suite, in check order."""

    results: tuple[CheckResult, ...]

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if r.failed)

    @property
    def passed(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.results if r.passed)

    @property
    def skipped(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.results if r.skipped)

    @property
    def ok(self) -> bool:
        return not self.failures

    def raise_for_failures(self) -> None:
        """Raise :class:`ConformanceError` listing every failed check, if any failed."""
        if self.failures:
            lines = [f"{len(self.failures)} conformance check(s) failed:"]
            lines += [f"- {r.name}: {r.message}" for r in self.failures]
            raise ConformanceError("\n".join(lines))


def _expect(condition: bool, message: str) -> None:
    # Not `assert`: the suite must keep checking under `python -O`.
    if not condition:
        raise ConformanceError(message)


def _short(data: bytes) -> str:
    return repr(data[:120]) + ("..." if len(data) > 120 else "")


@attrs.frozen(kw_only=True)
class ConformanceSuite:
    """The checks, bound to a transport's reference factory and what the transport supports."""

    #: Gives a fresh location of the transport for a name (each check uses its own names).
    make_reference: ReferenceFactory
    #: The transport stores indexes (multi-platform images) with their instances.
    supports_index: bool = True
    #: The transport stores signatures.
    supports_signatures: bool = False
    #: ``try_reusing_blob`` finds a blob put earlier in the same destination.
    supports_blob_reuse: bool = True
    #: Manifests read back byte for byte as written. Transports that store images in another
    #: form (``docker-archive:`` regenerates manifests) set False: then the config must read
    #: back unchanged and every blob the manifest read back lists must verify.
    preserves_manifests: bool = True
    #: A destination may replace an image already there (False: it refuses, e.g. archives
    #: that are only ever written whole).
    supports_overwrite: bool = True
    #: Options for opening sources and destinations (e.g. ``tls_verify=False``).
    options: TransportOptions | None = None
    #: Seed for the random images.
    seed: int = 0

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the checks, in the order :meth:`run_all` runs them."""
        return CHECK_NAMES

    def run(self, name: str) -> CheckResult:
        """Run one check; a failure is returned (not raised), as is a skip."""
        method: Callable[[], None] | None = getattr(self, f"check_{name.replace('-', '_')}", None)
        if name not in CHECK_NAMES or method is None:
            raise ValueError(
                f"unknown conformance check {name!r} (known: {', '.join(CHECK_NAMES)})"
            )
        try:
            method()
        except _Skip as e:
            return CheckResult(name, "skipped", str(e))
        except ConformanceError as e:
            return CheckResult(name, "failed", str(e))
        except Exception as e:
            return CheckResult(name, "failed", f"unexpected {type(e).__name__}: {e}")
        return CheckResult(name, "passed")

    def run_all(self, names: Sequence[str] | None = None) -> ConformanceReport:
        """Run the checks (all, or those named) and report on each."""
        return ConformanceReport(tuple(self.run(n) for n in (names or CHECK_NAMES)))

    # -- helpers ---------------------------------------------------------------------------
    def _ref(self, name: str) -> ImageReference:
        made = self.make_reference(name)
        return parse_reference(made) if isinstance(made, str) else made

    def _accepts(self, ref: ImageReference, media_type: str) -> bool:
        with ref.open_destination(self.options) as destination:
            types = destination.capabilities.manifest_types
        return types is None or media_type in types

    def _read_back(self, ref: ImageReference, image: RandomImage, where: str) -> None:
        with ref.open_source(self.options) as source:
            data, media_type = source.get_manifest()
            self._check_image(source, image, data, media_type, None, where)

    def _check_image(
        self,
        source: ImageSource,
        image: RandomImage,
        data: bytes,
        media_type: str,
        instance: Digest | None,
        where: str,
    ) -> None:
        what = f"{where}: manifest{f' of instance {instance}' if instance else ''}"
        if not self.preserves_manifests:
            manifest = parse_manifest(data, media_type or None)
            _expect(
                isinstance(manifest, ImageManifest),
                f"{what} read back as a {manifest.media_type}, not an image manifest",
            )
            assert isinstance(manifest, ImageManifest)
            with source.get_blob(manifest.config) as reader:
                config = reader.read()
            _expect(config == image.config, f"{what}: the config read back differs")
            _expect(
                len(manifest.layers) == len(image.layers),
                f"{what} lists {len(manifest.layers)} layers, {len(image.layers)} were written",
            )
            self._verify_blobs(source, data, media_type, where)
            return
        _expect(
            data == image.manifest,
            f"{what} read back differs from what was written: {_short(data)} "
            f"instead of {_short(image.manifest)}",
        )
        _expect(
            mt.normalize(media_type) == image.media_type,
            f"{what} read back as {media_type!r}, written as {image.media_type!r}",
        )
        parsed = image.parsed
        for descriptor in (parsed.config, *parsed.layers):
            with source.get_blob(descriptor) as reader:
                content = reader.read()
            _expect(
                content == image.blobs[descriptor.digest],
                f"{where}: blob {descriptor.digest} read back differs from what was written",
            )

    @staticmethod
    def _verify_blobs(source: ImageSource, data: bytes, media_type: str, where: str) -> None:
        """Read every blob an image manifest lists; the source's verification checks each."""
        manifest = parse_manifest(data, media_type or None)
        if not isinstance(manifest, ImageManifest):
            raise ConformanceError(f"{where}: expected an image manifest, got {media_type}")
        for descriptor in (manifest.config, *manifest.layers):
            if descriptor.urls:
                continue
            try:
                with source.get_blob(descriptor) as reader:
                    reader.read_to_end()
            except VerificationError as e:
                raise ConformanceError(
                    f"{where}: blob {descriptor.digest} does not verify: {e}"
                ) from e

    def _expect_unreadable(self, ref: ImageReference, where: str) -> None:
        try:
            with ref.open_source(self.options) as source:
                source.get_manifest()
        except ImageError:
            return
        except Exception as e:
            raise ConformanceError(
                f"{where}: reading {ref} raised {type(e).__name__} ({e}), "
                "not an imagetypes ImageError"
            ) from e
        raise ConformanceError(f"{where}: {ref} is readable, but nothing was committed there")

    # -- the checks ------------------------------------------------------------------------
    def check_reference_roundtrip(self) -> None:
        """``string_within_transport`` parses back to an equal reference."""
        ref = self._ref("conformance-reference")
        again = ref.transport.parse_reference(ref.string_within_transport())
        _expect(
            again == ref and str(again) == str(ref),
            f"{ref!r} parsed back from {ref.string_within_transport()!r} as {again!r}",
        )

    def _roundtrip(self, name: str, image: RandomImage) -> None:
        ref = self._ref(name)
        if not self._accepts(ref, image.media_type):
            raise _Skip(f"the destination does not accept {image.media_type}")
        image.write_to(ref, self.options)
        self._read_back(ref, image, "write then read")

    def check_roundtrip_oci(self) -> None:
        """An OCI image written through the destination API reads back byte for byte."""
        self._roundtrip("conformance-roundtrip-oci", random_image(self.seed, layers=2))

    def check_roundtrip_v2s2(self) -> None:
        """A Docker schema 2 image written through the destination API reads back byte for byte."""
        image = random_image(self.seed + 1, layers=2, media_type="v2s2")
        self._roundtrip("conformance-roundtrip-v2s2", image)

    def check_roundtrip_index(self) -> None:
        """An index and all its instances read back byte for byte."""
        if not self.supports_index:
            raise _Skip("the transport does not store indexes")
        index = random_index(self.seed + 2, layers=1)
        ref = self._ref("conformance-roundtrip-index")
        if not self._accepts(ref, index.media_type):
            raise _Skip(f"the destination does not accept {index.media_type}")
        index.write_to(ref, self.options)
        with ref.open_source(self.options) as source:
            data, media_type = source.get_manifest()
            _expect(
                data == index.manifest,
                f"the index read back differs from what was written: {_short(data)}",
            )
            _expect(
                mt.normalize(media_type) == index.media_type,
                f"the index read back as {media_type!r}, written as {index.media_type!r}",
            )
            for image in index.images:
                data, media_type = source.get_manifest(image.digest)
                self._check_image(source, image, data, media_type, image.digest, "index")

    def check_overwrite(self) -> None:
        """A second image written to the same reference replaces the first."""
        if not self.supports_overwrite:
            raise _Skip("the transport does not overwrite images (supports_overwrite=False)")
        ref = self._ref("conformance-overwrite")
        first, second = random_image(self.seed + 3), random_image(self.seed + 4)
        first.write_to(ref, self.options)
        second.write_to(ref, self.options)
        self._read_back(ref, second, "overwrite")

    def check_blob_reuse(self) -> None:
        """After ``put_blob``, ``try_reusing_blob`` finds the blob; it never claims unknown ones."""
        ref = self._ref("conformance-blob-reuse")
        image = random_image(self.seed + 5, layers=1)
        layer = image.parsed.layers[0]
        unknown = BlobInfo(layer.media_type, Digest.from_bytes(b"never written"), 13)
        with ref.open_destination(self.options) as destination:
            _expect(
                destination.try_reusing_blob(unknown) is None,
                "try_reusing_blob claimed a blob that was never written",
            )
            info = BlobInfo.from_descriptor(layer)
            written = destination.put_blob(io.BytesIO(image.layers[0]), info)
            _expect(
                written.digest == layer.digest and written.size == layer.size,
                f"put_blob returned {written.digest} ({written.size} bytes) for a blob of "
                f"{layer.digest} ({layer.size} bytes)",
            )
            reused = destination.try_reusing_blob(info)
            if reused is None:
                if self.supports_blob_reuse:
                    raise ConformanceError(
                        "try_reusing_blob did not find a blob put earlier in the same "
                        "destination (pass supports_blob_reuse=False if that is intended)"
                    )
            else:
                _expect(
                    reused.digest == layer.digest and reused.size == layer.size,
                    f"try_reusing_blob returned {reused.digest} ({reused.size} bytes) for "
                    f"{layer.digest} ({layer.size} bytes)",
                )
            image.write_into(destination)
            destination.commit()
        self._read_back(ref, image, "blob reuse")

    def check_abort_without_commit(self) -> None:
        """Closing a destination without commit leaves nothing (new) readable."""
        ref = self._ref("conformance-abort")
        image = random_image(self.seed + 6)
        with ref.open_destination(self.options) as destination:
            image.write_into(destination)
        self._expect_unreadable(ref, "abort of a new image")
        if not self.supports_overwrite:
            return
        # Over an existing image, the old one stays exactly as it was.
        ref = self._ref("conformance-abort-existing")
        old, new = random_image(self.seed + 7), random_image(self.seed + 8)
        old.write_to(ref, self.options)
        with ref.open_destination(self.options) as destination:
            new.write_into(destination)
        self._read_back(ref, old, "abort over an existing image")

    def check_corrupt_blob(self) -> None:
        """A blob stream not matching its digest (or size) raises VerificationError; no commit."""
        ref = self._ref("conformance-corrupt")
        image = random_image(self.seed + 9, layers=1)
        layer = image.parsed.layers[0]
        bad = bytearray(image.layers[0])
        bad[len(bad) // 2] ^= 0xFF
        cases = [
            ("flipped byte", bytes(bad)),
            ("truncated", image.layers[0][:-1]),
            ("extra byte", image.layers[0] + b"\0"),
        ]
        for label, data in cases:
            with ref.open_destination(self.options) as destination:
                try:
                    destination.put_blob(io.BytesIO(data), BlobInfo.from_descriptor(layer))
                except VerificationError:
                    pass
                except Exception as e:
                    raise ConformanceError(
                        f"put_blob of a corrupt stream ({label}) raised {type(e).__name__} "
                        f"({e}), not a VerificationError"
                    ) from e
                else:
                    raise ConformanceError(
                        f"put_blob accepted a corrupt stream ({label}) for {layer.digest}"
                    )
                # The transport must not pretend it has the blob now.
                reused = destination.try_reusing_blob(BlobInfo.from_descriptor(layer))
                _expect(
                    reused is None,
                    f"after a corrupt put_blob ({label}), try_reusing_blob claims the blob",
                )
            self._expect_unreadable(ref, f"after a corrupt put_blob ({label})")
        # The location is still usable.
        image.write_to(ref, self.options)
        self._read_back(ref, image, "write after corrupt attempts")

    def check_missing_image(self) -> None:
        """Opening a location never written raises an ImageError (not an OSError or KeyError)."""
        self._expect_unreadable(self._ref("conformance-missing"), "a location never written")

    def check_unknown_blob(self) -> None:
        """Asking a source for a blob it does not have raises NotFoundError."""
        ref = self._ref("conformance-unknown-blob")
        random_image(self.seed + 10, layers=1).write_to(ref, self.options)
        missing = Descriptor(mt.OCI_LAYER_GZIP, Digest.from_bytes(b"no such blob"), 12)
        with ref.open_source(self.options) as source:
            try:
                with source.get_blob(missing) as reader:
                    reader.read()
            except NotFoundError:
                return
            except Exception as e:
                raise ConformanceError(
                    f"get_blob of an unknown blob raised {type(e).__name__} ({e}), "
                    "not a NotFoundError (BlobNotFoundError)"
                ) from e
        raise ConformanceError("get_blob of an unknown blob returned content")

    def check_signatures(self) -> None:
        """Signatures are stored and read back when supported, refused clearly when not."""
        ref = self._ref("conformance-signatures")
        image = random_image(self.seed + 11)
        signatures = [b"signature one", b"signature \x00 two"]
        with ref.open_destination(self.options) as destination:
            declared = destination.capabilities.supports_signatures
            image.write_into(destination)
            if not self.supports_signatures:
                try:
                    destination.put_signatures(signatures)
                except UnsupportedError:
                    return
                if declared:
                    raise _Skip("the destination stores signatures (supports_signatures=False)")
                raise ConformanceError(
                    "put_signatures accepted signatures, but capabilities.supports_signatures "
                    "is False: declare it, or raise UnsupportedError"
                )
            _expect(declared, "supports_signatures=True, but the capabilities do not declare it")
            destination.put_signatures(signatures)
            destination.commit()
        with ref.open_source(self.options) as source:
            got = source.get_signatures()
        _expect(got == signatures, f"signatures read back as {got!r}, written as {signatures!r}")

    def check_copy_from_oci(self) -> None:
        """``copy_image`` from an ``oci:`` layout to the transport, and the result reads back."""
        with _oci_layout() as layout:
            image = random_image(self.seed + 12)
            source = f"oci:{layout}:src"
            image.write_to(source)
            ref = self._ref("conformance-copy-from-oci")
            result = copy_image(source, ref, self._copy_options())
            with ref.open_source(self.options) as reader:
                data, media_type = reader.get_manifest()
                self._verify_blobs(reader, data, media_type, "copy from oci:")
            if self.preserves_manifests:
                _expect(
                    data == result.manifest,
                    "the manifest read back differs from the one copy_image wrote",
                )
                if not result.converted:
                    self._read_back(ref, image, "copy from oci:")
            if self.supports_index:
                index = random_index(self.seed + 13, layers=1)
                index_source = f"oci:{layout}:index"
                index.write_to(index_source)
                ref = self._ref("conformance-copy-index-from-oci")
                options = self._copy_options(instances="all")
                result = copy_image(index_source, ref, options)
                with ref.open_source(self.options) as reader:
                    data, _ = reader.get_manifest()
                    _expect(
                        data == result.manifest,
                        "the index read back differs from the one copy_image wrote",
                    )
                    for digest in result.instance_digests:
                        instance, media_type = reader.get_manifest(digest)
                        _expect(
                            Digest.from_bytes(instance) == digest,
                            f"instance {digest} read back with another digest",
                        )
                        self._verify_blobs(reader, instance, media_type, f"instance {digest}")

    def check_copy_to_oci(self) -> None:
        """``copy_image`` from the transport to an ``oci:`` layout keeps the manifest bytes."""
        ref = self._ref("conformance-copy-to-oci")
        image = random_image(self.seed + 14)
        if not self._accepts(ref, image.media_type):
            image = random_image(self.seed + 14, media_type="v2s2")
        image.write_to(ref, self.options)
        with ref.open_source(self.options) as source:
            stored, _ = source.get_manifest()
        with _oci_layout() as layout:
            target = parse_reference(f"oci:{layout}:dst")
            result = copy_image(ref, target, self._copy_options())
            if not result.converted:
                _expect(
                    result.manifest == stored,
                    "copying to oci: changed the manifest although it was not converted",
                )
            with target.open_source() as source:
                data, media_type = source.get_manifest()
                _expect(data == result.manifest, "oci: holds another manifest than was copied")
                self._verify_blobs(source, data, media_type, "copy to oci:")
            if self.supports_index:
                self._copy_index_to_oci(layout)

    def _copy_index_to_oci(self, layout: Path) -> None:
        index = random_index(self.seed + 15, layers=1)
        ref = self._ref("conformance-copy-index-to-oci")
        if not self._accepts(ref, index.media_type):
            index = random_index(self.seed + 15, layers=1, media_type="v2s2")
        index.write_to(ref, self.options)
        target = parse_reference(f"oci:{layout}:index")
        result = copy_image(ref, target, self._copy_options(instances="all"))
        _expect(
            result.converted or result.manifest_digest == index.digest,
            f"copying an index to oci: gave {result.manifest_digest}, not {index.digest}",
        )
        _expect(
            len(result.instance_digests) == len(index.images),
            f"copying an index to oci: wrote {len(result.instance_digests)} instances, "
            f"not {len(index.images)}",
        )
        with target.open_source() as source:
            for digest in result.instance_digests:
                data, media_type = source.get_manifest(digest)
                self._verify_blobs(source, data, media_type, f"index instance {digest}")

    def _copy_options(self, *, instances: str = "system") -> CopyOptions:
        return CopyOptions(
            instances=instances,
            source_options=self.options,
            destination_options=self.options,
        )


#: Every check, in the order they run.
CHECK_NAMES: tuple[str, ...] = (
    "reference-roundtrip",
    "roundtrip-oci",
    "roundtrip-v2s2",
    "roundtrip-index",
    "overwrite",
    "blob-reuse",
    "abort-without-commit",
    "corrupt-blob",
    "missing-image",
    "unknown-blob",
    "signatures",
    "copy-from-oci",
    "copy-to-oci",
)


@contextmanager
def _oci_layout() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="imagetypes-conformance-") as tmp:
        yield Path(tmp) / "layout"


def check_transport(
    make_reference: ReferenceFactory,
    *,
    supports_index: bool = True,
    supports_signatures: bool = False,
    supports_blob_reuse: bool = True,
    options: TransportOptions | None = None,
    checks: Sequence[str] | None = None,
    seed: int = 0,
) -> ConformanceReport:
    """Run the conformance checks against a transport; raise :class:`ConformanceError` on failure.

    ``make_reference(name)`` returns a fresh location of the transport for ``name`` (a
    reference or its ``transport:details`` string). ``checks`` limits the run to some of
    :data:`CHECK_NAMES`. Returns the report (with the skipped checks) when all passed.
    """
    suite = ConformanceSuite(
        make_reference=make_reference,
        supports_index=supports_index,
        supports_signatures=supports_signatures,
        supports_blob_reuse=supports_blob_reuse,
        options=options,
        seed=seed,
    )
    report = suite.run_all(checks)
    report.raise_for_failures()
    return report
