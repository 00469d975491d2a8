"""imagetypes.digest: the Digest value, VerifyingReader and verify_stream."""

from __future__ import annotations

import hashlib
import io

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagetypes.digest import CHUNK_SIZE, Digest, VerifyingReader, verify_stream
from imagetypes.errors import (
    DigestMismatchError,
    ImageError,
    InvalidDigestError,
    SizeMismatchError,
    VerificationError,
)

EMPTY_SHA256 = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
HELLO = b"hello, world\n"


def test_parse_and_str() -> None:
    d = Digest.parse(EMPTY_SHA256)
    assert d.algorithm == "sha256"
    assert d.hex == EMPTY_SHA256.split(":")[1]
    assert d.encoded == d.hex
    assert str(d) == EMPTY_SHA256
    assert d == Digest("sha256", d.hex)
    assert hash(d) == hash(Digest.parse(EMPTY_SHA256))


def test_sha512() -> None:
    hexpart = hashlib.sha512(HELLO).hexdigest()
    d = Digest.parse(f"sha512:{hexpart}")
    assert d.algorithm == "sha512"
    assert d == Digest.from_bytes(HELLO, "sha512")
    d.verify(HELLO)
    with pytest.raises(DigestMismatchError):
        d.verify(HELLO + b"!")


def test_from_bytes_and_verify() -> None:
    assert str(Digest.from_bytes(b"")) == EMPTY_SHA256
    d = Digest.from_bytes(HELLO)
    assert d.hex == hashlib.sha256(HELLO).hexdigest()
    d.verify(HELLO)
    with pytest.raises(DigestMismatchError) as info:
        d.verify(b"other")
    assert info.value.expected == d
    assert info.value.actual == Digest.from_bytes(b"other")


def test_from_hash_and_hasher() -> None:
    h = Digest.parse(EMPTY_SHA256).hasher()
    h.update(HELLO)
    assert Digest.from_hash(h) == Digest.from_bytes(HELLO)
    assert Digest.from_hash(hashlib.sha512(HELLO)) == Digest.from_bytes(HELLO, "sha512")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sha256",
        "sha256:",
        ":abc",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",  # 63
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",  # 65
        "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        "sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "sha384:" + "0" * 96,
        "sha512:" + "0" * 64,
        "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        " sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n",
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85:5",
    ],
)
def test_parse_invalid(text: str) -> None:
    with pytest.raises(InvalidDigestError) as info:
        Digest.parse(text)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, ImageError)


def test_parse_refuses_non_strings() -> None:
    with pytest.raises(InvalidDigestError, match="string"):
        Digest.parse(b"sha256:00")  # type: ignore[arg-type]


def test_constructor_validates() -> None:
    with pytest.raises(InvalidDigestError, match="unsupported"):
        Digest("md5", "0" * 32)
    with pytest.raises(InvalidDigestError, match="64"):
        Digest("sha256", "0" * 63)


def test_digest_is_frozen_and_ordered() -> None:
    a = Digest("sha256", "0" * 64)
    b = Digest("sha256", "1" * 64)
    assert sorted([b, a]) == [a, b]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        a.hex = "1" * 64  # type: ignore[misc]


@given(st.binary(max_size=256), st.sampled_from(["sha256", "sha512"]))
def test_parse_str_round_trip(data: bytes, algorithm: str) -> None:
    d = Digest.from_bytes(data, algorithm)
    assert Digest.parse(str(d)) == d
    assert d.hex == hashlib.new(algorithm, data).hexdigest()


