"""NaCl ``secretbox`` (XSalsa20-Poly1305) and the scrypt-based envelope of cosign keys.

cosign and containers/image encrypt sigstore private keys with go-tuf's ``encrypted``
package: scrypt derives a key from the passphrase, NaCl secretbox seals the PKCS#8 key. The
``cryptography`` package has no XSalsa20, so the cipher is written out here; it only ever
processes a few hundred bytes of key material, so speed does not matter. Its correctness is
pinned by NaCl's published test vector in the tests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import struct

from ._json import decode_base64, load_json, object_fields

__all__ = ["decrypt_envelope", "encrypt_envelope", "secretbox_open", "secretbox_seal"]

_MASK = 0xFFFFFFFF
_SIGMA = struct.unpack("<4I", b"expand 32-byte k")
KEY_SIZE = 32
NONCE_SIZE = 24
_TAG_SIZE = 16


def _rotl(v: int, c: int) -> int:
    return ((v << c) & _MASK) | (v >> (32 - c))


def _rounds(x: list[int]) -> None:
    """The 20 Salsa20 rounds (10 double rounds) on the 16-word state, in place."""
    for _ in range(10):
        for a, b, c, d in (
            (0, 4, 8, 12),
            (5, 9, 13, 1),
            (10, 14, 2, 6),
            (15, 3, 7, 11),  # columns
            (0, 1, 2, 3),
            (5, 6, 7, 4),
            (10, 11, 8, 9),
            (15, 12, 13, 14),  # rows
        ):
            x[b] ^= _rotl((x[a] + x[d]) & _MASK, 7)
            x[c] ^= _rotl((x[b] + x[a]) & _MASK, 9)
            x[d] ^= _rotl((x[c] + x[b]) & _MASK, 13)
            x[a] ^= _rotl((x[d] + x[c]) & _MASK, 18)


def _state(key: bytes, middle: tuple[int, int, int, int]) -> list[int]:
    k = struct.unpack("<8I", key)
    return [
        _SIGMA[0], k[0], k[1], k[2],
        k[3], _SIGMA[1], middle[0], middle[1],
        middle[2], middle[3], _SIGMA[2], k[4],
        k[5], k[6], k[7], _SIGMA[3],
    ]  # fmt: skip


def _hsalsa20(key: bytes, nonce16: bytes) -> bytes:
    x = _state(key, struct.unpack("<4I", nonce16))
    _rounds(x)
    return struct.pack("<8I", x[0], x[5], x[10], x[15], x[6], x[7], x[8], x[9])


def _salsa20_stream(key: bytes, nonce8: bytes, length: int) -> bytes:
    n0, n1 = struct.unpack("<2I", nonce8)
    out = bytearray()
    counter = 0
    while len(out) < length:
        start = _state(key, (n0, n1, counter & _MASK, counter >> 32))
        x = list(start)
        _rounds(x)
        out += struct.pack("<16I", *(((a + b) & _MASK) for a, b in zip(x, start, strict=True)))
        counter += 1
    return bytes(out[:length])


def _poly1305(key: bytes, message: bytes) -> bytes:
    r = int.from_bytes(key[:16], "little") & 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
    s = int.from_bytes(key[16:], "little")
    p = (1 << 130) - 5
    acc = 0
    for i in range(0, len(message), 16):
        block = message[i : i + 16] + b"\x01"
        acc = ((acc + int.from_bytes(block, "little")) * r) % p
    return ((acc + s) & ((1 << 128) - 1)).to_bytes(16, "little")


def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    if len(key) != KEY_SIZE or len(nonce) != NONCE_SIZE:
        raise ValueError("secretbox needs a 32-byte key and a 24-byte nonce")
    return _salsa20_stream(_hsalsa20(key, nonce[:16]), nonce[16:], length)


def secretbox_seal(message: bytes, nonce: bytes, key: bytes) -> bytes:
    """NaCl ``crypto_secretbox``: the Poly1305 tag followed by the XSalsa20 ciphertext."""
    stream = _keystream(key, nonce, 32 + len(message))
    ciphertext = bytes(m ^ k for m, k in zip(message, stream[32:], strict=True))
    return _poly1305(stream[:32], ciphertext) + ciphertext


def secretbox_open(box: bytes, nonce: bytes, key: bytes) -> bytes | None:
    """The message sealed in ``box``, or None when it was not sealed with this key and nonce."""
    if len(box) < _TAG_SIZE:
        return None
    tag, ciphertext = box[:_TAG_SIZE], box[_TAG_SIZE:]
    stream = _keystream(key, nonce, 32 + len(ciphertext))
    if not hmac.compare_digest(_poly1305(stream[:32], ciphertext), tag):
        return None
    return bytes(c ^ k for c, k in zip(ciphertext, stream[32:], strict=True))


# -- the go-tuf "encrypted" envelope ---------------------------------------------------------

# scrypt parameters go-tuf / go-securesystemslib write (legacy, what cosign uses) and accept.
# Only known sets are accepted, so a tampered file cannot make us burn memory and time.
_SCRYPT_WRITE = {"N": 32768, "r": 8, "p": 1}
_SCRYPT_ACCEPTED = {(32768, 8, 1), (65536, 8, 1), (131072, 8, 1)}


def _scrypt(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        passphrase, salt=salt, n=n, r=r, p=p, dklen=KEY_SIZE, maxmem=129 * n * r * p + (1 << 20)
    )


def encrypt_envelope(plaintext: bytes, passphrase: bytes) -> bytes:
    """go-tuf's ``encrypted.Encrypt``: JSON with scrypt parameters, nonce and ciphertext."""
    salt, nonce = os.urandom(32), os.urandom(NONCE_SIZE)
    params = _SCRYPT_WRITE
    key = _scrypt(passphrase, salt, params["N"], params["r"], params["p"])
    b64 = _b64
    return json.dumps(
        {
            "kdf": {"name": "scrypt", "params": params, "salt": b64(salt)},
            "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce)},
            "ciphertext": b64(secretbox_seal(plaintext, nonce, key)),
        },
        separators=(",", ":"),
    ).encode()


