"""Running the ``gpg`` program: importing keys into a throwaway home, verifying, signing.

Status lines (``--status-fd``) are the machine interface of gpg; its human messages are only
used to explain a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import attrs

from ._errors import GPGError, InvalidSignatureError

__all__ = ["GPGVerification", "ephemeral_home", "gpg_sign", "gpg_verify", "import_keys"]

_TIMEOUT = 120.0
_STATUS_PREFIX = "[GNUPG:] "
# Common options: never ask, never touch the network, no trust database questions.
_BASE = ["--batch", "--no-tty", "--no-auto-key-retrieve", "--no-auto-key-locate"]


def _gpg() -> str:
    path = shutil.which("gpg")
    if path is None:
        raise GPGError("the gpg program (GnuPG) is needed for simple signing; it is not installed")
    return path


@attrs.frozen
class _Result:
    returncode: int
    status: tuple[tuple[str, ...], ...]
    stderr: str


def _run(
    args: Sequence[str],
    *,
    home: str | os.PathLike[str] | None,
    stdin: bytes = b"",
    passphrase: str | None = None,
) -> _Result:
    command = [_gpg()]
    if home is not None:
        command += ["--homedir", os.fspath(home)]
    command += [*_BASE, "--status-fd", "1"]
    pass_fds: tuple[int, ...] = ()
    read_fd = -1
    if passphrase is not None:
        if "\n" in passphrase:
            raise ValueError("a GPG passphrase must not contain a line break")
        read_fd, write_fd = os.pipe()
        # A passphrase is far smaller than a pipe's buffer, so writing before gpg starts
        # cannot block.
        with os.fdopen(write_fd, "wb") as w:
            w.write(passphrase.encode() + b"\n")
        command += ["--pinentry-mode", "loopback", "--passphrase-fd", str(read_fd)]
        pass_fds = (read_fd,)
    command += list(args)
    try:
        proc = subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            pass_fds=pass_fds,
            timeout=_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise GPGError(f"gpg did not finish within {_TIMEOUT:.0f} seconds") from e
    finally:
        if read_fd >= 0:
            os.close(read_fd)
    status = tuple(
        tuple(line[len(_STATUS_PREFIX) :].split(" "))
        for line in proc.stdout.decode("utf-8", "replace").splitlines()
        if line.startswith(_STATUS_PREFIX)
    )
    return _Result(proc.returncode, status, proc.stderr.decode("utf-8", "replace").strip())


@contextmanager
def ephemeral_home() -> Iterator[Path]:
    """A fresh, private GnuPG home directory, removed afterwards (with any agent it started)."""
    # Short path under the system temporary directory: gpg-agent socket paths are limited.
    home = Path(tempfile.mkdtemp(prefix="imagetypes-gpg-"))
    try:
        home.chmod(0o700)
        yield home
    finally:
        if any(p.name.startswith("S.") for p in home.iterdir()):
            gpgconf = shutil.which("gpgconf")
            if gpgconf is not None:
                subprocess.run(
                    [gpgconf, "--homedir", str(home), "--kill", "all"],
                    capture_output=True,
                    timeout=_TIMEOUT,
                    check=False,
                )
        shutil.rmtree(home, ignore_errors=True)


def import_keys(home: Path, keyrings: Iterable[bytes]) -> list[str]:
    """Import public keys (binary or armored keyrings); fingerprints of the keys imported."""
    fingerprints: list[str] = []
    for keyring in keyrings:
        result = _run(["--import"], home=home, stdin=keyring)
        for fields in result.status:
            # IMPORT_OK <reasons> <fingerprint>: the key is in the keyring now (or already was).
            if fields[0] == "IMPORT_OK" and len(fields) >= 3 and fields[2] not in fingerprints:
                fingerprints.append(fields[2].upper())
    return fingerprints


@attrs.frozen
class GPGVerification:
    """A good signature: the signed content and who signed it."""

    content: bytes
    #: Fingerprint of the key (or subkey) that made the signature.
    signing_fingerprint: str
    #: Fingerprint of that key's primary key.
    primary_fingerprint: str


def gpg_verify(home: Path, signature: bytes) -> GPGVerification:
    """Verify an OpenPGP signed message with the keys in ``home``; exactly one good signature."""
    out = home / "verified-content"
    out.unlink(missing_ok=True)
    result = _run(["--output", str(out), "--decrypt"], home=home, stdin=signature)
    names = [fields[0] for fields in result.status]
    if "NO_PUBKEY" in names:
        fields = next(f for f in result.status if f[0] == "NO_PUBKEY")
        key = fields[1] if len(fields) > 1 else "?"
        raise InvalidSignatureError(
            f"the signature was made by key {key}, which is not among the trusted keys"
        )
    for bad in ("BADSIG", "ERRSIG", "EXPSIG", "EXPKEYSIG", "REVKEYSIG"):
        if bad in names:
            fields = next(f for f in result.status if f[0] == bad)
            key = fields[1] if len(fields) > 1 else "?"
            reason = {
                "BADSIG": "the signature does not verify",
                "ERRSIG": "the signature cannot be checked (unknown key, or a malformed signature)",
                "EXPSIG": "the signature has expired",
                "EXPKEYSIG": "the signing key has expired",
                "REVKEYSIG": "the signing key has been revoked",
            }[bad]
            raise InvalidSignatureError(f"invalid GPG signature by key {key}: {reason}")
    count = names.count("NEWSIG") or names.count("GOODSIG")
    validsigs = [f for f in result.status if f[0] == "VALIDSIG"]
    if count != 1 or names.count("GOODSIG") != 1 or len(validsigs) != 1:
        detail = f": {result.stderr.splitlines()[-1]}" if result.stderr else ""
        if count == 0 and not validsigs:
            raise InvalidSignatureError(f"the data is not a valid GPG signature{detail}")
        raise InvalidSignatureError(f"unexpected GPG signature count {max(count, 1)}")
    if result.returncode != 0 or not out.exists():
        raise InvalidSignatureError(f"gpg could not verify the signature: {result.stderr}")
    valid = validsigs[0]
    signing = valid[1].upper()
    # VALIDSIG <fpr> <date> <ts> <expire> <version> <reserved> <pkalgo> <hash> <class> <primary>
    primary = valid[10].upper() if len(valid) > 10 else signing
    content = out.read_bytes()
    out.unlink()
    return GPGVerification(content, signing, primary)


def gpg_sign(
    content: bytes, key_id: str, *, home: str | os.PathLike[str] | None, passphrase: str | None
) -> bytes:
    """A binary OpenPGP signed message of ``content`` made with ``key_id``."""
    with tempfile.TemporaryDirectory(prefix="imagetypes-sign-") as work:
        out = Path(work) / "signature"
        result = _run(
            ["--local-user", key_id, "--output", str(out), "--sign"],
            home=home,
            stdin=content,
            passphrase=passphrase,
        )
        created = any(fields[0] == "SIG_CREATED" for fields in result.status)
        if result.returncode != 0 or not created or not out.exists():
            message = result.stderr or f"gpg exited with status {result.returncode}"
            raise GPGError(f"signing with key {key_id!r} failed: {message}")
        return out.read_bytes()