# -- VerifyingReader -------------------------------------------------------------------------
class CountingStream(io.BytesIO):
    """A BytesIO that records how much was asked of it and whether it was closed."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads = 0

    def read(self, size: int | None = -1, /) -> bytes:
        self.reads += 1
        return super().read(size)


def test_good_stream() -> None:
    data = bytes(range(256)) * 1000
    reader = VerifyingReader(io.BytesIO(data), Digest.from_bytes(data), len(data))
    out = bytearray()
    while chunk := reader.read(1000):
        out += chunk
    assert bytes(out) == data
    assert reader.finished
    assert reader.digest == Digest.from_bytes(data)
    assert reader.size == len(data)
    assert reader.read(10) == b""  # reads after EOF stay empty


def test_read_all_and_read_to_end() -> None:
    data = b"x" * (CHUNK_SIZE + 17)
    assert VerifyingReader(io.BytesIO(data), Digest.from_bytes(data)).read() == data
    reader = VerifyingReader(io.BytesIO(data), None, len(data))
    assert reader.read_to_end() == Digest.from_bytes(data)


def test_readinto() -> None:
    reader = VerifyingReader(io.BytesIO(HELLO), Digest.from_bytes(HELLO), len(HELLO))
    buffer = bytearray(5)
    assert reader.readinto(buffer) == 5
    assert bytes(buffer) == HELLO[:5]
    assert reader.read() == HELLO[5:]
    assert reader.finished


def test_digest_unavailable_before_eof() -> None:
    reader = VerifyingReader(io.BytesIO(HELLO))
    reader.read(3)
    assert not reader.finished
    with pytest.raises(RuntimeError):
        _ = reader.digest


def test_wrong_digest_raises_at_eof() -> None:
    wrong = Digest.from_bytes(b"something else")
    reader = VerifyingReader(io.BytesIO(HELLO), wrong, len(HELLO))
    assert reader.read(len(HELLO)) == HELLO  # all bytes are handed out ...
    with pytest.raises(DigestMismatchError) as info:  # ... and EOF reports the mismatch
        reader.read(1)
    assert info.value.expected == wrong
    assert info.value.actual == Digest.from_bytes(HELLO)
    assert isinstance(info.value, VerificationError)


def test_wrong_digest_with_sha512() -> None:
    wrong = Digest.from_bytes(b"nope", "sha512")
    with pytest.raises(DigestMismatchError):
        VerifyingReader(io.BytesIO(HELLO), wrong).read()


def test_too_many_bytes_raise_immediately() -> None:
    data = b"a" * 100
    stream = CountingStream(data)
    reader = VerifyingReader(stream, Digest.from_bytes(data[:10]), 10)
    with pytest.raises(SizeMismatchError) as info:
        reader.read(50)  # one read that overshoots fails at once, before EOF
    assert info.value.expected == 10
    assert info.value.actual == 50
    assert stream.reads == 1
    assert stream.tell() == 50  # the rest of the stream was never touched


def test_too_few_bytes_raise_at_eof() -> None:
    reader = VerifyingReader(io.BytesIO(HELLO), Digest.from_bytes(HELLO), len(HELLO) + 5)
    assert reader.read(len(HELLO)) == HELLO
    with pytest.raises(SizeMismatchError) as info:
        reader.read(1)
    assert info.value.expected == len(HELLO) + 5
    assert info.value.actual == len(HELLO)


def test_size_checked_before_digest() -> None:
    # With both wrong, the size is reported: it is the more specific diagnosis.
    reader = VerifyingReader(io.BytesIO(HELLO), Digest.from_bytes(b"x"), len(HELLO) + 1)
    with pytest.raises(SizeMismatchError):
        reader.read()


def test_failed_verification_is_not_forgotten() -> None:
    reader = VerifyingReader(io.BytesIO(HELLO), Digest.from_bytes(b"x"), len(HELLO))
    with pytest.raises(DigestMismatchError):
        reader.read()
    assert not reader.finished  # the docstring: "EOF was reached and verification passed"
    with pytest.raises(DigestMismatchError):
        reader.read_to_end()  # must not hand back the wrong digest as if verified


def test_negative_expected_size_means_unknown() -> None:
    reader = VerifyingReader(io.BytesIO(HELLO), None, -1)
    assert reader.expected_size is None
    assert reader.read() == HELLO


def test_close_and_context_manager() -> None:
    stream = io.BytesIO(HELLO)
    with VerifyingReader(stream) as reader:
        assert reader.readable()
        reader.read()
    assert stream.closed


# -- verify_stream ---------------------------------------------------------------------------
def test_verify_stream_returns_same_reader_for_same_expectations() -> None:
    d = Digest.from_bytes(HELLO)
    reader = VerifyingReader(io.BytesIO(HELLO), d, len(HELLO))
    assert verify_stream(reader, d, len(HELLO)) is reader
    assert verify_stream(reader, d) is reader
    assert verify_stream(reader, None) is reader
    assert verify_stream(reader, d, -1) is reader


def test_verify_stream_wraps_otherwise() -> None:
    d = Digest.from_bytes(HELLO)
    reader = VerifyingReader(io.BytesIO(HELLO), d, len(HELLO))
    other = Digest.from_bytes(b"other")
    wrapped = verify_stream(reader, other)
    assert wrapped is not reader
    with pytest.raises(DigestMismatchError):
        wrapped.read()

    unverified = VerifyingReader(io.BytesIO(HELLO))
    assert verify_stream(unverified, d) is not unverified
    unsized = VerifyingReader(io.BytesIO(HELLO), d)
    assert verify_stream(unsized, d, 99) is not unsized

    plain = io.BytesIO(HELLO)
    wrapped_plain = verify_stream(plain, d, len(HELLO))
    assert isinstance(wrapped_plain, VerifyingReader)
    assert wrapped_plain.read() == HELLO
    assert wrapped_plain.digest == d


def test_verify_stream_wraps_a_reader_already_started() -> None:
    # A started reader has hashed bytes the new consumer will not see: it must not be reused.
    d = Digest.from_bytes(HELLO)
    reader = VerifyingReader(io.BytesIO(HELLO), d, len(HELLO))
    reader.read(2)
    assert verify_stream(reader, d, len(HELLO)) is not reader


def test_verify_stream_with_different_size_wraps() -> None:
    d = Digest.from_bytes(HELLO)
    reader = VerifyingReader(io.BytesIO(HELLO), d)
    wrapped = verify_stream(reader, d, len(HELLO) - 1)
    assert wrapped is not reader
    with pytest.raises(SizeMismatchError):
        wrapped.read()