def decrypt_envelope(data: bytes, passphrase: bytes, error: type[Exception]) -> bytes:
    """Open an envelope written by :func:`encrypt_envelope`, cosign or skopeo."""
    obj = object_fields(
        load_json(data, error, "encrypted key"),
        error,
        "encrypted key",
        required=("kdf", "cipher", "ciphertext"),
    )
    kdf = object_fields(obj["kdf"], error, "kdf", required=("name", "params", "salt"))
    cipher = object_fields(obj["cipher"], error, "cipher", required=("name", "nonce"))
    if kdf["name"] != "scrypt":
        raise error(f"unknown key derivation {kdf['name']!r} in encrypted key")
    if cipher["name"] != "nacl/secretbox":
        raise error(f"unknown cipher {cipher['name']!r} in encrypted key")
    params = object_fields(kdf["params"], error, "kdf params", required=("N", "r", "p"))
    triple = (params["N"], params["r"], params["p"])
    if not all(type(v) is int for v in triple) or triple not in _SCRYPT_ACCEPTED:
        raise error(f"unexpected scrypt parameters {params} in encrypted key")
    salt = decode_base64(kdf["salt"], error, "kdf salt")
    nonce = decode_base64(cipher["nonce"], error, "cipher nonce")
    if len(nonce) != NONCE_SIZE:
        raise error("encrypted key: incorrect nonce size")
    key = _scrypt(passphrase, salt, *triple)
    opened = secretbox_open(decode_base64(obj["ciphertext"], error, "ciphertext"), nonce, key)
    if opened is None:
        raise error("cannot decrypt the private key: wrong passphrase, or the key is corrupt")
    return opened


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")
